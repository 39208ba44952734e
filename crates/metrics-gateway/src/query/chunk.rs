//! Compressed sample chunks for the query history: delta-of-delta timestamps and XOR
//! values, the scheme of Facebook's Gorilla paper that Prometheus's head block uses. Our
//! own bit layout (the chunks never leave the process):
//!
//! - sample 0: timestamp as 64 raw bits, value as 64 raw bits;
//! - sample n ≥ 1: `dod = (t - t_prev) - delta_prev` (with `delta_prev = 0` for sample 1):
//!   `0` when zero; `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits (two's complement)
//!   when it fits; else `1111` + 64 bits;
//! - value: `v XOR v_prev`: `0` when zero; `10` + the meaningful bits when they fit in the
//!   previous window of leading/trailing zeros; else `11` + 5 bits leading zeros + 6 bits
//!   meaningful-bit count (64 written as 0) + the meaningful bits.
//!
//! Values are kept bit for bit, so staleness markers (a NaN with its own bit pattern) and
//! `-0` survive.

/// Samples per chunk before a new one is cut (Prometheus cuts head chunks at 120).
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// An append-only compressed chunk of `(timestamp ms, value)` samples in strictly
/// increasing timestamp order.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
    n: u16,
    min_t: i64,
    max_t: i64,
    last_v: u64,
    last_delta: i64,
    leading: u8,
    trailing: u8,
}

impl Chunk {
    /// An empty chunk.
    pub fn new() -> Self {
        Self {
            leading: u8::MAX,
            ..Self::default()
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether it reached [`SAMPLES_PER_CHUNK`].
    pub fn is_full(&self) -> bool {
        self.n >= SAMPLES_PER_CHUNK
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    /// Encoded size in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Memory held, including the struct itself.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + std::mem::size_of::<Self>()
    }

    /// Releases spare capacity (called when the chunk is sealed).
    pub fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// Appends a sample; returns false (and changes nothing) when `t` is not after the last
    /// sample's timestamp or the chunk is full.
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.is_full() || (self.n > 0 && t <= self.max_t) {
            return false;
        }
        let bits = v.to_bits();
        if self.n == 0 {
            self.write(t as u64, 64);
            self.write(bits, 64);
            self.min_t = t;
            self.last_delta = 0;
        } else {
            let delta = t.wrapping_sub(self.max_t);
            let dod = delta.wrapping_sub(self.last_delta);
            self.write_dod(dod);
            self.write_xor(bits);
            self.last_delta = delta;
        }
        self.max_t = t;
        self.last_v = bits;
        self.n += 1;
        true
    }

    fn write_dod(&mut self, dod: i64) {
        let fits = |bits: u32| {
            let lim = 1i64 << (bits - 1);
            (-lim..lim).contains(&dod)
        };
        if dod == 0 {
            self.write(0, 1);
        } else if fits(14) {
            self.write(0b10, 2);
            self.write(dod as u64 & mask(14), 14);
        } else if fits(17) {
            self.write(0b110, 3);
            self.write(dod as u64 & mask(17), 17);
        } else if fits(20) {
            self.write(0b1110, 4);
            self.write(dod as u64 & mask(20), 20);
        } else {
            self.write(0b1111, 4);
            self.write(dod as u64, 64);
        }
    }

    fn write_xor(&mut self, bits: u64) {
        let x = bits ^ self.last_v;
        if x == 0 {
            self.write(0, 1);
            return;
        }
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.leading != u8::MAX && lead >= self.leading && trail >= self.trailing {
            self.write(0b10, 2);
            let sig = 64 - self.leading - self.trailing;
            self.write(x >> self.trailing, sig);
        } else {
            let sig = 64 - lead - trail;
            self.write(0b11, 2);
            self.write(lead as u64, 5);
            self.write(if sig == 64 { 0 } else { sig as u64 }, 6);
            self.write(x >> trail, sig);
            self.leading = lead;
            self.trailing = trail;
        }
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write(&mut self, v: u64, n: u8) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
                self.used = 0;
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let shift = left - take;
            let chunk = ((v >> shift) & mask(take as u32)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    /// The samples in order.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            bytes: &self.bytes,
            pos: 0,
            left: self.n,
            first: true,
            t: 0,
            v: 0,
            delta: 0,
            leading: 0,
            trailing: 0,
        }
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Decodes a [`Chunk`].
pub struct ChunkIter<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
    left: u16,
    first: bool,
    t: i64,
    v: u64,
    delta: i64,
    leading: u8,
    trailing: u8,
}

impl ChunkIter<'_> {
    fn read(&mut self, n: u8) -> u64 {
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes.get(self.pos / 8).copied().unwrap_or(0);
            let off = (self.pos % 8) as u8;
            let avail = 8 - off;
            let take = avail.min(left);
            let bits = (byte >> (avail - take)) as u64 & mask(take as u32);
            out = if take == 64 {
                bits
            } else {
                (out << take) | bits
            };
            self.pos += take as usize;
            left -= take;
        }
        out
    }

