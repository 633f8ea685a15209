//! Publisher signatures: keys, signing, and verification against a trust store.
//!
//! Signatures use the WebAssembly tool-conventions signature format through the `wasmsign2`
//! crate: a `signature` custom section placed first in the module, holding Ed25519 signatures over
//! the sha256 of every section that follows it. Only whole-module signatures count here.
//!
//! The format does not cover the 8-byte header (magic and version/layer). Vauban guards it by
//! accepting only the two exact headers it runs ([`ModuleKind::detect`]), compiling the bytes as
//! exactly that kind, and identifying every module by the sha256 of its *complete* file
//! ([`ModuleDigest`]), header included.
//!
//! # Key files
//! Private keys are PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), public keys SubjectPublicKeyInfo PEM
//! (`-----BEGIN PUBLIC KEY-----`), as written by `openssl genpkey -algorithm ed25519` and
//! `openssl pkey -pubout`. A key's id is the first 12 bytes of HMAC-SHA256("key_id", public key),
//! in hex: the id `wasmsign2` records next to each signature.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::module::{ModuleDigest, ModuleKind, NotWasm};

/// The identifier of a public key (hex of the 12-byte `wasmsign2` key id).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    fn from_raw(raw: &[u8]) -> Self {
        Self(hex::encode(raw))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A key file could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why. Shown in the message, so not also a `source`.
        error: std::io::Error,
    },
    /// The text is not a key of the expected kind.
    #[error("{what} is not an Ed25519 {expected} in PEM form")]
    Decode {
        /// What was being decoded (a file name or "input").
        what: String,
        /// "private key (PKCS#8)" or "public key (SPKI)".
        expected: &'static str,
    },
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: wasmsign2::PublicKey,
    id: KeyId,
}

impl PublicKey {
    fn from_inner(inner: wasmsign2::PublicKey) -> Self {
        let inner = wasmsign2::PublicKey {
            key_id: None,
            ..inner
        }
        .attach_default_key_id();
        let id = KeyId::from_raw(inner.key_id().map(Vec::as_slice).unwrap_or_default());
        Self { inner, id }
    }

    /// Decodes an SPKI PEM public key.
    ///
    /// # Errors
    /// [`KeyError::Decode`] when the text is not an Ed25519 public key in PEM form.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        wasmsign2::PublicKey::from_pem(pem)
            .map(Self::from_inner)
            .map_err(|_| KeyError::Decode {
                what: "input".into(),
                expected: "public key (SPKI)",
            })
    }

    /// Reads an SPKI PEM public key file.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read or decoded.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        Self::from_pem(&text).map_err(|_| KeyError::Decode {
            what: path.display().to_string(),
            expected: "public key (SPKI)",
        })
    }

    /// The key as SPKI PEM text.
    pub fn to_pem(&self) -> String {
        self.inner.to_pem()
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// An Ed25519 private key used to sign modules.
pub struct SecretKey {
    inner: wasmsign2::SecretKey,
    public: PublicKey,
}

impl SecretKey {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Self {
        let pair = wasmsign2::KeyPair::generate();
        Self {
            public: PublicKey::from_inner(pair.pk),
            inner: pair.sk,
        }
    }

    /// Decodes a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// [`KeyError::Decode`] when the text is not an Ed25519 private key in PEM form.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = wasmsign2::SecretKey::from_pem(pem).map_err(|_| KeyError::Decode {
            what: "input".into(),
            expected: "private key (PKCS#8)",
        })?;
        let public = PublicKey::from_inner(wasmsign2::PublicKey {
            pk: inner.sk.public_key(),
            key_id: None,
        });
        Ok(Self { inner, public })
    }

    /// Reads a PKCS#8 PEM private key file.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read or decoded.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        Self::from_pem(&text).map_err(|_| KeyError::Decode {
            what: path.display().to_string(),
            expected: "private key (PKCS#8)",
        })
    }

    /// The key as PKCS#8 PEM text. Store it readable by its owner only.
    pub fn to_pem(&self) -> String {
        self.inner.to_pem()
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Adds this key's signature to a module or component and returns the signed bytes.
    ///
    /// Signatures already present are kept, so several publishers can sign one module. Sign as
    /// the last build step: any later change to the module's sections invalidates the signature.
    ///
    /// # Errors
    /// [`SignatureError::NotWasm`] or [`SignatureError::Malformed`] when the input cannot be
    /// parsed as a module.
    pub fn sign_module(&self, module: &[u8]) -> Result<Vec<u8>, SignatureError> {
        ModuleKind::detect(module)?;
        let parsed = wasmsign2::Module::deserialize(&mut Cursor::new(module))
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let key_id = self.public.inner.key_id().cloned();
        let (signed, _) = self
            .inner
            .sign_multi(parsed, key_id.as_ref(), false, false)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let mut out = Vec::with_capacity(module.len() + 128);
        signed
            .serialize(&mut out)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        Ok(out)
    }
}

