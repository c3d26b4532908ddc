//! Fault injection and the connection layer that can close a connection without a response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::http_util::{error_xml, v4_error};
use super::state::{RequestRecord, Shared};
use super::v4::errors as v4_errors;

/// How a 429 carries `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterMode {
    /// `Retry-After: N` (delta seconds).
    Seconds(u64),
    /// `Retry-After: <HTTP date N seconds ahead>`.
    HttpDate(u64),
    /// `Retry-After: 0`.
    Zero,
    /// No `Retry-After` header.
    Absent,
}

impl Default for RetryAfterMode {
    fn default() -> Self {
        Self::Seconds(1)
    }
}

impl std::str::FromStr for RetryAfterMode {
    type Err = String;

    /// `seconds:N` (or just `N`), `date:N`, `0`/`zero`, `absent`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("invalid seconds in retry-after mode: {v}"))
        };
        match s.as_str() {
            "0" | "zero" => Ok(Self::Zero),
            "absent" | "none" => Ok(Self::Absent),
            _ => {
                if let Some(v) = s.strip_prefix("seconds:") {
                    Ok(Self::Seconds(num(v)?))
                } else if let Some(v) = s.strip_prefix("date:") {
                    Ok(Self::HttpDate(num(v)?))
                } else if let Ok(n) = s.parse::<u64>() {
                    Ok(Self::Seconds(n))
                } else {
                    Err(format!(
                        "unknown retry-after mode {s:?} (use seconds:N, date:N, 0 or absent)"
                    ))
                }
            }
        }
    }
}

/// Fault settings. Shares are probabilities in [0, 1] drawn per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of requests answered 429.
    pub rate_429: f64,
    /// How the 429 carries `Retry-After`.
    pub retry_after: RetryAfterMode,
    /// Share of requests answered 500/502/503/504.
    pub rate_5xx: f64,
    /// Latency added to every affected request, in ms.
    pub latency_ms: u64,
    /// Share of requests whose connection is closed with no response (nothing applied).
    pub rate_drop: f64,
    /// Share of writes (POST/PUT; v4 PATCH and DELETE too) that are applied, then the
    /// connection is closed with no response.
    pub rate_lost_response: f64,
    /// Also inject faults on `POST /oauth2/v0/token`.
    pub include_token_endpoint: bool,
    /// Share of v4 operations carrying spend User data whose spend extension fails once,
    /// transiently (the identity is kept).
    pub rate_spend_failure: f64,
    /// Share of v4 provisions that stay pending until the provision timeout, then fail.
    pub rate_stuck: f64,
}

/// Per-connection switch: once set, the connection fails every read and write, so the
/// server closes it without writing anything.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch(AtomicBool);

impl KillSwitch {
    pub fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn killed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Connection info handed to handlers: peer address and the connection's kill switch.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    #[allow(dead_code)]
    pub remote: std::net::SocketAddr,
    pub kill: Arc<KillSwitch>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, KillListener>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(crate) struct KillListener(pub TcpListener);

impl axum::serve::Listener for KillListener {
    type Io = KillableStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(KillSwitch::default());
                    return (
                        KillableStream {
                            inner: stream,
                            kill: kill.clone(),
                        },
                        ConnInfo { remote, kill },
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ConnInfo {
            remote: self.0.local_addr()?,
            kill: Arc::new(KillSwitch::default()),
        })
    }
}

pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
}

fn killed_err() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection closed by fault injection",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Number of records in a write batch, attached to a response by its handler for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSize(pub usize);

/// Size of a request body in bytes, attached to a response by its handler for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodySize(pub usize);

enum Family {
    Control,
    Token,
    V1,
    /// UPS, Identity and Spend v4: SCIM error bodies.
    Scim,
    Rest,
}

fn family(path: &str) -> Family {
    let p = path.to_ascii_lowercase();
    if p.starts_with("/_sim") {
        Family::Control
    } else if p.starts_with("/oauth2/") {
        Family::Token
    } else if p.starts_with("/api/user/") {
        Family::V1
    } else if p.starts_with("/profile/v4")
        || p.starts_with("/provisioning/v4")
        || p.starts_with("/profile/identity/")
        || p.starts_with("/profile/spend/")
    {
        Family::Scim
    } else {
        Family::Rest
    }
}

