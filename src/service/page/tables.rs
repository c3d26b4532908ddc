//! The page's tables of what needs an operator: held plans with their commands, failed
//! records, parked (skipped) records, rejections and warnings, provisions in flight,
//! drop-folder alerts.

use maud::{Markup, html};

use super::{MAX_ROWS, PageData, ago, when};
use crate::store::{HELD_SAMPLE, Status};

pub(super) fn held(d: &PageData) -> Markup {
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

pub(super) fn failures(st: &Status) -> Markup {
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

pub(super) fn skipped(st: &Status) -> Markup {
    html! {
        section #skipped {
            h2 { "Skipped records" }
            @if st.skipped.is_empty() {
                p.note { "No record is parked." }
            } @else {
                p.note { "Failed records an operator parked: not counted as failed and not sent until their source row changes or " code { "concur-sync retry ID" } " plans one again." }
                table {
                    thead { tr { th { "Employee" } th { "Operation" } th { "Reason" } th { "Parked by" } th { "Parked" } th { "Concur's message" } } }
                    tbody {
                        @for s in st.skipped.iter().take(MAX_ROWS) {
                            tr.skip {
                                td.employee { (s.employee_id) }
                                td { (s.operation) }
                                td.reason { (s.reason) }
                                td.by { (s.by) }
                                td.time { (when(&s.at)) }
                                td.message { (s.message) }
                            }
                        }
                    }
                }
                (more(st.skipped.len()))
            }
        }
    }
}

pub(super) fn rejections(
    id: &str,
    heading: &str,
    note: &str,
    rows: &[crate::model::Rejection],
) -> Markup {
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

pub(super) fn provisions(d: &PageData) -> Markup {
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

pub(super) fn alerts(st: &Status) -> Markup {
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
