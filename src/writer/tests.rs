use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use super::*;
use crate::concur::Credential;

/// A target that answers each password request from a script and remembers what it was sent.
struct Scripted {
    max_batch: usize,
    answers: RefCell<VecDeque<Result<Vec<RecordOutcome>, ConcurError>>>,
    sent: RefCell<Vec<Vec<String>>>,
}

impl Scripted {
    fn new(max_batch: usize, answers: Vec<Result<Vec<RecordOutcome>, ConcurError>>) -> Scripted {
        Scripted {
            max_batch,
            answers: RefCell::new(answers.into()),
            sent: RefCell::new(Vec::new()),
        }
    }
}

impl UserTarget for Scripted {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn write_users(&self, _: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
        unreachable!("only passwords are sent here")
    }

    async fn set_passwords(
        &self,
        users: &[(&str, &Secret)],
    ) -> Result<Vec<PasswordOutcome>, ConcurError> {
        self.sent
            .borrow_mut()
            .push(users.iter().map(|(l, _)| (*l).to_owned()).collect());
        let answer = self
            .answers
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Ok(vec![RecordOutcome::Acknowledged; users.len()]));
        answer.map(|outcomes| {
            users
                .iter()
                .zip(outcomes)
                .map(|((login_id, _), outcome)| PasswordOutcome {
                    login_id: (*login_id).to_owned(),
                    outcome,
                })
                .collect()
        })
    }
}

/// What the ledger heard, one line per call.
#[derive(Default)]
struct Heard(Vec<String>);

impl PasswordLedger for Heard {
    fn sending(&mut self, at: Range<usize>) -> Result<(), StoreError> {
        self.0.push(format!("sending {at:?}"));
        Ok(())
    }
    fn settled(
        &mut self,
        at: Range<usize>,
        outcomes: Vec<PasswordOutcome>,
    ) -> Result<(), StoreError> {
        let o: Vec<String> = outcomes
            .iter()
            .map(|o| match &o.outcome {
                RecordOutcome::Acknowledged => format!("{} ok", o.login_id),
                RecordOutcome::Failed(m) => format!("{} {m}", o.login_id),
            })
            .collect();
        self.0.push(format!("settled {at:?}: {}", o.join(", ")));
        Ok(())
    }
    fn unsent(&mut self, at: Range<usize>, message: &str) -> Result<(), StoreError> {
        self.0.push(format!("unsent {at:?}: {message}"));
        Ok(())
    }
}

fn transport() -> ConcurError {
    ConcurError::Transport {
        path: "/pw".into(),
        message: "connection reset".into(),
        timeout: false,
        unsent: false,
    }
}

fn refused() -> ConcurError {
    ConcurError::AuthRejected {
        credential: Credential::RefreshToken,
        code: 108,
        message: "bad refresh token".into(),
    }
}

const LOGINS: [&str; 5] = ["a", "b", "c", "d", "e"];

async fn send(
    target: &Scripted,
    batch_size: usize,
    cancel: Option<&CancellationToken>,
    when_unsent: WhenUnsent,
) -> (Result<bool, WriteError>, Vec<String>) {
    let pw = Secret::new("x");
    let items: Vec<(&str, &Secret)> = LOGINS.iter().map(|l| (*l, &pw)).collect();
    let mut heard = Heard::default();
    let r = send_passwords(target, &items, batch_size, cancel, when_unsent, &mut heard).await;
    (r, heard.0)
}

#[tokio::test]
async fn passwords_go_in_batches_of_the_smaller_limit_and_every_outcome_is_told() {
    let target = Scripted::new(
        2,
        vec![Ok(vec![
            RecordOutcome::Acknowledged,
            RecordOutcome::Failed("policy".into()),
        ])],
    );
    let (r, heard) = send(&target, 500, None, WhenUnsent::Stop).await;
    assert!(matches!(r, Ok(true)));
    assert_eq!(
        heard,
        [
            "sending 0..2",
            "settled 0..2: a ok, b policy",
            "sending 2..4",
            "settled 2..4: c ok, d ok",
            "sending 4..5",
            "settled 4..5: e ok",
        ]
    );
    let target = Scripted::new(500, Vec::new());
    let (r, _) = send(&target, 3, None, WhenUnsent::Stop).await;
    assert!(matches!(r, Ok(true)));
    assert_eq!(
        target.sent.into_inner(),
        [vec!["a", "b", "c"], vec!["d", "e"]]
    );
}

