//! Signed checkpoints: a tree size and root hash in the C2SP tlog-checkpoint format, wrapped in
//! a C2SP signed note signed by the audit key.
//!
//! ```text
//! vauban.audit/prod
//! 42
//! qC4cfbZzVg2hGdx2VXxeCLixPtoC2Y2qEKp7ytAqm3I=
//!
//! — vauban.audit/prod Az3grrWBb6hNHjQ3W4ssC1T7ARumdKYf6Z05dDtB7EbMzfEG0Az1aiJBHJtj8sHEdl3z9r8cQxnz4j4Y3VOWoB6GKQA=
//! ```
//!
//! The first line is the origin (the log's identity), the second the number of entries, the
//! third the base64 RFC 6962 root hash; after a blank line come signature lines
//! (`— <key name> base64(key id || signature)`). The key name is the origin.

use tlog_tiles::{Checkpoint, Hash};

use crate::AuditError;
use crate::key::{AuditSigner, AuditVerifier};

/// A checkpoint note: its exact bytes and what its text says. Holding one does not mean its
/// signature was checked: [`SignedCheckpoint::verify`] does that.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    bytes: Vec<u8>,
    origin: String,
    size: u64,
    root: Hash,
}

impl SignedCheckpoint {
    /// Signs a checkpoint of the tree of `size` entries with root `root`.
    ///
    /// # Errors
    /// [`AuditError::Key`] when signing fails.
    pub fn sign(signer: &AuditSigner, size: u64, root: Hash) -> Result<Self, AuditError> {
        let checkpoint = Checkpoint::new(signer.origin(), size, root, "")
            .map_err(|e| AuditError::Key(format!("cannot form a checkpoint: {e}")))?;
        let mut note = signed_note::Note::new(&checkpoint.to_bytes(), &[])
            .map_err(|e| AuditError::Key(format!("cannot form a checkpoint note: {e}")))?;
        note.add_sigs(&[signer])
            .map_err(|e| AuditError::Key(format!("cannot sign a checkpoint: {e}")))?;
        Ok(Self {
            bytes: note.to_bytes(),
            origin: signer.origin().to_owned(),
            size,
            root,
        })
    }

    /// Parses a checkpoint note without checking its signatures.
    ///
    /// # Errors
    /// A message saying why the bytes are not a checkpoint note; callers add which one.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let note =
            signed_note::Note::from_bytes(bytes).map_err(|e| format!("not a signed note: {e}"))?;
        let checkpoint = Checkpoint::from_bytes(note.text())
            .map_err(|e| format!("the note's text is not a checkpoint: {e}"))?;
        Ok(Self {
            bytes: bytes.to_vec(),
            origin: checkpoint.origin().to_owned(),
            size: checkpoint.size(),
            root: *checkpoint.hash(),
        })
    }

    /// Parses a checkpoint note and checks that the audit key signed it (under the checkpoint's
    /// origin, and that origin is the one the verifier requires, if any).
    ///
    /// # Errors
    /// [`AuditError::MalformedCheckpoint`], [`AuditError::OriginMismatch`] or
    /// [`AuditError::BadSignature`].
    pub fn verify(bytes: &[u8], verifier: &AuditVerifier) -> Result<Self, AuditError> {
        let checkpoint = Self::parse(bytes).map_err(|reason| AuditError::MalformedCheckpoint {
            name: "note".into(),
            reason,
        })?;
        checkpoint.check_signature(verifier)?;
        Ok(checkpoint)
    }

    /// Checks this checkpoint's signature with the audit key.
    ///
    /// # Errors
    /// [`AuditError::OriginMismatch`] or [`AuditError::BadSignature`].
    pub fn check_signature(&self, verifier: &AuditVerifier) -> Result<(), AuditError> {
        if let Some(expected) = verifier.origin()
            && expected != self.origin
        {
            return Err(AuditError::OriginMismatch {
                size: self.size,
                found: self.origin.clone(),
                expected: expected.to_owned(),
            });
        }
        let note = signed_note::Note::from_bytes(&self.bytes).map_err(|e| {
            AuditError::MalformedCheckpoint {
                name: self.size.to_string(),
                reason: e.to_string(),
            }
        })?;
        note.verify(&verifier.for_origin(&self.origin))
            .map(|_| ())
            .map_err(|e| AuditError::BadSignature {
                size: self.size,
                reason: match e {
                    signed_note::NoteError::UnverifiedNote => format!(
                        "no signature by the audit key (key id {:08x} for origin {})",
                        verifier.key().note_key_id(&self.origin),
                        self.origin
                    ),
                    other => other.to_string(),
                },
            })
    }

    /// The note's exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The note as text (notes are UTF-8 by construction).
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of entries the checkpoint covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root
    }
}
