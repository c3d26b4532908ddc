//! Pacing and retrying HTTP requests, independent of Concur: a [`Pacer`] (one rate limiter plus
//! a shared "not before" instant set by `Retry-After`, plus counters) and [`send_with_retry`],
//! which sends a request built by a closure until it gets a final answer. A client for another
//! API reuses both with its own `Pacer`.
//!
//! Policy: 429 waits for `Retry-After` (delta seconds or HTTP date), or, when it is absent or
//! `0`, for an exponential backoff with jitter; either wait is global: no request through the
//! same `Pacer` leaves before it ends. 500/502/503/504 (honouring a `Retry-After` the same way),
//! timeouts and connection errors are retried after a task-local backoff. Every other status is
//! final. At most `max_attempts` sends in all. A request that must not be applied twice
//! (`unprocessed_only`) is retried only after answers that say it was not processed (429,
//! 503) and connections never made.
//!
//! Every wait (the served throttle, the limiter, a backoff, the request and its body) ends at
//! once when the pacer's cancellation token fires, and no request leaves after that. A served
//! throttle is reported to an optional hook as wall-clock time, so another process can honour
//! it too; a pacer with a `max_wait` refuses to wait longer than that and reports until when it
//! is throttled instead. Response bodies are read up to `max_body_bytes`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Default cap on a response body: the default of `concur.max_response_bytes` (32 MiB).
pub use crate::config::DEFAULT_MAX_RESPONSE_BYTES as DEFAULT_MAX_BODY_BYTES;

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
    /// Largest response body read; a longer one fails the request.
    pub max_body_bytes: u64,
    /// For a request that must not be applied twice: only answers that say it was not
    /// processed (429, 503) and connections never made are retried; a timeout, a reset or a
    /// 500/502/504, after which the server may have done the work, is returned as it is.
    pub unprocessed_only: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(15 * 60),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            unprocessed_only: false,
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

/// Called with the wall-clock end of every served throttle, e.g. to persist it.
pub type ThrottleHook = Box<dyn Fn(SystemTime) + Send + Sync>;

/// Why [`Pacer::ready`] let no request leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The cancellation token fired (shutdown).
    Cancelled,
    /// A served throttle lasts longer than the pacer's `max_wait`; no request before this time.
    ThrottledUntil(SystemTime),
}

/// One rate limiter (burst 1) and one global "not before" instant for every request to a service.
pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    not_before: Mutex<Option<Instant>>,
    cancel: CancellationToken,
    max_wait: Option<Duration>,
    on_throttle: Option<ThrottleHook>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled_429: AtomicU64,
    throttled_micros: AtomicU64,
}

