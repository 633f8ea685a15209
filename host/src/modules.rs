//! The host's store of modules fetched from the scheduler, by digest, so that a job whose module
//! this host already has starts without a transfer.
//!
//! Modules live under `<module dir>/<sha256 hex>.wasm`. All file access goes through a cap-std
//! handle on that directory, so a name can never reach outside it. Bytes are stored only when
//! their sha256 is the digest they are stored under, and checked again when read back: a file
//! altered on disk reads as absent (and is removed) rather than as another module. What this store
//! does not establish is whether the module may run: that is the publisher signature, which
//! `Runtime::load` verifies against this host's own trust store on every load.
//!
//! Modules read or stored since the agent started are also kept in memory (up to
//! [`MEMORY_BYTES`]), so that a job whose module ran before starts without reading and hashing
//! the file again. Their digest was checked when they entered memory, and this process's memory,
//! unlike the directory, is not shared with anyone who could alter it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use cap_std::fs::Dir;
use vauban_core::ModuleDigest;

use crate::files;

/// Most bytes of modules kept in memory; the oldest entries go first when a new one does not
/// fit, and a module larger than this is only on disk.
pub(crate) const MEMORY_BYTES: usize = 256 << 20;

/// Module files by digest in one directory, and the most recent ones in memory.
#[derive(Debug)]
pub(crate) struct ModuleStore {
    dir: Dir,
    // A std mutex: held only to look up, insert or evict, never across I/O or an await.
    memory: Mutex<Memory>,
}

/// Modules in memory, by digest, with their order of arrival for eviction.
#[derive(Debug)]
struct Memory {
    modules: HashMap<ModuleDigest, Arc<[u8]>>,
    order: VecDeque<ModuleDigest>,
    bytes: usize,
    limit: usize,
}

impl Memory {
    fn new(limit: usize) -> Self {
        Self {
            modules: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    fn insert(&mut self, digest: ModuleDigest, bytes: Arc<[u8]>) {
        if bytes.len() > self.limit || self.modules.contains_key(&digest) {
            return;
        }
        while self.bytes + bytes.len() > self.limit {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.modules.remove(&oldest) {
                self.bytes -= evicted.len();
            }
        }
        self.bytes += bytes.len();
        self.order.push_back(digest);
        self.modules.insert(digest, bytes);
    }
}

/// A module could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The bytes are not the module the digest names. Nothing was written.
    #[error("the module received has digest {actual}, the assignment names {expected}")]
    DigestMismatch {
        /// The digest the bytes were supposed to have.
        expected: ModuleDigest,
        /// The digest they have.
        actual: ModuleDigest,
    },
    /// The file could not be written.
    #[error("cannot store module: {0}")]
    Io(#[from] io::Error),
}

impl ModuleStore {
    /// Opens the store at `path`, creating the directory (owner-only) if it is missing.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: files::open_private_dir(path)?,
            memory: Mutex::new(Memory::new(MEMORY_BYTES)),
        })
    }

    fn file_name(digest: &ModuleDigest) -> String {
        format!("{}.wasm", digest.hex())
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bytes of the module with this digest if they are in memory. Does no I/O: fit to call
    /// from async code.
    pub(crate) fn cached(&self, digest: &ModuleDigest) -> Option<Arc<[u8]>> {
        self.memory().modules.get(digest).cloned()
    }

    /// The bytes of the module with this digest, `None` when the store does not have it (or
    /// had a copy that no longer matches its digest, which is then removed).
    pub(crate) fn get(&self, digest: &ModuleDigest) -> io::Result<Option<Arc<[u8]>>> {
        if let Some(bytes) = self.cached(digest) {
            return Ok(Some(bytes));
        }
        let name = Self::file_name(digest);
        let Some(bytes) = files::read_if_present(&self.dir, &name)? else {
            return Ok(None);
        };
        let actual = ModuleDigest::of(&bytes);
        if actual != *digest {
            tracing::warn!(%digest, %actual, "removing a stored module that no longer matches its digest");
            self.dir.remove_file(&name)?;
            return Ok(None);
        }
        let bytes = Arc::<[u8]>::from(bytes);
        self.memory().insert(*digest, Arc::clone(&bytes));
        Ok(Some(bytes))
    }

    /// The digests of the modules in the directory, sorted: what a restarted host already holds.
    /// Only names the store writes (`<64 lowercase hex>.wasm`) count; temporary files and
    /// anything else are skipped. The files are not read: each is checked against its digest
    /// when [`ModuleStore::get`] reads it, which removes one that no longer matches.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub(crate) fn digests(&self) -> io::Result<Vec<ModuleDigest>> {
        let mut digests = Vec::new();
        for entry in self.dir.entries()? {
            let name = entry?.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            // The digest parser also takes uppercase hex or a `sha256:` prefix; `get` reads only
            // the name `file_name` gives, so only that name is a stored module.
            if let Ok(digest) = hex.parse::<ModuleDigest>()
                && digest.hex() == hex
            {
                digests.push(digest);
            }
        }
        digests.sort_unstable();
        Ok(digests)
    }

    /// Stores `bytes` as the module `expected`, if that is their digest: written to a temporary
    /// name, then renamed into place, so a reader never sees a partial file. Kept in memory too,
    /// even if writing the file fails.
    ///
    /// # Errors
    /// [`StoreError::DigestMismatch`] naming both digests when the bytes are another module;
    /// [`StoreError::Io`] when the file cannot be written.
    pub(crate) fn put(&self, expected: &ModuleDigest, bytes: &Arc<[u8]>) -> Result<(), StoreError> {
        check_digest(expected, bytes)?;
        self.memory().insert(*expected, Arc::clone(bytes));
        files::write_atomically(&self.dir, &Self::file_name(expected), bytes)?;
        Ok(())
    }
}

