//! Execution receipts: what a host attests about one attempt it ran, signed with its key.
//!
//! The signature is Ed25519 over `vauban.receipt.v1\n` followed by the receipt's canonical JSON
//! (fields in the order declared below, no whitespace). The prefix separates receipts from
//! anything else the same key might sign.

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::key::{PublicKey, SecretKey};

/// The domain-separation prefix of a receipt signature.
pub const RECEIPT_CONTEXT: &[u8] = b"vauban.receipt.v1\n";

/// What a host attests about one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The job id.
    pub job: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The module's full-file digest, `sha256:<hex>`.
    pub module: String,
    /// The effective capabilities the attempt ran with (request ∩ grant ∩ node class), one
    /// canonical string each, sorted.
    pub capabilities: Vec<String>,
    /// The node that ran it (its certificate identity).
    pub node: String,
    /// When the guest started, unix milliseconds.
    pub started_ms: u64,
    /// When it ended, unix milliseconds.
    pub ended_ms: u64,
    /// How it ended, as the host reports it.
    pub outcome: String,
    /// Fuel consumed.
    pub fuel: u64,
    /// Peak linear memory, bytes.
    pub peak_memory_bytes: u64,
}

/// A receipt with the host's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// What was attested.
    pub receipt: Receipt,
    /// The signing host's public key, hex of the raw 32 bytes.
    pub key: String,
    /// The Ed25519 signature, hex.
    pub signature: String,
}

impl Receipt {
    /// The exact bytes a host signs.
    ///
    /// # Errors
    /// [`AuditError::Encode`] only if serialisation fails.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, AuditError> {
        let mut bytes = RECEIPT_CONTEXT.to_vec();
        serde_json::to_writer(&mut bytes, self).map_err(|source| AuditError::Encode {
            what: "receipt",
            source,
        })?;
        Ok(bytes)
    }

    /// Signs the receipt with a host key.
    ///
    /// # Errors
    /// [`AuditError::Encode`] only if serialisation fails.
    pub fn sign(self, key: &SecretKey) -> Result<SignedReceipt, AuditError> {
        let signature = key.sign(&self.signed_bytes()?);
        Ok(SignedReceipt {
            receipt: self,
            key: key.public_key().to_hex(),
            signature: hex::encode(signature),
        })
    }
}