impl Pacer {
    /// `requests_per_second` may be fractional (0.5 = one request every two seconds); `0` or less
    /// means unlimited. The spacing is 1 % wider than nominal (2.5 ms at 4 requests a second)
    /// so that two requests leaving back to back still reach the server no closer than the
    /// allowed interval when their transit times differ a little; a wider margin would only
    /// idle the limit (Concur's limits are counted over windows, and a 429 is honoured anyway).
    pub fn new(requests_per_second: f64) -> Pacer {
        let limiter = (requests_per_second.is_finite() && requests_per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.01 / requests_per_second)))
            .flatten()
            .map(RateLimiter::direct);
        Pacer {
            limiter,
            not_before: Mutex::new(None),
            cancel: CancellationToken::new(),
            max_wait: None,
            on_throttle: None,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled_429: AtomicU64::new(0),
            throttled_micros: AtomicU64::new(0),
        }
    }

    /// Every wait of this pacer ends when `cancel` fires, and no request leaves after that.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Pacer {
        self.cancel = cancel;
        self
    }

    /// Refuses to wait for a served throttle longer than `max_wait` (`None`: waits however long).
    pub fn with_max_wait(mut self, max_wait: Option<Duration>) -> Pacer {
        self.max_wait = max_wait;
        self
    }

    /// Calls `hook` with the wall-clock end of every served throttle.
    pub fn with_throttle_hook(mut self, hook: ThrottleHook) -> Pacer {
        self.on_throttle = Some(hook);
        self
    }

    /// Holds every request back until the wall-clock time `until` (e.g. a throttle another
    /// process was served), without counting it as throttled time of this pacer.
    pub fn restore_not_before(&self, until: SystemTime) {
        if let Ok(left) = until.duration_since(SystemTime::now())
            && !left.is_zero()
        {
            let mut guard = self
                .not_before
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let at = Instant::now() + left;
            if guard.is_none_or(|t| t < at) {
                *guard = Some(at);
            }
        }
    }

    fn current_not_before(&self) -> Option<Instant> {
        *self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a request may leave: past the global "not before", then a limiter cell.
    /// Stops at once when cancelled; refuses a throttle longer than `max_wait`.
    pub async fn ready(&self) -> Result<(), Halt> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(Halt::Cancelled);
            }
            if let Some(t) = self.current_not_before() {
                let now = Instant::now();
                if t > now {
                    let left = t - now;
                    if self.max_wait.is_some_and(|max| left > max) {
                        return Err(Halt::ThrottledUntil(SystemTime::now() + left));
                    }
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(Halt::Cancelled),
                        () = tokio::time::sleep_until(t) => {}
                    }
                }
            }
            if let Some(limiter) = &self.limiter {
                tokio::select! {
                    () = self.cancel.cancelled() => return Err(Halt::Cancelled),
                    () = limiter.until_ready() => {}
                }
            }
            // A 429 served while this task waited for the limiter moves the gate again.
            match self.current_not_before() {
                Some(t) if t > Instant::now() => continue,
                _ if self.cancel.is_cancelled() => return Err(Halt::Cancelled),
                _ => return Ok(()),
            }
        }
    }

    /// Holds every request back until `until`; a later instant already set is kept.
    pub fn defer_until(&self, until: Instant) {
        let mut guard = self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let from = guard.map_or(now, |t| t.max(now));
        if until > from {
            let added = until - from;
            self.throttled_micros
                .fetch_add(added.as_micros() as u64, Ordering::Relaxed);
            *guard = Some(until);
            drop(guard);
            if let Some(hook) = &self.on_throttle {
                hook(SystemTime::now() + (until - now));
            }
        }
    }

    /// Sleeps for `wait` unless cancelled first.
    async fn sleep(&self, wait: Duration) -> Result<(), Halt> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(Halt::Cancelled),
            () = tokio::time::sleep(wait) => Ok(()),
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
    pub error: SendError,
    pub attempts: u32,
}

/// What stopped a request.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer (connection, timeout, TLS) or a body cut off in transit.
    #[error("{}", transport_text(.0))]
    Transport(reqwest::Error),
    /// The answer's body is larger than the pacer's policy allows.
    #[error("the response body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Shutdown began before an answer came back; nothing more is sent.
    #[error("stopped by shutdown")]
    Cancelled,
    /// A served throttle lasts longer than this process may wait.
    #[error("throttled by the server until {}", httpdate::fmt_http_date(*.0))]
    ThrottledUntil(SystemTime),
}

impl SendError {
    /// Whether the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Transport(e) if e.is_timeout())
    }
}

