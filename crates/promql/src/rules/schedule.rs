//! When a rule group is evaluated, as Prometheus schedules it: every group runs on its own
//! ticker, at `interval` steps shifted by a fixed per-group offset (a hash of the group's
//! file and name, modulo the interval), so groups are spread over the interval instead of
//! all running at the same instant. A group that reads another group's recording sees the
//! value of that group's latest evaluation at or before its own evaluation time: from the
//! same cycle when the other group's offset is smaller, else from the previous cycle.

/// The group's offset within its interval (ms), as Prometheus computes it:
/// `hash(labels{file, name}) % interval`, the hash being xxHash64 of
/// `file \xff <file> \xff name \xff <name> \xff` (Prometheus's `labels.Labels.Hash`), taken
/// over the interval in nanoseconds and truncated to milliseconds.
pub fn group_offset_ms(file: &str, name: &str, interval_ms: i64) -> i64 {
    let Ok(iv_ns) = u64::try_from(interval_ms.max(1)) else {
        return 0;
    };
    let iv_ns = iv_ns.saturating_mul(1_000_000);
    let mut key = Vec::with_capacity(file.len() + name.len() + 10);
    for (k, v) in [("file", file), ("name", name)] {
        key.extend_from_slice(k.as_bytes());
        key.push(0xff);
        key.extend_from_slice(v.as_bytes());
        key.push(0xff);
    }
    i64::try_from((xxh64(&key) % iv_ns) / 1_000_000).unwrap_or(0)
}

/// The group's latest scheduled evaluation time at or before `now_ms` (Prometheus's
/// `Group.EvalTimestamp`): `base + offset` with `base` a multiple of the interval.
pub fn eval_timestamp_ms(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let iv = interval_ms.max(1);
    let adj = now_ms - offset_ms;
    adj - adj.rem_euclid(iv) + offset_ms
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// xxHash64 with seed 0 (the algorithm of the xxHash specification; the hash Prometheus
/// uses for label sets).
fn xxh64(data: &[u8]) -> u64 {
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, le64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for x in v {
            h = merge(h, x);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, le64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= le32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn slots_are_the_offset_plus_whole_intervals_never_in_the_future() {
        let (iv, off) = (30_000, 12_345);
        for now in [0, 12_344, 12_345, 42_344, 42_345, 1_700_000_000_123] {
            let ts = eval_timestamp_ms(now, iv, off);
            assert!(ts <= now && now - ts < iv, "now {now} ts {ts}");
            assert_eq!((ts - off).rem_euclid(iv), 0);
        }
        let a = group_offset_ms("rules.yml", "a", 60_000);
        assert!((0..60_000).contains(&a));
        assert_eq!(a, group_offset_ms("rules.yml", "a", 60_000));
        assert_ne!(a, group_offset_ms("rules.yml", "b", 60_000));
    }

    #[test]
    fn offsets_are_prometheus_own() {
        // Measured with Debian's Prometheus 2.42 evaluating these two 5s groups of
        // /tmp/rep/prom/rules.yml: /api/v1/rules gave lastEvaluation at ...1.853s and
        // ...2.712s past each 5s boundary (the slot plus the time to start evaluating).
        assert_eq!(
            group_offset_ms("/tmp/rep/prom/rules.yml", "records", 5000),
            1852
        );
        assert_eq!(
            group_offset_ms("/tmp/rep/prom/rules.yml", "alerts", 5000),
            2711
        );
    }
}