/// Fails unless `bytes` hash to `expected`.
///
/// # Errors
/// [`StoreError::DigestMismatch`] naming both digests.
pub(crate) fn check_digest(expected: &ModuleDigest, bytes: &[u8]) -> Result<(), StoreError> {
    let actual = ModuleDigest::of(bytes);
    if actual == *expected {
        Ok(())
    } else {
        Err(StoreError::DigestMismatch {
            expected: *expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ModuleStore) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ModuleStore::open(&tmp.path().join("modules")).expect("open");
        (tmp, store)
    }

    #[test]
    fn stores_and_reads_back_by_digest() {
        let (tmp, store) = store();
        let bytes = Arc::<[u8]>::from(&b"\0asm\x01\0\0\0 some module"[..]);
        let digest = ModuleDigest::of(&bytes);
        assert_eq!(store.get(&digest).expect("get"), None);
        store.put(&digest, &bytes).expect("put");
        assert_eq!(store.get(&digest).expect("get"), Some(bytes.clone()));
        // A fresh store on the same directory reads it from disk, digest checked.
        let again = ModuleStore::open(&tmp.path().join("modules")).expect("open");
        assert_eq!(again.cached(&digest), None);
        assert_eq!(again.get(&digest).expect("get"), Some(bytes.clone()));
        assert_eq!(again.cached(&digest), Some(bytes));
        let file = tmp
            .path()
            .join("modules")
            .join(format!("{}.wasm", digest.hex()));
        assert!(file.is_file(), "{} exists", file.display());
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("modules"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn refuses_bytes_of_another_digest_and_names_both() {
        let (_tmp, store) = store();
        let expected = ModuleDigest::of(b"the module the scheduler promised");
        let bytes = Arc::<[u8]>::from(&b"something else"[..]);
        let actual = ModuleDigest::of(&bytes);
        let err = store.put(&expected, &bytes).expect_err("refused");
        let message = err.to_string();
        assert!(
            matches!(err, StoreError::DigestMismatch { expected: e, actual: a } if e == expected && a == actual)
        );
        assert!(message.contains(&expected.to_string()), "{message}");
        assert!(message.contains(&actual.to_string()), "{message}");
        assert_eq!(store.get(&expected).expect("get"), None, "nothing stored");
        assert_eq!(store.cached(&expected), None, "nothing kept in memory");
    }

    #[test]
    fn memory_keeps_the_most_recent_modules_within_its_limit() {
        let module = |fill: u8, len: usize| {
            let bytes = Arc::<[u8]>::from(vec![fill; len]);
            (ModuleDigest::of(&bytes), bytes)
        };
        let (a, b, c, huge) = (module(1, 4), module(2, 4), module(3, 4), module(4, 11));
        let mut memory = Memory::new(10);
        memory.insert(a.0, a.1.clone());
        memory.insert(b.0, b.1.clone());
        memory.insert(a.0, a.1.clone());
        assert_eq!(memory.bytes, 8, "a repeated module is kept once");
        memory.insert(c.0, c.1);
        assert!(!memory.modules.contains_key(&a.0), "the oldest went first");
        assert!(memory.modules.contains_key(&b.0) && memory.modules.contains_key(&c.0));
        assert_eq!(memory.bytes, 8);
        memory.insert(huge.0, huge.1);
        assert!(
            !memory.modules.contains_key(&huge.0),
            "larger than the limit: not kept"
        );
        assert_eq!((memory.bytes, memory.order.len()), (8, 2));
    }

    #[test]
    fn lists_the_digests_of_the_modules_on_disk() {
        let (tmp, store) = store();
        assert_eq!(store.digests().expect("list"), []);
        let mut want = Vec::new();
        for module in [&b"first"[..], b"second"] {
            let bytes = Arc::<[u8]>::from(module);
            let digest = ModuleDigest::of(&bytes);
            store.put(&digest, &bytes).expect("put");
            want.push(digest);
        }
        want.sort_unstable();
        let dir = tmp.path().join("modules");
        let hex = want[0].hex();
        for stray in [
            format!("{hex}.wasm.1.2.tmp"),
            format!("{}.wasm", hex.to_uppercase()),
            format!("sha256:{hex}.wasm"),
            "notes.txt".to_owned(),
            "abc.wasm".to_owned(),
        ] {
            std::fs::write(dir.join(stray), b"x").expect("write");
        }
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        // A restarted host: a fresh store on the same directory, nothing in memory.
        let again = ModuleStore::open(&dir).expect("open");
        assert_eq!(again.digests().expect("list"), want);
    }

    #[test]
    fn a_file_altered_on_disk_reads_as_absent() {
        let (tmp, store) = store();
        let bytes = Arc::<[u8]>::from(&b"original"[..]);
        let digest = ModuleDigest::of(&bytes);
        store.put(&digest, &bytes).expect("put");
        // Another process's view of the directory: what it reads comes from the disk.
        let store = ModuleStore::open(&tmp.path().join("modules")).expect("open");
        let path = tmp
            .path()
            .join("modules")
            .join(format!("{}.wasm", digest.hex()));
        std::fs::write(&path, b"tampered").expect("tamper");
        assert_eq!(store.get(&digest).expect("get"), None);
        assert!(!path.exists(), "the altered copy is removed");
    }
}
