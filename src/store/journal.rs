//! What every job's history and outbox share: the users' cycles (`cycles`, `outbox`,
//! `rejections`) and the attendee job's runs (`attendee_runs`, `attendee_outbox`,
//! `attendee_rejections`) follow one lifecycle, written once here.
//!
//! A run begins `running` and ends with a [`CycleOutcome`]. Its plan is written to the outbox as
//! `pending`; an entry is `inflight` (attempts counted) before its request leaves and is closed
//! `done` or `failed` in the transaction that records Concur's answer, which is also the one
//! that advances the snapshot. Recovery never replays: runs a crash left `running` become
//! `interrupted`, and every entry still open (theirs, or of a run that ended early) becomes
//! `abandoned`; the next run re-reads its source and plans again against the snapshot, which
//! still lacks every change Concur did not acknowledge. The rejections of the latest run that
//! read its source replace those of the one before.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CycleOutcome, OutboxState, StoreError, now};
use crate::model::Rejection;

/// One run's record as `status` shows it: a user cycle (`CycleInfo`) or an attendee run
/// (`AttendeeRunInfo`), with the job's own counts.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo<C> {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: CycleOutcome,
    pub source: String,
    pub message: Option<String>,
    pub counts: C,
}

/// The tables and words of one job.
pub(super) struct Journal {
    /// One row per run: start, end, outcome, source, counts.
    runs: &'static str,
    outbox: &'static str,
    /// The outbox's and the rejections' column naming the run.
    run_column: &'static str,
    rejections: &'static str,
    /// The rejections' column naming the record (`Rejection::employee_id`).
    key_column: &'static str,
    /// What a run is called in the messages it leaves behind.
    noun: &'static str,
}

/// The user cycle.
pub(super) const USERS: Journal = Journal {
    runs: "cycles",
    outbox: "outbox",
    run_column: "cycle_id",
    rejections: "rejections",
    key_column: "employee_id",
    noun: "cycle",
};

/// The Attendees v4 job.
pub(super) const ATTENDEES: Journal = Journal {
    runs: "attendee_runs",
    outbox: "attendee_outbox",
    run_column: "run_id",
    rejections: "attendee_rejections",
    key_column: "external_id",
    noun: "run",
};

