//! The capabilities a job asks for. Nothing is granted that is not listed here: no inherited
//! environment, no ambient filesystem, no network unless a destination is named.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a run may use. The default grants nothing but empty stdin and the default limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Arguments after the program name (`argv[1..]`).
    pub args: Vec<String>,
    /// Environment variables, exactly these, in this order.
    pub env: Vec<(String, String)>,
    /// Host directories opened for the guest.
    pub dirs: Vec<DirGrant>,
    /// TCP/UDP destinations the guest may connect to or bind. Empty: no sockets at all.
    pub network: Vec<SocketAddr>,
    /// Resource ceilings.
    pub limits: Limits,
    /// Read-only configuration values, by key. Keys are non-empty. A component of the
    /// `vauban:job` world reads them through `vauban:job/config` (and its environment is only
    /// `env`); a command, which has no such import, finds each one in the environment variable
    /// [`CONFIG_ENV_PREFIX`]`<KEY>`, after those of `env`.
    // `default`: job records stored before this field existed still read.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Host interfaces beyond the baseline that a component may import, e.g.
    /// `wasi:http/outgoing-handler` (any version) or `wasi:http/outgoing-handler@0.2.0` (only
    /// that one). The baseline (`wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random`,
    /// `wasi:filesystem`, `vauban:job`) needs no entry; `wasi:sockets` needs a network
    /// destination instead. See [`crate::admission::check_imports`].
    // `default`: job records stored before this field existed still read.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// The prefix of the environment variables that carry configuration values to a command:
/// `VAUBAN_CONFIG_<KEY>`, the key exactly as granted. The guest SDK reads the same names.
pub const CONFIG_ENV_PREFIX: &str = "VAUBAN_CONFIG_";

/// Whether a preopened directory may be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read only; writes fail in the guest with a permission error.
    #[default]
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// A host directory mapped into the guest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirGrant {
    /// Absolute host path; must lie under one of the host's allowed roots.
    pub host: PathBuf,
    /// The path the guest sees (for example `/data`).
    pub guest: String,
    /// Read-only unless stated.
    pub access: Access,
}

/// A `--dir` value could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid directory grant {0:?}: expected HOST:GUEST[:ro|rw]")]
pub struct InvalidDirGrant(String);

impl FromStr for DirGrant {
    type Err = InvalidDirGrant;

    /// Parses `HOST:GUEST[:ro|rw]`; read-only when the mode is left out.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidDirGrant(s.to_owned());
        let mut parts = s.split(':');
        let (Some(host), Some(guest)) = (parts.next(), parts.next()) else {
            return Err(err());
        };
        let access = match parts.next() {
            None | Some("ro") => Access::ReadOnly,
            Some("rw") => Access::ReadWrite,
            Some(_) => return Err(err()),
        };
        if parts.next().is_some() || host.is_empty() || guest.is_empty() {
            return Err(err());
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            access,
        })
    }
}

/// Resource ceilings for one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Total bytes of linear memory across the instance's memories.
    pub memory_bytes: u64,
    /// Wall-clock time from start of instantiation.
    pub timeout: Duration,
    /// Deterministic CPU budget in wasmtime fuel units; `None` means unmetered.
    pub fuel: Option<u64>,
    /// Bytes kept per output stream (stdout, stderr); the rest is counted and dropped.
    pub output_bytes: u64,
}

impl Limits {
    /// 256 MiB of memory, 30 s, no fuel budget, 1 MiB per output stream.
    pub const DEFAULT: Self = Self {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(30),
        fuel: None,
        output_bytes: 1 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<(&str, &str, Access)>) {
        let got = input.parse::<DirGrant>().ok();
        let expected = expected.map(|(h, g, a)| DirGrant {
            host: PathBuf::from(h),
            guest: g.to_owned(),
            access: a,
        });
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn parses_dir_grants() {
        check("/srv/in:/in", Some(("/srv/in", "/in", Access::ReadOnly)));
        check("/srv/in:/in:ro", Some(("/srv/in", "/in", Access::ReadOnly)));
        check(
            "/srv/out:/out:rw",
            Some(("/srv/out", "/out", Access::ReadWrite)),
        );
        check("/srv/out:/out:wr", None);
        check("/srv/out", None);
        check(":/out", None);
        check("/a:/b:rw:x", None);
    }
}
