//! The cycles over time: the stacked-bar chart (inline SVG) and the table of the latest
//! cycles beside it. A held cycle whose plan a newer cycle superseded says so, and no longer
//! names the commands that would have released it.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::{outcome, when};
use crate::store::{CycleInfo, CycleOutcome};

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

pub(super) fn outcome_colour(o: CycleOutcome) -> &'static str {
    match o {
        CycleOutcome::Success => "#2e7d32",
        CycleOutcome::Partial => "#f9a825",
        CycleOutcome::Held => "#5e35b1",
        CycleOutcome::Rejected => "#8d6e63",
        CycleOutcome::Degraded => "#ef6c00",
        CycleOutcome::Failed => "#c62828",
        CycleOutcome::Interrupted => "#757575",
        CycleOutcome::Running => "#1565c0",
    }
}

/// The cycles over time: one stacked bar per cycle (operations acknowledged, failed and
/// rejected), oldest on the left, and a mark under each bar in its outcome's colour.
pub(super) fn chart(cycles: &[CycleInfo], superseded: &BTreeMap<i64, i64>) -> Markup {
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
                        g.cycle data-cycle=(c.id) data-outcome=(c.outcome.as_str()) data-superseded-by=[superseded.get(&c.id)] {
                            title {
                                "Cycle " (c.id) " (" (c.outcome.as_str())
                                @if let Some(by) = superseded.get(&c.id) { ", superseded by cycle " (by) }
                                "), " (when(&c.started_at)) ": " (c.counts.summary())
                            }
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
pub(super) fn nice_ceiling(v: u64) -> u64 {
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

pub(super) fn cycles_table(cycles: &[CycleInfo], superseded: &BTreeMap<i64, i64>) -> Markup {
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
                            @let by = superseded.get(&c.id);
                            tr.cycle-row data-cycle=(c.id) data-superseded-by=[by] {
                                td.n { (c.id) }
                                td.time { (when(c.finished_at.as_deref().unwrap_or(&c.started_at))) }
                                td {
                                    (outcome(c.outcome))
                                    @if let Some(by) = by { br; small.superseded { "superseded by cycle " (by) } }
                                }
                                td.path { (c.source) }
                                td.n { (n.create) } td.n { (n.update) } td.n { (n.reactivate) } td.n { (n.deactivate) }
                                td.n { (n.password) } td.n { (n.failed) } td.n { (n.rejected) } td.n { (n.unchanged) }
                                td.n { (n.retries) } td.n { (format!("{:.1}", n.throttled_seconds)) }
                            }
                            @if let Some(by) = by {
                                tr.cycle-message data-cycle=(c.id) {
                                    td {}
                                    td.message colspan="13" {
                                        @if let Some(m) = c.message.as_deref().map(without_commands).filter(|m| !m.is_empty()) { (m) "; " }
                                        "the plan of cycle " (by) " superseded this held plan: nothing to approve"
                                    }
                                }
                            } @else if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                                tr.cycle-message data-cycle=(c.id) { td {} td.message colspan="13" { (m) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A held cycle's message without the commands that would have released it
/// ("held: …; approve with `concur-sync approve N` or …").
fn without_commands(m: &str) -> &str {
    m.find("; approve with `").map_or(m, |at| &m[..at])
}