    fn read_bit(&mut self) -> bool {
        self.read(1) == 1
    }

    fn read_dod(&mut self) -> i64 {
        let signed = |v: u64, bits: u32| -> i64 {
            // Two's complement of `bits` bits.
            let shift = 64 - bits;
            ((v << shift) as i64) >> shift
        };
        if !self.read_bit() {
            0
        } else if !self.read_bit() {
            signed(self.read(14), 14)
        } else if !self.read_bit() {
            signed(self.read(17), 17)
        } else if !self.read_bit() {
            signed(self.read(20), 20)
        } else {
            self.read(64) as i64
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.first {
            self.first = false;
            self.t = self.read(64) as i64;
            self.v = self.read(64);
            return Some((self.t, f64::from_bits(self.v)));
        }
        let dod = self.read_dod();
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);
        if self.read_bit() {
            if self.read_bit() {
                self.leading = self.read(5) as u8;
                let sig = match self.read(6) as u8 {
                    0 => 64,
                    s => s,
                };
                self.trailing = 64u8.saturating_sub(self.leading + sig);
            }
            let sig = 64 - self.leading - self.trailing;
            let x = self.read(sig) << self.trailing;
            self.v ^= x;
        }
        Some((self.t, f64::from_bits(self.v)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn roundtrip(samples: &[(i64, u64)]) {
        let mut c = Chunk::new();
        for &(t, v) in samples {
            assert!(c.append(t, f64::from_bits(v)), "append {t}");
        }
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, samples);
        if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
            assert_eq!((c.min_t(), c.max_t()), (f.0, l.0));
        }
    }

    #[test]
    fn regular_scrapes_of_a_steady_gauge_take_about_two_bits_a_sample() {
        let mut c = Chunk::new();
        for i in 0..120 {
            assert!(c.append(1_700_000_000_000 + i * 15_000, 42.0));
        }
        // 16 header bytes, then one bit for the dod and one for the value per sample
        // (the second sample's delta costs 20 bits).
        assert!(c.byte_len() <= 16 + 3 + 30, "{} bytes", c.byte_len());
        assert!(
            !c.append(1_800_000_000_000, 1.0),
            "a full chunk refuses samples"
        );
    }

    #[test]
    fn out_of_order_and_duplicate_timestamps_are_refused() {
        let mut c = Chunk::new();
        assert!(c.append(10, 1.0));
        assert!(!c.append(10, 2.0));
        assert!(!c.append(5, 2.0));
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(10, 1.0)]);
    }

    #[test]
    fn special_values_keep_their_bits() {
        roundtrip(&[
            (0, f64::NAN.to_bits()),
            (1, 0x7ff0_0000_0000_0002),
            (2, (-0.0f64).to_bits()),
            (3, f64::INFINITY.to_bits()),
            (4, f64::NEG_INFINITY.to_bits()),
            (5, f64::MIN_POSITIVE.to_bits()),
            (6, 1u64),
            (i64::MAX / 2, u64::MAX),
        ]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn any_increasing_series_roundtrips_bit_for_bit(
            start in -(1i64 << 50)..(1i64 << 50),
            steps in prop::collection::vec(
                prop_oneof![
                    Just(15_000i64),
                    1i64..100,
                    1i64..100_000,
                    1i64..(1i64 << 40),
                ],
                0..(SAMPLES_PER_CHUNK as usize - 1),
            ),
            values in prop::collection::vec(
                prop_oneof![
                    any::<u64>(),
                    (0u32..1000).prop_map(|i| (i as f64).to_bits()),
                    (-1e6f64..1e6).prop_map(f64::to_bits),
                    Just(0x7ff0_0000_0000_0002u64),
                ],
                SAMPLES_PER_CHUNK as usize,
            ),
        ) {
            let mut t = start;
            let mut samples = vec![(t, values[0])];
            for (i, d) in steps.iter().enumerate() {
                t += d;
                samples.push((t, values[i + 1]));
            }
            roundtrip(&samples);
        }
    }
}
