//! The per-robot rate limit: a sliding window that lets at most `per_minute` requests start
//! in any window of [`WINDOW`]. DingTalk allows 20 messages per robot per minute and bans the
//! robot for 10 minutes when exceeded, so every request (retries included) takes a slot.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

/// A minute plus a safety margin for clock and network jitter between us and DingTalk.
pub const WINDOW: Duration = Duration::from_millis(61_000);

/// One robot's limiter.
#[derive(Debug)]
pub struct Limiter {
    per_minute: AtomicU32,
    sent: Mutex<VecDeque<Instant>>,
}

impl Limiter {
    /// A limiter allowing `per_minute` requests per [`WINDOW`].
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: AtomicU32::new(per_minute.max(1)),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Changes the limit (config reload).
    pub fn set_per_minute(&self, per_minute: u32) {
        self.per_minute.store(per_minute.max(1), Ordering::Relaxed);
    }

    /// Takes a slot if one is free now; otherwise says how long until one frees up.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let limit = self.per_minute.load(Ordering::Relaxed) as usize;
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        while sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            sent.pop_front();
        }
        if sent.len() < limit {
            sent.push_back(now);
            return Ok(());
        }
        let oldest = sent[sent.len() - limit];
        Err((oldest + WINDOW).saturating_duration_since(now))
    }

    /// Waits for a slot and takes it; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        loop {
            match self.try_acquire() {
                Ok(()) => return start.elapsed(),
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let l = Limiter::new(20);
        let mut starts = Vec::new();
        for _ in 0..65 {
            l.acquire().await;
            starts.push(Instant::now());
        }
        // The first 20 go at once, then one window later, and so on.
        assert_eq!(starts[19], starts[0]);
        assert_eq!(starts[20] - starts[0], WINDOW);
        assert_eq!(starts[40] - starts[0], WINDOW * 2);
        for i in 20..starts.len() {
            assert!(starts[i] - starts[i - 20] >= Duration::from_secs(60), "{i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lower_limit_applies_after_reload() {
        let l = Limiter::new(20);
        l.set_per_minute(2);
        assert!(l.try_acquire().is_ok());
        assert!(l.try_acquire().is_ok());
        assert_eq!(l.try_acquire(), Err(WINDOW));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(l.try_acquire(), Err(WINDOW - Duration::from_secs(30)));
    }
}
