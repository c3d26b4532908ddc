//! The `status` read: one `Status` gathered from every table (users, failures, rejections,
//! cycles, outbox, token, readback, attendees, drop-folder files), and the `Overview` the
//! admin endpoint's status page adds to it (cycles over time, held plans, provisions), and the
//! held plans a newer cycle superseded.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::kv::{
    KV_ACCESS_EXPIRES, KV_NOT_BEFORE, KV_REFRESH_EXPIRES, KV_REFRESH_TOKEN, unix_seconds,
};
use super::{CycleInfo, CycleOutcome, Store, StoreError, attendees, files, readback};
use crate::model::Rejection;

/// `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub users: UserCounts,
    pub failed: Vec<FailedEntry>,
    /// Failed records an operator parked (`skip`): not counted as failed, not planned while
    /// the source asks for the same record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<super::Skip>,
    pub rejected: Vec<Rejection>,
    pub last_cycle: Option<CycleInfo>,
    pub last_success: Option<CycleInfo>,
    pub outbox: OutboxCounts,
    /// Provisions an asynchronous API (UPS v4) accepted whose outcome is still being polled.
    pub provisions: super::ProvisionsInFlight,
    pub retries: u64,
    pub throttled_seconds: f64,
    pub token: TokenInfo,
    /// Concur users that match no source user (sorted, at most 1000; `users.unmanaged` counts all).
    pub unmanaged_users: Vec<readback::UnmanagedUser>,
    /// Drifted users whose desired state Concur acknowledged again, over every reconcile.
    pub drift_repaired: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<readback::ReconcileInfo>,
    /// The Attendees v4 job, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendees: Option<attendees::AttendeeStatus>,
    /// Values the latest cycle that read its source changed to let a record through.
    pub warnings: Vec<Rejection>,
    /// Drop-folder problems of the last 24 hours, newest first.
    pub alerts: Vec<files::Alert>,
    /// Held plans of the latest cycles ([`RECENT_CYCLES`]) that a newer cycle superseded:
    /// there is nothing to approve in them any more. Newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
    /// The last file taken from a drop folder and processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_file: Option<files::SourceFile>,
}

/// A held plan a newer cycle superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Superseded {
    /// The held cycle.
    pub cycle_id: i64,
    /// The cycle whose plan superseded it.
    pub superseded_by: i64,
}

/// Cycles `status` looks back over for superseded held plans.
pub const RECENT_CYCLES: usize = 10;

/// How `Store::supersede_held` closes the held entries of an earlier cycle (followed by the
/// newer cycle's id).
const SUPERSEDED_BY: &str = "superseded by the plan of cycle ";

#[derive(Debug, Clone, Default, Serialize)]
pub struct UserCounts {
    pub managed: u64,
    pub active: u64,
    pub inactive: u64,
    pub created: u64,
    pub adopted: u64,
    pub unmanaged: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    pub employee_id: String,
    pub operation: String,
    pub message: String,
    pub attempts: i64,
    pub first_failed_at: String,
    pub last_failed_at: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub held: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenInfo {
    pub refresh_token_stored: bool,
    pub access_expires_at: Option<i64>,
    /// When the stored refresh token expires (unix seconds), as Concur's token answer said;
    /// `null` when no refresh token is stored or Concur did not say.
    pub refresh_expires_at: Option<i64>,
}

impl Store {
    /// Users by ownership and state (read from their index alone).
    pub fn user_counts(&self) -> Result<UserCounts, StoreError> {
        let mut users = UserCounts::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT ownership, active, count(*) FROM users GROUP BY ownership, active",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let own: String = r.get(0)?;
            let active: bool = r.get(1)?;
            let n = r.get::<_, i64>(2)? as u64;
            match own.as_str() {
                "unmanaged" => {
                    users.unmanaged += n;
                    continue;
                }
                "adopted" => users.adopted += n,
                _ => users.created += n,
            }
            users.managed += n;
            if active {
                users.active += n;
            } else {
                users.inactive += n;
            }
        }
        Ok(users)
    }

