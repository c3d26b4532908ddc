//! `concur-sync explain EMPLOYEE_ID|LOGIN [--json]`: everything the state database knows about
//! one user, newest first: the snapshot row and ownership, a parked record, the current failure,
//! rejections of the latest read, held operations, and every planned operation with its cycle,
//! origin, changed fields, each request that carried it (provision id and bulkId under UPS v4)
//! and Concur's answer to it, merged with the operators' actions about the user.

use std::fmt::Write;

use serde::Serialize;

use crate::escape::escape;
use crate::model::Rejection;
use crate::store::{
    AuditRow, FailedEntry, HistoryEntry, OutboxState, SentRequest, Skip, SnapshotRow, Store,
    StoreError,
};

/// One user's story.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub employee_id: String,
    /// Other employee ids the same user had (renames), if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_known_as: Vec<String>,
    /// What Concur last acknowledged; `null` when it never acknowledged this user.
    pub snapshot: Option<SnapshotRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    pub failures: Vec<FailedEntry>,
    pub rejections: Vec<RejectionIn>,
    /// Operations held for an operator's approval.
    pub held: Vec<HistoryEntry>,
    /// Every planned operation and operator action, newest first.
    pub history: Vec<Event>,
}

/// A rejection of the latest cycle that read its source.
#[derive(Debug, Clone, Serialize)]
pub struct RejectionIn {
    pub cycle_id: i64,
    #[serde(flatten)]
    pub rejection: Rejection,
}

/// One event of a user's history.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Event {
    /// An operation a cycle planned, and what became of it.
    Operation(Box<HistoryEntry>),
    /// An operator's action (or a cycle ending a skip).
    Audit(AuditRow),
}

impl Event {
    fn at(&self) -> &str {
        match self {
            Event::Operation(e) => &e.updated_at,
            Event::Audit(a) => &a.at,
        }
    }
}

/// The users `key` names (an employee id, else a login), each with its story; empty when the
/// state database knows no such user.
pub fn explain(store: &Store, key: &str) -> Result<Vec<Explained>, StoreError> {
    let mut out = Vec::new();
    for id in store.find_user(key)? {
        let ids = store.rename_chain(&id)?;
        let snapshot = store.snapshot_row(&id)?;
        let skipped = store
            .skips()?
            .into_iter()
            .find(|s| ids.contains(&s.employee_id));
        let operations = store.history(&ids)?;
        let held: Vec<HistoryEntry> = operations
            .iter()
            .filter(|e| e.state == OutboxState::Held)
            .cloned()
            .collect();
        let mut history: Vec<Event> = operations
            .into_iter()
            .map(|e| Event::Operation(Box::new(e)))
            .collect();
        history.extend(store.audit_of(&ids)?.into_iter().map(Event::Audit));
        // Newest first; the sort is stable, so entries of one moment keep their order.
        history.sort_by(|a, b| b.at().cmp(a.at()));
        out.push(Explained {
            employee_id: id.clone(),
            also_known_as: ids.iter().filter(|i| **i != id).cloned().collect(),
            snapshot,
            skipped,
            failures: store.failures_of(&ids)?,
            rejections: store
                .rejections_of(&ids)?
                .into_iter()
                .map(|(cycle_id, rejection)| RejectionIn {
                    cycle_id,
                    rejection,
                })
                .collect(),
            held,
            history,
        });
    }
    Ok(out)
}

/// The story for people.
pub fn to_text(e: &Explained) -> String {
    let mut o = String::new();
    let login = e.snapshot.as_ref().map(|s| s.login_id.clone()).or_else(|| {
        e.history.iter().find_map(|h| match h {
            Event::Operation(op) => op.login_id.clone(),
            Event::Audit(_) => None,
        })
    });
    let _ = write!(o, "employee {}", escape(&e.employee_id));
    if let Some(l) = &login {
        let _ = write!(o, " (login {})", escape(l));
    }
    if !e.also_known_as.is_empty() {
        let aka: Vec<String> = e
            .also_known_as
            .iter()
            .map(|i| escape(i).into_owned())
            .collect();
        let _ = write!(o, ", also known as {}", aka.join(", "));
    }
    o.push('\n');
    match &e.snapshot {
        Some(s) => {
            let _ = write!(
                o,
                "  snapshot: {}, {}; acknowledged {}",
                if s.active { "active" } else { "inactive" },
                s.ownership,
                s.acknowledged_at
            );
            if let Some(c) = s.acknowledged_cycle {
                let _ = write!(o, " (cycle {c})");
            }
            if let Some(u) = &s.concur_uuid {
                let _ = write!(o, "; Concur UUID {}", escape(u));
            }
            o.push('\n');
            let fields: Vec<String> = s
                .fields
                .iter()
                .map(|(f, v)| escape(&format!("{f}={v:?}")).into_owned())
                .collect();
            let _ = writeln!(o, "    {}", fields.join(" "));
        }
        None => o.push_str("  snapshot: none (Concur never acknowledged this user)\n"),
    }
    if let Some(s) = &e.skipped {
        let _ = writeln!(
            o,
            "  skipped: parked by {} at {}: {} (failed {}: {}); `concur-sync retry {}` plans it again",
            escape(&s.by),
            s.at,
            escape(&s.reason),
            s.operation,
            escape(&s.message),
            escape(&s.employee_id)
        );
    }
    for f in &e.failures {
        let _ = writeln!(
            o,
            "  failed: {}: {} (attempts {}, first {}, last {})",
            f.operation,
            escape(&f.message),
            f.attempts,
            f.first_failed_at,
            f.last_failed_at
        );
    }
    for r in &e.rejections {
        let _ = writeln!(
            o,
            "  rejected by cycle {}: {}",
            r.cycle_id,
            escape(&r.rejection.to_string())
        );
    }
    for h in &e.held {
        let _ = writeln!(
            o,
            "  held: cycle {} {}: `concur-sync approve {c}` sends it, `concur-sync reject {c}` drops it",
            h.cycle_id,
            h.operation,
            c = h.cycle_id
        );
    }
    if e.history.is_empty() {
        o.push_str("history: none\n");
        return o;
    }
    o.push_str("history, newest first:\n");
    for event in &e.history {
        match event {
            Event::Operation(h) => operation_text(&mut o, h),
            Event::Audit(a) => {
                let _ = writeln!(
                    o,
                    "  {} {} by {}: {}",
                    a.at,
                    a.action,
                    escape(a.by.as_deref().unwrap_or("-")),
                    escape(&a.detail)
                );
            }
        }
    }
    o
}

