//! JSON job I/O (feature `json`): the input is one JSON document, the result one compact JSON
//! line.
//!
//! One encoding on every target: [`call_json`] turns input bytes into output bytes, and both
//! the command's `main` ([`run_json`](crate::run_json)) and the component's `run` export (see
//! [`job!`](crate::job)) go through it. The output is `serde_json::to_vec` (compact, fields in
//! declaration order, serde_json's number formatting, which is the same on every target)
//! followed by exactly one `\n`, so a JSON job's stdout is byte-identical whichever way it ran.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Runs a JSON job on input bytes and returns the bytes it outputs: exactly what the job
/// writes on stdout, on every target.
///
/// Parses `input` as one JSON document into `I`, calls `job`, and serializes its result as
/// compact JSON followed by one `\n`. Call it in a guest's unit tests to check the exact
/// output Vauban will show, without building for wasm.
///
/// # Errors
///
/// - [`Error::bad_input`] with the message `invalid input: <serde's message>` if `input` is not
///   valid JSON for `I`;
/// - whatever `job` returns;
/// - [`Error::failed`] if the result cannot be serialized (a map with non-string keys, say).
///
/// ```
/// use vauban_guest::{Error, call_json, exit_code};
///
/// #[derive(serde::Deserialize)]
/// struct Sum {
///     values: Vec<i64>,
/// }
///
/// fn sum(job: Sum) -> Result<i64, Error> {
///     Ok(job.values.iter().sum())
/// }
///
/// assert_eq!(call_json(sum, br#"{"values":[1,2,3]}"#)?, b"6\n");
/// let err = call_json(sum, b"[1,2,3]").unwrap_err();
/// assert_eq!(err.code(), exit_code::BAD_INPUT);
/// assert!(err.message().starts_with("invalid input: "));
/// # Ok::<(), Error>(())
/// ```
pub fn call_json<I, O>(
    job: impl FnOnce(I) -> Result<O, Error>,
    input: &[u8],
) -> Result<Vec<u8>, Error>
where
    I: DeserializeOwned,
    O: Serialize,
{
    encode(&job(decode(input)?)?)
}

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
    decode(&crate::input()?)
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
    crate::output(&encode(value)?)?;
    Ok(())
}

/// Parses one JSON document; a parse error is bad input.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|err| Error::bad_input(format!("invalid input: {err}")))
}

/// Compact JSON and one `\n`.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|err| Error::failed(format!("cannot serialize output: {err}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::exit_code;

    #[derive(Deserialize)]
    struct Input {
        name: String,
    }

    #[derive(Serialize)]
    struct Output {
        greeting: String,
        ratio: f64,
    }

    fn greet(input: Input) -> Result<Output, Error> {
        if input.name.is_empty() {
            return Err(Error::bad_input("name is empty"));
        }
        Ok(Output {
            greeting: format!("hello, {}!", input.name),
            ratio: 0.1 + 0.2,
        })
    }

    #[test]
    fn output_is_one_compact_line() {
        assert_eq!(
            call_json(greet, br#"  { "name" : "Ada" }  "#)
                .ok()
                .as_deref(),
            Some(&b"{\"greeting\":\"hello, Ada!\",\"ratio\":0.30000000000000004}\n"[..])
        );
    }

    #[test]
    fn malformed_input_is_bad_input_with_serde_message() {
        let err = call_json(greet, br#"{"nom":"Ada"}"#).err();
        assert_eq!(err.as_ref().map(Error::code), Some(exit_code::BAD_INPUT));
        assert_eq!(
            err.as_ref().map(Error::message),
            Some("invalid input: missing field `name` at line 1 column 13")
        );
        let err = call_json(greet, b"").err();
        assert_eq!(err.map(|e| e.code()), Some(exit_code::BAD_INPUT));
    }

    #[test]
    fn the_jobs_error_is_returned_as_is() {
        let err = call_json(greet, br#"{"name":""}"#).err();
        assert_eq!(err, Some(Error::bad_input("name is empty")));
    }

    #[test]
    fn an_unserializable_result_is_a_failure() {
        let job = |(): ()| Ok(BTreeMap::from([((1, 2), "x")]));
        let err = call_json(job, b"null").err();
        assert_eq!(err.as_ref().map(Error::code), Some(exit_code::FAILURE));
        assert!(
            err.is_some_and(|e| e.message().starts_with("cannot serialize output: ")),
            "serialization error"
        );
    }
}
