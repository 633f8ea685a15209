//! The `vauban:job` world (`wit/job.wit`): the host side of its imports (`log`, `config`) and
//! what becomes of the result of its `run` export.
//!
//! A job component is run by calling `run` with the job's input. What it returns is made to look
//! exactly like what the preview-1 SDK (`guest-sdk/src/run.rs`) writes when the same job function
//! runs as a command, so that a job's output does not depend on the target it was built for:
//! `Ok(bytes)` is its stdout; `Err(error)` is one `error` log line on stderr and the error's exit
//! code. Log lines are written in the SDK's format (`guest-sdk/src/log.rs`), byte for byte.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};

use crate::output::BoundedOutput;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "job",
    // The run loop drives every store asynchronously (epoch yields); `log` and `config` are
    // plain synchronous host calls.
    exports: { default: async },
});

use vauban::job::log::{Field, Level};
use vauban::job::types::Error as JobError;

/// What a job's imports reach: its granted configuration and its output streams.
pub(crate) struct JobHost {
    /// `Capabilities::config`, and nothing else.
    config: BTreeMap<String, String>,
    /// The run's stdout capture (shared with WASI's stdout).
    stdout: BoundedOutput,
    /// The run's stderr capture (shared with WASI's stderr): log lines go here.
    stderr: BoundedOutput,
}

impl JobHost {
    pub(crate) fn new(
        config: BTreeMap<String, String>,
        stdout: BoundedOutput,
        stderr: BoundedOutput,
    ) -> Self {
        Self {
            config,
            stdout,
            stderr,
        }
    }

    /// Records what `run` returned and gives the exit code: the returned bytes become stdout
    /// (bounded like any output); an error becomes the SDK's `error` line on stderr and its code,
    /// 0 counting as 1 since a failed job must not look successful.
    pub(crate) fn finish(&self, result: Result<Vec<u8>, JobError>) -> i32 {
        match result {
            Ok(output) => {
                self.stdout.append(&output);
                0
            }
            Err(JobError { code, message }) => {
                let code = if code == 0 { 1 } else { code };
                let line = format_line(
                    "error",
                    &message,
                    [("exit_code", code.to_string().as_str())],
                );
                self.stderr.append(line.as_bytes());
                i32::from(code)
            }
        }
    }
}

/// Adds `vauban:job/log` and `vauban:job/config` (and the types they share) to `linker`.
///
/// # Errors
/// When the linker already defines them.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    host: fn(&mut T) -> &mut JobHost,
) -> wasmtime::Result<()> {
    Job::add_to_linker::<T, HasSelf<JobHost>>(linker, host)
}

impl vauban::job::types::Host for JobHost {}

impl vauban::job::log::Host for JobHost {
    fn log(&mut self, level: Level, message: String, fields: Vec<Field>) {
        let line = format_line(
            level_name(level),
            &message,
            fields.iter().map(|f| (f.key.as_str(), f.value.as_str())),
        );
        // One append per line: a line is never interleaved with other output.
        self.stderr.append(line.as_bytes());
    }
}

impl vauban::job::config::Host for JobHost {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The `level` value of a log line, as the SDK's `Level::as_str` writes it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// One log line, trailing newline included, exactly as `guest-sdk/src/log.rs` formats it:
/// `{"level":"info","msg":"...","fields":{"key":"value",...}}`.
fn format_line<'a>(
    level: &str,
    msg: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut line = String::with_capacity(64 + msg.len());
    line.push_str("{\"level\":\"");
    line.push_str(level);
    line.push_str("\",\"msg\":");
    push_json_string(&mut line, msg);
    line.push_str(",\"fields\":{");
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_json_string(&mut line, key);
        line.push(':');
        push_json_string(&mut line, value);
    }
    line.push_str("}}\n");
    line
}

/// Appends `s` as a quoted JSON string, escaped as the SDK escapes it: `"` and `\` with a
/// backslash, U+0000 to U+001F as `\u00XX`, everything else copied.
fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{0}'..='\u{1f}' => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(level: Level, msg: &str, fields: &[(&str, &str)], expected: &str) {
        let out = BoundedOutput::new(1 << 10, None);
        let mut host = JobHost::new(BTreeMap::new(), out.clone(), out.clone());
        let fields = fields
            .iter()
            .map(|(k, v)| Field {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        vauban::job::log::Host::log(&mut host, level, msg.to_owned(), fields);
        assert_eq!(String::from_utf8_lossy(&out.snapshot().bytes), expected);
    }

    // The expected lines are those of the SDK's own tests (`guest-sdk/src/log.rs`).
    #[test]
    fn log_lines_are_the_sdks() {
        check(
            Level::Info,
            "started",
            &[],
            "{\"level\":\"info\",\"msg\":\"started\",\"fields\":{}}\n",
        );
        check(
            Level::Warn,
            "fused",
            &[("readings", "6"), ("ratio", "0.5"), ("sensor", "eo-2")],
            "{\"level\":\"warn\",\"msg\":\"fused\",\
             \"fields\":{\"readings\":\"6\",\"ratio\":\"0.5\",\"sensor\":\"eo-2\"}}\n",
        );
        check(
            Level::Error,
            "bad \"x\"\n",
            &[("k\\", "v\u{1}")],
            "{\"level\":\"error\",\"msg\":\"bad \\\"x\\\"\\u000a\",\
             \"fields\":{\"k\\\\\":\"v\\u0001\"}}\n",
        );
        check(
            Level::Trace,
            "\u{7f}é✓",
            &[],
            "{\"level\":\"trace\",\"msg\":\"\u{7f}é✓\",\"fields\":{}}\n",
        );
        check(
            Level::Debug,
            "d",
            &[],
            "{\"level\":\"debug\",\"msg\":\"d\",\"fields\":{}}\n",
        );
    }

    #[test]
    fn a_returned_error_is_the_sdks_error_line_and_its_code() {
        let stdout = BoundedOutput::new(1 << 10, None);
        let stderr = BoundedOutput::new(1 << 10, None);
        let host = JobHost::new(BTreeMap::new(), stdout.clone(), stderr.clone());
        let error = |code: u8| JobError {
            code,
            message: "no \"readings\"".into(),
        };
        assert_eq!(host.finish(Err(error(2))), 2);
        assert_eq!(host.finish(Err(error(0))), 1, "a failure never exits 0");
        assert_eq!(
            String::from_utf8_lossy(&stderr.snapshot().bytes),
            "{\"level\":\"error\",\"msg\":\"no \\\"readings\\\"\",\"fields\":{\"exit_code\":\"2\"}}\n\
             {\"level\":\"error\",\"msg\":\"no \\\"readings\\\"\",\"fields\":{\"exit_code\":\"1\"}}\n"
        );
        assert!(stdout.snapshot().bytes.is_empty());
        assert_eq!(host.finish(Ok(b"out".to_vec())), 0);
        assert_eq!(stdout.snapshot().bytes, b"out");
    }

    #[test]
    fn config_is_exactly_what_was_granted() {
        let out = BoundedOutput::new(0, None);
        let granted = BTreeMap::from([("b".to_owned(), "2".to_owned()), ("a".into(), "1".into())]);
        let mut host = JobHost::new(granted, out.clone(), out);
        use vauban::job::config::Host as _;
        assert_eq!(host.get("a".into()).as_deref(), Some("1"));
        assert_eq!(host.get("c".into()), None);
        assert_eq!(
            host.get_all(),
            [("a".to_owned(), "1".to_owned()), ("b".into(), "2".into())]
        );
    }
}
