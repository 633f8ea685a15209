//! JSON job I/O (feature `json`): the input is one JSON document on stdin, the result one
//! compact JSON line on stdout.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Reads stdin and parses it as one JSON document.
///
/// # Errors
///
/// - [`Error::failed`] if stdin cannot be read;
/// - [`Error::bad_input`] carrying serde's message if it is not valid JSON for `T`.
///
/// ```no_run
/// #[derive(serde::Deserialize)]
/// struct Job {
///     name: String,
/// }
///
/// let job: Job = vauban_guest::input_json()?;
/// println!("hello, {}!", job.name);
/// # Ok::<(), vauban_guest::Error>(())
/// ```
pub fn input_json<T: DeserializeOwned>() -> Result<T, Error> {
    let bytes = crate::input()?;
    serde_json::from_slice(&bytes).map_err(|err| Error::bad_input(format!("invalid input: {err}")))
}

/// Writes `value` to stdout as compact JSON followed by a newline, and flushes.
///
/// # Errors
///
/// [`Error::failed`] if `value` cannot be serialized or stdout cannot be written.
///
/// ```no_run
/// vauban_guest::output_json(&serde_json::json!({ "ok": true }))?;
/// # Ok::<(), vauban_guest::Error>(())
/// ```
pub fn output_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|err| Error::failed(format!("cannot serialize output: {err}")))?;
    bytes.push(b'\n');
    crate::output(&bytes)?;
    Ok(())
}
