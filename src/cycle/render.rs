//! Plan rendering: `plan --json` (one JSON document, passwords never included) and the `plan`
//! text for people, both in plan order so two runs on the same input print the same plan.

use serde::Serialize;

use crate::model::{FieldChange, OpKind, Rejection};

use super::read::PlannedCycle;

#[derive(Serialize)]
struct PlanJson<'a> {
    summary: PlanSummary,
    operations: Vec<OpJson<'a>>,
    rejected: &'a [Rejection],
    warnings: &'a [Rejection],
}

#[derive(Serialize, Default)]
struct PlanSummary {
    create: u64,
    update: u64,
    reactivate: u64,
    deactivate: u64,
    password: u64,
    unchanged: u64,
    rejected: u64,
    /// Operations left out: their record is parked (`skip`); absent when none is.
    #[serde(skip_serializing_if = "is_zero")]
    skipped: u64,
    source_records: u64,
}

#[derive(Serialize)]
struct OpJson<'a> {
    operation: OpKind,
    employee_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_login_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_employee_id: Option<&'a str>,
    changes: std::borrow::Cow<'a, [FieldChange]>,
}

impl PlannedCycle {
    fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary {
            unchanged: self.unchanged,
            rejected: self.rejections.len() as u64,
            skipped: self.skipped,
            source_records: self.source_records,
            ..PlanSummary::default()
        };
        for op in &self.ops {
            match op.kind {
                OpKind::Create => s.create += 1,
                OpKind::Update => s.update += 1,
                OpKind::Reactivate => s.reactivate += 1,
                OpKind::Deactivate => s.deactivate += 1,
                OpKind::Password => s.password += 1,
            }
        }
        s
    }

    /// The plan as JSON (`plan --json`). Passwords never appear.
    pub fn to_json(&self) -> String {
        let j = PlanJson {
            summary: self.summary(),
            operations: self
                .ops
                .iter()
                .map(|o| OpJson {
                    operation: o.kind,
                    employee_id: &o.employee_id,
                    origin: &o.origin,
                    old_login_id: o.old_login_id.as_deref(),
                    old_employee_id: o.old_employee_id.as_deref(),
                    changes: o.field_changes(),
                })
                .collect(),
            rejected: &self.rejections,
            warnings: &self.warnings,
        };
        serde_json::to_string_pretty(&j).unwrap_or_default()
    }

    /// The plan for people (`plan`).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for op in &self.ops {
            let _ = write!(
                out,
                "{:<10} {}",
                op.kind.as_str(),
                crate::escape::escape(&op.employee_id)
            );
            if !op.origin.is_empty() {
                let _ = write!(out, "  ({})", crate::escape::escape(&op.origin));
            } else if op.kind == OpKind::Deactivate {
                out.push_str("  (no longer in the source)");
            }
            out.push('\n');
            if op.kind == OpKind::Create {
                let fields: Vec<String> = op
                    .user
                    .iter()
                    .filter(|(f, _)| *f != crate::model::Field::EMPLOYEE_ID)
                    .map(|(f, v)| crate::escape::escape(&format!("{f}={v:?}")).into_owned())
                    .collect();
                let _ = writeln!(out, "    {}", fields.join(" "));
                continue;
            }
            if let Some(old) = &op.old_employee_id {
                let _ = writeln!(
                    out,
                    "    employee_id renamed from {}",
                    crate::escape::escape(&format!("{old:?}"))
                );
            }
            if op.kind == OpKind::Password {
                let _ = writeln!(out, "    password: changed (not shown)");
            }
            for c in &op.changes {
                let _ = writeln!(
                    out,
                    "    {}: {} → {}",
                    c.field,
                    show(c.old.as_deref()),
                    show(c.new.as_deref())
                );
            }
        }
        for r in &self.rejections {
            let _ = writeln!(out, "rejected   {}", crate::escape::escape(&r.to_string()));
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning    {}", crate::escape::escape(&w.to_string()));
        }
        let s = self.summary();
        let skipped = if s.skipped > 0 {
            format!(", {} skipped (parked)", s.skipped)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "plan: {} create, {} update, {} reactivate, {} deactivate, {} password, {} unchanged, {} rejected{skipped} ({} source records)",
            s.create,
            s.update,
            s.reactivate,
            s.deactivate,
            s.password,
            s.unchanged,
            s.rejected,
            s.source_records
        );
        out
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn show(v: Option<&str>) -> String {
    match v {
        Some(s) => crate::escape::escape(&format!("{s:?}")).into_owned(),
        None => "∅".into(),
    }
}