fn operation_text(o: &mut String, h: &HistoryEntry) {
    let _ = write!(
        o,
        "  {} cycle {} ({}, {}): {} {}",
        h.updated_at,
        h.cycle_id,
        h.cycle_outcome,
        escape(&h.cycle_source),
        h.operation,
        escape(&h.employee_id)
    );
    if !h.origin.is_empty() {
        let _ = write!(o, " from {}", escape(&h.origin));
    }
    o.push('\n');
    if let Some(old) = &h.old_employee_id {
        let _ = writeln!(
            o,
            "    employee_id renamed from {}",
            escape(&format!("{old:?}"))
        );
    }
    if let Some(old) = &h.old_login_id {
        let _ = writeln!(
            o,
            "    login_id renamed from {}",
            escape(&format!("{old:?}"))
        );
    }
    if h.operation == "create" {
        let fields: Vec<String> = h
            .changes
            .iter()
            .filter_map(|c| c.new.as_ref().map(|v| (c.field, v)))
            .map(|(f, v)| escape(&format!("{f}={v:?}")).into_owned())
            .collect();
        let _ = writeln!(o, "    {}", fields.join(" "));
    }
    for c in h.changes.iter().filter(|_| h.operation != "create") {
        let show = |v: Option<&str>| match v {
            Some(s) => escape(&format!("{s:?}")).into_owned(),
            None => "∅".into(),
        };
        let _ = writeln!(
            o,
            "    {}: {} → {}",
            c.field,
            show(c.old.as_deref()),
            show(c.new.as_deref())
        );
    }
    let answer = answer(h.state);
    let _ = write!(
        o,
        "    {answer}; {} request{}",
        h.attempts,
        if h.attempts == 1 { "" } else { "s" }
    );
    if let Some(p) = &h.provision_id {
        let _ = write!(o, "; provision {}", escape(p));
    }
    if let Some(b) = &h.bulk_id {
        let _ = write!(o, " bulkId {}", escape(b));
    }
    if let Some(u) = &h.concur_uuid {
        let _ = write!(o, "; UUID {}", escape(u));
    }
    if let Some(at) = &h.sent_at {
        let _ = write!(o, "; last sent {at}");
    }
    o.push('\n');
    if let Some(m) = &h.message {
        let _ = writeln!(o, "    Concur: {}", escape(m));
    }
    if h.requests.len() > 1 {
        for r in &h.requests {
            request_text(o, r, r.attempt == h.attempts);
        }
    }
}

/// What an entry's state says about the answer to its latest request.
fn answer(state: OutboxState) -> &'static str {
    match state {
        OutboxState::Done => "acknowledged by Concur",
        OutboxState::Failed => "failed",
        OutboxState::Abandoned => "not applied",
        OutboxState::Held => "held for approval",
        OutboxState::Pending => "planned, not sent yet",
        OutboxState::Inflight => "sent, no answer recorded",
        OutboxState::Submitted => "accepted, waiting for its provision",
    }
}

