//! Cycle history (`cycles`: start, end, outcome, source digest, counts) and the rejections of
//! the latest cycle that read its source, with its warnings.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::journal::{RunInfo, USERS};
use super::{CycleOutcome, Store, StoreError};
use crate::model::{OpKind, Rejection};

/// One cycle's record.
pub type CycleInfo = RunInfo<CycleCounts>;

/// What a cycle did; stored as JSON in `cycles.counts`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct CycleCounts {
    pub create: u64,
    pub update: u64,
    pub deactivate: u64,
    pub reactivate: u64,
    pub password: u64,
    pub failed: u64,
    pub rejected: u64,
    pub unchanged: u64,
    pub planned: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled_seconds: f64,
}

impl CycleCounts {
    /// Counts one acknowledged operation.
    pub fn count(&mut self, kind: OpKind) {
        match kind {
            OpKind::Create => self.create += 1,
            OpKind::Update => self.update += 1,
            OpKind::Deactivate => self.deactivate += 1,
            OpKind::Reactivate => self.reactivate += 1,
            OpKind::Password => self.password += 1,
        }
    }

    /// One line for people: what a cycle did.
    pub fn summary(&self) -> String {
        format!(
            "{} created, {} updated, {} reactivated, {} deactivated, {} passwords, {} failed, {} rejected, {} unchanged",
            self.create,
            self.update,
            self.reactivate,
            self.deactivate,
            self.password,
            self.failed,
            self.rejected,
            self.unchanged
        )
    }
}

impl Store {
    /// One cycle's record.
    pub fn cycle(&self, id: i64) -> Result<Option<CycleInfo>, StoreError> {
        self.cycle_where(&format!("id = {id}"))
    }

    /// The source digest a cycle read, if it got that far.
    pub fn cycle_digest(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT source_digest FROM cycles WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// A cycle's outcome (`running` until it finishes), if the cycle exists.
    pub fn cycle_outcome(&self, id: i64) -> Result<Option<CycleOutcome>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT outcome FROM cycles WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The newest cycle still running, if any.
    pub fn running_cycle(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM cycles WHERE outcome = ?1 ORDER BY id DESC LIMIT 1",
                [CycleOutcome::Running],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The digest of the newest cycle that read its source, for "already processed" checks.
    pub fn last_source_digest(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT source_digest FROM cycles WHERE source_digest IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn begin_cycle(&self, source: &str) -> Result<i64, StoreError> {
        USERS.begin(&self.conn, source)
    }

    pub fn set_cycle_source_digest(&self, cycle: i64, digest: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cycles SET source_digest = ?2 WHERE id = ?1",
            params![cycle, digest],
        )?;
        Ok(())
    }

    /// Records how many operations `cycle` sets out to send: until they are written (as
    /// their batch leaves), `status` counts them as pending.
    pub fn set_cycle_to_send(&self, cycle: i64, operations: usize) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cycles SET to_send = ?2 WHERE id = ?1",
            params![cycle, operations as i64],
        )?;
        Ok(())
    }

    pub fn finish_cycle(
        &self,
        cycle: i64,
        outcome: CycleOutcome,
        counts: &CycleCounts,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        USERS.finish(&self.conn, cycle, outcome, counts, message)
    }

    /// Replaces the stored rejections and warnings with those of `cycle`, in one transaction.
    pub fn replace_findings(
        &mut self,
        cycle: i64,
        rejections: &[Rejection],
        warnings: &[Rejection],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        USERS.replace_findings(&tx, USERS.rejections(), cycle, rejections)?;
        USERS.replace_findings(&tx, "warnings", cycle, warnings)?;
        tx.commit()?;
        Ok(())
    }

    /// The rejections (`table = "rejections"`) or warnings (`"warnings"`) of the latest cycle
    /// that read its source.
    pub(super) fn findings(&self, table: &str) -> Result<Vec<Rejection>, StoreError> {
        USERS.findings(&self.conn, table)
    }

    pub(super) fn cycle_where(&self, cond: &str) -> Result<Option<CycleInfo>, StoreError> {
        USERS.last_run(&self.conn, cond)
    }
}
