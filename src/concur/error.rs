//! The one error type of the Concur boundary. Messages never carry tokens, secrets or passwords:
//! response bodies are cut to a short excerpt and scrubbed of every secret the request used.

use std::fmt;

use crate::http::retry::{SendError, SendFailure, is_retryable_status};

/// Which credential the token endpoint rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The OAuth2 application: `client_id` / `client_secret`.
    Client,
    /// The company: `company_id` / `request_token` (password grant with `credtype=authtoken`).
    CompanyRequestToken,
    /// The stored refresh token (Concur code 108: bad or expired).
    RefreshToken,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Client => "client id / client secret",
            Credential::CompanyRequestToken => "company id / request token",
            Credential::RefreshToken => "refresh token",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConcurError {
    /// The request never got an HTTP answer: connection refused or reset, timeout, TLS.
    #[error("transport error on {path}: {message}")]
    Transport {
        path: String,
        message: String,
        timeout: bool,
        /// No connection was made: the request cannot have reached the server.
        unsent: bool,
    },
    /// An HTTP status other than success, with a short excerpt of the body (or its message).
    #[error("HTTP {status} on {path}: {message}")]
    Http {
        status: u16,
        path: String,
        message: String,
    },
    /// The token endpoint rejected a credential; retrying will not help.
    #[error("Concur rejected the {credential} (code {code}: {message})")]
    AuthRejected {
        credential: Credential,
        /// Concur's numeric `code` (e.g. 5 bad credentials, 108 bad refresh token), or the status.
        code: i64,
        message: String,
    },
    /// A response body that could not be read as the expected document.
    #[error("cannot decode Concur response: {0}")]
    Decode(String),
    /// The batch as a whole was refused (too many records, invalid XML, batch-level message).
    #[error("batch refused: {0}")]
    Batch(String),
    /// A `geolocation` that is not one of Concur's hosts: nothing was sent there.
    #[error(
        "refused the geolocation {value} from {from}: {reason}; nothing was sent there (check concur.base_url and the network path to Concur)"
    )]
    UntrustedGeolocation {
        /// The value received, cut and escaped.
        value: String,
        /// Where it came from: the token answer, a code-16 refusal or the state database.
        from: &'static str,
        reason: String,
    },
    /// Shutdown began: the request was dropped or never sent, and nothing more is sent.
    #[error("stopped by shutdown before Concur answered {path}")]
    Cancelled { path: String },
    /// Concur served a `Retry-After` that ends later than this command may wait
    /// (`concur.max_wait_seconds`); nothing was sent.
    #[error(
        "throttled until {until}: Concur asked to wait longer than concur.max_wait_seconds; nothing more was sent, run again after that time"
    )]
    Throttled { until: String },
}

impl ConcurError {
    /// Whether the same request may succeed if sent again later. The retry loop and the callers
    /// both ask this, so the policy lives here.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConcurError::Transport { .. } => true,
            ConcurError::Http { status, .. } => is_retryable_status(*status),
            ConcurError::AuthRejected { .. }
            | ConcurError::Decode(_)
            | ConcurError::Batch(_)
            | ConcurError::UntrustedGeolocation { .. }
            | ConcurError::Cancelled { .. }
            | ConcurError::Throttled { .. } => false,
        }
    }

    /// A request that got no answer after its retries.
    pub fn from_send_failure(path: &str, failure: SendFailure) -> ConcurError {
        match failure.error {
            SendError::Cancelled => ConcurError::Cancelled {
                path: path.to_owned(),
            },
            SendError::ThrottledUntil(t) => ConcurError::Throttled {
                until: chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
            SendError::TooLarge { limit } => ConcurError::Decode(format!(
                "{path}: the response body exceeds concur.max_response_bytes ({limit} bytes)"
            )),
            SendError::Transport(error) => {
                let timeout = error.is_timeout();
                let unsent = error.is_connect() || error.is_builder();
                let error = SendError::Transport(error.without_url());
                ConcurError::Transport {
                    path: path.to_owned(),
                    message: format!("{error} (after {} attempts)", failure.attempts),
                    timeout,
                    unsent,
                }
            }
        }
    }

    /// Whether shutdown stopped the request (not a failure of Concur or of the records).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ConcurError::Cancelled { .. })
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConcurError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// At most `max` characters of `text`, whitespace collapsed, every secret replaced by `<redacted>`.
pub(crate) fn excerpt(text: &str, secrets: &[&str], max: usize) -> String {
    let mut s = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        if s.contains(secret) {
            s = s.replace(secret, "<redacted>");
        }
    }
    if s.chars().count() > max {
        let mut cut: String = s.chars().take(max).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_redacts_and_cuts() {
        let e = excerpt("bad  token abc123secret\n here", &["abc123secret"], 200);
        assert_eq!(e, "bad token <redacted> here");
        assert_eq!(excerpt("abcdef", &[], 3), "abc…");
    }

    #[test]
    fn retryable_classification() {
        let http = |status| ConcurError::Http {
            status,
            path: "/x".into(),
            message: String::new(),
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!http(403).is_retryable());
        assert!(!ConcurError::Batch("x".into()).is_retryable());
    }
}
