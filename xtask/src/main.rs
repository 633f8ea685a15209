//! Vauban's automation, run as `cargo xtask <command>`.
//!
//! - `demo`: the README's main command: keys, signing, and sandboxed runs of the samples.
//! - `test`: the README's test command and what CI runs: set-up, samples, fmt, clippy, tests.
//! - `build-samples`: build every guest in `samples/`: the Rust ones for wasm32-wasip1 and
//!   wasm32-wasip2, the C ones (`samples/c/`) for wasm32-wasip1.
//! - `build-third-party`: build the published programs of `third-party/README.md` for
//!   wasm32-wasip1 into `target/third-party/`, once per pinned version.
//! - `bench`: benchmarks: the runtime (instantiate+run+teardown, compile against cache load)
//!   and the control plane (end-to-end job latency and throughput against the raw runtime).
//!
//! Each command installs what it needs (the wasm targets through rustup; for the C samples,
//! clang and wasi-libc through apt-get; for the tests, Python's grpcio-tools through pip) so that
//! a fresh machine needs nothing else.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

mod c_samples;
mod demo;
mod third_party;

const WASM_TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip2"];

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    match task.as_str() {
        "build-samples" => build_samples(&root),
        "build-third-party" => third_party::build(&root),
        "test" => test(&root),
        "demo" => demo::run(&root),
        "bench" => bench(&root),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|build-samples|build-third-party|bench>");
            bail!("unknown task {task:?}")
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, echoing it, and fails if it fails.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Installs the wasm targets if the toolchain lacks them.
fn ensure_wasm_targets() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the wasm targets are installed with it)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    let missing: Vec<&str> = WASM_TARGETS
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        run(Command::new("rustup")
            .args(["target", "add"])
            .args(&missing))?;
    }
    Ok(())
}

/// Builds every sample guest into `target/samples/`: the Rust ones for both wasm targets, the C
/// ones for wasm32-wasip1.
fn build_samples(root: &Path) -> anyhow::Result<()> {
    build_rust_samples(root)?;
    c_samples::build(root)
}

/// Builds the Rust sample guests for both wasm targets (all that the demo and the benchmarks
/// run, so they need no C toolchain).
fn build_rust_samples(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_targets()?;
    run(cargo()
        .args(["build", "--release", "--locked"])
        .current_dir(root.join("samples")))
}

/// Installs grpcio-tools for the test that drives the scheduler from a Python client generated
/// from `proto/`.
fn ensure_python_grpc() -> anyhow::Result<()> {
    let present = Command::new("python3")
        .args(["-c", "import grpc_tools, grpc"])
        .status()
        .context("running python3 (the cross-language client test needs it)")?;
    if !present.success() {
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "grpcio-tools>=1.60",
        ]))?;
    }
    Ok(())
}

fn test(root: &Path) -> anyhow::Result<()> {
    build_samples(root)?;
    third_party::build(root)?;
    ensure_python_grpc()?;
    run(cargo().args(["fmt", "--all", "--check"]).current_dir(root))?;
    run(cargo()
        .args(["fmt", "--all", "--check"])
        .current_dir(root.join("samples")))?;
    run(cargo()
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root))?;
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .current_dir(root))
}

fn bench(root: &Path) -> anyhow::Result<()> {
    build_rust_samples(root)?;
    run(cargo()
        .args(["bench", "--locked", "-p", "vauban-tests", "--benches"])
        .current_dir(root))
}
