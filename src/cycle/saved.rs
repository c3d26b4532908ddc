//! Saved plans: `plan --out FILE` writes a plan as canonical JSON (fields in a fixed order,
//! operations sorted by employee id and operation, no time stamps, never a password) with the
//! digest of the source it was read from and the snapshot generation it was computed against;
//! `apply FILE` applies exactly its operations. Pure: [`check`] compares a saved plan with a
//! fresh plan of the same source and the current generation, and returns the operations to
//! send, or why the saved plan no longer holds.

use serde::{Deserialize, Serialize};

use crate::model::{FieldChange, Op, OpKind, User};

use super::read::PlannedCycle;

/// The `format` of the files this build writes and reads.
pub const FORMAT: &str = "concur-sync plan 1";

/// A saved plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub format: String,
    pub operations: Vec<SavedOp>,
    /// The snapshot generation the plan was computed against.
    pub snapshot_generation: i64,
    /// What was read (a file path, a directory's label).
    pub source: String,
    /// The digest of what was read (the source's digest the cycle history records).
    pub source_digest: String,
}

/// One operation of a saved plan: the full desired record (no password) and its changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOp {
    pub changes: Vec<FieldChange>,
    pub employee_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_employee_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_login_id: Option<String>,
    pub operation: OpKind,
    /// Where the desired record came from (empty for deactivations of vanished users).
    pub origin: String,
    pub user: User,
}

impl From<&Op> for SavedOp {
    fn from(op: &Op) -> SavedOp {
        SavedOp {
            changes: op.field_changes().into_owned(),
            employee_id: op.employee_id.clone(),
            old_employee_id: op.old_employee_id.clone(),
            old_login_id: op.old_login_id.clone(),
            operation: op.kind,
            origin: op.origin.clone(),
            user: op.user.clone(),
        }
    }
}

impl SavedPlan {
    /// The plan `planned`, computed against snapshot generation `generation`.
    pub fn new(planned: &PlannedCycle, generation: i64) -> SavedPlan {
        let mut operations: Vec<SavedOp> = planned.ops.iter().map(SavedOp::from).collect();
        operations.sort_by(|a, b| {
            (&a.employee_id, a.operation, &a.origin).cmp(&(&b.employee_id, b.operation, &b.origin))
        });
        SavedPlan {
            format: FORMAT.into(),
            operations,
            snapshot_generation: generation,
            source: planned.source_label.clone(),
            source_digest: planned.source_digest.clone(),
        }
    }

    /// The file's text: pretty JSON and a final line break.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads a saved plan; the error says what is wrong with the file.
    pub fn parse(text: &str) -> Result<SavedPlan, String> {
        let plan: SavedPlan = serde_json::from_str(text)
            .map_err(|e| format!("not a plan saved by `concur-sync plan --out`: {e}"))?;
        if plan.format != FORMAT {
            return Err(format!(
                "format {:?} is not {FORMAT:?}: save the plan again with this version",
                plan.format
            ));
        }
        Ok(plan)
    }

    /// Why the source or the snapshot moved on since the plan was saved, if they did; a source
    /// whose digest cannot be told cheaply (`None`) is compared once it is read.
    pub fn stale(&self, source_digest: Option<&str>, generation: i64) -> Option<String> {
        if let Some(now) = source_digest
            && now != self.source_digest
        {
            return Some(format!(
                "the source changed since the plan was saved ({} was read with digest {}, it is {now} now): save a new plan with `concur-sync plan --out FILE`",
                self.source, self.source_digest
            ));
        }
        if generation != self.snapshot_generation {
            return Some(format!(
                "the snapshot changed since the plan was saved (generation {}, now {generation}: a cycle, an approval or a reconcile recorded what Concur acknowledged): save a new plan with `concur-sync plan --out FILE`",
                self.snapshot_generation
            ));
        }
        None
    }
}

