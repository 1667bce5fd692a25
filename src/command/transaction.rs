//! BEGIN, COMMIT and ABORT.

use super::{CommandError, Required};

/// A BEGIN, COMMIT or ABORT frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The transaction id.
    pub id: String,
}

impl Transaction {
    pub(super) fn parse(h: Required<'_>) -> Result<Transaction, CommandError> {
        Ok(Transaction {
            id: h.get("transaction")?.to_owned(),
        })
    }
}