#[tokio::test]
async fn an_unanswered_batch_fails_its_passwords_and_stops_or_goes_on() {
    let target = Scripted::new(2, vec![Err(transport())]);
    let (r, heard) = send(&target, 2, None, WhenUnsent::Stop).await;
    assert!(matches!(
        r,
        Err(WriteError::Concur(ConcurError::Transport { .. }))
    ));
    assert_eq!(
        heard,
        [
            "sending 0..2",
            "unsent 0..2: not applied: transport error on /pw: connection reset"
        ]
    );

    let target = Scripted::new(
        2,
        vec![Ok(vec![RecordOutcome::Acknowledged; 2]), Err(transport())],
    );
    let (r, heard) = send(&target, 2, None, WhenUnsent::NextBatch).await;
    assert!(matches!(r, Ok(true)));
    assert_eq!(heard.len(), 6, "{heard:?}");
    assert_eq!(
        heard[3],
        "unsent 2..4: not applied: transport error on /pw: connection reset"
    );
    assert_eq!(heard[5], "settled 4..5: e ok");
}

#[tokio::test]
async fn refused_credentials_stop_even_when_going_on_after_unanswered_batches() {
    let target = Scripted::new(2, vec![Err(refused())]);
    let (r, heard) = send(&target, 2, None, WhenUnsent::NextBatch).await;
    assert!(matches!(
        r,
        Err(WriteError::Concur(ConcurError::AuthRejected { .. }))
    ));
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!(target.sent.into_inner().len(), 1);
}

#[tokio::test]
async fn shutdown_stops_between_batches_and_leaves_a_cut_batch_unsettled() {
    let cancel = CancellationToken::new();
    let target = Scripted::new(
        2,
        vec![
            Ok(vec![RecordOutcome::Acknowledged; 2]),
            Err(ConcurError::Cancelled { path: "/pw".into() }),
        ],
    );
    let (r, heard) = send(&target, 2, Some(&cancel), WhenUnsent::Stop).await;
    assert!(matches!(r, Ok(false)));
    assert_eq!(
        heard,
        ["sending 0..2", "settled 0..2: a ok, b ok", "sending 2..4"]
    );

    cancel.cancel();
    let target = Scripted::new(2, Vec::new());
    let (r, heard) = send(&target, 2, Some(&cancel), WhenUnsent::Stop).await;
    assert!(matches!(r, Ok(false)));
    assert!(heard.is_empty());
    assert!(target.sent.into_inner().is_empty());
}

/// An asynchronous target: every request is accepted as provision `p<n>`; the first poll of a
/// provision finds it pending, the second settles every operation with its UUID.
#[derive(Default)]
struct Provisions {
    accepted: RefCell<Vec<Vec<String>>>,
    polls: RefCell<HashMap<String, usize>>,
}