    pub fn status(&self) -> Result<Status, StoreError> {
        let users = self.user_counts()?;
        let failed = self.failed_entries()?;
        let rejected = self.findings("rejections")?;
        let last_cycle = self.cycle_where("1 = 1")?;
        let last_success = self.cycle_where("outcome IN ('success', 'partial', 'degraded')")?;
        let (pending, held): (i64, i64) = self.conn.query_row(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'inflight')),
                    count(*) FILTER (WHERE state = 'held') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // A running cycle writes its entries as their batch leaves: what it has not written
        // yet is pending too.
        let unwritten: i64 = self.conn.query_row(
            "SELECT COALESCE(sum(max(0, c.to_send - (
                 SELECT count(*) FROM outbox o
                 WHERE o.state IN ('pending', 'inflight', 'submitted', 'done', 'failed', 'abandoned')
                   AND o.cycle_id = c.id))), 0)
             FROM cycles c WHERE c.outcome = 'running' AND c.to_send IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        let pending = pending + unwritten;
        let (retries, throttled_seconds) = last_cycle
            .as_ref()
            .map(|c| (c.counts.retries, c.counts.throttled_seconds))
            .unwrap_or_default();
        let refresh_token_stored = self.kv_get(KV_REFRESH_TOKEN)?.is_some();
        let token = TokenInfo {
            refresh_token_stored,
            access_expires_at: unix_seconds(&self.conn, KV_ACCESS_EXPIRES)?,
            refresh_expires_at: if refresh_token_stored {
                unix_seconds(&self.conn, KV_REFRESH_EXPIRES)?
            } else {
                None
            },
        };
        Ok(Status {
            users,
            failed,
            skipped: self.skips()?,
            rejected,
            last_cycle,
            last_success,
            outbox: OutboxCounts {
                pending: pending as u64,
                held: held as u64,
            },
            provisions: self.provisions_in_flight()?,
            retries,
            throttled_seconds,
            token,
            unmanaged_users: self.unmanaged_users(1000)?,
            drift_repaired: self.drift_repaired_total()?,
            last_reconcile: self.last_reconcile()?,
            attendees: self.attendee_status()?,
            warnings: self.findings("warnings")?,
            alerts: self.recent_alerts()?,
            last_file: self.last_processed_file()?,
            superseded: self.superseded_among(RECENT_CYCLES)?,
        })
    }

    /// The held plans among the latest `cycles` cycles that a newer cycle superseded, newest
    /// first.
    pub fn superseded_among(&self, cycles: usize) -> Result<Vec<Superseded>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, (SELECT o.last_error FROM outbox o
                           WHERE o.state = 'abandoned' AND o.cycle_id = c.id
                             AND o.last_error LIKE ?2 || '%' LIMIT 1)
             FROM (SELECT id, outcome FROM cycles ORDER BY id DESC LIMIT ?1) c
             WHERE c.outcome = 'held' ORDER BY c.id DESC",
        )?;
        let rows = stmt.query_map(rusqlite::params![cycles as i64, SUPERSEDED_BY], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cycle_id, note) = row?;
            if let Some(by) = note
                .as_deref()
                .and_then(|n| n.strip_prefix(SUPERSEDED_BY))
                .and_then(|n| n.trim().parse().ok())
            {
                out.push(Superseded {
                    cycle_id,
                    superseded_by: by,
                });
            }
        }
        Ok(out)
    }
}

/// What the status page shows beside [`Status`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// The latest cycles, newest first.
    pub cycles: Vec<CycleInfo>,
    /// Plans waiting for `approve` or `reject`, newest cycle first.
    pub held: Vec<HeldPlan>,
    /// Each provision (UPS v4) whose outcome is still being polled, oldest first.
    pub provisions: Vec<ProvisionRow>,
    /// When the refresh token was last saved (RFC 3339 UTC).
    pub refresh_token_saved_at: Option<String>,
    /// The end of the last throttle Concur served: no request before it (RFC 3339 UTC).
    pub not_before: Option<String>,
    /// Held cycles among `cycles` whose plan a newer cycle superseded → that cycle.
    pub superseded: BTreeMap<i64, i64>,
}

