//! Support for Vauban's end-to-end tests: where the built sample guests are, a publisher that
//! signs them, and a host runtime configured the way tests need it.
//!
//! Samples are built once, for both wasm targets, by `cargo xtask build-samples` (which
//! `cargo xtask test` runs first). A test that needs a sample that was not built fails and says
//! so; it never skips.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vauban_core::{Capabilities, Limits, RunReport, SecretKey, TrustStore};
use vauban_host::{RunRequest, Runtime, RuntimeConfig};

/// The two WASI targets every sample is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `wasm32-wasip1`: a core module.
    P1,
    /// `wasm32-wasip2`: a component.
    P2,
}

impl Target {
    /// Both targets.
    pub const BOTH: [Target; 2] = [Target::P1, Target::P2];

    /// The rustc target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::P1 => "wasm32-wasip1",
            Target::P2 => "wasm32-wasip2",
        }
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .expect("tests/ has a parent")
}

/// Path of a built sample guest.
///
/// # Panics
/// When the sample was not built: run `cargo xtask build-samples`.
pub fn sample_path(name: &str, target: Target) -> PathBuf {
    let path = workspace_root()
        .join("target/samples")
        .join(target.triple())
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "sample {name} for {} is not built ({}): run `cargo xtask build-samples`",
        target.triple(),
        path.display()
    );
    path
}

/// Path of a third-party program built from its published crates.io source (`bin` of the crate
/// `krate`; third-party/README.md lists them).
///
/// # Panics
/// When it was not built: run `cargo xtask build-third-party`.
pub fn third_party_path(krate: &str, bin: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/third-party")
        .join(krate)
        .join("bin")
        .join(format!("{bin}.wasm"));
    assert!(
        path.is_file(),
        "third-party program {bin} of crate {krate} is not built ({}): run `cargo xtask build-third-party`",
        path.display()
    );
    path
}

/// The bytes of an unsigned sample.
pub fn sample_bytes(name: &str, target: Target) -> Vec<u8> {
    std::fs::read(sample_path(name, target)).expect("read sample")
}

/// A publisher with a fresh key, signing samples.
pub struct Publisher {
    key: SecretKey,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher with a newly generated key.
    pub fn new() -> Self {
        Self {
            key: SecretKey::generate(),
        }
    }

    /// The publisher's key.
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// A trust store holding only this publisher's key.
    pub fn trust(&self) -> TrustStore {
        TrustStore::new([self.key.public_key().clone()])
    }

    /// A sample, signed by this publisher.
    pub fn signed(&self, name: &str, target: Target) -> Vec<u8> {
        self.key
            .sign_module(&sample_bytes(name, target))
            .expect("sign sample")
    }

    /// A third-party program (see [`third_party_path`]), signed by this publisher.
    pub fn signed_third_party(&self, krate: &str, bin: &str) -> Vec<u8> {
        let bytes = std::fs::read(third_party_path(krate, bin)).expect("read third-party program");
        self.key
            .sign_module(&bytes)
            .expect("sign third-party program")
    }
}

/// A compiled-artifact cache shared by every runtime of this test process, so each sample is
/// compiled once per test run rather than once per test.
pub fn shared_cache_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("cache tempdir"))
        .path()
        .to_path_buf()
}

/// A runtime trusting `trust`, allowing directories under `roots`, sized for tests.
pub fn runtime(trust: TrustStore, roots: &[&Path]) -> Runtime {
    let mut config = RuntimeConfig::new(shared_cache_dir());
    config.trust = trust;
    config.allowed_roots = roots.iter().map(|r| r.to_path_buf()).collect();
    config.max_instances = 4;
    config.max_memory_bytes = 1 << 30;
    Runtime::new(config).expect("start runtime")
}

/// Default capabilities for tests: nothing granted, 64 MiB, 20 s.
pub fn caps() -> Capabilities {
    Capabilities {
        limits: Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(20),
            ..Limits::DEFAULT
        },
        ..Capabilities::default()
    }
}

/// Loads and runs a module once.
///
/// # Panics
/// When the module does not load.
pub async fn run(runtime: &Runtime, module: &[u8], caps: Capabilities, stdin: &[u8]) -> RunReport {
    let loaded = runtime.load(module).expect("module loads");
    let request = RunRequest {
        capabilities: caps,
        stdin: stdin.to_vec(),
        program: "guest".into(),
        ..RunRequest::default()
    };
    runtime
        .run(&loaded, request, &CancellationToken::new())
        .await
}

/// A report's stdout as text.
pub fn stdout(report: &RunReport) -> String {
    String::from_utf8_lossy(&report.stdout.bytes).into_owned()
}

/// A report's stderr as text.
pub fn stderr(report: &RunReport) -> String {
    String::from_utf8_lossy(&report.stderr.bytes).into_owned()
}
