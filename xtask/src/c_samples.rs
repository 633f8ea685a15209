//! The C sample guests in `samples/c/`: each `.c` file is one program, compiled with clang's
//! `wasm32-wasi` target against Debian's wasi-libc into `target/samples/wasm32-wasip1/release/`,
//! beside the Rust samples' wasip1 builds, so tests find both the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The Debian packages of the C toolchain for `wasm32-wasi` (bookworm: clang 14).
const PACKAGES: [&str; 4] = ["clang", "lld", "wasi-libc", "libclang-rt-dev-wasm32"];

/// The flags every C sample is compiled with (samples/c/README.md shows the whole command).
const CFLAGS: [&str; 7] = [
    "--target=wasm32-wasi",
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    // Debian's libc.a carries DWARF (200 KiB); the name section stays, so traps name functions.
    "-Wl,--strip-debug",
];

/// Compiles every `samples/c/*.c` into `target/samples/wasm32-wasip1/release/<stem>.wasm`.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    let sources = sources(root)?;
    if sources.is_empty() {
        return Ok(());
    }
    ensure_toolchain(root)?;
    // Relative to the root, so the echoed command reads as in samples/c/README.md.
    let out = Path::new("target/samples/wasm32-wasip1/release");
    std::fs::create_dir_all(root.join(out)).context("creating target/samples")?;
    for source in sources {
        let stem = source
            .file_stem()
            .context("a C source has a name")?
            .to_string_lossy();
        crate::run(
            Command::new("clang")
                .args(CFLAGS)
                .arg("-o")
                .arg(out.join(format!("{stem}.wasm")))
                .arg(&source)
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// The C files of `samples/c/`, relative to the root, sorted.
fn sources(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new("samples/c");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root.join(dir)).context("reading samples/c")? {
        let entry = entry?;
        let name = PathBuf::from(entry.file_name());
        if name.extension().is_some_and(|e| e == "c") {
            sources.push(dir.join(name));
        }
    }
    sources.sort();
    Ok(sources)
}

/// Makes sure clang can build a WASI program: compiles a probe, and when that fails installs the
/// packages through apt-get if we are root, or stops with the command to run.
fn ensure_toolchain(root: &Path) -> anyhow::Result<()> {
    if probe(root)? {
        return Ok(());
    }
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        PACKAGES.join(" ")
    );
    if !is_root() || !has("apt-get") {
        bail!(
            "the C samples need clang's wasm32-wasi target and wasi-libc; on Debian or Ubuntu \
             run `sudo apt-get update && sudo {install}`"
        );
    }
    crate::run(Command::new("apt-get").args(["update", "-q"]))?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES),
    )?;
    if !probe(root)? {
        bail!("clang still cannot build for wasm32-wasi after `{install}`");
    }
    Ok(())
}

/// Whether clang compiles and links a small C program for wasm32-wasi (headers, libc, builtins
/// and wasm-ld all present).
fn probe(root: &Path) -> anyhow::Result<bool> {
    let dir = root.join("target/c-probe");
    std::fs::create_dir_all(&dir).context("creating target/c-probe")?;
    let source = dir.join("probe.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <math.h>\nint main(void) { printf(\"%g\\n\", sqrt(2.0)); return 0; }\n",
    )
    .context("writing the C probe")?;
    let compiled = Command::new("clang")
        .args(CFLAGS)
        .arg("-o")
        .arg(dir.join("probe.wasm"))
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(compiled.is_ok_and(|s| s.success()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
