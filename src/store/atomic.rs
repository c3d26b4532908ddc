//! The transaction of one write method: its own, or part of an enclosing one.

use rusqlite::Connection;

use super::StoreError;

/// The transaction of one write method: its own, or the enclosing one of
/// [`Store::in_one_transaction`] (which rolls all of it back when any part fails). No savepoint
/// is taken inside an enclosing transaction: its journal would copy every page it changes.
pub(crate) enum Atomic<'c> {
    Own(rusqlite::Transaction<'c>),
    Enclosed(&'c Connection),
}

impl<'c> Atomic<'c> {
    pub(crate) fn begin(conn: &'c mut Connection) -> Result<Self, StoreError> {
        if conn.is_autocommit() {
            Ok(Atomic::Own(conn.transaction()?))
        } else {
            Ok(Atomic::Enclosed(conn))
        }
    }

    /// Commits its own transaction; an enclosing one commits when it ends.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        if let Atomic::Own(tx) = self {
            tx.commit()?;
        }
        Ok(())
    }
}

impl std::ops::Deref for Atomic<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Atomic::Own(tx) => tx,
            Atomic::Enclosed(conn) => conn,
        }
    }
}