/// A signature algorithm named in Vauban's signed objects (grants, policies). Only Ed25519 today;
/// the field exists so that a post-quantum algorithm can be added without a format change, and a
/// verifier refuses any name it does not know rather than skipping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), 64-byte signatures over the message itself.
    Ed25519,
}

impl Algorithm {
    /// The name written in files: `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
        }
    }

    /// The length in bytes of every signature made with this algorithm.
    pub fn signature_len(self) -> usize {
        match self {
            Self::Ed25519 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A signature algorithm this version of Vauban does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signature algorithm {0:?}: this version of vauban knows only \"ed25519\"")]
pub struct UnknownAlgorithm(pub String);

impl std::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Self::Ed25519),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

impl From<Algorithm> for String {
    fn from(a: Algorithm) -> Self {
        a.name().to_owned()
    }
}

impl TryFrom<String> for Algorithm {
    type Error = UnknownAlgorithm;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A signature over raw bytes did not verify with the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify with key {0}")]
pub struct BadSignature(pub KeyId);

impl SecretKey {
    /// The algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }

    /// Signs arbitrary bytes (deterministic Ed25519, RFC 8032): the 64-byte signature.
    ///
    /// Used for grants and policies, whose envelopes say what the bytes are (DSSE PAE), never
    /// for modules, which carry their signatures inside ([`SecretKey::sign_module`]).
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.inner.sk.sign(message, None).to_vec()
    }
}

impl PublicKey {
    /// The algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }

    /// Decodes a raw 32-byte Ed25519 public key.
    ///
    /// # Errors
    /// [`KeyError::Decode`] when the bytes are not a 32-byte Ed25519 public key.
    pub fn from_raw_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        ed25519_compact::PublicKey::from_slice(raw)
            .map(|pk| Self::from_inner(wasmsign2::PublicKey { pk, key_id: None }))
            .map_err(|_| KeyError::Decode {
                what: "input".into(),
                expected: "public key (raw 32 bytes)",
            })
    }

    /// The raw 32-byte public key.
    pub fn raw_bytes(&self) -> Vec<u8> {
        self.inner.pk.to_vec()
    }

    /// Verifies a signature made by [`SecretKey::sign_bytes`] over `message`.
    ///
    /// # Errors
    /// [`BadSignature`] when the signature is malformed or does not verify.
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let bad = || BadSignature(self.id.clone());
        let signature = ed25519_compact::Signature::from_slice(signature).map_err(|_| bad())?;
        self.inner.pk.verify(message, &signature).map_err(|_| bad())
    }
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|error| KeyError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// Why a module's signature was refused. Each reason has its own variant and message so that an
/// operator can tell an unsigned module from a tampered one from one signed by a stranger.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The bytes are not a WebAssembly module or component.
    #[error(transparent)]
    NotWasm(#[from] NotWasm),
    /// The module's sections or signature section cannot be parsed.
    #[error("malformed module or signature section: {0}")]
    Malformed(String),
    /// The module carries no signature at all.
    #[error("module is not signed: it has no signature section")]
    Unsigned,
    /// The module's content no longer matches the hash its signatures cover.
    #[error("module was modified after signing: its content does not match the signed hash")]
    Tampered,
    /// The content matches the signed hash, but no signature verifies with a trusted key.
    #[error("module is not signed by a trusted key (signed by: {})", display_ids(.signers))]
    UntrustedSigner {
        /// Key ids recorded next to the signatures, when the signer recorded them.
        signers: Vec<KeyId>,
    },
}

