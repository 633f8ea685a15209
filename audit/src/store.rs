//! Where a log's bytes live: the [`Storage`] seam, and [`FileLog`], a log in a directory.
//!
//! ```text
//! DIR/entries.jsonl        one canonical JSON entry per line, append-only
//! DIR/checkpoints/<size>   the signed checkpoint note of the tree of <size> entries
//! ```
//!
//! The scheduler can later keep the same bytes in its own store by implementing [`Storage`];
//! everything above it (tree, checkpoints, proofs, verification) stays the same.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::AuditError;

/// The bytes of a log: entries and checkpoints. Appends must be durable when they return.
pub trait Storage {
    /// Every entry, in order, as exact bytes without the line terminator.
    ///
    /// # Errors
    /// When the entries cannot be read; [`AuditError::TornTail`] when the last one is partial.
    fn load_entries(&self) -> Result<Vec<Vec<u8>>, AuditError>;

    /// Durably appends one entry (bytes without a newline, and containing none).
    ///
    /// # Errors
    /// When the entry cannot be written and synced.
    fn append_entry(&mut self, entry: &[u8]) -> Result<(), AuditError>;

    /// Durably appends several entries, in order. A crash part way may leave any prefix of them
    /// appended, and a partial line after it. The default appends them one by one; a storage
    /// that can should make them durable together (one fsync).
    ///
    /// # Errors
    /// When an entry cannot be written and synced; the ones before it may be appended.
    fn append_entries(&mut self, entries: &[&[u8]]) -> Result<(), AuditError> {
        entries
            .iter()
            .try_for_each(|entry| self.append_entry(entry))
    }

    /// Every stored checkpoint as (name, note bytes); the name is the tree size in decimal when
    /// the store is intact.
    ///
    /// # Errors
    /// When the checkpoints cannot be read.
    fn load_checkpoints(&self) -> Result<Vec<(String, Vec<u8>)>, AuditError>;

    /// Durably stores the checkpoint of the tree of `size` entries, replacing none: storing
    /// different bytes under an existing size is [`AuditError::CheckpointExists`].
    ///
    /// # Errors
    /// When the checkpoint cannot be written and synced, or another exists for this size.
    fn store_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), AuditError>;
}

/// A log kept in a directory: `entries.jsonl` and `checkpoints/<size>`.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    /// The entries file opened for appending, on first append.
    appender: Option<File>,
}

/// The entries file's name in a log directory.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// The checkpoints directory's name in a log directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

