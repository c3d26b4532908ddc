//! The snapshot of what Concur acknowledged (`users`): the index the planner diffs against,
//! loading users, baselines, and `record_results`, the one transaction that closes an outbox
//! entry and advances (or keeps) the user's snapshot row with it.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Atomic, Ownership, PASSWORD_MAC_UNKNOWN, Store, StoreError, now, to16, user_json};
use crate::model::{Op, OpKind, SnapshotEntry, SnapshotIndex, User};

/// The outcome Concur gave one outbox entry.
#[derive(Debug, Clone)]
pub enum EntryResult {
    Acknowledged,
    /// Acknowledged, and Concur named the user's UUID (UPS v4): stored with the snapshot row.
    AcknowledgedAs(String),
    Failed(String),
    /// The request carrying it got no answer that says whether Concur applied it (a timeout,
    /// a reset, a 5xx that may have come after the work): recorded as a failure with the
    /// message, and left `abandoned` with the time it was sent, so that a create is looked up
    /// before it is attempted again ([`Store::creates_unsettled`]).
    Unanswered(String),
    /// Refused by Concur, and sent again at once in another form (a create refused as a
    /// conflict whose existing user is adopted): Concur's message is kept as the answer to that
    /// request (`explain` shows it), but it is not a failure of the user.
    Refused(String),
}

/// How a baseline records a user: `?1`–`?9` are employee id, login id, active, content hash,
/// record JSON, ownership, acknowledged at, row stamp and approver. An existing user is
/// overwritten; its row stamp is kept only where no password hash is stored (a stamp binds
/// the password hash too).
pub(super) const BASELINE_INSERT: &str = "INSERT INTO users (employee_id, login_id, active, hash, fields, ownership, acked_at, row_stamp, approver)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
       active = excluded.active, hash = excluded.hash, fields = excluded.fields,
       ownership = excluded.ownership, acked_at = excluded.acked_at,
       row_stamp = CASE WHEN users.password_mac IS NULL THEN excluded.row_stamp END,
       approver = excluded.approver";

