//! Lines the human `status` shows operators beside the cycle and the queue: the tokens and
//! when they expire, and held plans a newer cycle superseded (nothing to approve any more).

use chrono::DateTime;

use crate::store::{Superseded, TokenInfo};

/// The tokens: when the access token and the refresh token expire (UTC), as far as known.
pub fn token_line(t: &TokenInfo) -> Option<String> {
    let at = |s: i64| {
        DateTime::from_timestamp(s, 0).map_or_else(
            || s.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    let access = t
        .access_expires_at
        .map(|s| format!("access token expires {}", at(s)));
    let refresh = match (t.refresh_token_stored, t.refresh_expires_at) {
        (false, _) => None,
        (true, Some(s)) => Some(format!(
            "refresh token stored (encrypted), expires {}",
            at(s)
        )),
        (true, None) => Some("refresh token stored (encrypted), expiry unknown".to_owned()),
    };
    let parts: Vec<String> = access.into_iter().chain(refresh).collect();
    (!parts.is_empty()).then(|| format!("token: {}", parts.join("; ")))
}

/// One line per held plan a newer cycle superseded: which cycle, and that there is nothing
/// to approve in it any more.
pub fn superseded_lines(plans: &[Superseded]) -> Vec<String> {
    plans
        .iter()
        .map(|s| {
            format!(
                "cycle {}: held plan superseded by the plan of cycle {} (nothing to approve in cycle {})",
                s.cycle_id, s.superseded_by, s.cycle_id
            )
        })
        .collect()
}
