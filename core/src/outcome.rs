//! The structured result of running a job: how it ended, what it printed, what it cost.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::module::{ModuleDigest, ModuleKind};
use crate::signature::KeyId;

/// How a run ended. A guest's exit code is data, not an error: only the host's own failures are
/// errors, and they are not represented here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The guest exited (or returned from its entry point, code 0).
    Exited {
        /// The exit code. Components report only success (0) or failure (1).
        code: i32,
    },
    /// The guest trapped: an `unreachable`, an out-of-bounds access, a stack overflow, ...
    Trapped {
        /// The trap and the guest frames where it happened.
        message: String,
    },
    /// The wall-clock limit passed before the guest finished.
    TimedOut {
        /// The limit that was exceeded.
        limit: Duration,
    },
    /// The guest needed more memory than its limit allowed.
    OutOfMemory {
        /// The limit in bytes.
        limit: u64,
        /// What the guest asked for when it was refused.
        requested: u64,
    },
    /// The fuel budget ran out.
    OutOfFuel {
        /// The budget that was exhausted.
        budget: u64,
    },
    /// The run was cancelled from outside.
    Cancelled,
    /// The sandbox refused to start the guest because a capability it asked for is not allowed.
    Denied {
        /// The capability, as the request named it.
        capability: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Outcome {
    /// True only for `Exited { code: 0 }`.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with code {code}"),
            Self::Trapped { message } => write!(f, "trapped: {message}"),
            Self::TimedOut { limit } => write!(f, "timed out after {limit:?}"),
            Self::OutOfMemory { limit, requested } => write!(
                f,
                "out of memory: asked for {requested} bytes, limit is {limit} bytes"
            ),
            Self::OutOfFuel { budget } => write!(f, "out of fuel: budget of {budget} exhausted"),
            Self::Cancelled => write!(f, "cancelled"),
            Self::Denied { capability, reason } => write!(f, "denied {capability}: {reason}"),
        }
    }
}

/// Bytes a guest wrote to one stream, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedOutput {
    /// The first bytes written, up to the limit.
    #[serde(with = "lossy_text")]
    pub bytes: Vec<u8>,
    /// How many bytes were written past the limit and dropped.
    pub dropped: u64,
}

impl CapturedOutput {
    /// True when some output was dropped.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }
}

/// Where the module's compiled code came from for this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    /// Compiled now with Cranelift.
    Compiled,
    /// Loaded from the on-disk artifact cache.
    DiskCache,
    /// Already loaded in this process.
    Memory,
}

/// Everything known about one finished run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The module that ran.
    pub digest: ModuleDigest,
    /// Its kind.
    pub kind: ModuleKind,
    /// The trusted keys whose signatures verified.
    pub signers: Vec<KeyId>,
    /// Where its compiled code came from, and how long getting it took.
    pub code_source: CodeSource,
    /// Time to verify and load or compile the module.
    pub load_time: Duration,
    /// Time from instantiation to the end of the run.
    pub run_time: Duration,
    /// Fuel consumed, when fuel metering is on and the run ended on its own (not timed out or
    /// cancelled).
    pub fuel_consumed: Option<u64>,
    /// Highest total linear memory the instance reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Standard output.
    pub stdout: CapturedOutput,
    /// Standard error.
    pub stderr: CapturedOutput,
    /// Capability uses the sandbox refused while the guest ran (for example a socket to an
    /// address outside the allowlist). The guest saw an error and went on.
    pub denials: Vec<String>,
}

/// Output is shown as text in JSON reports (lossily: it is a report, the raw bytes go to the
/// stream they were written to).
mod lossy_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}
