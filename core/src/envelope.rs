//! DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1): how grants and
//! policies are signed.
//!
//! An envelope holds a payload, its type, and signatures over the *pre-authentication encoding*
//! (PAE) of both, so that a signature over one kind of payload can never be replayed as another:
//!
//! ```text
//! PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! where `LEN` is the byte length in ASCII decimal without leading zeros and `SP` one space.
//! The JSON form is the standard one, with one addition: each signature names its algorithm
//! (`alg`), so that post-quantum signatures can be added later; a verifier refuses a name it
//! does not know. `payload` and `sig` are standard base64 with padding.
//!
//! No crate was used for this: the PAE is five lines, and the DSSE crates on crates.io bring a
//! second Ed25519 implementation and have no room for the `alg` field.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::signature::{Algorithm, KeyId, PublicKey, SecretKey};

/// A signed payload in the DSSE JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The media type of the payload, covered by every signature.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// The signatures, in the order they were added.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The id of the key that made it (a hint: verification looks the key up by it).
    pub keyid: KeyId,
    /// The signature algorithm's name, e.g. `ed25519`.
    pub alg: String,
    /// The signature over the PAE, base64.
    pub sig: String,
}

/// An envelope is malformed or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not DSSE JSON.
    #[error("not a signed envelope (DSSE JSON with payloadType, payload, signatures): {0}")]
    Malformed(String),
    /// A payload of another kind.
    #[error("envelope holds {found:?}, expected {expected:?}")]
    WrongType {
        /// The type expected by the caller.
        expected: String,
        /// The type in the envelope.
        found: String,
    },
    /// The payload or a signature is not base64.
    #[error("{0} is not valid base64")]
    Base64(String),
    /// A signature's length is not that of its algorithm's signatures: it is truncated or
    /// padded, and could never verify.
    #[error(
        "the signature by key {keyid} is {len} bytes long, but {alg} signatures are {expected} bytes"
    )]
    SignatureLength {
        /// The key the signature claims.
        keyid: KeyId,
        /// The algorithm it names.
        alg: Algorithm,
        /// Its length in bytes.
        len: usize,
        /// The length of every signature of that algorithm.
        expected: usize,
    },
    /// A signature names an algorithm this version does not know.
    #[error("signature by key {keyid}: {algorithm}")]
    UnknownAlgorithm {
        /// The key the signature claims.
        keyid: KeyId,
        /// The algorithm. Shown in the message, so not also a `source`.
        algorithm: crate::signature::UnknownAlgorithm,
    },
}

/// What became of one signature when an envelope was checked against a set of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The signature verifies with the key of this id.
    Valid(KeyId),
    /// No key with this id is known.
    UnknownKey(KeyId),
    /// The key is known but the signature does not verify: the payload changed after signing,
    /// or the signature is corrupt.
    Invalid(KeyId),
}

