//! The page's first section: the last cycles, users, counts of what needs an operator, the
//! outbox and provisions, the tokens and the throttle, at a glance.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{PageData, ago, duration, outcome, parse, when};

pub(super) fn summary(d: &PageData) -> Markup {
    let st = d.status;
    let last = st.last_cycle.as_ref();
    let token = &st.token;
    html! {
        section #summary {
            h2 { "At a glance" }
            dl.summary {
                div #last-cycle {
                    dt { "Last cycle" }
                    dd {
                        @if let Some(c) = last {
                            (c.id) " " (outcome(c.outcome))
                            br;
                            small { (when(c.finished_at.as_deref().unwrap_or(&c.started_at))) " · " (ago(d.now, c.finished_at.as_deref().unwrap_or(&c.started_at))) }
                        } @else {
                            "none yet"
                        }
                    }
                }
                div #last-success {
                    dt { "Last cycle that applied its source" }
                    dd {
                        @if let Some(c) = &st.last_success {
                            (c.id) " " (outcome(c.outcome))
                            br;
                            small { (ago(d.now, c.finished_at.as_deref().unwrap_or(&c.started_at))) }
                        } @else { "none yet" }
                    }
                }
                div #users {
                    dt { "Managed users" }
                    dd { (st.users.managed) br; small { (st.users.active) " active · " (st.users.inactive) " inactive · " (st.users.unmanaged) " unmanaged in Concur" } }
                }
                div #failed-count {
                    dt { "Failed records" }
                    dd {
                        (st.failed.len())
                        @if !st.skipped.is_empty() { br; small { (st.skipped.len()) " more skipped (parked)" } }
                    }
                }
                div #rejected-count {
                    dt { "Rejected rows (latest read)" }
                    dd { (st.rejected.len()) }
                }
                div #outbox {
                    dt { "Outbox" }
                    dd { (st.outbox.pending) " pending" br; small { (st.outbox.held) " held for approval" } }
                }
                div #provisions-summary {
                    dt { "Provisions in flight (UPS v4)" }
                    dd {
                        (st.provisions.in_flight)
                        @if let Some(t) = &st.provisions.oldest_submitted_at {
                            br; small { (st.provisions.operations) " operations · oldest accepted " (ago(d.now, t)) }
                        }
                    }
                }
                div #access-token {
                    dt { "Access token" }
                    dd {
                        (access_token(d))
                    }
                }
                div #refresh-token {
                    dt { "Refresh token" }
                    dd {
                        @if token.refresh_token_stored {
                            @if let Some(at) = token.refresh_expires_at.and_then(|t| DateTime::from_timestamp(t, 0)) {
                                (expiry(d.now, at))
                                br; small.refresh-expires { (at.format("%Y-%m-%d %H:%M:%S UTC")) " (as Concur said; stored encrypted)" }
                            } @else {
                                "stored (encrypted)"
                                @if let Some(t) = &d.overview.refresh_token_saved_at {
                                    br; small { "saved " (ago(d.now, t)) "; Concur did not say when it expires (a refresh token lasts six months; when Concur refuses it, the company request token is used)" }
                                }
                            }
                        } @else {
                            "none stored"
                        }
                    }
                }
                div #throttle {
                    dt { "Throttled (last cycle)" }
                    dd {
                        (format!("{:.1}", st.throttled_seconds)) " s"
                        br; small { (st.retries) " retries" }
                        @if let Some(nb) = d.overview.not_before.as_deref().filter(|t| parse(t).is_some_and(|t| t > d.now)) {
                            br; span.warn { "Concur asked for no request before " (nb) }
                        }
                    }
                }
            }
        }
    }
}

fn access_token(d: &PageData) -> Markup {
    let at = d
        .status
        .token
        .access_expires_at
        .and_then(|t| DateTime::from_timestamp(t, 0));
    html! {
        @if let Some(at) = at {
            (expiry(d.now, at))
            br; small { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
        } @else {
            "none obtained yet"
        }
    }
}

/// "expires in 5 min" or "expired 2 h 3 min ago", counted from `now`.
fn expiry(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    if at > now {
        format!("expires in {}", duration((at - now).num_seconds()))
    } else {
        format!("expired {} ago", duration((now - at).num_seconds()))
    }
}
