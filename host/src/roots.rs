//! The host directories an operator lets guests see, opened through cap-std.
//!
//! A guest directory is granted by naming a host path. That path must lie under one of the
//! operator's allowed roots, and it is opened *through* the root's directory handle with cap-std,
//! so neither `..` nor a symlink can lead outside the root, whatever the path says. The handle
//! then reaches wasmtime-wasi as `/proc/self/fd/N`, which names the directory already opened,
//! not a path that could be swapped between the check and the use.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// A capability the sandbox refused to grant, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denial {
    pub(crate) capability: String,
    pub(crate) reason: String,
}

/// Allowed roots, each opened once when the runtime starts.
#[derive(Debug)]
pub(crate) struct AllowedRoots {
    /// Each root as configured and as canonicalised (a request may name either), with its
    /// open handle.
    roots: Vec<(Vec<PathBuf>, Dir)>,
}

impl AllowedRoots {
    /// Opens every root. Roots are operator configuration: they are canonicalised here, once.
    pub(crate) fn open(paths: &[PathBuf]) -> std::io::Result<Self> {
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            let canonical = path.canonicalize().map_err(|e| {
                std::io::Error::new(e.kind(), format!("allowed root {}: {e}", path.display()))
            })?;
            let dir = Dir::open_ambient_dir(&canonical, ambient_authority()).map_err(|e| {
                std::io::Error::new(e.kind(), format!("allowed root {}: {e}", path.display()))
            })?;
            let mut names = vec![canonical];
            if let Ok(configured) = std::path::absolute(path)
                && configured != names[0]
            {
                names.push(configured);
            }
            roots.push((names, dir));
        }
        Ok(Self { roots })
    }

    /// Opens `host` for a guest, refusing anything outside the allowed roots.
    ///
    /// The returned handle is the directory itself; [`proc_path`] names it for wasmtime-wasi.
    pub(crate) fn open_dir(&self, host: &Path) -> Result<Dir, Denial> {
        let deny = |reason: String| Denial {
            capability: format!("directory {}", host.display()),
            reason,
        };
        if !host.is_absolute() {
            return Err(deny("host path must be absolute".into()));
        }
        if host.components().any(|c| c == Component::ParentDir) {
            return Err(deny("host path must not contain '..'".into()));
        }
        let Some((root, dir, relative)) = self.roots.iter().find_map(|(names, dir)| {
            names
                .iter()
                .find_map(|root| Some((root, dir, host.strip_prefix(root).ok()?)))
        }) else {
            let allowed = self
                .roots
                .iter()
                .map(|(names, _)| names[0].display().to_string())
                .collect::<Vec<_>>();
            return Err(deny(if allowed.is_empty() {
                "this host allows no directories (no allowed roots)".into()
            } else {
                format!("outside the allowed roots ({})", allowed.join(", "))
            }));
        };
        let opened = if relative.as_os_str().is_empty() {
            dir.try_clone()
        } else {
            dir.open_dir(relative)
        };
        opened.map_err(|e| {
            deny(format!(
                "cannot be opened inside allowed root {} (a symlink leading out of the root is refused): {e}",
                root.display()
            ))
        })
    }
}

/// A path naming an already-open directory, valid while `dir` stays open.
pub(crate) fn proc_path(dir: &Dir) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(roots: &AllowedRoots, path: &Path, expected: &str) {
        let got = match roots.open_dir(path) {
            Ok(_) => "ok".to_owned(),
            Err(d) => d.reason,
        };
        assert!(
            got.contains(expected),
            "{}: expected {expected:?}, got {got:?}",
            path.display()
        );
    }

    #[test]
    fn opens_only_inside_roots() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("data/nested")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink("../outside", root.join("relative-escape")).expect("symlink");
        std::os::unix::fs::symlink("data/nested", root.join("inner-link")).expect("symlink");
        let roots = AllowedRoots::open(std::slice::from_ref(&root)).expect("open roots");
        let root = root.canonicalize().expect("canonical");

        check(&roots, &root, "ok");
        check(&roots, &root.join("data"), "ok");
        check(&roots, &root.join("data/nested"), "ok");
        check(&roots, &root.join("inner-link"), "ok");
        check(&roots, &outside, "outside the allowed roots");
        check(&roots, Path::new("/etc"), "outside the allowed roots");
        check(
            &roots,
            &root.join("data/../../outside"),
            "must not contain '..'",
        );
        check(&roots, Path::new("data"), "must be absolute");
        check(
            &roots,
            &root.join("escape"),
            "symlink leading out of the root",
        );
        check(
            &roots,
            &root.join("relative-escape"),
            "symlink leading out of the root",
        );
        check(&roots, &root.join("missing"), "cannot be opened");
        check(
            &AllowedRoots::open(&[]).expect("no roots"),
            &root,
            "no allowed roots",
        );
    }
}