/// One cycle's held entries.
#[derive(Debug, Clone, Serialize)]
pub struct HeldPlan {
    pub cycle_id: i64,
    /// Operation (`deactivate`, `update`, …) → held entries.
    pub operations: BTreeMap<String, u64>,
    pub total: u64,
    /// The first held entries in send order (at most [`HELD_SAMPLE`]).
    pub entries: Vec<HeldEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldEntry {
    pub employee_id: String,
    pub operation: String,
}

/// Held entries listed per plan on the status page.
pub const HELD_SAMPLE: usize = 50;

/// One provision in flight.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionRow {
    pub provision_id: String,
    pub cycle_id: i64,
    pub operations: u64,
    /// When Concur accepted it (RFC 3339 UTC).
    pub submitted_at: Option<String>,
}

impl Store {
    /// The latest `cycles` cycles and what else the status page shows beside [`Status`].
    pub fn overview(&self, cycles: usize) -> Result<Overview, StoreError> {
        let cycles = {
            let mut stmt = self.conn.prepare(
                "SELECT id, started_at, finished_at, outcome, source, message, counts
                 FROM cycles ORDER BY id DESC LIMIT ?1",
            )?;
            stmt.query_map([cycles as i64], |r| {
                let counts: String = r.get(6)?;
                Ok(CycleInfo {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    outcome: r.get::<_, CycleOutcome>(3)?,
                    source: r.get(4)?,
                    message: r.get(5)?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut held: Vec<HeldPlan> = Vec::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT cycle_id, op, count(*) FROM outbox WHERE state = 'held'
                 GROUP BY cycle_id, op ORDER BY cycle_id DESC, op",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let cycle_id: i64 = r.get(0)?;
                let n = r.get::<_, i64>(2)? as u64;
                if held.last().is_none_or(|p| p.cycle_id != cycle_id) {
                    held.push(HeldPlan {
                        cycle_id,
                        operations: BTreeMap::new(),
                        total: 0,
                        entries: Vec::new(),
                    });
                }
                if let Some(p) = held.last_mut() {
                    p.operations.insert(r.get(1)?, n);
                    p.total += n;
                }
            }
            let mut stmt = self.conn.prepare(
                "SELECT employee_id, op FROM outbox WHERE state = 'held' AND cycle_id = ?1
                 ORDER BY seq LIMIT ?2",
            )?;
            for p in &mut held {
                p.entries = stmt
                    .query_map(rusqlite::params![p.cycle_id, HELD_SAMPLE as i64], |r| {
                        Ok(HeldEntry {
                            employee_id: r.get(0)?,
                            operation: r.get(1)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
            }
        }
        let provisions = {
            let mut stmt = self.conn.prepare(
                "SELECT provision_id, min(cycle_id), count(*), min(submitted_at) FROM outbox
                 WHERE state = 'submitted' AND provision_id IS NOT NULL
                 GROUP BY provision_id ORDER BY min(submitted_at), provision_id",
            )?;
            stmt.query_map([], |r| {
                Ok(ProvisionRow {
                    provision_id: r.get(0)?,
                    cycle_id: r.get(1)?,
                    operations: r.get::<_, i64>(2)? as u64,
                    submitted_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let refresh_token_saved_at = self
            .conn
            .query_row(
                "SELECT updated_at FROM kv WHERE key = ?1",
                [KV_REFRESH_TOKEN],
                |r| r.get(0),
            )
            .optional()?;
        let not_before = self
            .kv_get(KV_NOT_BEFORE)?
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|s| !s.is_empty());
        let superseded = self
            .superseded_among(cycles.len())?
            .into_iter()
            .map(|s| (s.cycle_id, s.superseded_by))
            .collect();
        Ok(Overview {
            cycles,
            held,
            provisions,
            refresh_token_saved_at,
            not_before,
            superseded,
        })
    }
}