/// One request of an entry sent more than once: when it left, the Bulk that carried it, and
/// what its answer left (`latest`: the entry's current state).
fn request_text(o: &mut String, r: &SentRequest, latest: bool) {
    let _ = write!(o, "    request {}", r.attempt);
    if let Some(at) = &r.sent_at {
        let _ = write!(o, " sent {at}");
    }
    if let Some(p) = &r.provision_id {
        let _ = write!(o, " in provision {}", escape(p));
    }
    if let Some(b) = &r.bulk_id {
        let _ = write!(o, " bulkId {}", escape(b));
    }
    let what = match r.state {
        _ if latest => answer(r.state),
        OutboxState::Submitted => "accepted, then sent again",
        OutboxState::Failed => "refused, then sent again",
        OutboxState::Inflight => "no answer recorded, sent again",
        OutboxState::Pending => "put back, sent again",
        other => answer(other),
    };
    let _ = write!(o, ": {what}");
    if let Some(m) = &r.message {
        let _ = write!(o, ": {}", escape(m));
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, FieldChange, Op, OpKind, User};
    use crate::store::{CycleCounts, CycleOutcome, EntryResult};

    fn user(id: &str, login: &str, last: &str) -> User {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, login);
        u.set(Field::LAST_NAME, last);
        u
    }

    fn run(store: &mut Store, op: Op, result: EntryResult) {
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let ids = store
            .write_outbox(cycle, std::slice::from_ref(&op), OutboxState::Pending)
            .unwrap();
        store.mark_inflight(&ids).unwrap();
        store
            .record_results(cycle, &[(ids[0], &op, result)])
            .unwrap();
        store
            .finish_cycle(cycle, CycleOutcome::Success, &CycleCounts::default(), None)
            .unwrap();
    }

    #[test]
    fn the_story_follows_a_rename_and_is_found_by_login() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let first = user("E1", "ann@example.com", "Ames");
        run(
            &mut store,
            Op {
                kind: OpKind::Create,
                employee_id: "E1".into(),
                user: first.clone(),
                old_login_id: None,
                old_employee_id: None,
                changes: Vec::new(),
                password: None,
                origin: "hr.csv:2".into(),
            },
            EntryResult::Acknowledged,
        );
        let renamed = user("E1B", "ann@example.com", "Berg");
        run(
            &mut store,
            Op {
                kind: OpKind::Update,
                employee_id: "E1B".into(),
                user: renamed.clone(),
                old_login_id: None,
                old_employee_id: Some("E1".into()),
                changes: renamed.changes_from(&first),
                password: None,
                origin: "hr.csv:3".into(),
            },
            EntryResult::Failed("refused by Concur".into()),
        );
        let found = explain(&store, "ANN@example.com").unwrap();
        assert_eq!(found.len(), 1);
        let e = &found[0];
        assert_eq!(e.employee_id, "E1");
        assert_eq!(e.also_known_as, ["E1B"]);
        assert_eq!(e.history.len(), 2);
        let Event::Operation(newest) = &e.history[0] else {
            panic!("{e:?}")
        };
        assert_eq!(newest.state, OutboxState::Failed);
        assert!(newest.changes.contains(&FieldChange {
            field: Field::LAST_NAME,
            old: Some("Ames".into()),
            new: Some("Berg".into()),
        }));
        let text = to_text(e);
        assert!(text.contains("employee_id renamed from \"E1\""), "{text}");
        assert!(text.contains("last_name: \"Ames\" → \"Berg\""), "{text}");
        assert!(text.contains("Concur: refused by Concur"), "{text}");
        assert!(explain(&store, "nobody").unwrap().is_empty());
    }

    #[test]
    fn each_request_of_an_entry_sent_again_is_told_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let u = user("E7", "eve@example.com", "Eames");
        let op = Op {
            kind: OpKind::Create,
            employee_id: "E7".into(),
            user: u,
            old_login_id: None,
            old_employee_id: None,
            changes: Vec::new(),
            password: None,
            origin: "hr.csv:8".into(),
        };
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let ids = store
            .write_outbox(cycle, std::slice::from_ref(&op), OutboxState::Pending)
            .unwrap();
        // Accepted in one provision, then sent again and acknowledged in another.
        store.mark_inflight(&ids).unwrap();
        store
            .mark_submitted("P-1", &[(ids[0], "b1", None)])
            .unwrap();
        store.mark_inflight(&ids).unwrap();
        store
            .mark_submitted("P-2", &[(ids[0], "b2", None)])
            .unwrap();
        store
            .record_results(cycle, &[(ids[0], &op, EntryResult::Acknowledged)])
            .unwrap();
        let e = &explain(&store, "E7").unwrap()[0];
        let Event::Operation(entry) = &e.history[0] else {
            panic!("{e:?}")
        };
        let seen: Vec<(i64, Option<&str>, OutboxState)> = entry
            .requests
            .iter()
            .map(|r| (r.attempt, r.provision_id.as_deref(), r.state))
            .collect();
        assert_eq!(
            seen,
            [
                (2, Some("P-2"), OutboxState::Done),
                (1, Some("P-1"), OutboxState::Submitted)
            ]
        );
        let text = to_text(e);
        assert!(
            text.contains("request 2 sent ")
                && text.contains(" in provision P-2 bulkId b2: acknowledged by Concur"),
            "{text}"
        );
        assert!(
            text.contains(" in provision P-1 bulkId b1: accepted, then sent again"),
            "{text}"
        );
    }
}
