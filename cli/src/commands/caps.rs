//! The capability flags shared by `vauban exec` (local) and `vauban run` (through the scheduler).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use vauban_core::{Capabilities, DirGrant, Limits};

/// Everything a guest may be granted, one flag per capability. Nothing else is granted.
#[derive(Debug, Args)]
pub(crate) struct CapabilityArgs {
    /// Arguments for the guest, after `--`.
    #[arg(last = true)]
    trailing_args: Vec<String>,
    /// An argument for the guest (repeatable; placed before those after `--`).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable for the guest, KEY=VALUE (repeatable). Nothing is inherited.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    env: Vec<(String, String)>,
    /// A read-only configuration value, KEY=VALUE (repeatable; the last value given for a KEY
    /// wins). A `vauban:job` component reads it through `vauban:job/config`, a command in the
    /// environment variable VAUBAN_CONFIG_KEY.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    config: Vec<(String, String)>,
    /// A host directory for the guest, HOST:GUEST[:ro|rw] (repeatable; read-only by default).
    /// A relative HOST path is taken from the current directory.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro|rw]")]
    dirs: Vec<DirGrant>,
    /// A TCP/UDP destination the guest may connect to, ADDR:PORT (repeatable). Default: none.
    #[arg(long = "allow-net", value_name = "ADDR:PORT")]
    allow_net: Vec<SocketAddr>,
    /// A host interface beyond the baseline (wasi:cli, wasi:io, wasi:clocks, wasi:random,
    /// wasi:filesystem, vauban:job) that a component may import, e.g.
    /// wasi:http/outgoing-handler (repeatable). A component importing any other is refused
    /// before it starts; wasi:sockets needs --allow-net instead.
    #[arg(long = "interface", value_name = "NAME", value_parser = parse_interface)]
    interfaces: Vec<String>,
    /// Linear memory limit, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    memory: u64,
    /// Wall-clock limit, e.g. 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Fuel budget (deterministic CPU units); unmetered if not given.
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// File whose bytes are the guest's stdin ("-" reads vauban's own stdin). Default: empty.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Bytes kept per output stream; the rest is dropped and counted.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    output_limit: u64,
}

/// Parses a size in bytes as the flags and job spec files write it: `64MiB`, `1GB`, `4096`.
///
/// # Errors
/// A message saying what was expected.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size such as 64MiB or 1GB ({e})"))
}

/// An interface name as `--interface` takes it: `wasi:http/outgoing-handler[@VERSION]`.
fn parse_interface(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(char::is_whitespace) || !s.contains(':') {
        return Err(format!(
            "{s:?} is not an interface name such as wasi:http/outgoing-handler"
        ));
    }
    Ok(s.to_owned())
}

/// Parses a duration as the flags and job spec files write it: `500ms`, `30s`, `2m`, `1h 30m`.
///
/// # Errors
/// A message saying what was expected.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 500ms, 30s or 2m ({e})"))
}

impl CapabilityArgs {
    /// The memory limit asked for, in bytes.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// The capabilities, with relative directory paths made absolute against `cwd`.
    pub(crate) fn capabilities(&self, cwd: &Path) -> Capabilities {
        Capabilities {
            args: self
                .args
                .iter()
                .chain(&self.trailing_args)
                .cloned()
                .collect(),
            env: self.env.clone(),
            dirs: self
                .dirs
                .iter()
                .map(|d| DirGrant {
                    host: cwd.join(&d.host),
                    ..d.clone()
                })
                .collect(),
            network: self.allow_net.clone(),
            limits: Limits {
                memory_bytes: self.memory,
                timeout: self.timeout,
                fuel: self.fuel,
                output_bytes: self.output_limit,
            },
            config: self.config.iter().cloned().collect(),
            interfaces: self.interfaces.clone(),
        }
    }

    /// The guest's stdin bytes.
    pub(crate) fn stdin_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.stdin {
            None => Ok(Vec::new()),
            Some(p) if p.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("reading stdin")?;
                Ok(buf)
            }
            Some(p) => {
                std::fs::read(p).with_context(|| format!("reading stdin file {}", p.display()))
            }
        }
    }
}
