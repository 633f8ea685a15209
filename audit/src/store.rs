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
        let mut line = Vec::with_capacity(entry.len() + 1);
        line.extend_from_slice(entry);
        line.push(b'\n');
        // One write of the whole line, then fsync: an entry is on disk before its index is
        // returned, and a crash leaves at most a partial last line (reported as a torn tail).
        file.write_all(&line)
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