impl FileLog {
    /// Opens the log in `dir`, creating the directory and an empty log if missing.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the directory cannot be created.
    pub fn create(dir: &Path) -> Result<Self, AuditError> {
        let checkpoints = dir.join(CHECKPOINTS_DIR);
        std::fs::create_dir_all(&checkpoints)
            .map_err(|e| AuditError::io("create", &checkpoints, e))?;
        let entries = dir.join(ENTRIES_FILE);
        if !entries.exists() {
            File::create(&entries).map_err(|e| AuditError::io("create", &entries, e))?;
            sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            appender: None,
        })
    }

    /// Opens an existing log in `dir` without creating anything.
    ///
    /// # Errors
    /// [`AuditError::Io`] when `dir` holds no `entries.jsonl`.
    pub fn existing(dir: &Path) -> Result<Self, AuditError> {
        let entries = dir.join(ENTRIES_FILE);
        std::fs::metadata(&entries).map_err(|e| AuditError::io("open", &entries, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            appender: None,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cuts the partial line an interrupted append left at the end of `entries.jsonl` (what
    /// [`AuditError::TornTail`] reports), keeping every complete entry, and syncs the file.
    /// Returns how many bytes were cut (0 when the file ends in a complete line).
    ///
    /// Only for a writer that still holds the entry being appended when it was interrupted
    /// (the scheduler keeps it in its outbox until the append is done, and appends it again):
    /// otherwise the cut bytes are an entry lost, and `vauban audit verify` should say so.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be read, cut or synced.
    pub fn repair_torn_tail(dir: &Path) -> Result<u64, AuditError> {
        let path = dir.join(ENTRIES_FILE);
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io("read", &path, e))?;
        let keep = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        let cut = (bytes.len() - keep) as u64;
        if cut == 0 {
            return Ok(0);
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        file.set_len(keep as u64)
            .map_err(|e| AuditError::io("truncate", &path, e))?;
        file.sync_all()
            .map_err(|e| AuditError::io("sync", &path, e))?;
        Ok(cut)
    }
}

impl Storage for FileLog {
    fn load_entries(&self) -> Result<Vec<Vec<u8>>, AuditError> {
        let path = self.dir.join(ENTRIES_FILE);
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io("read", &path, e))?;
        let Some(body) = bytes.strip_suffix(b"\n") else {
            if bytes.is_empty() {
                return Ok(Vec::new());
            }
            let complete = bytes.iter().filter(|&&b| b == b'\n').count();
            return Err(AuditError::TornTail {
                entries: complete as u64,
            });
        };
        Ok(body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect())
    }

    fn append_entry(&mut self, entry: &[u8]) -> Result<(), AuditError> {
        self.append_entries(&[entry])
    }

    fn append_entries(&mut self, entries: &[&[u8]]) -> Result<(), AuditError> {
        let path = self.dir.join(ENTRIES_FILE);
        if self.appender.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| AuditError::io("open", &path, e))?;
            self.appender = Some(file);
        }
        let file = self.appender.as_mut().ok_or_else(|| {
            AuditError::io("open", &path, std::io::Error::other("no append handle"))
        })?;
        let mut lines = Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum());
        for entry in entries {
            lines.extend_from_slice(entry);
            lines.push(b'\n');
        }
        // One write of the whole lines, then one fsync: entries are on disk before their
        // indices are returned, and a crash leaves complete entries followed by at most a
        // partial line (reported as a torn tail).
        file.write_all(&lines)
            .map_err(|e| AuditError::io("append to", &path, e))?;
        file.sync_data()
            .map_err(|e| AuditError::io("sync", &path, e))
    }

    fn load_checkpoints(&self) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
        let dir = self.dir.join(CHECKPOINTS_DIR);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AuditError::io("read", &dir, e)),
        };
        let mut out = Vec::new();
        for item in listing {
            let item = item.map_err(|e| AuditError::io("read", &dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            // Temporary files of an interrupted `store_checkpoint`.
            if name.starts_with('.') {
                continue;
            }
            let bytes =
                std::fs::read(item.path()).map_err(|e| AuditError::io("read", item.path(), e))?;
            out.push((name, bytes));
        }
        Ok(out)
    }

    fn store_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), AuditError> {
        let dir = self.dir.join(CHECKPOINTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io("create", &dir, e))?;
        let path = dir.join(size.to_string());
        match std::fs::read(&path) {
            Ok(existing) if existing == note => return Ok(()),
            Ok(_) => return Err(AuditError::CheckpointExists { size }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuditError::io("read", &path, e)),
        }
        // Write beside, sync, rename into place, sync the directory: a checkpoint file is
        // either absent or complete.
        let tmp = dir.join(format!(".{size}.tmp"));
        let mut file = File::create(&tmp).map_err(|e| AuditError::io("create", &tmp, e))?;
        file.write_all(note)
            .map_err(|e| AuditError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| AuditError::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| AuditError::io("rename", &path, e))?;
        sync_dir(&dir)
    }
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_complete_entry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut log = FileLog::create(dir).expect("create");
        assert_eq!(FileLog::repair_torn_tail(dir).expect("empty"), 0);
        log.append_entry(b"{\"a\":1}").expect("append");
        log.append_entry(b"{\"b\":2}").expect("append");
        assert_eq!(FileLog::repair_torn_tail(dir).expect("whole"), 0);
        let path = dir.join(ENTRIES_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"{\"c\":");
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(
            log.load_entries(),
            Err(AuditError::TornTail { entries: 2 })
        ));
        assert_eq!(FileLog::repair_torn_tail(dir).expect("repair"), 5);
        assert_eq!(
            log.load_entries().expect("load"),
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        // A file that is nothing but a partial line is cut to nothing.
        std::fs::write(&path, b"{\"x").expect("write");
        assert_eq!(FileLog::repair_torn_tail(dir).expect("repair"), 3);
        assert!(log.load_entries().expect("load").is_empty());
    }
}
