//! `integrity-scan`: hashes every regular file under a directory with SHA-256 and writes a
//! JSON report; the "real job" that needs a read-only input preopen and a writable output
//! preopen.
//!
//! Usage: `integrity-scan [--data DIR] [--out DIR]` (defaults `/data` and `/out`).
//!
//! It walks `DIR` recursively without following symlinks, hashes each regular file in
//! 64 KiB chunks and writes `{out}/report.json`:
//!
//! ```text
//! {"files":[{"path":"a/b.txt","bytes":3,"sha256":"<hex>"},{"path":"link","symlink":true}],
//!  "total_files":1,"total_bytes":3}
//! ```
//!
//! (one line, followed by a newline). Paths are relative to `DIR`, `/`-separated and sorted
//! by byte order. Symlinks are listed as `{"path":..,"symlink":true}` and neither hashed nor
//! counted; other special files are skipped. `total_files`/`total_bytes` cover the regular
//! files only. On success stdout is `scanned {N} files, {M} bytes`.
//!
//! A job of the `vauban-guest` SDK over bytes (`job!(bytes: ..)`): it ignores its input and
//! returns the stdout line. On wasm32-wasip1 it is a command; on wasm32-wasip2 a component of the
//! `vauban:job` world whose `run` export Vauban calls (the arguments and directories are the same
//! WASI grants either way), and the same command as `wasi:cli/run`.
//!
//! What a host test expects: exit 0, that stdout line and a `report.json` in the output
//! directory whose hashes match the files; an unreadable `DIR` or an unwritable `--out`
//! exits 1, a malformed command line exits 2, each with the SDK's `error` line on stderr
//! (`{"level":"error","msg":"usage: ...","fields":{"exit_code":"2"}}`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use vauban_guest::Error;

/// Read buffer size when hashing.
const CHUNK: usize = 64 * 1024;

/// The report written to `{out}/report.json`.
#[derive(Serialize)]
struct Report {
    files: Vec<Entry>,
    total_files: u64,
    total_bytes: u64,
}

/// One file in the report.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    File {
        path: String,
        bytes: u64,
        sha256: String,
    },
    Symlink {
        path: String,
        symlink: bool,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

vauban_guest::job!(bytes: integrity_scan);

/// The job: its input is unused, its arguments name the directories, its output is one line.
fn integrity_scan(_input: Vec<u8>) -> Result<Vec<u8>, Error> {
    let (data, out) =
        parse(std::env::args().skip(1)).map_err(|msg| Error::bad_input(format!("usage: {msg}")))?;
    let report = scan(&data, &out).map_err(Error::failed)?;
    Ok(format!(
        "scanned {} files, {} bytes\n",
        report.total_files, report.total_bytes
    )
    .into_bytes())
}

/// Parses `[--data DIR] [--out DIR]`; the error is a usage message.
fn parse(mut argv: impl Iterator<Item = String>) -> Result<(PathBuf, PathBuf), String> {
    let mut data = PathBuf::from("/data");
    let mut out = PathBuf::from("/out");
    while let Some(arg) = argv.next() {
        let slot = match arg.as_str() {
            "--data" => &mut data,
            "--out" => &mut out,
            other => return Err(format!("unknown argument {other:?}")),
        };
        *slot = argv
            .next()
            .map(PathBuf::from)
            .ok_or_else(|| format!("{arg} needs a DIR argument"))?;
    }
    Ok((data, out))
}

/// Scans `data` and writes the report into `out`.
fn scan(data: &Path, out: &Path) -> Result<Report, String> {
    let mut files = Vec::new();
    walk(data, "", &mut files)?;
    files.sort_by(|a, b| a.path().cmp(b.path()));

    let (mut total_files, mut total_bytes) = (0, 0);
    for entry in &files {
        if let Entry::File { bytes, .. } = entry {
            total_files += 1;
            total_bytes += bytes;
        }
    }
    let report = Report {
        files,
        total_files,
        total_bytes,
    };

    let mut json = serde_json::to_vec(&report).map_err(|e| format!("encode report: {e}"))?;
    json.push(b'\n');
    fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let path = out.join("report.json");
    fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(report)
}

/// Adds the entries under `dir` (whose path relative to the scan root is `rel`) to `files`.
fn walk(dir: &Path, rel: &str, files: &mut Vec<Entry>) -> Result<(), String> {
    let context = |e: io::Error| format!("read dir {}: {e}", dir.display());
    let mut entries = fs::read_dir(dir)
        .map_err(context)?
        .collect::<io::Result<Vec<_>>>()
        .map_err(context)?;
    entries.sort_by_key(|e| e.file_name());

    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        // `DirEntry::file_type` does not follow symlinks.
        let kind = entry
            .file_type()
            .map_err(|e| format!("stat {}: {e}", entry.path().display()))?;
        if kind.is_symlink() {
            files.push(Entry::Symlink {
                path,
                symlink: true,
            });
        } else if kind.is_dir() {
            walk(&entry.path(), &path, files)?;
        } else if kind.is_file() {
            let (bytes, sha256) =
                hash(&entry.path()).map_err(|e| format!("hash {}: {e}", entry.path().display()))?;
            files.push(Entry::File {
                path,
                bytes,
                sha256,
            });
        }
    }
    Ok(())
}

/// Streams `path` through SHA-256 in 64 KiB chunks; returns its size and lowercase hex digest.
fn hash(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hex))
}