/// The operations of `planned` that `saved` holds, in `planned`'s send order, when the source
/// and the snapshot are those `saved` was computed from and every saved operation is still
/// planned exactly as saved (operations removed from the file are not sent); else why not.
pub fn check(
    saved: &SavedPlan,
    planned: &PlannedCycle,
    generation: i64,
) -> Result<Vec<Op>, String> {
    if let Some(why) = saved.stale(Some(&planned.source_digest), generation) {
        return Err(why);
    }
    let mut wanted: Vec<Option<&SavedOp>> = saved.operations.iter().map(Some).collect();
    let mut ops = Vec::with_capacity(saved.operations.len());
    for op in &planned.ops {
        let this = SavedOp::from(op);
        if let Some(slot) = wanted.iter_mut().find(|w| w.is_some_and(|w| *w == this)) {
            *slot = None;
            ops.push(op.clone());
        }
    }
    if let Some(left) = wanted.into_iter().flatten().next() {
        return Err(format!(
            "the plan does not hold any more: {} {} is not planned so now (was the configuration changed, or the file edited?): save a new plan with `concur-sync plan --out FILE`",
            left.operation, left.employee_id
        ));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Field;

    fn op(kind: OpKind, id: &str, last: &str) -> Op {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, format!("{id}@example.com"));
        u.set(Field::LAST_NAME, last);
        Op {
            kind,
            employee_id: id.into(),
            user: u,
            old_login_id: None,
            old_employee_id: None,
            changes: Vec::new(),
            password: None,
            origin: format!("hr.csv:{}", id.len()),
        }
    }

    fn planned(ops: Vec<Op>) -> PlannedCycle {
        PlannedCycle {
            ops,
            source_label: "hr.csv".into(),
            source_digest: "d1".into(),
            ..PlannedCycle::default()
        }
    }

    #[test]
    fn a_saved_plan_is_canonical_and_reads_back() {
        let a = planned(vec![
            op(OpKind::Update, "B2", "Bell"),
            op(OpKind::Create, "A1", "Ames"),
        ]);
        let b = planned(vec![
            op(OpKind::Create, "A1", "Ames"),
            op(OpKind::Update, "B2", "Bell"),
        ]);
        let text = SavedPlan::new(&a, 7).to_json();
        assert_eq!(text, SavedPlan::new(&b, 7).to_json());
        assert!(text.find("\"A1\"") < text.find("\"B2\""), "{text}");
        assert!(!text.contains("password"), "{text}");
        let back = SavedPlan::parse(&text).unwrap();
        assert_eq!(back, SavedPlan::new(&a, 7));
        assert!(SavedPlan::parse("{}").is_err());
        let other = text.replace(FORMAT, "concur-sync plan 0");
        assert!(SavedPlan::parse(&other).unwrap_err().contains("format"));
    }

    #[test]
    fn exactly_the_saved_operations_go_and_a_moved_source_or_snapshot_refuses() {
        let now = planned(vec![
            op(OpKind::Create, "A1", "Ames"),
            op(OpKind::Update, "B2", "Bell"),
        ]);
        let mut saved = SavedPlan::new(&now, 7);
        assert_eq!(check(&saved, &now, 7).unwrap().len(), 2);
        assert!(
            check(&saved, &now, 8)
                .unwrap_err()
                .contains("snapshot changed")
        );
        let mut changed = planned(now.ops.clone());
        changed.source_digest = "d2".into();
        assert!(
            check(&saved, &changed, 7)
                .unwrap_err()
                .contains("source changed")
        );
        // An operation removed from the file is not sent; one that is planned otherwise now
        // refuses the whole plan.
        saved.operations.retain(|o| o.employee_id == "B2");
        let ops = check(&saved, &now, 7).unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].employee_id, "B2");
        let other = planned(vec![op(OpKind::Update, "B2", "Bellamy")]);
        assert!(check(&saved, &other, 7).unwrap_err().contains("update B2"));
    }
}
