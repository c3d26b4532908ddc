use std::cell::RefCell;
use std::collections::VecDeque;

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
