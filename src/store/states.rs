//! The typed values of the state database's TEXT state columns: an outbox entry's state, a
//! cycle's outcome and a user's ownership. Each maps to the same text on disk as before
//! (`rusqlite::ToSql`/`FromSql`); an unknown text reads as damaged data.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value a stored text stands for.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {text:?}", stringify!($name)).into())
                })
            }
        }
    };
}

text_enum!(
    /// The state of one outbox entry (`outbox.state`).
    OutboxState {
        /// Planned, not sent yet.
        Pending => "pending",
        /// Sent; Concur's answer not recorded yet.
        Inflight => "inflight",
        /// Accepted by an asynchronous API (a provision id and bulkId recorded); its outcome
        /// is polled for, also after a restart.
        Submitted => "submitted",
        /// Acknowledged by Concur.
        Done => "done",
        /// Refused by Concur (its message is kept).
        Failed => "failed",
        /// Closed unsent (crash, early end, superseded or rejected plan); kept for audit.
        Abandoned => "abandoned",
        /// Waiting for an operator's approval.
        Held => "held",
    }
);

text_enum!(
    /// How a cycle ended (`cycles.outcome`); `running` until it does.
    CycleOutcome {
        Running => "running",
        /// Everything applied, or nothing to do.
        Success => "success",
        /// Finished, but some records were rejected or failed.
        Partial => "partial",
        /// Deactivations or identity changes held for an operator's approval.
        Held => "held",
        /// A held plan an operator rejected (`concur-sync reject`): nothing in it was sent.
        Rejected => "rejected",
        /// The read looked incomplete, so nobody was deactivated.
        Degraded => "degraded",
        /// Ended early; nothing more was sent.
        Failed => "failed",
        /// Stopped (shutdown or crash) before it finished.
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// How a reconcile (adoption and drift repair) ended (`reconciles.outcome`); `running`
    /// until it does.
    ReconcileOutcome {
        Running => "running",
        /// Every repair acknowledged, or nothing to repair.
        Success => "success",
        /// Finished, but Concur refused some repairs.
        Partial => "partial",
        /// Ended early (Concur unreachable, the source unreadable).
        Failed => "failed",
        /// Stopped before it finished; closed by the next reconcile.
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// Who owns a user the snapshot knows (`users.ownership`).
    Ownership {
        /// Created by concur-sync.
        Created => "created",
        /// Found in Concur and taken over.
        Adopted => "adopted",
        /// In Concur, matching no source user; left untouched.
        Unmanaged => "unmanaged",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ToSql + FromSql + PartialEq + std::fmt::Debug + Copy>(all: &[T]) {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for v in all {
            let back: T = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
            assert_eq!(back, *v);
        }
        let bad: rusqlite::Result<T> = conn.query_row("SELECT 'nonsense'", [], |r| r.get(0));
        assert!(bad.is_err());
    }

    #[test]
    fn states_keep_their_text_on_disk() {
        let texts: Vec<&str> = OutboxState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            texts,
            [
                "pending",
                "inflight",
                "submitted",
                "done",
                "failed",
                "abandoned",
                "held"
            ]
        );
        let texts: Vec<&str> = CycleOutcome::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            texts,
            [
                "running",
                "success",
                "partial",
                "held",
                "rejected",
                "degraded",
                "failed",
                "interrupted"
            ]
        );
        round_trip(CycleOutcome::ALL);
        let texts: Vec<&str> = Ownership::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts, ["created", "adopted", "unmanaged"]);
        round_trip(OutboxState::ALL);
        round_trip(Ownership::ALL);
        let texts: Vec<&str> = ReconcileOutcome::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            texts,
            ["running", "success", "partial", "failed", "interrupted"]
        );
        round_trip(ReconcileOutcome::ALL);
    }
}
