//! Retry delays: capped exponential backoff with jitter, the one formula every outbound
//! client of the suite uses (DingTalk, OSS, SLS, alert notifiers).

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `retry` (0 for the first retry): `base·2^retry`, capped at
/// `max`, then a random point in the upper half of that (`[d/2, d]`), so that clients that
/// failed together do not come back together.
pub fn capped_jittered(base: Duration, max: Duration, retry: u32) -> Duration {
    let capped = ceiling(base, max, retry);
    let half = capped / 2;
    half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// The delay before jitter: `min(max, base·2^retry)`, saturating.
pub fn ceiling(base: Duration, max: Duration, retry: u32) -> Duration {
    base.saturating_mul(1u32 << retry.min(30)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_stays_in_the_upper_half() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(8));
        for _ in 0..100 {
            let d0 = capped_jittered(base, max, 0);
            assert!(d0 >= Duration::from_millis(500) && d0 <= base, "{d0:?}");
            let d2 = capped_jittered(base, max, 2);
            assert!(d2 >= Duration::from_secs(2) && d2 <= Duration::from_secs(4));
            let big = capped_jittered(base, max, u32::MAX);
            assert!(big >= Duration::from_secs(4) && big <= max, "{big:?}");
        }
        assert_eq!(
            ceiling(Duration::MAX, Duration::from_secs(60), 40),
            Duration::from_secs(60)
        );
        let spread: std::collections::HashSet<_> =
            (0..20).map(|_| capped_jittered(base, max, 3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }
}