impl Journal {
    pub(super) fn begin(&self, conn: &Connection, source: &str) -> Result<i64, StoreError> {
        conn.execute(
            &format!(
                "INSERT INTO {} (started_at, source) VALUES (?1, ?2)",
                self.runs
            ),
            params![now(), source],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub(super) fn finish(
        &self,
        conn: &Connection,
        run: i64,
        outcome: CycleOutcome,
        counts: &impl Serialize,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let counts = serde_json::to_string(counts).unwrap_or_else(|_| "{}".into());
        conn.execute(
            &format!(
                "UPDATE {} SET outcome = ?2, finished_at = ?3, counts = ?4, message = ?5 WHERE id = ?1",
                self.runs
            ),
            params![run, outcome, now(), counts, message],
        )?;
        Ok(())
    }

    /// The newest run matching `cond` (an SQL condition on the runs table), if any.
    pub(super) fn last_run<C: DeserializeOwned + Default>(
        &self,
        conn: &Connection,
        cond: &str,
    ) -> Result<Option<RunInfo<C>>, StoreError> {
        let sql = format!(
            "SELECT id, started_at, finished_at, outcome, source, message, counts FROM {}
             WHERE {cond} ORDER BY id DESC LIMIT 1",
            self.runs
        );
        Ok(conn
            .query_row(&sql, [], |r| {
                let counts: String = r.get(6)?;
                Ok(RunInfo {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    outcome: r.get(3)?,
                    source: r.get(4)?,
                    message: r.get(5)?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    /// Closes what a crash left open (see the module text). Returns the interrupted runs.
    pub(super) fn recover(&self, conn: &mut Connection) -> Result<Vec<i64>, StoreError> {
        let Journal {
            runs,
            outbox,
            run_column,
            noun,
            ..
        } = self;
        let tx = conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(&format!("SELECT id FROM {runs} WHERE outcome = ?1"))?;
            stmt.query_map([CycleOutcome::Running], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let at = now();
        for id in &ids {
            tx.execute(
                &format!(
                    "UPDATE {outbox} SET state = ?3, updated_at = ?2,
                       last_error = COALESCE(last_error, '{noun} interrupted before Concur answered; re-planned')
                     WHERE {run_column} = ?1 AND state IN (?4, ?5)"
                ),
                params![
                    id,
                    at,
                    OutboxState::Abandoned,
                    OutboxState::Pending,
                    OutboxState::Inflight
                ],
            )?;
            tx.execute(
                &format!(
                    "UPDATE {runs} SET outcome = ?3, finished_at = ?2,
                       message = COALESCE(message, 'the process stopped before the {noun} finished')
                     WHERE id = ?1"
                ),
                params![id, at, CycleOutcome::Interrupted],
            )?;
        }
        // A run that ended early (failed: Concur unreachable after its retries) leaves its
        // unsent entries open; they are re-planned just the same.
        tx.execute(
            &format!(
                "UPDATE {outbox} SET state = ?2, updated_at = ?1,
                   last_error = COALESCE(last_error, '{noun} ended before this was sent; re-planned')
                 WHERE state IN (?3, ?4)"
            ),
            params![
                at,
                OutboxState::Abandoned,
                OutboxState::Pending,
                OutboxState::Inflight
            ],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Marks entries as sent (their attempt counter goes up) before the request leaves.
    pub(super) fn mark_inflight(
        &self,
        conn: &mut Connection,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "UPDATE {} SET state = ?3, attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
                self.outbox
            ))?;
            let at = now();
            for id in ids {
                stmt.execute(params![id, at, OutboxState::Inflight])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Closes an entry with Concur's answer: `done`, or `failed` with the error. Called inside
    /// the transaction that records the answer.
    pub(super) fn close(
        &self,
        tx: &Connection,
        id: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let state = match error {
            None => OutboxState::Done,
            Some(_) => OutboxState::Failed,
        };
        tx.execute(
            &format!(
                "UPDATE {} SET state = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
                self.outbox
            ),
            params![id, state, error, now()],
        )?;
        Ok(())
    }

    /// Closes a run's unsent entries as `abandoned` with a reason.
    pub(super) fn abandon_open(
        &self,
        conn: &Connection,
        run: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        conn.execute(
            &format!(
                "UPDATE {} SET state = ?4, updated_at = ?2, last_error = ?3
                 WHERE {} = ?1 AND state IN (?5, ?6)",
                self.outbox, self.run_column
            ),
            params![
                run,
                now(),
                reason,
                OutboxState::Abandoned,
                OutboxState::Pending,
                OutboxState::Inflight
            ],
        )?;
        Ok(())
    }

    /// Replaces the stored rows of `table` (the job's rejections, or the users' warnings) with
    /// those of `run`. Called inside the transaction that replaces them all.
    pub(super) fn replace_findings(
        &self,
        tx: &Connection,
        table: &str,
        run: i64,
        rows: &[Rejection],
    ) -> Result<(), StoreError> {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO {table} ({}, source, {}, field, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            self.run_column, self.key_column
        ))?;
        for r in rows {
            stmt.execute(params![run, r.source, r.employee_id, r.field, r.message])?;
        }
        Ok(())
    }

    /// The rejections (or warnings) of the latest run that read its source, in their order.
    pub(super) fn findings(
        &self,
        conn: &Connection,
        table: &str,
    ) -> Result<Vec<Rejection>, StoreError> {
        let mut stmt = conn.prepare(&format!(
            "SELECT source, {}, field, message FROM {table} ORDER BY id",
            self.key_column
        ))?;
        Ok(stmt
            .query_map([], |r| {
                Ok(Rejection {
                    source: r.get(0)?,
                    employee_id: r.get(1)?,
                    field: r.get(2)?,
                    message: r.get(3)?,
                    identity: Default::default(),
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// The table of the job's rejections.
    pub(super) fn rejections(&self) -> &'static str {
        self.rejections
    }
}

#[cfg(test)]
mod tests {
    use crate::model::OpKind;
    use crate::store::attendees::{AttendeeCounts, AttendeeEntry};
    use crate::store::{CycleOutcome, Store};

    fn open_states(store: &Store, run: i64) -> Vec<(String, Option<String>)> {
        let mut stmt = store
            .conn
            .prepare("SELECT state, last_error FROM attendee_outbox WHERE run_id = ?1 ORDER BY seq")
            .unwrap();
        stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn attendee_runs_recover_by_the_users_rule() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state.db"), None).unwrap();
        let key = ("E1".to_owned(), "BUSGUEST".to_owned());
        let entry = |op| AttendeeEntry {
            key: &key,
            op,
            payload: "{}".into(),
        };
        // A run that failed part-way, and one a crash left running.
        let failed = store.begin_attendee_run("a.csv").unwrap();
        store
            .write_attendee_outbox(failed, &[entry(OpKind::Create)])
            .unwrap();
        store
            .finish_attendee_run(
                failed,
                CycleOutcome::Failed,
                &AttendeeCounts::default(),
                None,
            )
            .unwrap();
        let crashed = store.begin_attendee_run("a.csv").unwrap();
        let ids = store
            .write_attendee_outbox(crashed, &[entry(OpKind::Update), entry(OpKind::Create)])
            .unwrap();
        store.mark_attendee_inflight(ids[0]).unwrap();
        assert_eq!(store.attendee_status().unwrap().unwrap().pending, 3);

        assert_eq!(store.recover_attendees().unwrap(), [crashed]);
        let st = store.attendee_status().unwrap().unwrap();
        assert_eq!(st.pending, 0);
        assert_eq!(
            st.last_run.map(|r| (r.id, r.outcome)),
            Some((crashed, CycleOutcome::Interrupted))
        );
        let interrupted = Some("run interrupted before Concur answered; re-planned".to_owned());
        assert_eq!(
            open_states(&store, crashed),
            [
                ("abandoned".to_owned(), interrupted.clone()),
                ("abandoned".to_owned(), interrupted)
            ]
        );
        assert_eq!(
            open_states(&store, failed),
            [(
                "abandoned".to_owned(),
                Some("run ended before this was sent; re-planned".to_owned())
            )]
        );
        // The users' outbox is another table: untouched.
        assert_eq!(store.recover().unwrap(), Vec::<i64>::new());
    }
}
