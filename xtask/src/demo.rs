//! `cargo xtask demo`: Vauban's main job on its embedded default, narrated.
//!
//! Starts `vauban dev` (a scheduler and two hosts labelled zone=alpha and zone=bravo, embedded
//! store, generated development key), signs sample guests with the development key, and drives
//! it with the CLI: jobs with explicit capabilities, one pinned to a zone, a component fed on
//! stdin, two hostile guests contained, a module altered after signing refused at upload, the
//! nodes and the job history. Then it stops `vauban dev` with SIGTERM and checks that it exits
//! cleanly. Every step checks its exit code, so the demo fails loudly if Vauban misbehaves.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    crate::build_rust_samples(root)?;
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

    println!("\n\x1b[1m== Start vauban dev: a scheduler and two hosts in one process\x1b[0m");
    println!("$ vauban dev --listen 127.0.0.1:0");
    let mut dev = Command::new(&vauban)
        .args(["dev", "--listen", "127.0.0.1:0"])
        .current_dir(&work)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting vauban dev")?;
    let mut lines = BufReader::new(dev.stdout.take().context("dev stdout")?).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line?;
        println!("{line}");
        if let Some(url) = line.strip_prefix("vauban dev: scheduler listening on ") {
            addr = Some(url.to_owned());
        }
        if line.ends_with("ready") {
            break;
        }
    }
    let Some(addr) = addr else {
        let _ = dev.kill();
        bail!("vauban dev did not report its address");
    };
    // Keep draining dev's stdout so it never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.for_each(drop));

    let result = scenario(&vauban, &work, &addr);

    println!("\n\x1b[1m== Stop vauban dev (SIGTERM): it drains and exits cleanly\x1b[0m");
    crate::run(Command::new("kill").args(["-TERM", &dev.id().to_string()]))?;
    let status = dev.wait()?;
    let _ = drain.join();
    result?;
    if !status.success() {
        bail!("vauban dev exited with {status}");
    }
    println!("vauban dev exited with {status}");
    println!("\nDemo complete: files are in target/demo.");
    Ok(())
}

fn scenario(vauban: &Path, work: &Path, addr: &str) -> anyhow::Result<()> {
    let step = |title: &str, args: &[&str], expected_code: i32| -> anyhow::Result<()> {
        if !title.is_empty() {
            println!("\n\x1b[1m== {title}\x1b[0m");
        }
        println!("$ vauban {}", args.join(" "));
        let status = Command::new(vauban)
            .args(args)
            .current_dir(work)
            .env("VAUBAN_ADDR", addr)
            .env("VAUBAN_CACHE", work.join(".vauban/exec-cache"))
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
    let key = ".vauban/dev/keys/dev.key";
    step(
        "Sign the guests with the development key",
        &["sign", "--key", key, "hello.wasm"],
        0,
    )?;
    for module in [
        "track-fusion.wasm",
        "infinite-loop.wasm",
        "memory-bomb.wasm",
    ] {
        step("", &["sign", "--key", key, module], 0)?;
    }
    step("The hosts the scheduler knows", &["node", "list"], 0)?;
    step(
        "Run a module with exactly these capabilities: upload, place, stream, exit code",
        &[
            "run",
            "hello.wasm",
            "--env",
            "GREETING=bonjour",
            "--dir",
            "data:/data:ro",
            "--",
            "--name",
            "Vauban",
            "--read",
            "/data/orders.txt",
        ],
        0,
    )?;
    step(
        "A component fed on stdin, pinned to the hosts labelled zone=bravo",
        &[
            "run",
            "track-fusion.wasm",
            "--stdin",
            "data/readings.json",
            "-l",
            "zone=bravo",
        ],
        0,
    )?;
    step(
        "The guest's exit code is the job's",
        &["run", "hello.wasm", "--", "--exit", "3"],
        3,
    )?;
    step(
        "A hostile guest that spins forever is stopped at its deadline (124)",
        &["run", "infinite-loop.wasm", "--timeout", "500ms"],
        124,
    )?;
    step(
        "A memory bomb hits its ceiling (137); the hosts carry on",
        &["run", "memory-bomb.wasm", "--memory", "64MiB"],
        137,
    )?;
    let mut tampered = std::fs::read(work.join("hello.wasm"))?;
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    std::fs::write(work.join("tampered.wasm"), tampered)?;
    step(
        "A module altered after signing is refused at upload (125)",
        &["module", "upload", "tampered.wasm"],
        125,
    )?;
    std::fs::write(
        work.join("service.toml"),
        "name = \"hello-service\"\n\
         type = \"service\"\n\
         module = \"hello.wasm\"\n\
         replicas = 2\n\
         args = [\"--name\", \"service\", \"--sleep\", \"600000\"]\n\n\
         [limits]\nmemory = \"32MiB\"\ntimeout = \"15m\"\n\n\
         [[spread]]\nlabel = \"zone\"\nweight = 100\n",
    )?;
    step(
        "Where a service's two replicas would go, and why (nothing runs yet)",
        &["job", "plan", "service.toml"],
        0,
    )?;
    step(
        "Run it: the replicas are kept running, one per zone",
        &["job", "run", "service.toml"],
        0,
    )?;
    step(
        "Every job, where it ran and how it ended",
        &["job", "list"],
        0,
    )?;
    step(
        "The hosts, with the replicas' slots taken",
        &["node", "list"],
        0,
    )?;
    step("The modules the scheduler stores", &["module", "list"], 0)?;
    Ok(())
}