fn display_ids(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "unnamed keys".into();
    }
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// sha256 of the complete module file.
    pub digest: ModuleDigest,
    /// Core module or component, from the header.
    pub kind: ModuleKind,
    /// The trusted keys whose signature verified, sorted.
    pub signers: Vec<KeyId>,
}

/// The publisher keys a machine trusts. Empty by default: an empty store trusts nothing.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    keys: Vec<PublicKey>,
}

impl TrustStore {
    /// A store holding exactly these keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// Loads a trust store from a public key file, or from every `*.pub` file of a directory.
    ///
    /// # Errors
    /// [`KeyError`] when the path cannot be read or one of the files is not a public key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let read_err = |error| KeyError::Read {
            path: path.display().to_string(),
            error,
        };
        if !path.is_dir() {
            return Ok(Self::new([PublicKey::from_file(path)?]));
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let file = entry.map_err(read_err)?.path();
            if file.extension().is_some_and(|e| e == "pub") {
                files.push(file);
            }
        }
        files.sort();
        let keys = files
            .iter()
            .map(|f| PublicKey::from_file(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys))
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies a module's embedded whole-module signatures against the trusted keys.
    ///
    /// Runs before anything compiles the module. A refusal names its reason: not WebAssembly,
    /// unsigned, content changed after signing, or signer not trusted.
    ///
    /// # Errors
    /// A [`SignatureError`] naming why the module is refused.
    pub fn verify(&self, module: &[u8]) -> Result<Verified, SignatureError> {
        let kind = ModuleKind::detect(module)?;
        let trusted =
            wasmsign2::PublicKeySet::new(self.keys.iter().map(|k| k.inner.clone()).collect());
        match trusted.verify(&mut Cursor::new(module), None) {
            Ok(valid) => {
                let signers: BTreeSet<KeyId> = valid
                    .into_iter()
                    .map(|pk| KeyId::from_raw(pk.key_id().map(Vec::as_slice).unwrap_or_default()))
                    .collect();
                Ok(Verified {
                    digest: ModuleDigest::of(module),
                    kind,
                    signers: signers.into_iter().collect(),
                })
            }
            Err(wasmsign2::WSError::NoSignatures) => Err(SignatureError::Unsigned),
            // Only on refusal is it worth finding out which of the two reasons it is.
            Err(wasmsign2::WSError::VerificationFailed) => Err(explain_refusal(module)),
            Err(e) => Err(SignatureError::Malformed(e.to_string())),
        }
    }
}

/// Tells a module altered after signing from one signed by an untrusted key: in the first, the
/// hash of the content after the signature section is not among the hashes the signatures cover.
fn explain_refusal(module: &[u8]) -> SignatureError {
    let malformed = |e: wasmsign2::WSError| SignatureError::Malformed(e.to_string());
    let parsed = match wasmsign2::Module::deserialize(&mut Cursor::new(module)) {
        Ok(parsed) => parsed,
        Err(e) => return malformed(e),
    };
    let Some((wasmsign2::Section::Custom(header), rest)) = parsed.sections.split_first() else {
        return SignatureError::Unsigned;
    };
    let data = match header.signature_data() {
        Ok(data) => data,
        Err(e) => return malformed(e),
    };
    let mut hasher = HashWriter(Sha256::new());
    for section in rest {
        if let Err(e) = section.serialize(&mut hasher) {
            return malformed(e);
        }
    }
    let content_hash = hasher.0.finalize().to_vec();
    if !data
        .signed_hashes_set
        .iter()
        .any(|set| set.hashes.contains(&content_hash))
    {
        return SignatureError::Tampered;
    }
    let signers = data
        .signed_hashes_set
        .iter()
        .flat_map(|set| &set.signatures)
        .filter_map(|s| s.key_id.as_deref().map(KeyId::from_raw))
        .collect::<BTreeSet<_>>();
    SignatureError::UntrustedSigner {
        signers: signers.into_iter().collect(),
    }
}

