//! The status page at `/` of the admin endpoint: data in, HTML out, nothing else. It renders
//! what `status --json` and the store's `Overview` hold — the cycles over time as an inline SVG
//! chart, failures, rejections, held plans with the commands that release or drop them, the
//! outbox, provisions in flight, the token and the throttle — as one server-rendered page with
//! no script, no external resource and no form: nothing on it can change anything.
//!
//! Every value is escaped by the templating (`maud`): names, file names and Concur's messages
//! are hostile input as far as the page is concerned.

mod chart;
mod summary;
mod tables;

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::store::{CycleOutcome, Overview, Status};
use chart::{chart, cycles_table, outcome_colour};
use summary::summary;
use tables::{alerts, failures, held, provisions, rejections, skipped};

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
                    (chart(&d.overview.cycles, &d.overview.superseded))
                    (cycles_table(&d.overview.cycles, &d.overview.superseded))
                    (failures(st))
                    (skipped(st))
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

fn outcome(o: CycleOutcome) -> Markup {
    html! {
        span class=(format!("outcome outcome-{}", o.as_str())) style=(format!("background:{}", outcome_colour(o))) { (o.as_str()) }
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
    use super::chart::nice_ceiling;
    use super::*;
    use crate::model::Rejection;
    use crate::store::{
        CycleCounts, CycleInfo, CycleOutcome, FailedEntry, HeldEntry, HeldPlan, OutboxCounts,
        ProvisionRow, TokenInfo, UserCounts,
    };
    use std::collections::BTreeMap;

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
                refresh_expires_at: Some(1_788_000_000),
            },
            unmanaged_users: Vec::new(),
            drift_repaired: 0,
            last_reconcile: None,
            attendees: None,
            warnings: vec![rejection],
            alerts: Vec::new(),
            last_file: None,
            superseded: Vec::new(),
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
            superseded: BTreeMap::new(),
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
