//! The on-disk cache of compiled artifacts, so that a restarted host does not recompile.
//!
//! Artifacts live under `<cache dir>/<engine fingerprint>/<module sha256>.cwasm`. The fingerprint
//! hashes wasmtime's `precompile_compatibility_hash` (wasmtime version, target, and every setting
//! that changes generated code, such as fuel and epochs), so an engine never sees another
//! engine's artifacts. All file access goes through a cap-std handle on the cache directory.
//!
//! Loading an artifact is `unsafe` in wasmtime: the bytes are trusted to be native code this
//! engine produced. That trust rests on the cache directory being written only by this host
//! (it is created owner-only), and on the key being the digest of a module whose signature was
//! verified just before.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::Path;

use cap_std::fs::{Dir, DirBuilder};
use sha2_hasher::Sha256Hasher;
use vauban_core::{ModuleDigest, ModuleKind};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::files;

/// Compiled code of one module or component.
pub(crate) enum Compiled {
    Core(wasmtime::Module),
    Component(Component),
}

/// The artifact directory of one engine.
#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: Dir,
    fingerprint: String,
}

impl ArtifactCache {
    /// Opens (creating if needed, owner-only) the cache directory for this engine.
    pub(crate) fn open(root: &Path, engine: &Engine) -> io::Result<Self> {
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());

        let root = files::open_private_dir(root)?;
        let mut sub = DirBuilder::new();
        sub.recursive(true);
        cap_std::fs::DirBuilderExt::mode(&mut sub, 0o700);
        root.create_dir_with(&fingerprint, &sub)?;
        let dir = root.open_dir(&fingerprint)?;
        Ok(Self { dir, fingerprint })
    }

    /// The engine fingerprint this cache is keyed by.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn file_name(digest: &ModuleDigest) -> String {
        format!("{}.cwasm", digest.hex())
    }

    /// Loads a cached artifact. `Ok(None)` when there is none, or when it is unusable (it is then
    /// removed so that the caller recompiles and replaces it).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        digest: &ModuleDigest,
        kind: ModuleKind,
    ) -> io::Result<Option<Compiled>> {
        let name = Self::file_name(digest);
        let Some(bytes) = files::read_if_present(&self.dir, &name)? else {
            return Ok(None);
        };
        match deserialize(engine, kind, &bytes) {
            Ok(compiled) => Ok(Some(compiled)),
            Err(error) => {
                tracing::warn!(%digest, %error, "discarding unusable cached artifact");
                self.dir.remove_file(&name)?;
                Ok(None)
            }
        }
    }

    /// Stores an artifact atomically: written to a temporary name, then renamed into place.
    pub(crate) fn store(&self, digest: &ModuleDigest, artifact: &[u8]) -> io::Result<()> {
        files::write_atomically(&self.dir, &Self::file_name(digest), artifact)
    }
}

/// Deserializes an artifact produced by this engine.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, kind: ModuleKind, bytes: &[u8]) -> wasmtime::Result<Compiled> {
    // SAFETY: the artifact was written by `ArtifactCache::store` with output of this engine's
    // `serialize`, into an owner-only directory under a subdirectory named by this engine's
    // compatibility fingerprint; wasmtime additionally checks its own version and settings
    // header and refuses a mismatch.
    unsafe {
        Ok(match kind {
            ModuleKind::CoreModule => Compiled::Core(wasmtime::Module::deserialize(engine, bytes)?),
            ModuleKind::Component => Compiled::Component(Component::deserialize(engine, bytes)?),
        })
    }
}

mod sha2_hasher {
    //! A `std::hash::Hasher` whose output does not change between Rust releases (unlike
    //! `DefaultHasher`), so cache directory names stay stable.

    use sha2::{Digest, Sha256};

    #[derive(Default)]
    pub(super) struct Sha256Hasher(Sha256);

    impl std::hash::Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }

        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            u64::from_be_bytes(first)
        }
    }
}
