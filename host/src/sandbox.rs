//! The WASI context of one run, built only from the capabilities granted to it.
//!
//! `WasiCtxBuilder` starts empty in wasmtime-wasi 48: no args, no env, no preopens, stdio closed,
//! sockets and name lookup denied. Every call below adds exactly one granted capability, so
//! reading this file is reading the whole of what a guest can reach.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use vauban_core::capability::CONFIG_ENV_PREFIX;
use vauban_core::{Access, Capabilities};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::job::JobHost;
use crate::output::{BoundedOutput, OutputSink, OutputStream};
use crate::roots::{AllowedRoots, Denial, proc_path};
use crate::runtime::Entry;

/// A configured WASI context, with handles on what the guest writes and on refused requests.
pub(crate) struct Sandbox {
    pub(crate) wasi: WasiCtxBuilder,
    pub(crate) stdout: BoundedOutput,
    pub(crate) stderr: BoundedOutput,
    /// Capability uses refused while the guest runs.
    pub(crate) denials: Arc<Mutex<Vec<String>>>,
    /// What the `vauban:job` imports reach: the granted configuration and the same two outputs.
    pub(crate) job: JobHost,
}

/// Builds the sandbox for one run.
///
/// `program` becomes `argv[0]`; what the guest writes and keeps is also sent to `output` when
/// given; `entry` says how configuration reaches the guest. Fails with the first capability the
/// host refuses to grant; the guest is then never instantiated.
pub(crate) fn build(
    roots: &AllowedRoots,
    caps: &Capabilities,
    program: &str,
    stdin: Vec<u8>,
    output: Option<&OutputSink>,
    entry: Entry,
) -> Result<Sandbox, Denial> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.arg(program).args(&caps.args);
    for (key, value) in &caps.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(Denial {
                capability: format!("environment variable {key:?}"),
                reason: "names must be non-empty without '=' or NUL, values without NUL".into(),
            });
        }
        wasi.env(key, value);
    }

    let output_limit = usize::try_from(caps.limits.output_bytes).unwrap_or(usize::MAX);
    let sink = |stream| output.map(|sink| (stream, sink.clone()));
    let stdout = BoundedOutput::new(output_limit, sink(OutputStream::Stdout));
    let stderr = BoundedOutput::new(output_limit, sink(OutputStream::Stderr));
    wasi.stdin(MemoryInputPipe::new(stdin))
        .stdout(stdout.clone())
        .stderr(stderr.clone());

    for grant in &caps.dirs {
        if !grant.guest.starts_with('/') {
            return Err(Denial {
                capability: format!("directory {}", grant.guest),
                reason: "guest path must be absolute".into(),
            });
        }
        let dir = roots.open_dir(&grant.host)?;
        let perms = match grant.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        wasi.preopened_dir(proc_path(&dir), &grant.guest, perms)
            .map_err(|e| Denial {
                capability: format!("directory {}", grant.host.display()),
                reason: format!("cannot be preopened: {e}"),
            })?;
        // `dir` closes here; the preopen holds its own descriptor of the same directory.
    }

    // Configuration: a job component asks its `vauban:job/config` import (below) and its
    // environment stays `env` alone; a command has no such import and finds each value in
    // `VAUBAN_CONFIG_<KEY>`, after `env`.
    for (key, value) in &caps.config {
        let as_env = entry == Entry::Command;
        if key.is_empty() || (as_env && (key.contains(['=', '\0']) || value.contains('\0'))) {
            return Err(Denial {
                capability: format!("configuration value {key:?}"),
                reason: "keys must be non-empty; a command reads them from its environment, so \
                         there keys have no '=' or NUL and values no NUL"
                    .into(),
            });
        }
        if as_env {
            wasi.env(format!("{CONFIG_ENV_PREFIX}{key}"), value);
        }
    }
    let job = JobHost::new(caps.config.clone(), stdout.clone(), stderr.clone());

    let denials = Arc::new(Mutex::new(Vec::new()));
    if !caps.network.is_empty() {
        let allowed: Arc<[SocketAddr]> = caps.network.clone().into();
        let log = Arc::clone(&denials);
        wasi.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let ok = socket_allowed(&allowed, addr, usage);
                if !ok {
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!("network {usage:?} {addr}: not in the allowlist"));
                }
                Box::pin(async move { ok })
            });
    }

    Ok(Sandbox {
        wasi,
        stdout,
        stderr,
        denials,
        job,
    })
}

/// The network allowlist names destinations. Connecting or sending to one is allowed; binding
/// is allowed only to an ephemeral wildcard port (what a connect does implicitly) or to a listed
/// address; listening and accepting only on a listed address.
fn socket_allowed(allowed: &[SocketAddr], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            (addr.ip().is_unspecified() && addr.port() == 0) || allowed.contains(&addr)
        }
        _ => allowed.contains(&addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_allowlist() {
        let listed: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let other: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let wildcard: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let wildcard_port: SocketAddr = "0.0.0.0:22".parse().expect("addr");
        let allowed = [listed];
        let table = [
            (listed, SocketAddrUse::TcpConnect, true),
            (other, SocketAddrUse::TcpConnect, false),
            (wildcard, SocketAddrUse::TcpBind, true),
            (wildcard_port, SocketAddrUse::TcpBind, false),
            (listed, SocketAddrUse::TcpListen, true),
            (other, SocketAddrUse::UdpSend, false),
            (listed, SocketAddrUse::UdpSend, true),
        ];
        for (addr, usage, expected) in table {
            assert_eq!(
                socket_allowed(&allowed, addr, usage),
                expected,
                "{usage:?} {addr}"
            );
        }
    }
}
