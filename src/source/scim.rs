//! The SCIM 2.0 feed source (`source.kind = "scim"`, RFC 7643/7644): pages through `GET /Users`
//! (sorted by id when the service can sort), maps each User resource onto canonical fields
//! (`map`), resolves managers' SCIM ids to employee ids, and between full reads asks only for
//! users changed since the last acknowledged read. The watermarks are plain data: the caller
//! passes those in force ([`super::Prior`]) and keeps the one each read returns (the state
//! database, `Store::record_scim_read`). Requests go through the shared retry machinery
//! (`http::retry`) with a limiter of their own.
//!
//! A read either returns every user it was asked for or fails: an answer that cannot be used
//! (401/403, a page that still fails after retries, a service that repeats a page) fails the
//! cycle before any write, so nobody is deactivated.

mod map;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use serde_json::Value;

use super::{Opened, Prior, Records, SourceError, SourceItem, records_digest};
use crate::config::{ConfigError, ScimConfig, parse_duration};
use crate::http::retry::{Pacer, RetryPolicy, is_retryable_status, send_with_retry};
use crate::model::RawRecord;
use crate::model::{Field, Rejection, RowIdentity, ScimReadMark, Secret};

pub use map::Mapping;

/// What identifies the user set and its mapping: a change forces a full read.
fn settings_digest(sc: &ScimConfig) -> String {
    let mut h = blake3::Hasher::new();
    h.update(sc.url.trim().trim_end_matches('/').as_bytes());
    h.update(b"\0");
    h.update(sc.filter.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &sc.attributes {
        h.update(b"\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    h.finalize().to_hex()[..16].to_owned()
}

/// Why a SCIM read failed. Messages name the URL (never the token) and the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("configuration key {key}: {message}")]
    Config { key: String, message: String },
    #[error(
        "{url}: HTTP {status}: the service refused the bearer token (check source.scim.token); \
         nothing was changed{detail}"
    )]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: HTTP {status} after {attempts} attempt(s){detail}; nothing was changed")]
    Http {
        url: String,
        status: u16,
        attempts: u32,
        detail: String,
    },
    #[error("{url}: no answer after {attempts} attempt(s): {error}; nothing was changed")]
    Unreachable {
        url: String,
        attempts: u32,
        error: String,
    },
    #[error("{url}: {message}; nothing was changed")]
    Protocol { url: String, message: String },
}

static FULL_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Makes the next read of this process a full read (a long-running service calls this at
/// start-up; a new state database or a changed `url`, `filter` or mapping forces one anyway).
pub fn request_full_read() {
    FULL_REQUESTED.store(true, Ordering::SeqCst);
}

/// The HTTP side: one client, one pacer, the time spent waiting on the service.
struct Http {
    client: reqwest::Client,
    base: String,
    token: Secret,
    pacer: Pacer,
    policy: RetryPolicy,
    wait: Duration,
}

/// A 200 answer.
struct Got {
    body: Value,
    date: Option<SystemTime>,
}

impl Http {
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ScimError> {
        let raw = format!("{}/{}", self.base, path);
        Url::parse_with_params(&raw, query).map_err(|e| ScimError::Config {
            key: "source.scim.url".into(),
            message: format!("{raw}: {e}"),
        })
    }

    /// GETs `url`; `Ok(None)` on 404 when `allow_404`.
    async fn get(&mut self, url: Url, allow_404: bool) -> Result<Option<Got>, ScimError> {
        let started = Instant::now();
        let token = self.token.expose().to_owned();
        let result = send_with_retry(&self.pacer, &self.policy, || {
            self.client.get(url.clone()).bearer_auth(&token).header(
                reqwest::header::ACCEPT,
                "application/scim+json, application/json",
            )
        })
        .await;
        self.wait += started.elapsed();
        let shown = url.to_string();
        let reply = result.map_err(|f| ScimError::Unreachable {
            url: shown.clone(),
            attempts: f.attempts,
            error: match f.error {
                crate::http::retry::SendError::Transport(e) => {
                    crate::http::retry::SendError::Transport(e.without_url()).to_string()
                }
                other => other.to_string(),
            },
        })?;
        match reply.status {
            200 => {}
            401 | 403 => {
                return Err(ScimError::Refused {
                    url: shown,
                    status: reply.status,
                    detail: detail(&reply.body),
                });
            }
            404 if allow_404 => return Ok(None),
            s => {
                return Err(ScimError::Http {
                    url: shown,
                    status: s,
                    attempts: if is_retryable_status(s) {
                        self.policy.max_attempts.max(1)
                    } else {
                        1
                    },
                    detail: detail(&reply.body),
                });
            }
        }
        let body: Value = serde_json::from_str(&reply.body).map_err(|e| ScimError::Protocol {
            url: shown,
            message: format!("the answer is not JSON: {e}"),
        })?;
        let date = reply
            .headers
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok());
        Ok(Some(Got { body, date }))
    }
}

