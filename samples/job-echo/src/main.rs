//! `job-echo`: the smallest component of the `vauban:job` world (`wit/job.wit`), and the same
//! job as a preview-1 command, so that a host test can check the two give the same output.
//!
//! The job, on input bytes `INPUT`:
//! 1. logs `{"level":"info","msg":"echoing","fields":{"bytes":"<len of INPUT>"}}` on stderr;
//! 2. if `INPUT` is `fail`, fails with code 3 and the message `asked to fail`;
//! 3. else returns `INPUT` reversed, followed by the configuration value `greeting` if one was
//!    granted.
//!
//! On wasm32-wasip2 the job is the world's `run` export: its input is `run`'s argument, its log
//! line goes through `vauban:job/log`, `greeting` comes from `vauban:job/config`, and the host
//! writes the result (or the error line and code). On wasm32-wasip1 (and natively) `main` runs
//! the same job through the SDK's `run`: input on stdin, result on stdout, error logged and exit
//! code 3, and `greeting` is the environment variable `VAUBAN_CONFIG_greeting`, where the host
//! puts a command's configuration. (`main` exists on wasip2 too, as `wasi:cli/run`, but a
//! Vauban host calls `run` instead.)

/// The job itself, whatever carries its input, configuration and log line.
fn echo(
    input: &[u8],
    greeting: Option<String>,
    log: impl FnOnce(&str, &[(&str, String)]),
) -> Result<Vec<u8>, (u8, &'static str)> {
    log("echoing", &[("bytes", input.len().to_string())]);
    if input == b"fail" {
        return Err((3, "asked to fail"));
    }
    let mut output: Vec<u8> = input.iter().rev().copied().collect();
    if let Some(greeting) = greeting {
        output.extend_from_slice(greeting.as_bytes());
    }
    Ok(output)
}

fn main() {
    vauban_guest::run(|input| {
        let greeting = std::env::var("VAUBAN_CONFIG_greeting").ok();
        echo(&input, greeting, |msg, fields| {
            let fields: Vec<(&str, &dyn std::fmt::Display)> = fields
                .iter()
                .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
                .collect();
            vauban_guest::log(vauban_guest::Level::Info, msg, &fields);
        })
        .map_err(|(code, message)| vauban_guest::Error::new(code, message))
    })
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "job" });

    use vauban::job::log::{Field, Level};

    struct EchoJob;

    impl Guest for EchoJob {
        fn run(input: Vec<u8>) -> Result<Vec<u8>, Error> {
            let greeting = vauban::job::config::get("greeting");
            super::echo(&input, greeting, |msg, fields| {
                let fields: Vec<Field> = fields
                    .iter()
                    .map(|(key, value)| Field {
                        key: (*key).to_owned(),
                        value: value.clone(),
                    })
                    .collect();
                vauban::job::log::log(Level::Info, msg, &fields);
            })
            .map_err(|(code, message)| Error {
                code,
                message: message.to_owned(),
            })
        }
    }

    export!(EchoJob);
}