/// A transport error with its chain of causes, without the URL.
fn transport_text(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

impl From<Halt> for SendError {
    fn from(h: Halt) -> Self {
        match h {
            Halt::Cancelled => SendError::Cancelled,
            Halt::ThrottledUntil(t) => SendError::ThrottledUntil(t),
        }
    }
}

/// Reads a response body of at most `limit` bytes: a `Content-Length` above it fails at once,
/// and the chunks stop as soon as they pass it.
pub async fn read_body_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<String, SendError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(SendError::TooLarge { limit });
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(SendError::Transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(SendError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(match String::from_utf8(body) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
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
            error: SendError::Transport(error),
            attempts: attempt,
        })?;
        if request.timeout().is_none() {
            *request.timeout_mut() = Some(policy.timeout);
        }
        let method = request.method().clone();
        let path = request.url().path().to_owned();

        let fail = move |error: SendError| SendFailure {
            error,
            attempts: attempt,
        };
        pacer.ready().await.map_err(|h| fail(h.into()))?;
        if attempt > 1 {
            pacer.retries.fetch_add(1, Ordering::Relaxed);
        }
        pacer.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let exchange = async {
            let response = client
                .execute(request)
                .await
                .map_err(SendError::Transport)?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = read_body_capped(response, policy.max_body_bytes).await?;
            Ok::<Reply, SendError>(Reply {
                status,
                headers,
                body,
            })
        };
        // Shutdown drops the request in flight: its answer is never recorded, so whatever it
        // carried stays unacknowledged and is planned again by the next cycle.
        let result = tokio::select! {
            () = pacer.cancel.cancelled() => return Err(fail(SendError::Cancelled)),
            r = exchange => r,
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let last = attempt >= max_attempts;

        match result {
            Ok(reply) => {
                tracing::debug!(%method, path, status = reply.status, duration_ms = elapsed_ms, attempt, "http request");
                if reply.status == 429 {
                    pacer.throttled_429.fetch_add(1, Ordering::Relaxed);
                }
                if !is_retryable_status(reply.status)
                    || (policy.unprocessed_only && !matches!(reply.status, 429 | 503))
                {
                    return Ok(reply);
                }
                let served = parse_retry_after(&reply.headers, SystemTime::now())
                    .map(|d| d.min(policy.retry_after_max));
                if last {
                    // Out of attempts, but a served throttle still holds back what follows.
                    if let Some(wait) = served {
                        pacer.defer_until(Instant::now() + wait);
                    }
                    return Ok(reply);
                }
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
                        pacer.sleep(wait).await.map_err(|h| fail(h.into()))?;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%method, path, duration_ms = elapsed_ms, attempt, timeout = error.is_timeout(), "http request failed");
                let final_error = match &error {
                    SendError::Transport(e) => {
                        e.is_builder() || (policy.unprocessed_only && !e.is_connect())
                    }
                    _ => true,
                };
                if last || final_error {
                    return Err(fail(error));
                }
                let wait = policy.backoff(attempt);
                tracing::info!(%method, path, wait_ms = wait.as_millis() as u64, timeout = error.is_timeout(), "no answer; retrying");
                pacer.sleep(wait).await.map_err(|h| fail(h.into()))?;
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
        pacer.ready().await.expect("ready");
        assert!(start.elapsed() >= Duration::from_millis(140));
        let s = pacer.stats().throttled_seconds;
        assert!((0.13..0.16).contains(&s), "{s}");
    }

    #[tokio::test]
    async fn cancel_ends_a_long_wait_and_max_wait_refuses_it() {
        let cancel = CancellationToken::new();
        let saved = std::sync::Arc::new(Mutex::new(None));
        let hook_saved = saved.clone();
        let pacer = Pacer::new(0.0)
            .with_cancel(cancel.clone())
            .with_throttle_hook(Box::new(move |t| {
                *hook_saved.lock().expect("lock") = Some(t);
            }));
        pacer.defer_until(Instant::now() + Duration::from_secs(600));
        let until = saved
            .lock()
            .expect("lock")
            .expect("the throttle was reported");
        let left = until.duration_since(SystemTime::now()).expect("ahead");
        assert!(left > Duration::from_secs(590), "{left:?}");
        let fire = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fire.cancel();
        });
        let start = Instant::now();
        assert_eq!(pacer.ready().await, Err(Halt::Cancelled));
        assert!(start.elapsed() < Duration::from_secs(5));

        // Another pacer restored from the reported time refuses to wait that long.
        let next = Pacer::new(0.0).with_max_wait(Some(Duration::from_secs(10)));
        next.restore_not_before(until);
        assert!(
            matches!(next.ready().await, Err(Halt::ThrottledUntil(t)) if t >= until - Duration::from_secs(1))
        );
        let patient = Pacer::new(0.0).with_max_wait(Some(Duration::from_secs(10)));
        patient.restore_not_before(SystemTime::now() + Duration::from_millis(100));
        assert_eq!(patient.ready().await, Ok(()));
    }
}
