//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod build;
pub(crate) mod caps;
pub(crate) mod client;
pub(crate) mod dev;
pub(crate) mod exec;
pub(crate) mod grant;
pub(crate) mod host;
pub(crate) mod job;
pub(crate) mod key;
pub(crate) mod module;
pub(crate) mod namespace;
pub(crate) mod new;
pub(crate) mod node;
pub(crate) mod pki;
pub(crate) mod policy;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod scheduler;
pub(crate) mod serve;
pub(crate) mod sign;
pub(crate) mod spec;
pub(crate) mod verify;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use vauban_core::TrustStore;

/// Loads and merges the trust stores named on the command line (files or directories of
/// `*.pub` files).
pub(crate) fn load_trust(paths: &[PathBuf]) -> anyhow::Result<TrustStore> {
    anyhow::ensure!(
        !paths.is_empty(),
        "no trusted keys: pass --trust PATH (a public key file or a directory of *.pub files) or set VAUBAN_TRUST"
    );
    let mut keys = Vec::new();
    for path in paths {
        let store = TrustStore::load(path)
            .with_context(|| format!("loading trust store {}", path.display()))?;
        keys.extend_from_slice(store.keys());
    }
    Ok(TrustStore::new(keys))
}

/// Reads a module file.
pub(crate) fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading module {}", path.display()))
}

/// A module's file name, for display and as a default job name or `argv[0]`.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses `KEY=VALUE` (environment variables, labels); the value may be empty or contain `=`.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `prefix` + `.ext`, keeping any dots already in the prefix.
pub(crate) fn with_extension(prefix: &Path, ext: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Writes a new file with `mode`, creating its directory; refuses to overwrite unless `force`.
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    force: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if force {
        // A key written over must not keep a looser mode from before.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {} (use --force to overwrite)", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes a file through a temporary sibling and a rename, so a reader never sees half of it.
pub(crate) fn write_replacing(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
