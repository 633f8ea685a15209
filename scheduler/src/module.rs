//! The module registry: signed modules uploaded by clients, verified against the scheduler's
//! trust (its publisher keys, or its trust policy's publishers, threshold and revocations) and
//! kept by digest.
//!
//! Unlike jobs and nodes, modules need no owner task: the registry only ever adds entries keyed
//! by their content, a module's bytes never change, and its record only gains namespaces, by a
//! write the store guards against concurrent ones. So the gRPC edge calls the registry directly,
//! and the state task only asks the store whether a job's module is there.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vauban_core::admission::verify_module;
use vauban_core::{KeyId, ModuleDigest, ModuleKind, ModuleRefusal};

use crate::store::{Store, StoreError};
use crate::trust::Trust;

/// What the scheduler records about a stored module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModuleRecord {
    pub(crate) digest: ModuleDigest,
    /// The name given at its first upload; may be empty.
    pub(crate) name: String,
    pub(crate) kind: ModuleKind,
    pub(crate) size_bytes: u64,
    /// Trusted keys whose signatures verified.
    pub(crate) signers: Vec<KeyId>,
    /// Unix milliseconds of its first upload.
    pub(crate) uploaded_at_ms: u64,
    /// The namespaces it was uploaded into.
    #[serde(default)]
    pub(crate) namespaces: BTreeSet<String>,
}

/// Why a module was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModuleError {
    /// Larger than the configured maximum.
    #[error("module is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Not WebAssembly, unsigned, altered after signing, not signed by a trusted key; under a
    /// trust policy also a revoked digest, or too few publisher signatures.
    #[error(transparent)]
    Refused(#[from] ModuleRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Assembles an upload from its chunks, refusing it as soon as it grows past the limit rather
/// than after buffering all of it.
#[derive(Debug)]
pub(crate) struct ModuleUpload {
    limit: u64,
    bytes: Vec<u8>,
}

impl ModuleUpload {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            bytes: Vec::new(),
        }
    }

    /// Appends the next chunk.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), ModuleError> {
        let len = u64::try_from(self.bytes.len() + chunk.len()).unwrap_or(u64::MAX);
        if len > self.limit {
            return Err(ModuleError::TooLarge { limit: self.limit });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Verifies and stores modules, and reads them back.
#[derive(Clone, Debug)]
pub(crate) struct ModuleRegistry {
    store: Store,
    trust: Trust,
    max_bytes: u64,
}

impl ModuleRegistry {
    pub(crate) fn new(store: Store, trust: Trust, max_bytes: u64) -> Self {
        Self {
            store,
            trust,
            max_bytes,
        }
    }

    /// A fresh upload bounded by the configured maximum.
    pub(crate) fn upload(&self) -> ModuleUpload {
        ModuleUpload::new(self.max_bytes)
    }

    /// Verifies a module uploaded into `namespace` and stores it by digest; a module already
    /// stored is returned as it was first recorded, with `namespace` added to its namespaces.
    pub(crate) async fn admit(
        &self,
        namespace: String,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<ModuleRecord, ModuleError> {
        let trust = self.trust.clone();
        let store = self.store.clone();
        // Hashing and checking signatures of up to the size limit is CPU work, and the insert a
        // commit: both stay off the runtime's workers.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let verified = match &trust {
                Trust::Keys(keys) => keys.verify(&bytes).map_err(ModuleRefusal::from)?,
                Trust::Policy(policy) => verify_module(&policy.current(), &bytes)?,
            };
            let record = ModuleRecord {
                digest: verified.digest,
                name,
                kind: verified.kind,
                size_bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                signers: verified.signers,
                uploaded_at_ms: crate::now_ms(),
                namespaces: BTreeSet::new(),
            };
            Ok(store.insert_module(&namespace, record, &bytes)?)
        })
        .await
        .map_err(|e| ModuleError::Store(StoreError::Task(e.to_string())))?
    }

    pub(crate) async fn get(
        &self,
        digest: ModuleDigest,
    ) -> Result<Option<ModuleRecord>, StoreError> {
        self.store.call(move |s| s.module(&digest)).await
    }

    pub(crate) async fn list(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.store.call(Store::modules).await
    }

    pub(crate) async fn bytes(&self, digest: ModuleDigest) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.call(move |s| s.module_bytes(&digest)).await
    }
}

#[cfg(test)]
mod tests {
    use vauban_core::{SecretKey, TrustStore};

    use super::*;

    const TINY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x01\x00";

    #[test]
    fn uploads_are_bounded() {
        let mut upload = ModuleUpload::new(5);
        upload.push(b"abc").expect("fits");
        upload.push(b"de").expect("fits exactly");
        let err = upload.push(b"f").expect_err("too large");
        assert_eq!(
            err.to_string(),
            "module is larger than the limit of 5 bytes"
        );
    }

    #[tokio::test]
    async fn admits_only_modules_signed_by_a_trusted_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.redb")).expect("open");
        let key = SecretKey::generate();
        let registry = ModuleRegistry::new(
            store,
            Trust::Keys(TrustStore::new([key.public_key().clone()])),
            1 << 20,
        );
        let signed = key.sign_module(TINY_MODULE).expect("sign");

        let record = registry
            .admit("a".into(), "tiny".into(), signed.clone())
            .await
            .expect("admitted");
        assert_eq!(record.digest, ModuleDigest::of(&signed));
        assert_eq!(record.kind, ModuleKind::CoreModule);
        assert_eq!(record.signers, vec![key.public_key().id().clone()]);
        assert_eq!(record.namespaces, BTreeSet::from(["a".to_owned()]));
        let again = registry
            .admit("a".into(), "other".into(), signed.clone())
            .await
            .expect("again");
        assert_eq!(again, record);
        // Into another namespace: the same module, which the record now lists there too.
        let elsewhere = registry
            .admit("b".into(), "other".into(), signed)
            .await
            .expect("elsewhere");
        let record = ModuleRecord {
            namespaces: BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            ..record
        };
        assert_eq!(elsewhere, record);
        assert_eq!(registry.list().await.expect("list"), vec![record.clone()]);

        let unsigned = registry
            .admit("a".into(), String::new(), TINY_MODULE.to_vec())
            .await
            .expect_err("unsigned");
        assert!(
            unsigned.to_string().contains("module is not signed"),
            "{unsigned}"
        );

        let stranger = SecretKey::generate()
            .sign_module(TINY_MODULE)
            .expect("sign");
        let untrusted = registry
            .admit("a".into(), String::new(), stranger)
            .await
            .expect_err("untrusted");
        assert!(
            untrusted
                .to_string()
                .contains("not signed by a trusted key"),
            "{untrusted}"
        );
    }
}