/// The DSSE pre-authentication encoding of a payload and its type: the bytes that are signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// An envelope with no signatures yet.
    pub fn new(payload_type: &str, payload: &[u8]) -> Self {
        Self {
            payload_type: payload_type.to_owned(),
            payload: BASE64.encode(payload),
            signatures: Vec::new(),
        }
    }

    /// Parses the JSON form and checks that it holds a payload of the expected type, that the
    /// payload and signatures decode, that every algorithm is known, and that every signature
    /// has its algorithm's length.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming what is wrong.
    pub fn from_json(json: &[u8], expected_type: &str) -> Result<Self, EnvelopeError> {
        let envelope: Self =
            serde_json::from_slice(json).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if envelope.payload_type != expected_type {
            return Err(EnvelopeError::WrongType {
                expected: expected_type.to_owned(),
                found: envelope.payload_type,
            });
        }
        envelope.payload_bytes()?;
        for s in &envelope.signatures {
            let alg = s.alg.parse::<Algorithm>().map_err(|algorithm| {
                EnvelopeError::UnknownAlgorithm {
                    keyid: s.keyid.clone(),
                    algorithm,
                }
            })?;
            let sig = BASE64
                .decode(&s.sig)
                .map_err(|_| EnvelopeError::Base64(format!("the signature by key {}", s.keyid)))?;
            if sig.len() != alg.signature_len() {
                return Err(EnvelopeError::SignatureLength {
                    keyid: s.keyid.clone(),
                    alg,
                    len: sig.len(),
                    expected: alg.signature_len(),
                });
            }
        }
        Ok(envelope)
    }

    /// The JSON form, indented, with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The payload's bytes.
    ///
    /// # Errors
    /// [`EnvelopeError::Base64`] when the payload is not base64.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        BASE64
            .decode(&self.payload)
            .map_err(|_| EnvelopeError::Base64("the payload".into()))
    }

    /// Adds `key`'s signature over the payload. A signature by the same key is replaced, so
    /// signing twice leaves one signature.
    ///
    /// # Errors
    /// [`EnvelopeError::Base64`] when the payload is not base64.
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), EnvelopeError> {
        let message = pae(&self.payload_type, &self.payload_bytes()?);
        let id = key.public_key().id().clone();
        self.signatures.retain(|s| s.keyid != id);
        self.signatures.push(EnvelopeSignature {
            keyid: id,
            alg: key.algorithm().name().to_owned(),
            sig: BASE64.encode(key.sign_bytes(&message)),
        });
        Ok(())
    }

    /// Checks every signature against the key `lookup` returns for its key id. The result has
    /// one entry per signature, in order; duplicates are the caller's to count once.
    ///
    /// # Errors
    /// An [`EnvelopeError`] when the payload does not decode or an algorithm is unknown.
    pub fn check_signatures<'k>(
        &self,
        lookup: impl Fn(&KeyId) -> Option<&'k PublicKey>,
    ) -> Result<Vec<SignatureCheck>, EnvelopeError> {
        let message = pae(&self.payload_type, &self.payload_bytes()?);
        let mut checks = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            let alg = s.alg.parse::<Algorithm>().map_err(|algorithm| {
                EnvelopeError::UnknownAlgorithm {
                    keyid: s.keyid.clone(),
                    algorithm,
                }
            })?;
            let check = match lookup(&s.keyid) {
                None => SignatureCheck::UnknownKey(s.keyid.clone()),
                Some(key) if key.algorithm() != alg => SignatureCheck::Invalid(s.keyid.clone()),
                Some(key) => match BASE64.decode(&s.sig) {
                    Ok(sig) if key.verify_bytes(&message, &sig).is_ok() => {
                        SignatureCheck::Valid(key.id().clone())
                    }
                    _ => SignatureCheck::Invalid(s.keyid.clone()),
                },
            };
            checks.push(check);
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the DSSE protocol specification (`protocol.md`, "Test Vectors").
    #[test]
    fn pae_matches_the_dsse_specification() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn signatures_cover_payload_and_type() {
        let key = SecretKey::generate();
        let lookup = |id: &KeyId| (id == key.public_key().id()).then(|| key.public_key());
        let mut env = Envelope::new("application/x-test", b"hello");
        env.sign(&key).expect("sign");
        env.sign(&key).expect("sign again");
        assert_eq!(env.signatures.len(), 1, "re-signing replaces");
        let id = key.public_key().id().clone();
        assert_eq!(
            env.check_signatures(lookup).expect("check"),
            vec![SignatureCheck::Valid(id.clone())]
        );
        let mut other_type = env.clone();
        other_type.payload_type = "application/x-other".into();
        assert_eq!(
            other_type.check_signatures(lookup).expect("check"),
            vec![SignatureCheck::Invalid(id.clone())]
        );
        let mut other_payload = env.clone();
        other_payload.payload = BASE64.encode(b"hellO");
        assert_eq!(
            other_payload.check_signatures(lookup).expect("check"),
            vec![SignatureCheck::Invalid(id.clone())]
        );
        let json = env.to_json();
        assert_eq!(
            Envelope::from_json(json.as_bytes(), "application/x-test").expect("parse"),
            env
        );
        let wrong = Envelope::from_json(json.as_bytes(), "application/x-grant").expect_err("type");
        assert!(matches!(wrong, EnvelopeError::WrongType { .. }));
        let short = json.replacen(&env.signatures[0].sig, &BASE64.encode([0_u8; 63]), 1);
        let err = Envelope::from_json(short.as_bytes(), "application/x-test").expect_err("short");
        assert!(
            matches!(
                err,
                EnvelopeError::SignatureLength {
                    len: 63,
                    expected: 64,
                    ..
                }
            ),
            "{err}"
        );
        let pq = json.replace("\"ed25519\"", "\"ml-dsa-65\"");
        let err = Envelope::from_json(pq.as_bytes(), "application/x-test").expect_err("alg");
        assert!(
            err.to_string().contains("unsupported signature algorithm"),
            "{err}"
        );
    }
}
