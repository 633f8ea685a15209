//! Test support: a scratch workspace with a publisher key, and the real `vauban` binary.

use std::path::PathBuf;
use std::process::{Command, Output};

use vauban_tests::{Target, sample_path};

/// A scratch directory with a publisher key pair and a trust directory holding its public key.
pub(crate) struct Workspace {
    pub(crate) dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let out = ws.vauban(&["key", "generate", "--out", "trust/publisher"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ws
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs vauban in the workspace, with a cache of its own and an otherwise clean environment.
    pub(crate) fn vauban(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(self.dir.path())
            .env("VAUBAN_CACHE", self.path("cache"))
            .env_remove("VAUBAN_TRUST")
            .output()
            .expect("run vauban")
    }

    /// Copies a sample into the workspace and signs it with the workspace key.
    pub(crate) fn signed_sample(&self, name: &str, target: Target) -> String {
        let file = format!("{name}-{}.wasm", target.triple());
        std::fs::copy(sample_path(name, target), self.path(&file)).expect("copy sample");
        let out = self.vauban(&["sign", "--key", "trust/publisher.key", &file]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        file
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}
