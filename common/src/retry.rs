//! Bounded retries with exponential backoff and jitter: for calls to other services that
//! failed fast (refused, reset, 5xx) and are safe to repeat because the callee is idempotent,
//! and for the order outbox's delivery schedule.

use std::{fmt::Display, future::Future, time::Duration};

use rand::Rng;

/// Waits that double from `base` up to `max`, each ±20 % so that many callers that failed
/// together do not come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failed tries: `base · 2^(failures-1)`, capped, jittered.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        let wait = self.base.saturating_mul(exp).min(self.max);
        wait.mul_f64(rand::rng().random_range(0.8..=1.2))
    }
}

/// How often a call is tried in all, and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails with an error `retryable` refuses, or
    /// `attempts` tries are spent; the last error is returned. Every retry is logged as a
    /// warning naming `what`, the attempt and the wait.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        mut call: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let attempts = self.attempts.max(1);
        let mut tried = 0;
        loop {
            tried += 1;
            match call().await {
                Err(e) if tried < attempts && retryable(&e) => {
                    let wait = self.backoff.delay(tried);
                    tracing::warn!(
                        error = %e,
                        attempt = tried,
                        attempts,
                        retry_in_ms = wait.as_millis() as u64,
                        "{what} failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn delays_double_from_base_and_are_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for (failures, expected) in [(1, 100.0), (2, 200.0), (3, 400.0), (4, 800.0), (9, 1000.0)] {
            for _ in 0..50 {
                let got = b.delay(failures).as_secs_f64() * 1000.0;
                assert!(
                    (expected * 0.8 - 1e-6..=expected * 1.2 + 1e-6).contains(&got),
                    "{failures}: {got}"
                );
            }
        }
        assert!(b.delay(u32::MAX) <= Duration::from_millis(1200));
    }

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
        }
    }

    #[actix_web::test]
    async fn retries_retryable_errors_up_to_the_attempts() {
        let calls = Cell::new(0);
        let result: Result<(), String> = policy(3)
            .run(
                "test call",
                || {
                    calls.set(calls.get() + 1);
                    async { Err("refused".to_string()) }
                },
                |_| true,
            )
            .await;
        assert_eq!(result.unwrap_err(), "refused");
        assert_eq!(calls.get(), 3);
    }

    #[actix_web::test]
    async fn stops_at_success_or_at_an_error_not_worth_retrying() {
        let calls = Cell::new(0);
        let result: Result<u32, String> = policy(5)
            .run(
                "test call",
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move { if n < 2 { Err("refused".into()) } else { Ok(n) } }
                },
                |_| true,
            )
            .await;
        assert_eq!((result.unwrap(), calls.get()), (2, 2));

        calls.set(0);
        let result: Result<(), String> = policy(5)
            .run(
                "test call",
                || {
                    calls.set(calls.get() + 1);
                    async { Err("timed out".to_string()) }
                },
                |e| !e.contains("timed out"),
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }
}
