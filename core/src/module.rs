//! What a module is: its digest (sha256 of the whole file) and its kind (core module or component).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The sha256 of a module's complete file, header and signature section included.
///
/// This is the module's identity everywhere: the compile cache, job records and (later) grants
/// are keyed by it. Because it covers the 8-byte header, which publisher signatures do not, it is
/// also what pins the module's kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ModuleDigest([u8; 32]);

impl ModuleDigest {
    /// Hashes the complete bytes of a module file.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest as 64 lowercase hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a digest string could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid module digest {0:?}: expected sha256:<64 hex characters>")]
pub struct InvalidDigest(String);

impl FromStr for ModuleDigest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| InvalidDigest(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl From<ModuleDigest> for String {
    fn from(d: ModuleDigest) -> Self {
        d.to_string()
    }
}

impl TryFrom<String> for ModuleDigest {
    type Error = InvalidDigest;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Whether a binary is a core WebAssembly module (WASI preview 1) or a component (preview 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// A core module; Vauban runs it as a WASI preview 1 command (`_start`).
    CoreModule,
    /// A component; Vauban runs it as a WASI preview 2 command (`wasi:cli/run`).
    Component,
}

/// The bytes are not WebAssembly Vauban can run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a WebAssembly module or component: the 8-byte header is neither core version 1 nor component layer 1"
)]
pub struct NotWasm;

impl ModuleKind {
    /// Detects the kind from the module's 8-byte header.
    ///
    /// # Errors
    /// [`NotWasm`] when the header is neither a version-1 core module nor a layer-1 component
    /// (including precompiled native artifacts, which Vauban never accepts from outside).
    pub fn detect(bytes: &[u8]) -> Result<Self, NotWasm> {
        if wasmparser::Parser::is_component(bytes) {
            Ok(Self::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            Ok(Self::CoreModule)
        } else {
            Err(NotWasm)
        }
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CoreModule => "core module (wasip1)",
            Self::Component => "component (wasip2)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kind_from_header() {
        let core = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        assert_eq!(ModuleKind::detect(core), Ok(ModuleKind::CoreModule));
        assert_eq!(ModuleKind::detect(component), Ok(ModuleKind::Component));
        assert_eq!(ModuleKind::detect(b"\x7fELF\x02\x01\x01\0"), Err(NotWasm));
        assert_eq!(ModuleKind::detect(b"\0asm"), Err(NotWasm));
    }

    #[test]
    fn digest_round_trips_through_text() {
        let d = ModuleDigest::of(b"hello");
        let text = d.to_string();
        assert!(text.starts_with("sha256:2cf24dba"));
        assert_eq!(text.parse::<ModuleDigest>().ok(), Some(d));
        assert!("sha256:xyz".parse::<ModuleDigest>().is_err());
    }
}
