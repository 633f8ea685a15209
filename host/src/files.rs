//! The host's own file handling inside a cap-std directory: reading a file that may be absent,
//! and replacing a file atomically. Used by the artifact cache and the module store.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Makes temporary names unique within the process: two tasks may store the same file at once.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The contents of `name` in `dir`, or `None` when there is no such file.
pub(crate) fn read_if_present(dir: &Dir, name: &str) -> io::Result<Option<Vec<u8>>> {
    match dir.read(name) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a temporary name, then renames it to `name`: a reader never sees a partial
/// file, and a crash leaves at most a stray temporary file.
pub(crate) fn write_atomically(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_name(name);
    dir.write(&tmp, bytes)?;
    rename_into(dir, &tmp, name)
}

/// Like [`write_atomically`], and the file's bytes reach the disk before the rename, so that a
/// crash leaves the old file or the new one, complete.
pub(crate) fn write_synced(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = tmp_name(name);
    let mut file = dir.create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    rename_into(dir, &tmp, name)
}

/// A temporary name beside `name`, unique within the process.
fn tmp_name(name: &str) -> String {
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    format!("{name}.{}.{n}.tmp", std::process::id())
}

/// Renames `tmp` to `name`, removing `tmp` if that fails.
fn rename_into(dir: &Dir, tmp: &str, name: &str) -> io::Result<()> {
    dir.rename(tmp, dir, name).inspect_err(|_| {
        // Best effort: a leftover temporary file only wastes space.
        let _ = dir.remove_file(tmp);
    })
}

/// Opens a directory the host owns, creating it (and its parents) owner-only if missing.
pub(crate) fn open_private_dir(path: &Path) -> io::Result<Dir> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    Dir::open_ambient_dir(path, ambient_authority())
}