impl UserTarget for Provisions {
    fn max_batch(&self) -> usize {
        2
    }
    async fn write_users(&self, _: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
        unreachable!("an asynchronous target is submitted to")
    }
    fn provisioning(&self) -> Option<crate::concur::Provisioning> {
        Some(crate::concur::Provisioning {
            first_poll: std::time::Duration::from_millis(1),
            max_interval: std::time::Duration::from_millis(4),
            timeout: std::time::Duration::from_secs(60),
            max_in_flight: 1,
        })
    }
    async fn submit(
        &self,
        ops: &[crate::concur::Planned<'_>],
    ) -> Result<crate::concur::Submitted, ConcurError> {
        let mut accepted = self.accepted.borrow_mut();
        accepted.push(ops.iter().map(|p| p.op.employee_id.clone()).collect());
        Ok(crate::concur::Submitted {
            provision_id: Some(format!("p{}", accepted.len())),
            ops: ops
                .iter()
                .map(|p| crate::concur::Sent::Pending(format!("b-{}", p.op.employee_id)))
                .collect(),
        })
    }
    async fn poll(&self, provision_id: &str) -> Result<crate::concur::Poll, ConcurError> {
        let mut polls = self.polls.borrow_mut();
        let n = polls.entry(provision_id.to_owned()).or_default();
        *n += 1;
        if *n == 1 {
            return Ok(crate::concur::Poll {
                settled: Vec::new(),
                pending: true,
            });
        }
        let index: usize = provision_id[1..].parse().unwrap_or(1);
        let ids = self.accepted.borrow()[index - 1].clone();
        Ok(crate::concur::Poll {
            settled: ids
                .iter()
                .map(|e| {
                    (
                        format!("b-{e}"),
                        crate::concur::UserOutcome::Acknowledged {
                            uuid: Some(format!("uuid-{e}")),
                        },
                    )
                })
                .collect(),
            pending: false,
        })
    }
}

fn create(id: &str, manager: Option<&str>) -> Op {
    let mut u = crate::model::User::new();
    u.set(crate::model::Field::EMPLOYEE_ID, id);
    u.set(crate::model::Field::LOGIN_ID, format!("{id}@example.com"));
    u.set(crate::model::Field::ACTIVE, "Y");
    if let Some(m) = manager {
        u.set(crate::model::Field::MANAGER_EMPLOYEE_ID, m);
    }
    Op {
        kind: crate::model::OpKind::Create,
        employee_id: id.into(),
        user: u,
        old_login_id: None,
        old_employee_id: None,
        changes: Vec::new(),
        password: None,
        origin: String::new(),
    }
}

#[tokio::test]
async fn provisions_are_recorded_polled_and_settled_managers_first() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = Store::open(&dir.path().join("s.db"), None).expect("store");
    let cycle = store.begin_cycle("test").expect("cycle");
    let ops = vec![
        create("M", None),
        create("R1", Some("M")),
        create("X", None),
        create("R2", Some("M")),
    ];
    // Only planned: each entry is written as its request leaves.
    let entries: Vec<(Entry, &Op)> = (0..).map(|seq| Entry::Planned { seq }).zip(&ops).collect();
    let target = Provisions::default();
    let mut counts = CycleCounts::default();
    let done = send_user_ops(
        &target,
        &mut store,
        cycle,
        &entries,
        10,
        None,
        &mut counts,
        |_, _| {},
    )
    .await
    .expect("sent");
    assert!(done);
    // The manager's wave (M, X) settles before its reports are sent; batches of two.
    assert_eq!(
        *target.accepted.borrow(),
        vec![vec!["M", "X"], vec!["R1", "R2"]]
    );
    assert_eq!(counts.create, 4);
    assert_eq!(store.provisions_in_flight().expect("status").in_flight, 0);
    let uuids = store.concur_uuids(["M", "R2"]).expect("uuids");
    assert_eq!(uuids["M"], "uuid-M");
    assert_eq!(uuids["R2"], "uuid-R2");
    let done = store
        .open_entries(cycle, &[crate::store::OutboxState::Done])
        .expect("entries");
    let mut written: Vec<(i64, &str)> = done
        .iter()
        .map(|e| (e.seq, e.op.employee_id.as_str()))
        .collect();
    written.sort_unstable();
    assert_eq!(written, vec![(0, "M"), (1, "R1"), (2, "X"), (3, "R2")]);
}

#[tokio::test]
async fn submitted_entries_survive_recovery_and_are_resumed_without_sending() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = Store::open(&dir.path().join("s.db"), None).expect("store");
    let cycle = store.begin_cycle("test").expect("cycle");
    let ops = vec![create("A", None), create("B", None)];
    let ids = store
        .write_outbox(cycle, &ops, crate::store::OutboxState::Pending)
        .expect("outbox");
    store.mark_inflight(&ids).expect("inflight");
    store
        .mark_submitted("p1", &[(ids[0], "b-A", None), (ids[1], "b-B", None)])
        .expect("submitted");
    // The process dies here; the next start recovers.
    assert_eq!(store.recover().expect("recover"), vec![cycle]);
    let inflight = store.provisions_in_flight().expect("status");
    assert_eq!((inflight.in_flight, inflight.operations), (1, 2));
    let target = Provisions::default();
    target
        .accepted
        .borrow_mut()
        .push(vec!["A".into(), "B".into()]);
    let mut counts = CycleCounts::default();
    let resumed = resume_provisions(&target, &mut store, &mut counts)
        .await
        .expect("resumed");
    assert_eq!(resumed, 1);
    assert_eq!(target.accepted.borrow().len(), 1, "nothing sent again");
    assert_eq!(counts.create, 2);
    assert_eq!(store.provisions_in_flight().expect("status").in_flight, 0);
    assert_eq!(store.snapshot_index().expect("snapshot").len(), 2);
}
