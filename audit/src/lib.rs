//! Vauban's audit log: a tamper-evident, append-only record of every decision the control plane
//! takes and every execution a host performs.
//!
//! The log has the standard transparency-log structure, so that anyone holding only the audit
//! public key can check it offline:
//!
//! - every [`Entry`] is one canonical JSON line; its exact bytes are a leaf of an
//!   [RFC 6962](https://www.rfc-editor.org/rfc/rfc6962) Merkle tree ([`tree`]);
//! - the audit key signs [checkpoints](checkpoint) of the tree — its size and root hash — in the
//!   [C2SP tlog-checkpoint](https://c2sp.org/tlog-checkpoint) format, as
//!   [C2SP signed notes](https://c2sp.org/signed-note);
//! - inclusion proofs show that an entry is in a signed tree ([`ProofBundle`]), consistency proofs
//!   that a later tree extends an earlier one;
//! - [`verify_log`] recomputes the whole tree from the entries and checks every checkpoint
//!   against it, failing loudly, and saying where, on any change.
//!
//! Hosts sign an execution [`Receipt`] per attempt; the signed receipt is itself an entry.
//!
//! The hashing and proof algorithms come from Cloudflare's `tlog_tiles` (a port of Go's
//! `golang.org/x/mod/sumdb/tlog`), the note format from its `signed_note`. The storage is
//! pluggable ([`Storage`]); [`FileLog`] keeps a log in a directory. The on-disk and wire formats
//! are described in `docs/audit.md`.
//!
//! **Architecture Invariant:** a leaf is the entry's exact stored bytes; nothing is ever
//! re-serialised before hashing, so what is verified is what is on disk.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod entry;
mod error;
pub mod key;
mod log;
pub mod proof;
pub mod receipt;
mod store;
pub mod tree;
mod verify;

pub use checkpoint::SignedCheckpoint;
pub use entry::{
    Admission, Cancellation, Decision, Entry, Finish, KeyUse, Placement, PolicyChange,
    ReceiptEntry, RejectedReceipt, Start, Subject,
};
pub use error::AuditError;
pub use key::{AuditSigner, AuditVerifier, PublicKey, SecretKey};
pub use log::Log;
pub use proof::{ProofBundle, VerifiedProof};
pub use receipt::{Receipt, SignedReceipt};
pub use store::{CHECKPOINTS_DIR, ENTRIES_FILE, FileLog, Storage};
pub use tree::{ConsistencyProof, InclusionProof, Tree};
pub use verify::{Report, verify_log};

/// The prefix of every audit log's origin line, followed by the log's name
/// (`vauban.audit/prod`).
pub const ORIGIN_PREFIX: &str = "vauban.audit/";