impl Store {
    /// Every managed user's hash and active flag, for planning.
    pub fn snapshot_index(&self) -> Result<SnapshotIndex, StoreError> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM users WHERE ownership != 'unmanaged'",
            [],
            |r| r.get(0),
        )?;
        let mut map = SnapshotIndex::with_capacity(count as usize);
        let mut stmt = self.conn.prepare(
            "SELECT employee_id, active, hash, password_mac FROM users WHERE ownership != 'unmanaged'",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: &str = row.get_ref(0)?.as_str()?;
            let active: bool = row.get(1)?;
            let hash = to16(row.get_ref(2)?.as_blob()?)
                .ok_or_else(|| StoreError::Corrupt(format!("user {id}: hash is not 16 bytes")))?;
            let password_mac = match row.get_ref(3)?.as_blob_or_null()? {
                Some(b) => to16(b),
                None => None,
            };
            map.insert(
                id,
                SnapshotEntry {
                    hash,
                    active,
                    password_mac,
                },
            );
        }
        Ok(map)
    }

    /// The Concur UUIDs known for the given users (users without one are left out).
    pub fn concur_uuids<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT concur_uuid FROM users WHERE employee_id = ?1 AND concur_uuid IS NOT NULL",
        )?;
        let mut out = HashMap::new();
        for id in ids {
            if let Some(uuid) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
                out.insert(id.to_owned(), uuid);
            }
        }
        Ok(out)
    }

    /// Records the Concur UUID of users in the snapshot (a v4 create's answer, a look-up,
    /// adoption), in one transaction. A UUID another user held is moved to this one: Concur's
    /// answer is the truth. Ids not in the snapshot are skipped.
    pub fn set_concur_uuids(&mut self, pairs: &[(&str, &str)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut clear = tx.prepare_cached(
                "UPDATE users SET concur_uuid = NULL WHERE concur_uuid = ?1 AND employee_id != ?2",
            )?;
            let mut set =
                tx.prepare_cached("UPDATE users SET concur_uuid = ?1 WHERE employee_id = ?2")?;
            for (id, uuid) in pairs {
                clear.execute(params![uuid, id])?;
                set.execute(params![uuid, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last acknowledged record of the given users (absent ids are skipped).
    pub fn load_users<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, User>, StoreError> {
        const CHUNK: usize = 256;
        let ids: Vec<&str> = ids.into_iter().collect();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT employee_id, fields FROM users WHERE employee_id IN ({marks})"
            ))?;
            let mut rows = stmt.query(rusqlite::params_from_iter(chunk.iter()))?;
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                let fields = r.get_ref(1)?.as_str()?;
                let user: User = serde_json::from_str(fields)
                    .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?;
                out.insert(id, user);
            }
        }
        Ok(out)
    }

    /// Records the source passwords of users whose password was unknown (after a new state
    /// key) as what Concur holds, without sending them: a later change is then sent as usual.
    pub fn learn_password_macs(&mut self, macs: &[(String, [u8; 16])]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE users SET password_mac = ?2 WHERE employee_id = ?1 AND password_mac = ?3",
            )?;
            for (id, mac) in macs {
                stmt.execute(params![id, &mac[..], &PASSWORD_MAC_UNKNOWN[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Employee ids whose login is `login` (case-insensitive), for rename handling.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Records a user as already present in Concur without sending anything (`baseline`,
    /// adoption): the snapshot then says Concur holds exactly `user`.
    pub fn baseline_users(
        &mut self,
        users: &[User],
        ownership: Ownership,
    ) -> Result<(), StoreError> {
        self.baseline_stamped(users, ownership, None)
    }

    /// [`Store::baseline_users`], stamping the source rows they came from (`baseline`): a
    /// user's row stamp is written with its record when the row normalized to exactly it.
    pub fn baseline_stamped(
        &mut self,
        users: &[User],
        ownership: Ownership,
        stamps: Option<&crate::plan::RowStamps>,
    ) -> Result<(), StoreError> {
        let expected = stamps
            .map(super::row_index::Expected::new)
            .unwrap_or_default();
        let tx = self.conn.transaction()?;
        {
            // A stamp binds the password hash too: kept only where none is stored.
            let mut stmt = tx.prepare_cached(BASELINE_INSERT)?;
            let at = now();
            for u in users {
                let hash = u.content_hash();
                let stamp = expected.stamp_for(u.employee_id(), &hash, None);
                stmt.execute(params![
                    u.employee_id(),
                    u.login_id(),
                    u.is_active(),
                    &hash[..],
                    user_json(u),
                    ownership,
                    at,
                    stamp.map(u128::to_le_bytes).as_ref().map(|s| &s[..]),
                    u.is_approver()
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records Concur's answer for a batch in one transaction: acknowledged entries advance the
    /// snapshot and close; failed entries are kept with Concur's message.
    pub fn record_results(
        &mut self,
        cycle: i64,
        results: &[(i64, &Op, EntryResult)],
    ) -> Result<(), StoreError> {
        // Its own transaction, or part of an enclosing one.
        let tx = Atomic::begin(&mut self.conn)?;
        let at = now();
        {
            let mut done = tx.prepare_cached(
                "UPDATE outbox SET state = 'done', last_error = NULL, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut failed = tx.prepare_cached(
                "UPDATE outbox SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE id = ?1",
            )?;
            let mut unanswered = tx.prepare_cached(
                "UPDATE outbox SET state = 'abandoned', last_error = ?2, updated_at = ?3 WHERE id = ?1",
            )?;
            // The row stamp (?11) is computed for the password MAC the row ends with when it is
            // the one this operation carries (?6): always for a new row, and for an existing one
            // unless it keeps an earlier MAC; `stamped` tells which.
            let mut upsert = tx.prepare_cached(
                "INSERT INTO users (employee_id, login_id, active, hash, fields, password_mac, ownership, acked_at, acked_cycle, concur_uuid, row_stamp, approver)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created', ?7, ?8, COALESCE(?9, ?10), ?11, ?12)
                 ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
                   active = excluded.active, hash = excluded.hash, fields = excluded.fields,
                   approver = excluded.approver,
                   password_mac = COALESCE(excluded.password_mac, users.password_mac),
                   ownership = CASE users.ownership WHEN 'unmanaged' THEN 'adopted' ELSE users.ownership END,
                   acked_at = excluded.acked_at, acked_cycle = excluded.acked_cycle,
                   concur_uuid = COALESCE(?9, users.concur_uuid, ?10),
                   row_stamp = CASE WHEN excluded.password_mac IS NOT NULL OR users.password_mac IS NULL
                                    THEN excluded.row_stamp ELSE users.row_stamp END
                 RETURNING row_stamp IS ?11",
            )?;
            // Stamps the upsert could not write (a password MAC kept from before, a password
            // change): written by `stamp_acknowledged` after.
            let mut unstamped: Vec<&str> = Vec::new();
            let mut set_mac = tx.prepare_cached(
                "UPDATE users SET password_mac = ?2, acked_at = ?3, acked_cycle = ?4 WHERE employee_id = ?1",
            )?;
            let mut clear_failures =
                tx.prepare_cached("DELETE FROM failures WHERE employee_id = ?1")?;
            let mut clear_failure =
                tx.prepare_cached("DELETE FROM failures WHERE employee_id = ?1 AND op = ?2")?;
            let mut rename = tx
                .prepare_cached("DELETE FROM users WHERE employee_id = ?1 RETURNING concur_uuid")?;
            let mut add_failure = tx.prepare_cached(
                "INSERT INTO failures (employee_id, op, message, attempts, first_failed_at, last_failed_at, cycle_id)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5)
                 ON CONFLICT(employee_id, op) DO UPDATE SET message = excluded.message,
                   attempts = failures.attempts + 1, last_failed_at = excluded.last_failed_at,
                   cycle_id = excluded.cycle_id",
            )?;
            let mut clear_uuid = tx.prepare_cached(
                "UPDATE users SET concur_uuid = NULL WHERE concur_uuid = ?1 AND employee_id != ?2",
            )?;
            for (id, op, result) in results {
                match result {
                    EntryResult::Acknowledged | EntryResult::AcknowledgedAs(_) => {
                        done.execute(params![id, at])?;
                        let mac = op
                            .password
                            .as_ref()
                            .map(|p| self.keys.password_mac(&op.employee_id, p).to_vec());
                        if op.kind == OpKind::Password {
                            set_mac.execute(params![op.employee_id, mac, at, cycle])?;
                            unstamped.push(&op.employee_id);
                            clear_failure.execute(params![op.employee_id, op.kind.as_str()])?;
                            continue;
                        }
                        // A changed employee id is the same Concur user: its UUID moves along.
                        let mut moved_uuid = None;
                        if let Some(old) = op.old_employee_id.as_deref()
                            && old != op.employee_id
                        {
                            moved_uuid = rename
                                .query_row([old], |r| r.get::<_, Option<String>>(0))
                                .optional()?
                                .flatten();
                            clear_failures.execute([old])?;
                        }
                        // The UUID Concur named is this user's alone; without one, a UUID the
                        // user had (under its old employee id) stays.
                        let acked_uuid = match result {
                            EntryResult::AcknowledgedAs(uuid) => {
                                clear_uuid.execute(params![uuid, op.employee_id])?;
                                Some(uuid)
                            }
                            _ => None,
                        };
                        let hash = op.user.content_hash();
                        let stamp = self.expected.stamp_for(
                            &op.employee_id,
                            &hash,
                            mac.as_deref().and_then(to16).as_ref(),
                        );
                        let stamped: bool = upsert.query_row(
                            params![
                                op.employee_id,
                                op.user.login_id(),
                                op.user.is_active(),
                                &hash[..],
                                user_json(&op.user),
                                mac,
                                at,
                                cycle,
                                acked_uuid,
                                moved_uuid,
                                stamp.map(u128::to_le_bytes).as_ref().map(|s| &s[..]),
                                op.user.is_approver()
                            ],
                            |r| r.get(0),
                        )?;
                        if !stamped && stamp.is_some() {
                            unstamped.push(&op.employee_id);
                        }
                        clear_failures.execute([&op.employee_id])?;
                    }
                    EntryResult::Refused(message) => {
                        failed.execute(params![id, message, at])?;
                    }
                    EntryResult::Failed(message) | EntryResult::Unanswered(message) => {
                        if matches!(result, EntryResult::Unanswered(_)) {
                            unanswered.execute(params![id, message, at])?;
                        } else {
                            failed.execute(params![id, message, at])?;
                        }
                        add_failure.execute(params![
                            op.employee_id,
                            op.kind.as_str(),
                            message,
                            at,
                            cycle
                        ])?;
                    }
                }
            }
            Store::stamp_acknowledged(&self.expected, &tx, unstamped.into_iter())?;
        }
        tx.commit()?;
        Ok(())
    }
}
