//! `hello`: the minimal guest, plain `std` with no SDK, used to exercise every basic host
//! capability (args, env, stdin, stdout/stderr, preopened directories, exit codes).
//!
//! Usage: `hello [--name NAME] [--read PATH] [--write PATH TEXT] [--list DIR] [--sleep MS]
//! [--exit N]...`
//!
//! What a host test can expect, in this order:
//! 1. stdout `hello, {NAME}!` (`NAME` from the last `--name`, default `world`);
//! 2. if the env var `GREETING` is visible: `GREETING={value}`;
//! 3. all of stdin is read; if it is not empty: `stdin: {n} bytes: {text}` (lossy UTF-8,
//!    trailing newline trimmed);
//! 4. the operations, left to right:
//!    - `--read PATH`: `read {PATH}: {content, trimmed}`
//!    - `--write PATH TEXT`: creates/truncates `PATH` with `TEXT`, then `wrote {PATH}`
//!    - `--list DIR`: `list {DIR}: {entry names, sorted, joined by ","}`
//!    - `--sleep MS`: sleeps `MS` milliseconds (a long-running service instance, or one that a
//!      timeout or a drain must stop), then `slept {MS}ms`
//!    - `--exit N`: exits at once with code `N` (0..=255), skipping later operations.
//!
//! (On wasm32-wasip2 the host sees every non-zero exit code as 1: `wasi:cli/exit` only
//! carries success or failure.)
//!
//! A failed operation prints `error: {op} {PATH}: {err}` to stderr and exits 1, so a test
//! can tell a sandbox denial from success. A malformed command line prints
//! `error: usage: ...` to stderr and exits 2 before anything else happens.

use std::io::{self, Read, Write};
use std::process::{self, ExitCode};
use std::time::Duration;
use std::{env, fs, thread};

/// An operation requested on the command line, run in order after the greeting.
enum Op {
    Read(String),
    Write(String, String),
    List(String),
    Sleep(u64),
    Exit(u8),
}

/// The parsed command line.
struct Args {
    name: String,
    ops: Vec<Op>,
}

fn main() -> ExitCode {
    let args = match parse(env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("error: usage: {msg}");
            return ExitCode::from(2);
        }
    };

    println!("hello, {}!", args.name);
    if let Some(greeting) = env::var_os("GREETING") {
        println!("GREETING={}", greeting.to_string_lossy());
    }

    let mut stdin = Vec::new();
    if let Err(err) = io::stdin().read_to_end(&mut stdin) {
        return failed("read", "<stdin>", &err);
    }
    if !stdin.is_empty() {
        let text = String::from_utf8_lossy(&stdin);
        println!(
            "stdin: {} bytes: {}",
            stdin.len(),
            text.trim_end_matches(['\n', '\r'])
        );
    }

    for op in args.ops {
        match op {
            Op::Read(path) => match fs::read(&path) {
                Ok(bytes) => println!("read {path}: {}", String::from_utf8_lossy(&bytes).trim()),
                Err(err) => return failed("read", &path, &err),
            },
            Op::Write(path, text) => match fs::write(&path, text) {
                Ok(()) => println!("wrote {path}"),
                Err(err) => return failed("write", &path, &err),
            },
            Op::List(dir) => match list(&dir) {
                Ok(names) => println!("list {dir}: {}", names.join(",")),
                Err(err) => return failed("list", &dir, &err),
            },
            Op::Sleep(ms) => {
                thread::sleep(Duration::from_millis(ms));
                println!("slept {ms}ms");
            }
            Op::Exit(code) => {
                // `process::exit` skips destructors: make sure everything printed gets out.
                let _ = io::stdout().flush();
                process::exit(i32::from(code));
            }
        }
    }
    ExitCode::SUCCESS
}

/// Parses the command line; the error is a usage message.
fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut name = String::from("world");
    let mut ops = Vec::new();
    while let Some(arg) = argv.next() {
        let mut value = |what: &str| {
            argv.next()
                .ok_or_else(|| format!("{arg} needs a {what} argument"))
        };
        match arg.as_str() {
            "--name" => name = value("NAME")?,
            "--read" => ops.push(Op::Read(value("PATH")?)),
            "--write" => {
                let path = value("PATH")?;
                ops.push(Op::Write(path, value("TEXT")?));
            }
            "--list" => ops.push(Op::List(value("DIR")?)),
            "--sleep" => {
                let ms = value("MS")?;
                let ms = ms
                    .parse()
                    .map_err(|_| format!("--sleep needs milliseconds, got {ms:?}"))?;
                ops.push(Op::Sleep(ms));
            }
            "--exit" => {
                let n = value("N")?;
                let code = n
                    .parse()
                    .map_err(|_| format!("--exit needs a code in 0..=255, got {n:?}"))?;
                ops.push(Op::Exit(code));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args { name, ops })
}

/// The names of the entries of `dir`, sorted.
fn list(dir: &str) -> io::Result<Vec<String>> {
    let mut names = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Reports a failed operation on stderr and returns exit code 1.
fn failed(op: &str, path: &str, err: &io::Error) -> ExitCode {
    eprintln!("error: {op} {path}: {err}");
    ExitCode::FAILURE
}
