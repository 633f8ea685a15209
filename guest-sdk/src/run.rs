//! Whole-job entry points: read the input, run the job, write the result, exit with a code.

#[cfg(feature = "json")]
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Level, exit_code};

/// Runs a job over raw bytes and exits the process.
///
/// Reads all of stdin, calls `f` with it and, if `f` succeeds, writes the returned bytes to
/// stdout and exits with [`exit_code::SUCCESS`]. If reading the input, `f` or writing the
/// output fails, logs the error message at level `error` on stderr and exits with the
/// error's [`code`](Error::code) ([`exit_code::FAILURE`] for I/O errors). The error line is
/// `{"level":"error","msg":"<message>","fields":{"exit_code":"<code>"}}`: on `wasm32-wasip2`,
/// where a command's exit status is only 0 or 1, that field still says the code. (A component
/// built with [`job!`](crate::job) is called through the `vauban:job` world instead, which
/// carries the code itself.) [`job!`](crate::job) calls it from the `main` it generates.
///
/// ```no_run
/// vauban_guest::run(|input| Ok(input.to_ascii_uppercase()))
/// ```
pub fn run(f: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Error>) -> ! {
    let result = crate::input()
        .map_err(Error::from)
        .and_then(f)
        .and_then(|out| crate::output(&out).map_err(Error::from));
    finish(result)
}

/// Runs a job over JSON and exits the process.
///
/// Like [`run`], with the input bytes turned into output bytes by
/// [`call_json`](crate::call_json): the input is parsed as JSON into `I` (a parse failure
/// exits with [`exit_code::BAD_INPUT`]) and the result is written as one compact JSON line.
/// [`job!`](crate::job) calls it from the `main` it generates.
///
/// ```no_run
/// use vauban_guest::Error;
///
/// #[derive(serde::Deserialize)]
/// struct Sum {
///     values: Vec<f64>,
/// }
///
/// vauban_guest::run_json(|job: Sum| {
///     if job.values.is_empty() {
///         return Err(Error::bad_input("no values"));
///     }
///     Ok(job.values.iter().sum::<f64>())
/// })
/// ```
#[cfg(feature = "json")]
pub fn run_json<I, O>(f: impl FnOnce(I) -> Result<O, Error>) -> !
where
    I: DeserializeOwned,
    O: Serialize,
{
    run(|input| crate::call_json(f, &input))
}

/// Exits with [`exit_code::SUCCESS`], or logs the error and exits with its code.
fn finish(result: Result<(), Error>) -> ! {
    let code = match result {
        Ok(()) => exit_code::SUCCESS,
        Err(err) => {
            crate::log(Level::Error, err.message(), &[("exit_code", &err.code())]);
            err.code()
        }
    };
    std::process::exit(i32::from(code))
}