/// Feeds serialized sections into a hasher without buffering the module twice.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid core module: header, then a type section with no types.
    const TINY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x01\x00";

    fn check(module: &[u8], trust: &TrustStore, expected: &str) {
        let got = match trust.verify(module) {
            Ok(v) => format!("ok {}", v.signers.len()),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expected), "expected {expected:?}, got {got:?}");
    }

    #[test]
    fn verification_names_each_refusal() {
        let publisher = SecretKey::generate();
        let stranger = SecretKey::generate();
        let trust = TrustStore::new([publisher.public_key().clone()]);
        let signed = publisher.sign_module(TINY_MODULE).expect("sign");
        let by_stranger = stranger.sign_module(TINY_MODULE).expect("sign");
        let mut tampered = signed.clone();
        *tampered.last_mut().expect("non-empty") = 0x01;

        check(&signed, &trust, "ok 1");
        check(TINY_MODULE, &trust, "not signed");
        check(&tampered, &trust, "modified after signing");
        check(&by_stranger, &trust, "not signed by a trusted key");
        check(
            &by_stranger,
            &trust,
            &stranger.public_key().id().to_string(),
        );
        check(b"\x7fELF\x02\x01\x01\0", &trust, "not a WebAssembly module");
        check(
            &signed,
            &TrustStore::default(),
            "not signed by a trusted key",
        );
    }

    #[test]
    fn several_publishers_can_sign_one_module() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let twice = b
            .sign_module(&a.sign_module(TINY_MODULE).expect("sign"))
            .expect("sign");
        let both = TrustStore::new([a.public_key().clone(), b.public_key().clone()]);
        let only_b = TrustStore::new([b.public_key().clone()]);
        assert_eq!(both.verify(&twice).expect("verify").signers.len(), 2);
        assert_eq!(
            only_b.verify(&twice).expect("verify").signers,
            vec![b.public_key().id().clone()]
        );
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let key = SecretKey::generate();
        let again = SecretKey::from_pem(&key.to_pem()).expect("private pem");
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).expect("public pem");
        assert_eq!(public.id(), key.public_key().id());
        assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(PublicKey::from_pem(&key.to_pem()).is_err());
    }

    #[test]
    fn raw_signatures_verify_only_unchanged_and_with_the_signing_key() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let sig = key.sign_bytes(b"message");
        assert_eq!(sig.len(), 64);
        let public = key.public_key();
        assert!(public.verify_bytes(b"message", &sig).is_ok());
        assert!(public.verify_bytes(b"messagE", &sig).is_err());
        assert!(public.verify_bytes(b"message", &sig[..63]).is_err());
        assert!(other.public_key().verify_bytes(b"message", &sig).is_err());
        let raw = PublicKey::from_raw_bytes(&public.raw_bytes()).expect("raw");
        assert_eq!(raw.id(), public.id());
        assert_eq!("ed25519".parse::<Algorithm>(), Ok(Algorithm::Ed25519));
        let unknown = "ml-dsa-65".parse::<Algorithm>().expect_err("unknown");
        assert!(
            unknown
                .to_string()
                .contains("unsupported signature algorithm \"ml-dsa-65\"")
        );
    }
}
