//! Audit keys: Ed25519 key pairs read from the PEM files `vauban key generate` writes, and the
//! signed-note signer and verifier built from them.
//!
//! A checkpoint is signed with the key name equal to its origin line (`vauban.audit/<name>`)
//! and the key id the C2SP signed-note specification recommends: the first four bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`. A verifier therefore needs only the public key:
//! it recomputes the id for the origin a checkpoint names, and a checkpoint signed by any other
//! key shows up as unsigned.

use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};

use crate::AuditError;

/// The signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 1;

/// An Ed25519 private key.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({:?})", self.public_key())
    }
}

impl SecretKey {
    /// Decodes a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`AuditError::Key`] when the text is not an Ed25519 private key in that form.
    pub fn from_pem(pem: &str) -> Result<Self, AuditError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 private key (PKCS#8 PEM): {e}")))
    }

    /// Reads a PKCS#8 PEM private key file.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be read or decoded.
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::io("read", path, e))?;
        Self::from_pem(&text).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
    }

    /// A key from its 32-byte seed (tests, and keys held elsewhere).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// Decodes a SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`AuditError::Key`] when the text is not an Ed25519 public key in that form.
    pub fn from_pem(pem: &str) -> Result<Self, AuditError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(Self)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 public key (SPKI PEM): {e}")))
    }

    /// Reads an SPKI PEM public key file.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be read or decoded.
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::io("read", path, e))?;
        Self::from_pem(&text).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
    }

    /// Decodes the hex of the raw 32-byte key (as receipts carry it).
    ///
    /// # Errors
    /// [`AuditError::Key`] when the text is not 32 bytes of hex forming a valid point.
    pub fn from_hex(text: &str) -> Result<Self, AuditError> {
        let bytes: [u8; 32] = hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AuditError::Key(format!("{text:?} is not a hex Ed25519 public key")))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| AuditError::Key(format!("{text:?} is not a valid Ed25519 public key")))
    }

    /// The raw 32-byte key in hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The signed-note key id of this key under a key name.
    pub fn note_key_id(&self, name: &str) -> u32 {
        signed_note::key_id(name, &self.note_key_bytes())
    }

    /// The signed-note verifier key: `<name>+<key id>+<base64(0x01 || key)>`.
    pub fn note_verifier_key(&self, name: &str) -> String {
        signed_note::new_ed25519_verifier_key(name, &self.0)
    }

    fn note_key_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.0.as_bytes());
        bytes
    }

    /// Checks an Ed25519 signature (strict verification: no malleable signatures).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .is_ok()
    }
}

/// Signs checkpoints of one log: the audit private key and the log's origin.
#[derive(Debug, Clone)]
pub struct AuditSigner {
    origin: String,
    id: u32,
    key: SecretKey,
}

impl AuditSigner {
    /// A signer for the log named by `origin` (conventionally `vauban.audit/<name>`).
    ///
    /// # Errors
    /// [`AuditError::Key`] when the origin is empty or holds whitespace or `+` (signed-note key
    /// names cannot).
    pub fn new(origin: &str, key: SecretKey) -> Result<Self, AuditError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(AuditError::Key(format!(
                "{origin:?} cannot be a log origin: it must be non-empty, without spaces or '+'"
            )));
        }
        Ok(Self {
            origin: origin.to_owned(),
            id: key.public_key().note_key_id(origin),
            key,
        })
    }

    /// The log's origin, which is also the signature's key name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key that verifies this signer's checkpoints.
    pub fn verifier(&self) -> AuditVerifier {
        AuditVerifier::new(self.key.public_key())
    }
}

impl signed_note::Signer for AuditSigner {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_vec())
    }
}

/// Checks checkpoints with the audit public key alone.
#[derive(Debug, Clone)]
pub struct AuditVerifier {
    key: PublicKey,
    origin: Option<String>,
}

impl AuditVerifier {
    /// A verifier that accepts checkpoints of any origin signed by `key` under that origin.
    pub fn new(key: PublicKey) -> Self {
        Self { key, origin: None }
    }

    /// Also requires checkpoints to carry exactly this origin.
    #[must_use]
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }

    /// The public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The origin required, if any.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The signed-note verifier for checkpoints of `origin`.
    pub(crate) fn for_origin(&self, origin: &str) -> signed_note::VerifierList {
        signed_note::VerifierList::new(vec![Box::new(NoteVerifier {
            name: origin.to_owned(),
            id: self.key.note_key_id(origin),
            key: self.key,
        })])
    }
}

/// A signed-note verifier for one (name, key) pair.
struct NoteVerifier {
    name: String,
    id: u32,
    key: PublicKey,
}

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify(msg, sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit key is an ordinary Vauban key file (`vauban key generate`).
    #[test]
    fn keys_from_vauban_key_files_load() {
        let key = vauban_core::SecretKey::generate();
        let secret = SecretKey::from_pem(&key.to_pem()).expect("private key");
        let public = PublicKey::from_pem(&key.public_key().to_pem()).expect("public key");
        assert_eq!(secret.public_key(), public);
    }

    #[test]
    fn bad_keys_and_origins_are_refused() {
        assert!(SecretKey::from_pem("not a key").is_err());
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n").is_err()
        );
        assert!(PublicKey::from_hex("abcd").is_err());
        let key = SecretKey::from_seed(&[3; 32]);
        for origin in ["", "vauban audit", "vauban+audit"] {
            assert!(AuditSigner::new(origin, key.clone()).is_err(), "{origin:?}");
        }
    }

    #[test]
    fn the_note_verifier_key_matches_the_signers_key_id() {
        let signer =
            AuditSigner::new("vauban.audit/x", SecretKey::from_seed(&[3; 32])).expect("signer");
        let vkey = signer.verifier().key().note_verifier_key("vauban.audit/x");
        let id = format!("{:08x}", signed_note::Signer::key_id(&signer));
        assert!(vkey.starts_with(&format!("vauban.audit/x+{id}+")), "{vkey}");
        signed_note::StandardVerifier::new(&vkey).expect("a standard verifier key");
    }
}