impl SignedReceipt {
    /// Checks the signature against the key the receipt names, and that key against `trusted`
    /// (the host keys the verifier knows). Returns the signing key.
    ///
    /// # Errors
    /// [`AuditError::Key`] when the receipt names an untrusted or malformed key, or its
    /// signature does not verify.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<PublicKey, AuditError> {
        let key = PublicKey::from_hex(&self.key)?;
        if !trusted.contains(&key) {
            return Err(AuditError::Key(format!(
                "receipt for job {} attempt {} is signed by an untrusted key {}",
                self.receipt.job, self.receipt.attempt, self.key
            )));
        }
        self.verify_signature()
    }

    /// Checks only that the signature verifies with the key the receipt names: what anyone
    /// holding the receipt alone can check offline (the audit log's verification does this for
    /// every logged receipt). Returns the signing key.
    ///
    /// # Errors
    /// [`AuditError::Key`] when the named key is malformed or the signature does not verify.
    pub fn verify_signature(&self) -> Result<PublicKey, AuditError> {
        let key = PublicKey::from_hex(&self.key)?;
        let signature = hex::decode(&self.signature).unwrap_or_default();
        if !key.verify(&self.receipt.signed_bytes()?, &signature) {
            return Err(AuditError::Key(format!(
                "receipt for job {} attempt {}: the signature does not match its contents",
                self.receipt.job, self.receipt.attempt
            )));
        }
        Ok(key)
    }

    /// The signed receipt as compact JSON: what a host sends in `JobFinished.receipt`.
    ///
    /// # Errors
    /// [`AuditError::Encode`] only if serialisation fails.
    pub fn to_json(&self) -> Result<Vec<u8>, AuditError> {
        serde_json::to_vec(self).map_err(|source| AuditError::Encode {
            what: "receipt",
            source,
        })
    }

    /// Parses a signed receipt from JSON, without checking its signature.
    ///
    /// # Errors
    /// [`AuditError::Receipt`] when the bytes are not a signed receipt.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AuditError::Receipt(format!("not a signed receipt: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            job: "job-1".into(),
            attempt: 1,
            module: format!("sha256:{}", "ab".repeat(32)),
            capabilities: vec!["dir:/data:ro".into(), "env:MODE".into()],
            node: "spiffe://vauban/node/n1".into(),
            started_ms: 1_700_000_000_000,
            ended_ms: 1_700_000_001_500,
            outcome: "exited(0)".into(),
            fuel: 123_456,
            peak_memory_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_signed_receipt_verifies_with_the_host_key() {
        let host = SecretKey::from_seed(&[7; 32]);
        let signed = receipt().sign(&host).expect("sign");
        assert_eq!(
            signed.verify(&[host.public_key()]).expect("verify"),
            host.public_key()
        );
        // It survives a JSON round trip (as it does inside an entry).
        let json = serde_json::to_string(&signed).expect("json");
        let back: SignedReceipt = serde_json::from_str(&json).expect("parse");
        back.verify(&[host.public_key()])
            .expect("verify after round trip");
    }

    #[test]
    fn a_tampered_receipt_is_refused() {
        let host = SecretKey::from_seed(&[7; 32]);
        let signed = receipt().sign(&host).expect("sign");
        let trusted = [host.public_key()];
        let tampered: [fn(&mut SignedReceipt); 6] = [
            |s| s.receipt.fuel += 1,
            |s| s.receipt.outcome = "exited(1)".into(),
            |s| s.receipt.capabilities.push("net:*:*".into()),
            |s| s.receipt.node = "spiffe://vauban/node/n2".into(),
            |s| s.signature.replace_range(0..2, "00"),
            |s| s.signature = "zz".into(),
        ];
        for (case, tamper) in tampered.iter().enumerate() {
            let mut bad = signed.clone();
            tamper(&mut bad);
            if bad == signed {
                continue;
            }
            let err = bad.verify(&trusted).expect_err("tampered receipt");
            assert!(
                err.to_string().contains("does not match"),
                "case {case}: {err}"
            );
        }
    }

    #[test]
    fn the_signature_alone_checks_against_the_named_key() {
        let host = SecretKey::from_seed(&[7; 32]);
        let signed = receipt().sign(&host).expect("sign");
        let json = signed.to_json().expect("json");
        let back = SignedReceipt::from_json(&json).expect("parse");
        assert_eq!(back.verify_signature().expect("verify"), host.public_key());
        let mut bad = back.clone();
        bad.receipt.outcome = "exited(1)".into();
        assert!(bad.verify_signature().is_err());
        let mut bad = back;
        bad.key = "zz".into();
        assert!(bad.verify_signature().is_err());
        assert!(SignedReceipt::from_json(b"{}").is_err());
        assert!(SignedReceipt::from_json(b"not json").is_err());
    }

    #[test]
    fn a_receipt_signed_by_an_untrusted_host_is_refused() {
        let host = SecretKey::from_seed(&[7; 32]);
        let other = SecretKey::from_seed(&[8; 32]);
        let signed = receipt().sign(&other).expect("sign");
        let err = signed.verify(&[host.public_key()]).expect_err("untrusted");
        assert!(err.to_string().contains("untrusted key"), "{err}");
        // Swapping in the trusted key's id does not help: the signature is over the contents
        // with the other key.
        let mut swapped = signed;
        swapped.key = host.public_key().to_hex();
        assert!(swapped.verify(&[host.public_key()]).is_err());
    }
}