/// The SCIM error `detail` (or the start of the body), for messages.
fn detail(body: &str) -> String {
    let d = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let d = d.trim();
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

/// What `/ServiceProviderConfig` says the service can do.
#[derive(Debug, Default, Clone, Copy)]
struct Features {
    sort: bool,
    filter: bool,
    max_results: Option<u64>,
}

fn features(body: &Value) -> Features {
    let flag = |k: &str| {
        body.get(k)
            .and_then(|v| v.get("supported"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Features {
        sort: flag("sort"),
        filter: flag("filter"),
        max_results: body
            .get("filter")
            .and_then(|v| v.get("maxResults"))
            .and_then(Value::as_u64)
            .filter(|n| *n > 0),
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| SystemTime::from(d.with_timezone(&chrono::Utc)))
}

/// Reads the users of the SCIM service `[source.scim]` names: a full read, or between full
/// reads (`full_every`) a delta read of the users changed since `prior`'s watermark. The read's
/// own watermark comes back with it ([`Opened::watermark`]); the caller records it for its
/// cycle, and it is in force for a later read only once that cycle ended well.
pub async fn read(sc: &ScimConfig, prior: &Prior) -> Result<Opened, SourceError> {
    Ok(read_scim(sc, prior).await?)
}

impl From<ScimError> for SourceError {
    fn from(e: ScimError) -> Self {
        SourceError::Scim(e)
    }
}

async fn read_scim(sc: &ScimConfig, prior: &Prior) -> Result<Opened, ScimError> {
    let t0 = Instant::now();
    let config_err = |e: ConfigError| match e {
        ConfigError::Invalid { key, message } => ScimError::Config { key, message },
        ConfigError::Load { path, message } => ScimError::Config { key: path, message },
    };
    sc.validate().map_err(config_err)?;
    let token = crate::config::resolve("source.scim.token", &sc.token, &sc.token_file)
        .map_err(config_err)?;
    let mapping = Mapping::new(sc).map_err(config_err)?;
    let full_every = parse_duration(&sc.full_every).unwrap_or(Duration::from_secs(3_600));
    let overlap = parse_duration(&sc.delta_overlap).unwrap_or(Duration::from_secs(60));
    let timeout = Duration::from_secs_f64(sc.timeout_seconds);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("concur-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ScimError::Config {
            key: "source.scim".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
    let mut http = Http {
        client,
        base: sc.url.trim().trim_end_matches('/').to_owned(),
        token,
        pacer: Pacer::new(sc.requests_per_second),
        policy: RetryPolicy {
            max_attempts: sc.max_attempts,
            timeout,
            ..RetryPolicy::default()
        },
        wait: Duration::ZERO,
    };

    // Discovery: sorting, filtering, and the service's clock for the watermark.
    let spc_url = http.url("ServiceProviderConfig", &[])?;
    let local_start = SystemTime::now();
    let (feat, server_now) = match http.get(spc_url, true).await? {
        Some(g) => (features(&g.body), g.date),
        None => {
            tracing::info!(url = %http.base, "no /ServiceProviderConfig: reading unsorted, without delta reads");
            (Features::default(), None)
        }
    };
    let start = server_now.unwrap_or(local_start);
    let watermark = rfc3339(start.checked_sub(overlap).unwrap_or(start));

    // Full or delta?
    let marks = &prior.watermarks;
    let digest = settings_digest(sc);
    let forced = FULL_REQUESTED.swap(false, Ordering::SeqCst);
    let since = marks.delta_since.clone().or(marks.last_full.clone());
    let due = match marks.last_full.as_deref().and_then(parse_rfc3339) {
        Some(t) => local_start.duration_since(t).unwrap_or(Duration::ZERO) >= full_every,
        None => true,
    };
    let why_full = if forced {
        Some("requested at start-up")
    } else if marks.last_full.is_none() || since.is_none() {
        Some("no full read recorded yet")
    } else if marks.digest.as_deref() != Some(digest.as_str()) {
        Some("url, filter or attribute mapping changed")
    } else if due {
        Some("full_every has passed")
    } else if !feat.filter {
        Some("the service does not support filtering")
    } else if prior.snapshot_empty {
        Some("the snapshot is empty")
    } else {
        None
    };
    let delta_since = match why_full {
        Some(_) => None,
        None => since,
    };
    let mut filter = sc
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    if let Some(ts) = &delta_since {
        let changed = format!("meta.lastModified gt \"{ts}\"");
        filter = Some(match filter {
            Some(f) => format!("({f}) and {changed}"),
            None => changed,
        });
    }
    tracing::info!(
        url = %http.base,
        mode = if delta_since.is_some() { "delta" } else { "full" },
        since = delta_since.as_deref().unwrap_or(""),
        reason = why_full.unwrap_or("changes since the last acknowledged read"),
        sort = feat.sort,
        "reading SCIM users"
    );

    // Pages.
    let page_size = match feat.max_results {
        Some(m) => u64::from(sc.page_size).min(m),
        None => u64::from(sc.page_size),
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut emp_of: HashMap<String, String> = HashMap::new();
    let mut mapped = Vec::new();
    let mut rejected: Vec<Rejection> = Vec::new();
    let mut start_index = 1u64;
    let mut first_total: Option<u64> = None;
    let mut max_total = 0u64;
    let mut last_total: u64;
    let mut consistent = true;
    let mut pages = 0u64;
    loop {
        let mut query: Vec<(&str, String)> = vec![
            ("startIndex", start_index.to_string()),
            ("count", page_size.to_string()),
        ];
        if feat.sort {
            query.push(("sortBy", "id".into()));
        }
        if let Some(f) = &filter {
            query.push(("filter", f.clone()));
        }
        let url = http.url("Users", &query)?;
        let shown = url.to_string();
        let got = http
            .get(url, false)
            .await?
            .ok_or_else(|| ScimError::Protocol {
                url: shown.clone(),
                message: "no answer".into(),
            })?;
        pages += 1;
        let protocol = |message: String| ScimError::Protocol {
            url: shown.clone(),
            message,
        };
        let total = got
            .body
            .get("totalResults")
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol("not a SCIM ListResponse: no totalResults".into()))?;
        let resources = match got.body.get("Resources") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(protocol("Resources is not a list".into())),
        };
        if *first_total.get_or_insert(total) != total {
            consistent = false;
        }
        max_total = max_total.max(total);
        last_total = total;
        if resources.is_empty() {
            if start_index <= total {
                consistent = false;
                tracing::warn!(url = %shown, total, "the service returned an empty page before totalResults was reached");
            }
            break;
        }
        let mut new = 0usize;
        for (k, r) in resources.iter().enumerate() {
            let position = start_index + k as u64;
            let id = r.get("id").and_then(Value::as_str).map(str::to_owned);
            if let Some(id) = &id
                && !seen.insert(id.clone())
            {
                continue; // shifted onto this page by a change during the read
            }
            new += 1;
            if let (Some(id), Ok(Some(e))) = (&id, mapping.employee_id(r)) {
                emp_of.insert(id.clone(), e.trim().to_owned());
            }
            match mapping.map(r, position) {
                Ok(m) => mapped.push(m),
                Err(rs) => rejected.extend(rs),
            }
        }
        if new == 0 {
            return Err(protocol(format!(
                "page at startIndex {start_index} holds only users already read: the service \
                 repeats pages (does it honour startIndex?)"
            )));
        }
        start_index += resources.len() as u64;
        if start_index > total {
            break;
        }
        if pages > 2 * max_total + 10 {
            return Err(protocol(format!(
                "{pages} pages read and the list does not end (totalResults {total})"
            )));
        }
    }
    if (seen.len() as u64) < last_total {
        consistent = false;
    }

    // Managers: SCIM id → employee id, fetching those outside this read.
    let wanted: BTreeSet<&str> = mapped
        .iter()
        .filter_map(|m| m.manager_ref.as_deref())
        .filter(|r| !emp_of.contains_key(*r))
        .collect();
    let mut missing: HashMap<String, String> = HashMap::new();
    let mut manager_fetches = 0u64;
    for id in wanted {
        let mut url = http.url("Users", &[])?;
        if let Ok(mut seg) = url.path_segments_mut() {
            seg.push(id);
        }
        manager_fetches += 1;
        match http.get(url, true).await? {
            Some(g) => match mapping.employee_id(&g.body) {
                Ok(Some(e)) if !e.trim().is_empty() => {
                    emp_of.insert(id.to_owned(), e.trim().to_owned());
                }
                _ => {
                    missing.insert(
                        id.to_owned(),
                        format!(
                            "manager {id:?} has no employee id ({})",
                            mapping.employee_id_path()
                        ),
                    );
                }
            },
            None => {
                missing.insert(
                    id.to_owned(),
                    format!("manager {id:?} does not exist in the SCIM service"),
                );
            }
        }
    }
    let mut items: Vec<SourceItem> = Vec::with_capacity(mapped.len() + rejected.len());
    for mut m in mapped {
        if let Some(r) = m.manager_ref.take() {
            match emp_of.get(&r) {
                Some(e) => m.values.push((Field::MANAGER_EMPLOYEE_ID, e.clone())),
                None => {
                    let employee_id = m
                        .values
                        .iter()
                        .find(|(f, _)| *f == Field::EMPLOYEE_ID)
                        .map(|(_, v)| v.trim().to_owned());
                    let identity =
                        RowIdentity::from_values(m.values.iter().map(|(f, v)| (*f, v.as_str())));
                    rejected.push(Rejection {
                        source: m.origin,
                        employee_id,
                        identity,
                        field: Field::MANAGER_EMPLOYEE_ID.name().into(),
                        message: missing
                            .get(&r)
                            .cloned()
                            .unwrap_or_else(|| format!("manager {r:?} cannot be resolved")),
                    });
                    continue;
                }
            }
        }
        items.push(SourceItem::Record(RawRecord {
            origin: m.origin,
            values: m.values,
            password: None,
            previous_employee_id: None,
        }));
    }
    let rejected_count = rejected.len();
    items.extend(rejected.into_iter().map(SourceItem::Rejected));
    items.sort_by(|a, b| origin_of(a).cmp(origin_of(b)));

    let full = delta_since.is_none();
    let complete = full && consistent;
    if full && !consistent {
        tracing::warn!(
            first_total = first_total.unwrap_or(0),
            last_total,
            read = seen.len(),
            "the user list changed during the full read; users missing from it are not deactivated this cycle, and the next cycle reads in full again"
        );
    }
    let total = t0.elapsed();
    tracing::info!(
        mode = if full { "full" } else { "delta" },
        users = seen.len(),
        rejected = rejected_count,
        pages,
        manager_fetches,
        requests = http.pacer.stats().requests,
        retries = http.pacer.stats().retries,
        server_wait_ms = http.wait.as_millis() as u64,
        own_ms = total.saturating_sub(http.wait).as_millis() as u64,
        total_ms = total.as_millis() as u64,
        "SCIM read finished"
    );
    Ok(Opened {
        digest: records_digest(&items),
        records: Records::Items(items),
        complete,
        label: match &delta_since {
            Some(s) => format!("{} (changed since {s})", http.base),
            None => http.base.clone(),
        },
        watermark: Some(ScimReadMark {
            start: watermark,
            full: complete,
            digest,
        }),
    })
}

fn origin_of(item: &SourceItem) -> &str {
    match item {
        SourceItem::Record(r) => &r.origin,
        SourceItem::Rejected(r) => &r.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let t = parse_rfc3339("2026-11-23T06:48:09Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T06:48:09Z");
        assert!(parse_rfc3339("2026-11-23T06:48:09.063383Z").is_some());
    }
}
