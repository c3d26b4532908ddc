//! Pacing and retrying HTTP requests, independent of Concur: a [`Pacer`] (one rate limiter plus
//! a shared "not before" instant set by `Retry-After`, plus counters) and [`send_with_retry`],
//! which sends a request built by a closure until it gets a final answer. A client for another
//! API reuses both with its own `Pacer`.
//!
//! Policy: 429 waits for `Retry-After` (delta seconds or HTTP date), or, when it is absent or
//! `0`, for an exponential backoff with jitter; either wait is global: no request through the
//! same `Pacer` leaves before it ends. 500/502/503/504 (honouring a `Retry-After` the same way),
//! timeouts and connection errors are retried after a task-local backoff. Every other status is
//! final. At most `max_attempts` sends in all.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

/// How often and how patiently to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Sends in all, the first included (at least 1).
    pub max_attempts: u32,
    /// First backoff; doubles with every retry up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Per request, connect to end of body.
    pub timeout: Duration,
    /// Longest `Retry-After` honoured; longer ones are cut to this.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): `base * 2^(retry-1)` capped at
    /// `backoff_max`, then a uniformly random point in its upper half ("equal jitter"), so
    /// concurrent clients spread out but never retry sooner than half the nominal delay.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let nominal = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        let half = nominal / 2;
        let extra = rand::rng().random_range(0.0..=1.0);
        half + half.mul_f64(extra)
    }
}

/// Counters of a [`Pacer`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PacerStats {
    /// Requests sent (every attempt counts).
    pub requests: u64,
    /// Attempts after the first, for any reason.
    pub retries: u64,
    /// 429 answers received.
    pub throttled_429: u64,
    /// Wall-clock seconds during which a served throttle held every request back.
    pub throttled_seconds: f64,
}

/// One rate limiter (burst 1) and one global "not before" instant for every request to a service.
pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    not_before: Mutex<Option<Instant>>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled_429: AtomicU64,
    throttled_micros: AtomicU64,
}

impl Pacer {
    /// `requests_per_second` may be fractional (0.5 = one request every two seconds); `0` or less
    /// means unlimited. The spacing is 2 % wider than nominal so that jitter on the way to the
    /// server cannot squeeze two requests into less than the allowed interval.
    pub fn new(requests_per_second: f64) -> Pacer {
        let limiter = (requests_per_second.is_finite() && requests_per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.02 / requests_per_second)))
            .flatten()
            .map(RateLimiter::direct);
        Pacer {
            limiter,
            not_before: Mutex::new(None),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled_429: AtomicU64::new(0),
            throttled_micros: AtomicU64::new(0),
        }
    }

    fn current_not_before(&self) -> Option<Instant> {
        *self.not_before.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may leave: past the global "not before", then a limiter cell.
    pub async fn ready(&self) {
        loop {
            if let Some(t) = self.current_not_before()
                && t > Instant::now()
            {
                tokio::time::sleep_until(t).await;
            }
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            // A 429 served while this task waited for the limiter moves the gate again.
            match self.current_not_before() {
                Some(t) if t > Instant::now() => continue,
                _ => return,
            }
        }
    }

    /// Holds every request back until `until`; a later instant already set is kept.
    pub fn defer_until(&self, until: Instant) {
        let mut guard = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let from = guard.map_or(now, |t| t.max(now));
        if until > from {
            let added = until - from;
            self.throttled_micros
                .fetch_add(added.as_micros() as u64, Ordering::Relaxed);
            *guard = Some(until);
        }
    }

    pub fn stats(&self) -> PacerStats {
        PacerStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled_429: self.throttled_429.load(Ordering::Relaxed),
            throttled_seconds: self.throttled_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A final answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Why no final answer came back.
#[derive(Debug)]
pub struct SendFailure {
    pub error: reqwest::Error,
    pub attempts: u32,
}

/// Whether a status is worth sending again.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` as a wait: delta seconds or an HTTP date. `None` when absent, unparsable, zero
/// or in the past, which means "use the backoff".
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = value.parse::<f64>() {
        (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))?
    } else {
        httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .ok()?
    };
    (!wait.is_zero()).then_some(wait)
}

/// Sends the request `build` makes, pacing every attempt through `pacer` and retrying per
/// `policy`. Returns the first non-retryable answer, or the last answer once attempts run out;
/// fails only when the last attempt got no answer at all.
pub async fn send_with_retry<F>(
    pacer: &Pacer,
    policy: &RetryPolicy,
    mut build: F,
) -> Result<Reply, SendFailure>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (client, request) = build().build_split();
        let mut request = request.map_err(|error| SendFailure {
            error,
            attempts: attempt,
        })?;
        if request.timeout().is_none() {
            *request.timeout_mut() = Some(policy.timeout);
        }
        let method = request.method().clone();
        let path = request.url().path().to_owned();

        pacer.ready().await;
        if attempt > 1 {
            pacer.retries.fetch_add(1, Ordering::Relaxed);
        }
        pacer.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = match client.execute(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                response.text().await.map(|body| Reply {
                    status,
                    headers,
                    body,
                })
            }
            Err(e) => Err(e),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let last = attempt >= max_attempts;

        match result {
            Ok(reply) => {
                tracing::debug!(%method, path, status = reply.status, duration_ms = elapsed_ms, attempt, "http request");
                if reply.status == 429 {
                    pacer.throttled_429.fetch_add(1, Ordering::Relaxed);
                }
                if !is_retryable_status(reply.status) || last {
                    return Ok(reply);
                }
                let served = parse_retry_after(&reply.headers, SystemTime::now())
                    .map(|d| d.min(policy.retry_after_max));
                match served {
                    Some(wait) => {
                        tracing::info!(%method, path, status = reply.status, wait_ms = wait.as_millis() as u64, "server asked to retry later");
                        pacer.defer_until(Instant::now() + wait);
                    }
                    None if reply.status == 429 => {
                        let wait = policy.backoff(attempt);
                        tracing::info!(%method, path, wait_ms = wait.as_millis() as u64, "throttled without Retry-After; backing off");
                        pacer.defer_until(Instant::now() + wait);
                    }
                    None => {
                        let wait = policy.backoff(attempt);
                        tracing::info!(%method, path, status = reply.status, wait_ms = wait.as_millis() as u64, "transient server error; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%method, path, duration_ms = elapsed_ms, attempt, timeout = error.is_timeout(), "http request failed");
                if last || error.is_builder() {
                    return Err(SendFailure {
                        error,
                        attempts: attempt,
                    });
                }
                let wait = policy.backoff(attempt);
                tracing::info!(%method, path, wait_ms = wait.as_millis() as u64, timeout = error.is_timeout(), "no answer; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(&headers("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse_retry_after(&headers("0"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let wait = parse_retry_after(&headers(&later), now).expect("date");
        assert!(wait > Duration::from_secs(118) && wait <= Duration::from_secs(120));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&headers(&past), now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            assert!(p.backoff(40) <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn defer_is_global_and_counted_once() {
        let pacer = Pacer::new(0.0);
        let until = Instant::now() + Duration::from_millis(150);
        pacer.defer_until(until);
        pacer.defer_until(until - Duration::from_millis(100)); // earlier: ignored
        let start = Instant::now();
        pacer.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(140));
        let s = pacer.stats().throttled_seconds;
        assert!((0.13..0.16).contains(&s), "{s}");
    }
}
