//! Offline proof bundles: one entry, its inclusion proof, and the signed checkpoint it is
//! proven against, in one JSON document that the audit public key alone verifies.
//!
//! ```json
//! {
//!   "format": "vauban.audit.proof/v1",
//!   "index": 3,
//!   "entry": "{\"kind\":\"start\",\"at_ms\":…}",
//!   "tree_size": 8,
//!   "inclusion": ["base64 hash", …],
//!   "checkpoint": "vauban.audit/prod\n8\n…\n\n— vauban.audit/prod …\n"
//! }
//! ```
//!
//! `entry` is the entry's exact bytes as a JSON string (JSON strings round-trip exactly).

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::checkpoint::SignedCheckpoint;
use crate::entry::Entry;
use crate::key::AuditVerifier;
use crate::tree::InclusionProof;

/// The `format` of a proof bundle.
pub const PROOF_FORMAT: &str = "vauban.audit.proof/v1";

/// A self-contained inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The entry's index.
    pub index: u64,
    /// The entry's exact bytes.
    pub entry: String,
    /// The size of the tree the proof is against.
    pub tree_size: u64,
    /// The sibling hashes from the leaf to the root.
    pub inclusion: InclusionProof,
    /// The signed checkpoint note of that tree.
    pub checkpoint: String,
}

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The entry.
    pub entry: Entry,
    /// Its index.
    pub index: u64,
    /// The size of the signed tree that contains it.
    pub tree_size: u64,
    /// The log's origin.
    pub origin: String,
    /// The signed root, base64.
    pub root: String,
}

impl ProofBundle {
    pub(crate) fn new(
        index: u64,
        entry: &[u8],
        checkpoint: &SignedCheckpoint,
        inclusion: InclusionProof,
    ) -> Self {
        Self {
            format: PROOF_FORMAT.into(),
            index,
            // Stored entries passed `Entry::from_line`, so they are UTF-8.
            entry: String::from_utf8_lossy(entry).into_owned(),
            tree_size: checkpoint.size(),
            inclusion,
            checkpoint: checkpoint.to_text(),
        }
    }

    /// The bundle as pretty JSON.
    ///
    /// # Errors
    /// [`AuditError::Encode`] only if serialisation fails.
    pub fn to_json(&self) -> Result<String, AuditError> {
        serde_json::to_string_pretty(self).map_err(|source| AuditError::Encode {
            what: "proof",
            source,
        })
    }

    /// Parses a bundle.
    ///
    /// # Errors
    /// [`AuditError::Proof`] when the text is not a proof bundle.
    pub fn from_json(text: &str) -> Result<Self, AuditError> {
        serde_json::from_str(text)
            .map_err(|e| AuditError::Proof(format!("not a proof bundle: {e}")))
    }

    /// Checks the bundle with the audit public key alone: the checkpoint's signature, that it
    /// is for `tree_size`, that the entry is canonical (and, for an execution receipt, that the
    /// host signature verifies with the key it names), and that the inclusion proof leads from
    /// the entry to the signed root.
    ///
    /// # Errors
    /// [`AuditError::Proof`], or the checkpoint's [`AuditError::BadSignature`] /
    /// [`AuditError::MalformedCheckpoint`] / [`AuditError::OriginMismatch`].
    pub fn verify(&self, verifier: &AuditVerifier) -> Result<VerifiedProof, AuditError> {
        if self.format != PROOF_FORMAT {
            return Err(AuditError::Proof(format!(
                "unknown format {:?}, expected {PROOF_FORMAT:?}",
                self.format
            )));
        }
        let checkpoint = SignedCheckpoint::verify(self.checkpoint.as_bytes(), verifier)?;
        if checkpoint.size() != self.tree_size {
            return Err(AuditError::Proof(format!(
                "the checkpoint is for tree size {}, the proof for {}",
                checkpoint.size(),
                self.tree_size
            )));
        }
        let entry = Entry::from_line(self.entry.as_bytes())
            .map_err(|e| AuditError::Proof(format!("entry {}: {e}", self.index)))?;
        if let Entry::Receipt(logged) = &entry {
            logged.receipt.verify_signature().map_err(|e| {
                AuditError::Proof(format!(
                    "entry {} is a receipt whose host signature does not verify: {e}",
                    self.index
                ))
            })?;
        }
        self.inclusion.verify(
            self.entry.as_bytes(),
            self.index,
            self.tree_size,
            checkpoint.root(),
        )?;
        Ok(VerifiedProof {
            entry,
            index: self.index,
            tree_size: self.tree_size,
            origin: checkpoint.origin().to_owned(),
            root: checkpoint.root().to_string(),
        })
    }
}