fn fault_response(family: &Family, path: &str, status: StatusCode, message: &str) -> Response {
    match family {
        Family::V1 => error_xml(status, message),
        Family::Scim => v4_errors::fault(status, message),
        _ => v4_error(status, message, path, Vec::new()),
    }
}

/// Whether a request writes (and so may be applied with its answer lost).
fn is_write(family: &Family, method: &Method, path: &str) -> bool {
    match family {
        Family::Scim => {
            (*method == Method::POST && !path.ends_with("/.search"))
                || *method == Method::PUT
                || *method == Method::PATCH
                || *method == Method::DELETE
        }
        _ => *method == Method::POST || *method == Method::PUT,
    }
}

fn retry_after_value(mode: RetryAfterMode) -> Option<String> {
    match mode {
        RetryAfterMode::Seconds(n) => Some(n.to_string()),
        RetryAfterMode::HttpDate(n) => Some(httpdate::fmt_http_date(
            SystemTime::now() + Duration::from_secs(n),
        )),
        RetryAfterMode::Zero => Some("0".to_string()),
        RetryAfterMode::Absent => None,
    }
}

/// Request log, debug tracing and fault injection for every request.
pub(crate) async fn middleware(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let fam = family(&path);
    let faults = shared.lock().faults.clone();
    let arrived_ms = shared.elapsed_ms();
    let eligible = match fam {
        Family::Control => false,
        Family::Token => faults.include_token_endpoint,
        Family::V1 | Family::Scim | Family::Rest => true,
    };
    let log =
        |status: u16, records: Option<usize>, body_bytes: Option<usize>, fault: Option<&str>| {
            tracing::debug!(%method, %path, status, fault, "simulator request");
            if !matches!(fam, Family::Control) {
                let record = RequestRecord {
                    method: method.to_string(),
                    path: path.clone(),
                    status,
                    time_ms: shared.elapsed_ms(),
                    arrived_ms,
                    records,
                    body_bytes,
                    fault: fault.map(str::to_string),
                };
                shared.lock().requests.push(record);
            }
        };

    let mut injected: Option<&str> = None;
    if eligible {
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
            injected = Some("latency");
        }
        if faults.rate_drop > 0.0 && shared.roll() < faults.rate_drop {
            conn.kill.kill();
            log(0, None, None, Some("drop"));
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        if faults.rate_429 > 0.0 && shared.roll() < faults.rate_429 {
            let mut resp = match fam {
                Family::V1 => error_xml(StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
                Family::Scim => {
                    v4_errors::fault(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached")
                }
                _ => {
                    let body = serde_json::json!({
                        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                        "httpStatus": "429 - Too Many Requests",
                        "error": {"id": "security.rate.limit.reached", "message": "Too many requests"},
                        "path": &path,
                    });
                    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
                }
            };
            if let Some(v) = retry_after_value(faults.retry_after)
                && let Ok(v) = HeaderValue::from_str(&v)
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            log(429, None, None, Some("429"));
            return resp;
        }
        if faults.rate_5xx > 0.0 && shared.roll() < faults.rate_5xx {
            let codes = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ];
            let status = codes[shared.pick(codes.len())];
            let resp = fault_response(&fam, &path, status, "Unknown Error");
            log(status.as_u16(), None, None, Some("5xx"));
            return resp;
        }
    }

    let is_write = is_write(&fam, &method, &path);
    let resp = next.run(req).await;
    let records = resp.extensions().get::<BatchSize>().map(|b| b.0);
    let body_bytes = resp.extensions().get::<BodySize>().map(|b| b.0);
    if eligible
        && is_write
        && faults.rate_lost_response > 0.0
        && shared.roll() < faults.rate_lost_response
    {
        conn.kill.kill();
        log(0, records, body_bytes, Some("lost_response"));
        // Nothing of this reaches the client: the connection fails on the first write.
        return Response::new(Body::empty());
    }
    log(resp.status().as_u16(), records, body_bytes, injected);
    resp
}
