//! [`Log`]: the writer's view of an audit log — append entries, sign checkpoints, prove.

use std::path::Path;

use tlog_tiles::Hash;

use crate::AuditError;
use crate::checkpoint::SignedCheckpoint;
use crate::entry::Entry;
use crate::key::AuditSigner;
use crate::proof::ProofBundle;
use crate::store::{FileLog, Storage};
use crate::tree::{ConsistencyProof, InclusionProof, Tree};
use crate::verify::{Report, check};

/// An open audit log. It holds every entry and the tree in memory (about 100 bytes per entry
/// beyond the entry itself) and is the only writer of its storage.
#[derive(Debug)]
pub struct Log<S: Storage = FileLog> {
    store: S,
    /// The exact bytes of every entry; `entries.len() == tree.size()`.
    entries: Vec<Vec<u8>>,
    tree: Tree,
    /// Stored checkpoints, ascending by size; each root matches `tree`.
    checkpoints: Vec<SignedCheckpoint>,
    /// How many entries are execution receipts.
    receipts: u64,
}

impl Log<FileLog> {
    /// Opens (creating if missing) the log in `dir`, recomputing the tree and checking every
    /// entry and every checkpoint's root against it (signatures are checked by
    /// [`crate::verify_log`], which needs the public key).
    ///
    /// # Errors
    /// As [`crate::verify_log`], except for signatures.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        Self::with_storage(FileLog::create(dir)?)
    }
}

impl<S: Storage> Log<S> {
    /// Opens a log over any storage, checking it as [`Log::open`] does.
    ///
    /// # Errors
    /// As [`Log::open`].
    pub fn with_storage(store: S) -> Result<Self, AuditError> {
        let checked = check(&store, None)?;
        Ok(Self {
            store,
            entries: checked.entries,
            tree: checked.tree,
            checkpoints: checked.checkpoints,
            receipts: checked.receipts,
        })
    }

    /// Durably appends an entry; returns its index.
    ///
    /// # Errors
    /// When the entry cannot be written; the log is unchanged then.
    pub fn append(&mut self, entry: &Entry) -> Result<u64, AuditError> {
        let line = entry.to_line()?;
        self.store.append_entry(&line)?;
        let index = self.tree.push(&line)?;
        self.entries.push(line);
        if matches!(entry, Entry::Receipt(_)) {
            self.receipts += 1;
        }
        Ok(index)
    }

    /// Durably appends entries in order, with one sync for all of them; returns the index of
    /// the first. Each line is checked to be a canonical entry before anything is written.
    ///
    /// # Errors
    /// [`AuditError::MalformedEntry`] (naming the index the line would have had) before writing
    /// anything; otherwise when the lines cannot be written, and then the log in memory is
    /// unchanged but the file may hold some of them: reopen it before appending again.
    pub fn append_lines(&mut self, lines: &[&[u8]]) -> Result<u64, AuditError> {
        let first = self.len();
        let mut receipts = 0;
        for (index, line) in (first..).zip(lines) {
            let entry = Entry::from_line(line)
                .map_err(|reason| AuditError::MalformedEntry { index, reason })?;
            if matches!(entry, Entry::Receipt(_)) {
                receipts += 1;
            }
        }
        self.store.append_entries(lines)?;
        self.receipts += receipts;
        for line in lines {
            self.tree.push(line)?;
            self.entries.push(line.to_vec());
        }
        Ok(first)
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root hash of the first `size` entries.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when `size > len()`.
    pub fn root(&self, size: u64) -> Result<Hash, AuditError> {
        self.tree.root(size)
    }

    /// Entry `index`'s exact bytes.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] past the end.
    pub fn entry_bytes(&self, index: u64) -> Result<&[u8], AuditError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(Vec::as_slice)
            .ok_or_else(|| {
                AuditError::OutOfRange(format!(
                    "entry {index} does not exist: the log holds {} entries",
                    self.len()
                ))
            })
    }

    /// Entry `index`, parsed.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] past the end.
    pub fn entry(&self, index: u64) -> Result<Entry, AuditError> {
        Entry::from_line(self.entry_bytes(index)?)
            .map_err(|reason| AuditError::MalformedEntry { index, reason })
    }

    /// Signs and stores a checkpoint of the current tree. Checkpointing an unchanged tree again
    /// with the same key returns the same checkpoint (Ed25519 is deterministic).
    ///
    /// # Errors
    /// [`AuditError::OriginMismatch`] when the log's checkpoints have another origin;
    /// [`AuditError::CheckpointExists`] when another key already signed this size; I/O errors.
    pub fn checkpoint(&mut self, signer: &AuditSigner) -> Result<SignedCheckpoint, AuditError> {
        let size = self.len();
        if let Some(first) = self.checkpoints.first()
            && first.origin() != signer.origin()
        {
            return Err(AuditError::OriginMismatch {
                size,
                found: signer.origin().to_owned(),
                expected: first.origin().to_owned(),
            });
        }
        let checkpoint = SignedCheckpoint::sign(signer, size, self.tree.root(size)?)?;
        self.store.store_checkpoint(size, checkpoint.as_bytes())?;
        if self.checkpoints.last().is_none_or(|c| c.size() < size) {
            self.checkpoints.push(checkpoint.clone());
        }
        Ok(checkpoint)
    }

    /// The latest stored checkpoint (signature not checked here).
    pub fn latest_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.checkpoints.last()
    }

    /// The stored checkpoints, ascending by size.
    pub fn checkpoints(&self) -> &[SignedCheckpoint] {
        &self.checkpoints
    }

    /// The proof that entry `index` is in the tree of `tree_size` entries.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `index < tree_size <= len()`.
    pub fn prove_inclusion(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        self.tree.prove_inclusion(index, tree_size)
    }

    /// The proof that the tree of `old_size` entries is a prefix of the tree of `new_size`.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `1 <= old_size <= new_size <= len()`.
    pub fn prove_consistency(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        self.tree.prove_consistency(old_size, new_size)
    }

    /// A self-contained proof that entry `index` is in the log, against the latest checkpoint.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when the entry does not exist or no checkpoint covers it yet.
    pub fn prove(&self, index: u64) -> Result<ProofBundle, AuditError> {
        let entry = self.entry_bytes(index)?;
        let checkpoint = self
            .latest_checkpoint()
            .filter(|c| c.size() > index)
            .ok_or_else(|| {
                AuditError::OutOfRange(format!(
                    "entry {index} is not covered by a checkpoint yet: sign one first \
                     (vauban audit checkpoint)"
                ))
            })?;
        Ok(ProofBundle::new(
            index,
            entry,
            checkpoint,
            self.prove_inclusion(index, checkpoint.size())?,
        ))
    }

    /// What [`crate::verify_log`] would report, without the signature checks.
    pub fn report(&self) -> Report {
        let latest = self.checkpoints.last();
        Report {
            entries: self.len(),
            checkpoints: self
                .checkpoints
                .iter()
                .map(SignedCheckpoint::size)
                .collect(),
            origin: latest.map(|c| c.origin().to_owned()),
            latest: latest.map(|c| (c.size(), c.root().to_string())),
            unsigned: self.len() - latest.map_or(0, SignedCheckpoint::size),
            receipts: self.receipts,
        }
    }

    /// The storage (for its location, say).
    pub fn storage(&self) -> &S {
        &self.store
    }
}
