//! How a run's end is shown: the one-line summary and the exit code of `exec` and `run`.

use std::process::ExitCode;

use vauban_core::Outcome;

/// Exit codes for outcomes that are not a guest exit, following shell conventions.
pub(crate) mod exit {
    pub(crate) const TIMED_OUT: u8 = 124;
    pub(crate) const DENIED: u8 = 126;
    pub(crate) const CANCELLED: u8 = 130;
    pub(crate) const TRAPPED: u8 = 134;
    pub(crate) const OUT_OF_MEMORY: u8 = 137;
    pub(crate) const OUT_OF_FUEL: u8 = 152;
}

/// The exit code that stands for an outcome: the guest's own when it exited.
pub(crate) fn exit_code(outcome: &Outcome) -> ExitCode {
    match outcome {
        // Exit codes outside 0..=255 cannot be passed on; keep them distinct from success.
        Outcome::Exited { code } => ExitCode::from(u8::try_from(*code).unwrap_or(1)),
        Outcome::Trapped { .. } => ExitCode::from(exit::TRAPPED),
        Outcome::TimedOut { .. } => ExitCode::from(exit::TIMED_OUT),
        Outcome::OutOfMemory { .. } => ExitCode::from(exit::OUT_OF_MEMORY),
        Outcome::OutOfFuel { .. } => ExitCode::from(exit::OUT_OF_FUEL),
        Outcome::Cancelled => ExitCode::from(exit::CANCELLED),
        Outcome::Denied { .. } => ExitCode::from(exit::DENIED),
    }
}
