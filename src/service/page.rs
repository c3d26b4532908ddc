//! The status page at `/` of the admin endpoint: data in, HTML out, nothing else. It renders
//! what `status --json` and the store's `Overview` hold — the cycles over time as an inline SVG
//! chart, failures, rejections, held plans with the commands that release or drop them, the
//! outbox, provisions in flight, the token and the throttle — as one server-rendered page with
//! no script, no external resource and no form: nothing on it can change anything.
//!
//! Every value is escaped by the templating (`maud`): names, file names and Concur's messages
//! are hostile input as far as the page is concerned.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::store::{CycleInfo, CycleOutcome, HELD_SAMPLE, Overview, Status};

/// Rows of a findings table (failures, rejections, warnings) before the page refers to
/// `status --json` for the rest.
pub const MAX_ROWS: usize = 200;

/// What one page shows.
pub struct PageData<'a> {
    pub status: &'a Status,
    pub overview: &'a Overview,
    /// When the page was rendered: ages and expiries are counted from it.
    pub now: DateTime<Utc>,
    pub version: &'a str,
}

/// The operations the chart stacks, bottom up: (class, label, colour, count).
fn stacked(c: &CycleInfo) -> [(&'static str, &'static str, &'static str, u64); 7] {
    let n = &c.counts;
    [
        ("create", "created", "#2e7d32", n.create),
        ("update", "updated", "#1565c0", n.update),
        ("reactivate", "reactivated", "#00838f", n.reactivate),
        ("deactivate", "deactivated", "#ef6c00", n.deactivate),
        ("password", "passwords", "#d81b60", n.password),
        ("failed", "failed", "#c62828", n.failed),
        ("rejected", "rejected", "#8d6e63", n.rejected),
    ]
}

/// The non-empty segments of a cycle's bar, bottom up: (class, label, colour, sum of the
/// segments below, count).
fn segments(c: &CycleInfo) -> Vec<(&'static str, &'static str, &'static str, u64, u64)> {
    let mut below = 0;
    let mut out = Vec::new();
    for (class, label, colour, n) in stacked(c) {
        if n > 0 {
            out.push((class, label, colour, below, n));
            below += n;
        }
    }
    out
}

fn outcome_colour(o: CycleOutcome) -> &'static str {
    match o {
        CycleOutcome::Success => "#2e7d32",
        CycleOutcome::Partial => "#f9a825",
        CycleOutcome::Held => "#5e35b1",
        CycleOutcome::Degraded => "#ef6c00",
        CycleOutcome::Failed => "#c62828",
        CycleOutcome::Interrupted => "#757575",
        CycleOutcome::Running => "#1565c0",
    }
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#263238;color:#fff;padding:12px 24px}
header h1{font-size:20px;margin:0}
header p{margin:2px 0 0;color:#cfd8dc;font-size:12px}
main{padding:8px 24px 32px;max-width:1400px}
section{margin-top:20px}
h2{font-size:16px;margin:0 0 8px;border-bottom:1px solid #cfd8dc;padding-bottom:4px}
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:8px;margin:0}
dl.summary div{background:#fff;border:1px solid #e0e0e0;border-radius:4px;padding:8px 10px}
dl.summary dt{font-size:12px;color:#546e7a}
dl.summary dd{margin:2px 0 0;font-size:15px;font-weight:600}
dd small{font-weight:400;color:#546e7a}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border:1px solid #e0e0e0;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eceff1}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code.command{background:#263238;color:#fff;padding:2px 6px;border-radius:3px;white-space:nowrap}
.outcome{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:12px;font-size:12px}
.swatch,.dot{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.dot{border-radius:50%}
td.time{white-space:nowrap}
td.path{overflow-wrap:anywhere}
tr.cycle-message td{border-top:none;color:#37474f;font-size:12px}
.note{color:#546e7a;font-size:12px}
.warn{color:#b71c1c;font-weight:600}
svg.chart{background:#fff;border:1px solid #e0e0e0;max-width:100%;height:auto}
";

/// The whole page.
pub fn render(d: &PageData) -> String {
    let st = d.status;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="60";
                title { "concur-sync status" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "concur-sync status" }
                    p { "Read-only; times in UTC. Rendered " (d.now.format("%Y-%m-%d %H:%M:%S")) " by concur-sync " (d.version) "; refreshes every minute." }
                }
                main {
                    (summary(d))
                    (held(d))
                    (chart(&d.overview.cycles))
                    (cycles_table(&d.overview.cycles))
                    (failures(st))
                    (rejections("rejections", "Rejected rows", "Rows of the latest read that were not used, with the rule they broke.", &st.rejected))
                    (provisions(d))
                    (alerts(st))
                    (rejections("warnings", "Warnings", "Values the latest read changed to let a row through.", &st.warnings))
                }
            }
        }
    };
    markup.into_string()
}

fn summary(d: &PageData) -> Markup {
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
                    dd { (st.failed.len()) }
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
                            "stored (encrypted)"
                            @if let Some(t) = &d.overview.refresh_token_saved_at {
                                br; small { "saved " (ago(d.now, t)) " (a refresh token lasts six months; when Concur refuses it, the company request token is used)" }
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
            @if at > d.now {
                "expires in " (duration((at - d.now).num_seconds()))
            } @else {
                "expired " (duration((d.now - at).num_seconds())) " ago"
            }
            br; small { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
        } @else {
            "none obtained yet"
        }
    }
}

fn outcome(o: CycleOutcome) -> Markup {
    html! {
        span class=(format!("outcome outcome-{}", o.as_str())) style=(format!("background:{}", outcome_colour(o))) { (o.as_str()) }
    }
}

fn held(d: &PageData) -> Markup {
    let plans = &d.overview.held;
    html! {
        section #held {
            h2 { "Held plans" }
            @if plans.is_empty() {
                p.note { "No plan is waiting for approval." }
            } @else {
                p { "These changes wait for an operator. Run one of the commands on the host (or in the pod) with the service's configuration; nothing on this page can release them." }
                table {
                    thead { tr { th { "Cycle" } th { "Held operations" } th { "Approve" } th { "Reject" } th { "First entries" } } }
                    tbody {
                        @for p in plans {
                            tr.held-plan data-cycle=(p.cycle_id) {
                                td.n { (p.cycle_id) }
                                td {
                                    (p.total) " ("
                                    @for (i, (op, n)) in p.operations.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (n) " " (op)
                                    }
                                    ")"
                                }
                                td { code.command.approve { "concur-sync approve " (p.cycle_id) } }
                                td { code.command.reject { "concur-sync reject " (p.cycle_id) } }
                                td {
                                    @for (i, e) in p.entries.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (e.employee_id) " (" (e.operation) ")"
                                    }
                                    @if p.total as usize > HELD_SAMPLE { " …" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The cycles over time: one stacked bar per cycle (operations acknowledged, failed and
/// rejected), oldest on the left, and a mark under each bar in its outcome's colour.
fn chart(cycles: &[CycleInfo]) -> Markup {
    const W: f64 = 960.0;
    const H: f64 = 280.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 44.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let oldest_first: Vec<&CycleInfo> = cycles.iter().rev().collect();
    let max = oldest_first
        .iter()
        .map(|c| stacked(c).iter().map(|s| s.3).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let top = nice_ceiling(max);
    let slot = plot_w / oldest_first.len().max(1) as f64;
    let bar = (slot * 0.7).min(48.0);
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;
    let px = |v: f64| format!("{v:.1}");
    let label_every = oldest_first.len().div_ceil(20).max(1);
    html! {
        section #chart {
            h2 { "Cycles over time" }
            @if oldest_first.is_empty() {
                p.note { "No cycle has run yet." }
            } @else {
                p.note { "Operations per cycle, the latest " (oldest_first.len()) " cycles, oldest on the left; the dot under each bar is the cycle's outcome. Unchanged records are not drawn." }
                ul.legend {
                    @for (class, label, colour, _) in stacked(oldest_first[0]) {
                        li class=(format!("legend-{class}")) { span.swatch style=(format!("background:{colour}")) {} (label) }
                    }
                }
                svg.chart xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox=(format!("0 0 {W} {H}")) role="img" aria-label="Operations per cycle" {
                    // Axis and grid.
                    @for v in [0, top / 2, top] {
                        line.grid x1=(px(LEFT)) x2=(px(W - RIGHT)) y1=(px(y(v))) y2=(px(y(v))) stroke="#e0e0e0" {}
                        text x=(px(LEFT - 6.0)) y=(px(y(v) + 4.0)) text-anchor="end" font-size="11" fill="#546e7a" { (v) }
                    }
                    @for (i, c) in oldest_first.iter().enumerate() {
                        @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                        g.cycle data-cycle=(c.id) data-outcome=(c.outcome.as_str()) {
                            title { "Cycle " (c.id) " (" (c.outcome.as_str()) "), " (when(&c.started_at)) ": " (c.counts.summary()) }
                            @for (class, label, colour, below, n) in segments(c) {
                                rect class=(format!("bar op-{class}")) data-count=(n) x=(px(x)) width=(px(bar)) y=(px(y(below + n))) height=(px(y(below) - y(below + n))) fill=(colour) {
                                    title { "Cycle " (c.id) ": " (n) " " (label) }
                                }
                            }
                            circle.outcome-mark cx=(px(x + bar / 2.0)) cy=(px(TOP + plot_h + 10.0)) r="5" fill=(outcome_colour(c.outcome)) {
                                title { "Cycle " (c.id) ": " (c.outcome.as_str()) }
                            }
                            @if i % label_every == 0 || i + 1 == oldest_first.len() {
                                text x=(px(x + bar / 2.0)) y=(px(TOP + plot_h + 28.0)) text-anchor="middle" font-size="11" fill="#263238" { (c.id) }
                            }
                        }
                    }
                    line x1=(px(LEFT)) x2=(px(W - RIGHT)) y1=(px(y(0))) y2=(px(y(0))) stroke="#90a4ae" {}
                    text x=(px(LEFT)) y=(px(H - 4.0)) font-size="11" fill="#546e7a" { "cycle" }
                }
                ul.legend.outcomes {
                    @for o in CycleOutcome::ALL.iter().filter(|o| **o != CycleOutcome::Running) {
                        li { span.dot style=(format!("background:{}", outcome_colour(*o))) {} (o.as_str()) }
                    }
                }
            }
        }
    }
}

/// The smallest of 1, 2, 4, 5 × 10^k at or above `v` that halves evenly (the middle grid
/// line), and at least 2.
fn nice_ceiling(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 4, 5] {
            let c = m * step;
            if c >= v && c.is_multiple_of(2) {
                return c;
            }
        }
        step = step.saturating_mul(10);
    }
}

fn cycles_table(cycles: &[CycleInfo]) -> Markup {
    html! {
        section #cycles {
            h2 { "Latest cycles" }
            @if cycles.is_empty() {
                p.note { "No cycle has run yet." }
            } @else {
                table {
                    thead { tr {
                        th { "Cycle" } th { "Ended" } th { "Outcome" } th { "Source" }
                        th { "Created" } th { "Updated" } th { "Reactivated" } th { "Deactivated" } th { "Passwords" }
                        th { "Failed" } th { "Rejected" } th { "Unchanged" } th { "Retries" } th { "Throttled s" }
                    } }
                    tbody {
                        @for c in cycles {
                            @let n = &c.counts;
                            tr.cycle-row data-cycle=(c.id) {
                                td.n { (c.id) }
                                td.time { (when(c.finished_at.as_deref().unwrap_or(&c.started_at))) }
                                td { (outcome(c.outcome)) }
                                td.path { (c.source) }
                                td.n { (n.create) } td.n { (n.update) } td.n { (n.reactivate) } td.n { (n.deactivate) }
                                td.n { (n.password) } td.n { (n.failed) } td.n { (n.rejected) } td.n { (n.unchanged) }
                                td.n { (n.retries) } td.n { (format!("{:.1}", n.throttled_seconds)) }
                            }
                            @if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                                tr.cycle-message data-cycle=(c.id) { td {} td.message colspan="13" { (m) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failures(st: &Status) -> Markup {
    html! {
        section #failures {
            h2 { "Failed records" }
            @if st.failed.is_empty() {
                p.note { "No record failed." }
            } @else {
                p.note { "Records Concur refused, with its own message; each is planned again in the next cycle." }
                table {
                    thead { tr { th { "Employee" } th { "Operation" } th { "Concur's message" } th { "Attempts" } th { "First failed" } th { "Last failed" } } }
                    tbody {
                        @for f in st.failed.iter().take(MAX_ROWS) {
                            tr.failure {
                                td.employee { (f.employee_id) }
                                td { (f.operation) }
                                td.message { (f.message) }
                                td.n { (f.attempts) }
                                td.time { (when(&f.first_failed_at)) }
                                td.time { (when(&f.last_failed_at)) }
                            }
                        }
                    }
                }
                (more(st.failed.len()))
            }
        }
    }
}

fn rejections(id: &str, heading: &str, note: &str, rows: &[crate::model::Rejection]) -> Markup {
    html! {
        section id=(id) {
            h2 { (heading) }
            @if rows.is_empty() {
                p.note { "None." }
            } @else {
                p.note { (note) }
                table {
                    thead { tr { th { "Where" } th { "Employee" } th { "Field" } th { "Reason" } } }
                    tbody {
                        @for r in rows.iter().take(MAX_ROWS) {
                            tr.finding {
                                td.path { (r.source) }
                                td.employee { (r.employee_id.as_deref().unwrap_or("")) }
                                td { (r.field) }
                                td.message { (r.message) }
                            }
                        }
                    }
                }
                (more(rows.len()))
            }
        }
    }
}

fn more(len: usize) -> Markup {
    html! {
        @if len > MAX_ROWS {
            p.note { (len - MAX_ROWS) " more: " code { "concur-sync status --json" } " lists every one." }
        }
    }
}

fn provisions(d: &PageData) -> Markup {
    let rows = &d.overview.provisions;
    html! {
        section #provisions {
            h2 { "Provisions in flight (UPS v4)" }
            @if rows.is_empty() {
                p.note { "None: every operation Concur accepted has settled." }
            } @else {
                p.note { "Bulk requests Concur accepted whose outcome is still being polled; none of their operations is sent again." }
                table {
                    thead { tr { th { "Provision" } th { "Cycle" } th { "Operations" } th { "Accepted" } th { "Age" } } }
                    tbody {
                        @for p in rows {
                            tr.provision {
                                td { code { (p.provision_id) } }
                                td.n { (p.cycle_id) }
                                td.n { (p.operations) }
                                td.time { (p.submitted_at.as_deref().map(when).unwrap_or_default()) }
                                td { (p.submitted_at.as_deref().map(|t| ago(d.now, t)).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alerts(st: &Status) -> Markup {
    html! {
        section #alerts {
            h2 { "Drop-folder alerts (24 hours)" }
            @if st.alerts.is_empty() {
                p.note { "None." }
            } @else {
                table {
                    thead { tr { th { "When" } th { "File" } th { "Problem" } } }
                    tbody {
                        @for a in &st.alerts {
                            tr.alert { td.time { (when(&a.at)) } td.path { (a.file) } td.message { (a.message) } }
                        }
                    }
                }
            }
        }
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` UTC; the text itself when it does not parse.
fn when(t: &str) -> String {
    parse(t).map_or_else(
        || t.to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// "5 min ago" for an RFC 3339 time; the text itself when it does not parse.
fn ago(now: DateTime<Utc>, t: &str) -> String {
    match parse(t) {
        Some(at) if at <= now => format!("{} ago", duration((now - at).num_seconds())),
        Some(at) => format!("in {}", duration((at - now).num_seconds())),
        None => t.to_owned(),
    }
}

/// A span of seconds for people: "42 s", "5 min", "3 h 20 min", "4 d 2 h".
fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rejection;
    use crate::store::{
        CycleCounts, FailedEntry, HeldEntry, HeldPlan, OutboxCounts, ProvisionRow, TokenInfo,
        UserCounts,
    };

    const HOSTILE: &str = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>";

    fn cycle(id: i64, outcome: CycleOutcome, create: u64, failed: u64) -> CycleInfo {
        CycleInfo {
            id,
            started_at: "2026-03-01T10:00:00Z".into(),
            finished_at: Some("2026-03-01T10:00:05Z".into()),
            outcome,
            source: format!("/in/{HOSTILE}.csv"),
            message: Some(HOSTILE.into()),
            counts: CycleCounts {
                create,
                failed,
                ..CycleCounts::default()
            },
        }
    }

    fn status() -> Status {
        let rejection = Rejection {
            source: format!("{HOSTILE}:3"),
            employee_id: Some(HOSTILE.into()),
            field: "email".into(),
            message: HOSTILE.into(),
            identity: crate::model::RowIdentity::default(),
        };
        Status {
            users: UserCounts::default(),
            failed: vec![FailedEntry {
                employee_id: HOSTILE.into(),
                operation: "create".into(),
                message: HOSTILE.into(),
                attempts: 2,
                first_failed_at: HOSTILE.into(),
                last_failed_at: "2026-03-01T10:00:05Z".into(),
            }],
            rejected: vec![rejection.clone()],
            skipped: Vec::new(),
            last_cycle: Some(cycle(3, CycleOutcome::Held, 0, 0)),
            last_success: None,
            outbox: OutboxCounts {
                pending: 0,
                held: 2,
            },
            provisions: crate::store::ProvisionsInFlight::default(),
            retries: 0,
            throttled_seconds: 1.5,
            token: TokenInfo {
                refresh_token_stored: true,
                access_expires_at: Some(1_772_363_400),
            },
            unmanaged_users: Vec::new(),
            drift_repaired: 0,
            last_reconcile: None,
            attendees: None,
            warnings: vec![rejection],
            alerts: Vec::new(),
            last_file: None,
        }
    }

    fn overview() -> Overview {
        Overview {
            cycles: vec![
                cycle(3, CycleOutcome::Held, 0, 0),
                cycle(2, CycleOutcome::Partial, 4, 1),
                cycle(1, CycleOutcome::Success, 10, 0),
            ],
            held: vec![HeldPlan {
                cycle_id: 3,
                operations: [("deactivate".to_owned(), 2)].into(),
                total: 2,
                entries: vec![HeldEntry {
                    employee_id: HOSTILE.into(),
                    operation: "deactivate".into(),
                }],
            }],
            provisions: vec![ProvisionRow {
                provision_id: HOSTILE.into(),
                cycle_id: 2,
                operations: 3,
                submitted_at: Some("2026-03-01T10:00:00Z".into()),
            }],
            refresh_token_saved_at: Some(HOSTILE.into()),
            not_before: Some(HOSTILE.into()),
        }
    }

    fn page() -> String {
        let st = status();
        let ov = overview();
        render(&PageData {
            status: &st,
            overview: &ov,
            now: parse("2026-03-01T10:30:00Z").unwrap(),
            version: "0.1.0",
        })
    }

    #[test]
    fn every_value_is_escaped() {
        let html = page();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        // Attribute values too (the source path is in a chart title and a table cell).
        assert!(!html.contains("onerror=alert(2)>"), "{html}");
        assert!(!html.contains("\"'&<"), "{html}");
    }

    #[test]
    fn held_plans_name_the_commands_and_the_chart_has_a_bar_per_operation() {
        let html = page();
        assert!(html.contains("concur-sync approve 3"), "{html}");
        assert!(html.contains("concur-sync reject 3"), "{html}");
        assert_eq!(html.matches("<g class=\"cycle\"").count(), 3, "{html}");
        assert_eq!(html.matches("class=\"bar op-create\"").count(), 2, "{html}");
        assert_eq!(html.matches("class=\"bar op-failed\"").count(), 1, "{html}");
        assert!(html.contains("expires in 40 min"), "{html}");
        assert!(!html.contains("<form"), "{html}");
    }

    #[test]
    fn an_empty_database_renders() {
        let st = Status {
            failed: Vec::new(),
            rejected: Vec::new(),
            warnings: Vec::new(),
            last_cycle: None,
            token: TokenInfo::default(),
            ..status()
        };
        let html = render(&PageData {
            status: &st,
            overview: &Overview::default(),
            now: Utc::now(),
            version: "0.1.0",
        });
        assert!(html.contains("No cycle has run yet."), "{html}");
        assert!(html.contains("No plan is waiting for approval."), "{html}");
    }

    #[test]
    fn scales_and_spans_read_well() {
        assert_eq!(nice_ceiling(1), 2);
        assert_eq!(nice_ceiling(3), 4);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(40), 40);
        assert_eq!(nice_ceiling(41), 50);
        assert_eq!(nice_ceiling(101), 200);
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(3_900), "1 h 5 min");
        assert_eq!(duration(200_000), "2 d 7 h");
    }
}
