//! The one error type of the audit log: each variant says what failed and where (an entry's
//! index, a checkpoint's size), because `verify` exists to point at tampering.

use std::path::PathBuf;

/// Why an audit log operation or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read or written.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// "read", "write", "create", "sync", …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why. Shown in the message, so not also a `source` (a report would say it twice).
        error: std::io::Error,
    },
    /// A key could not be decoded, or is unfit for its use.
    #[error("{0}")]
    Key(String),
    /// An entry is not a valid, canonical audit entry.
    #[error("entry {index} is not a valid audit entry: {reason}")]
    MalformedEntry {
        /// The entry's index (0-based; line `index + 1` of `entries.jsonl`).
        index: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The entries file ends in a partial line: an append was interrupted.
    #[error(
        "the entries end in an incomplete line after entry {}: an append was interrupted or the file was cut",
        .entries.saturating_sub(1)
    )]
    TornTail {
        /// How many complete entries precede the partial line.
        entries: u64,
    },
    /// A checkpoint cannot be parsed.
    #[error("checkpoint {name} is malformed: {reason}")]
    MalformedCheckpoint {
        /// The checkpoint's file name (its tree size, if well named).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint's signature is missing, forged, or made with another key.
    #[error("checkpoint {size} is not signed by the audit key: {reason}")]
    BadSignature {
        /// The checkpoint's tree size.
        size: u64,
        /// What the signature check said.
        reason: String,
    },
    /// A checkpoint names a different origin from the log's other checkpoints or the expected one.
    #[error("checkpoint {size} is for origin {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// The checkpoint's tree size.
        size: u64,
        /// The origin it names.
        found: String,
        /// The origin expected.
        expected: String,
    },
    /// A signed checkpoint covers more entries than the log holds.
    #[error(
        "checkpoint {size} covers {size} entries but the log holds only {entries}: entries were removed"
    )]
    MissingEntries {
        /// The checkpoint's tree size.
        size: u64,
        /// How many entries the log holds.
        entries: u64,
    },
    /// The root hash a checkpoint signed differs from the root recomputed from the entries.
    #[error("{}", mismatch_message(*.size, *.first, *.last))]
    RootMismatch {
        /// The checkpoint's tree size.
        size: u64,
        /// The first index that may differ: the size of the last checkpoint that matched.
        first: u64,
        /// The last index that may differ (`size - 1`).
        last: u64,
    },
    /// Two successive checkpoints are not consistent (the later tree does not extend the earlier).
    #[error("checkpoint {new} is not consistent with checkpoint {old}: {reason}")]
    Inconsistent {
        /// The earlier checkpoint's size.
        old: u64,
        /// The later checkpoint's size.
        new: u64,
        /// What the proof check said.
        reason: String,
    },
    /// The log holds entries but no checkpoint signs them.
    #[error("the log holds {entries} entries but no checkpoint: nothing is signed")]
    NoCheckpoint {
        /// How many entries the log holds.
        entries: u64,
    },
    /// A checkpoint of this size already exists with different contents.
    #[error("checkpoint {size} already exists with different contents (another key or origin?)")]
    CheckpointExists {
        /// The tree size.
        size: u64,
    },
    /// An index or tree size is outside the log.
    #[error("{0}")]
    OutOfRange(String),
    /// A logged execution receipt's signature does not verify with the host key it names.
    #[error("entry {index} is a receipt whose host signature does not verify: {reason}")]
    BadReceipt {
        /// The entry's index.
        index: u64,
        /// What the signature check said.
        reason: String,
    },
    /// Bytes that should be a signed execution receipt are not one.
    #[error("{0}")]
    Receipt(String),
    /// A proof bundle does not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// The Merkle tree computation failed (an internal inconsistency, not tampering).
    #[error("merkle tree: {0}")]
    Tree(tlog_tiles::Error),
}

/// The tree's error is part of the message, so it is not also the `source`.
impl From<tlog_tiles::Error> for AuditError {
    fn from(e: tlog_tiles::Error) -> Self {
        Self::Tree(e)
    }
}

fn mismatch_message(size: u64, first: u64, last: u64) -> String {
    let which = if first == last {
        format!("entry {first} was changed, or an entry was removed, inserted or reordered there")
    } else {
        let since = if first == 0 {
            String::new()
        } else {
            format!(" (checkpoint {first} still matches)")
        };
        format!("an entry in {first}..={last} was changed, removed, inserted or reordered{since}")
    };
    format!("checkpoint {size} does not match the entries: {which}")
}

impl AuditError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            error: source,
        }
    }
}
