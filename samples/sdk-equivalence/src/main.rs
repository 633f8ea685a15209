//! `sdk-equivalence`: one job function of the `vauban-guest` SDK, built by `job!` into a
//! preview-1 command and a component of the `vauban:job` world, so that a host test can check
//! that the two give the same stdout, stderr and exit code for the same input.
//!
//! Input (stdin, or `run`'s argument): `{"name":"Ada"}`, optionally with `"fail_with":N`.
//!
//! - Output: `{"greeting":"hello, Ada!","config":[["key","value"],...]}` and a newline, where
//!   `config` is every configuration value granted to the job, sorted by key
//!   (`vauban_guest::config_all`), and one log line
//!   `{"level":"info","msg":"greeting","fields":{"name":"Ada","chars":"3","region":"eu"}}`
//!   (`region` is the value granted under that key, `-` if none).
//! - Input that is not this JSON shape exits 2 with the SDK's `error` line
//!   (`{"level":"error","msg":"invalid input: ...","fields":{"exit_code":"2"}}`); so does an
//!   empty name (`name is empty`).
//! - `"fail_with":N` logs a `warn` line `failing on request` with field `code`, then fails with
//!   code N and the message `asked to fail` (N = 0 counts as 1).
//!
//! The name is copied into the log line and the output as is, so a name with quotes, control
//! characters or non-ASCII text checks that both builds escape alike.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use vauban_guest::Error;

/// The job input.
#[derive(Deserialize)]
struct Input {
    name: String,
    #[serde(default)]
    fail_with: Option<u8>,
}

/// The job output.
#[derive(Serialize)]
struct Output {
    greeting: String,
    config: Vec<(String, String)>,
}

vauban_guest::job!(greet);

/// The job: greets by name, or fails as asked.
fn greet(input: Input) -> Result<Output, Error> {
    if input.name.is_empty() {
        return Err(Error::bad_input("name is empty"));
    }
    if let Some(code) = input.fail_with {
        vauban_guest::warn!("failing on request", code = code);
        return Err(Error::new(code, "asked to fail"));
    }
    let region = vauban_guest::config("region").unwrap_or_else(|| "-".to_owned());
    vauban_guest::info!(
        "greeting",
        name = input.name,
        chars = input.name.chars().count(),
        region = region,
    );
    Ok(Output {
        greeting: format!("hello, {}!", input.name),
        config: vauban_guest::config_all(),
    })
}
