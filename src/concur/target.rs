//! The seam between a cycle and "Concur": what a writer answers per record. Every Concur API a
//! cycle writes users through reports one of these per record, in input order.

/// What Concur said about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Acknowledged,
    /// Concur's message.
    Failed(String),
}

/// The outcome of one password change, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordOutcome {
    pub login_id: String,
    pub outcome: RecordOutcome,
}
