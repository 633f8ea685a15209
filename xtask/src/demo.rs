//! `cargo xtask demo`: Vauban's main job on its embedded default, narrated.
//!
//! Generates a publisher key, signs sample guests, verifies them, runs them in the sandbox with
//! explicit capabilities, shows the compile cache at work, contains two hostile guests, and
//! refuses a module altered after signing. Every step runs the real `vauban` binary and checks
//! its exit code, so the demo fails loudly if Vauban misbehaves.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    crate::build_samples(root)?;
    crate::run(
        crate::cargo()
            .args(["build", "--locked", "-p", "vauban-cli"])
            .current_dir(root),
    )?;
    let vauban = root.join("target/debug/vauban");
    let work = root.join("target/demo");
    if work.exists() {
        std::fs::remove_dir_all(&work).context("clearing target/demo")?;
    }
    std::fs::create_dir_all(work.join("data")).context("creating target/demo")?;
    let samples = root.join("target/samples");
    for (target, name) in [
        ("wasm32-wasip1", "hello"),
        ("wasm32-wasip2", "track-fusion"),
        ("wasm32-wasip1", "infinite-loop"),
        ("wasm32-wasip2", "memory-bomb"),
    ] {
        let from = samples
            .join(target)
            .join("release")
            .join(format!("{name}.wasm"));
        std::fs::copy(&from, work.join(format!("{name}.wasm")))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    std::fs::copy(
        root.join("samples/track-fusion/input.json"),
        work.join("data/readings.json"),
    )?;
    std::fs::write(work.join("data/orders.txt"), "hold the line\n")?;

    let step = |title: &str, args: &[&str], expected_code: i32| -> anyhow::Result<()> {
        if !title.is_empty() {
            println!("\n\x1b[1m== {title}\x1b[0m");
        }
        println!("$ vauban {}", args.join(" "));
        let status = Command::new(&vauban)
            .args(args)
            .current_dir(&work)
            .env("VAUBAN_CACHE", work.join("cache"))
            .status()
            .context("running vauban")?;
        let code = status.code().unwrap_or(-1);
        if code != expected_code {
            bail!(
                "`vauban {}` exited {code}, expected {expected_code}",
                args.join(" ")
            );
        }
        Ok(())
    };

    step(
        "A publisher key",
        &["key", "generate", "--out", "keys/publisher"],
        0,
    )?;
    step(
        "Sign a WASI preview 1 module",
        &["sign", "--key", "keys/publisher.key", "hello.wasm"],
        0,
    )?;
    step(
        "Sign a WASI preview 2 component",
        &["sign", "--key", "keys/publisher.key", "track-fusion.wasm"],
        0,
    )?;
    step(
        "Verify it against the trust store",
        &["verify", "--trust", "keys", "hello.wasm"],
        0,
    )?;
    let hello = [
        "exec",
        "--trust",
        "keys",
        "hello.wasm",
        "--env",
        "GREETING=bonjour",
        "--dir",
        "data:/data:ro",
        "--arg",
        "--name",
        "--arg",
        "Vauban",
        "--arg",
        "--read",
        "--arg",
        "/data/orders.txt",
    ];
    step(
        "Run it with exactly these capabilities (first run compiles)",
        &hello,
        0,
    )?;
    step(
        "Run it again in a fresh process (loaded from the artifact cache)",
        &hello,
        0,
    )?;
    step(
        "Fuse sensor tracks in a component (input on stdin)",
        &[
            "exec",
            "--trust",
            "keys",
            "track-fusion.wasm",
            "--stdin",
            "data/readings.json",
        ],
        0,
    )?;

    step(
        "Sign two hostile guests",
        &["sign", "--key", "keys/publisher.key", "infinite-loop.wasm"],
        0,
    )?;
    step(
        "",
        &["sign", "--key", "keys/publisher.key", "memory-bomb.wasm"],
        0,
    )?;
    step(
        "An infinite loop is stopped at its deadline (exit 124)",
        &[
            "exec",
            "--trust",
            "keys",
            "infinite-loop.wasm",
            "--timeout",
            "500ms",
        ],
        124,
    )?;
    step(
        "A memory bomb hits its ceiling (exit 137)",
        &[
            "exec",
            "--trust",
            "keys",
            "memory-bomb.wasm",
            "--memory",
            "64MiB",
        ],
        137,
    )?;

    let mut tampered = std::fs::read(work.join("hello.wasm"))?;
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    std::fs::write(work.join("tampered.wasm"), tampered)?;
    step(
        "A module changed after signing is refused before it compiles (exit 125)",
        &["exec", "--trust", "keys", "tampered.wasm"],
        125,
    )?;
    println!("\nDemo complete: files are in target/demo.");
    Ok(())
}
