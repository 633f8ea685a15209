//! The error a guest job fails with: an exit code for the host and a message for humans.

use std::fmt;

use crate::exit_code;

/// A job failure: the process exit code the host will see and a human-readable message.
///
/// A job ends with it by returning it from the function given to [`job!`](crate::job) (or to
/// [`run`](crate::run) / [`run_json`](crate::run_json)): as a command, the job logs the message
/// at level `error` and exits with the code; as a component of the `vauban:job` world, `run`
/// returns it and the host writes that same line and exits with that same code.
///
/// ```
/// use vauban_guest::{Error, exit_code};
///
/// let err = Error::bad_input("reading 3: sigma must be positive");
/// assert_eq!(err.code(), exit_code::BAD_INPUT);
/// assert_eq!(err.to_string(), "reading 3: sigma must be positive");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: u8,
    message: String,
}

impl Error {
    /// Creates an error that makes the job exit with `code`.
    ///
    /// A failed job must not look successful, so a `code` of [`exit_code::SUCCESS`] is
    /// replaced by [`exit_code::FAILURE`].
    ///
    /// ```
    /// use vauban_guest::Error;
    ///
    /// assert_eq!(Error::new(7, "quota exceeded").code(), 7);
    /// assert_eq!(Error::new(0, "oops").code(), 1);
    /// ```
    #[must_use]
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        let code = if code == exit_code::SUCCESS {
            exit_code::FAILURE
        } else {
            code
        };
        Self {
            code,
            message: message.into(),
        }
    }

    /// Creates an error for input the job rejects (exit code [`exit_code::BAD_INPUT`]).
    #[must_use]
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(exit_code::BAD_INPUT, message)
    }

    /// Creates an error for a job that could not complete (exit code [`exit_code::FAILURE`]).
    #[must_use]
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(exit_code::FAILURE, message)
    }

    /// The exit code the job ends with.
    #[must_use]
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The human-readable message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exit code and the message, for the `vauban:job` world's error record.
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    pub(crate) fn into_parts(self) -> (u8, String) {
        (self.code, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    /// An I/O error is a [`failed`](Error::failed) job: exit code [`exit_code::FAILURE`].
    fn from(err: std::io::Error) -> Self {
        Self::failed(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_their_exit_codes() {
        assert_eq!(Error::failed("x").code(), exit_code::FAILURE);
        assert_eq!(Error::bad_input("x").code(), exit_code::BAD_INPUT);
        assert_eq!(Error::new(42, "x").code(), 42);
        assert_eq!(exit_code::SUCCESS, 0);
        assert_eq!(exit_code::FAILURE, 1);
        assert_eq!(exit_code::BAD_INPUT, 2);
    }

    #[test]
    fn success_is_not_an_error_code() {
        assert_eq!(
            Error::new(exit_code::SUCCESS, "x").code(),
            exit_code::FAILURE
        );
    }

    #[test]
    fn message_and_display_agree() {
        let err = Error::bad_input("no readings");
        assert_eq!(err.message(), "no readings");
        assert_eq!(err.to_string(), "no readings");
    }

    #[test]
    fn io_errors_are_failures() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let err = Error::from(io);
        assert_eq!(err.code(), exit_code::FAILURE);
        assert_eq!(err.message(), "pipe closed");
    }
}
