//! Structured logging: one JSON object per line in the job's stderr, which the host collects.
//!
//! Every line has the same shape, whatever the level:
//!
//! ```text
//! {"level":"info","msg":"fused","fields":{"readings":"6","tracks":"3"}}
//! ```
//!
//! Field values are rendered with [`Display`] and always written as JSON strings. The JSON
//! is written by hand (no serde needed), so logging works with the `json` feature off.
//!
//! Where a line goes depends on how the job runs, not on what it looks like: a command
//! (wasm32-wasip1, a component run through `wasi:cli/run`, a native test) writes it to stderr
//! itself; a component the host called through the `vauban:job` world's `run` hands level,
//! message and fields to the world's `log` import, and the host writes the very same line.

use std::fmt::{self, Display, Write as _};
use std::io::Write as _;

/// The severity of a log line: the `level` enum of the `vauban:job/log` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail, finer than [`Level::Debug`].
    Trace,
    /// Detail useful while developing a guest.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the job survived.
    Warn,
    /// The job is failing.
    Error,
}

impl Level {
    /// The lowercase name used in the `level` key: `trace`, `debug`, `info`, `warn` or
    /// `error`.
    ///
    /// ```
    /// assert_eq!(vauban_guest::Level::Warn.as_str(), "warn");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes one structured log line into the job's stderr.
///
/// The line is a JSON object `{"level":..,"msg":..,"fields":{..}}` followed by `\n`, written
/// with a single write so lines from one guest never interleave. Field values are rendered
/// with [`Display`]. Logging never fails: if stderr cannot be written the line is dropped.
/// The macros [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
/// [`warn!`](crate::warn) and [`error!`](crate::error) are shorthands for this function.
///
/// Inside a component the host called through the `vauban:job` world (see
/// [`job!`](crate::job)), the line goes through the world's `log` import instead, and the
/// host writes it: the job's stderr reads the same either way.
///
/// ```
/// use vauban_guest::{Level, log};
///
/// // {"level":"warn","msg":"slow sensor","fields":{"sensor":"radar-1","lag_ms":"250"}}
/// log(Level::Warn, "slow sensor", &[("sensor", &"radar-1"), ("lag_ms", &250)]);
/// ```
pub fn log(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    if let Some(world) = crate::world::entered() {
        (world.log)(level, msg, fields);
        return;
    }
    let line = format_line(level, msg, fields);
    // Logging must not take a job down: a closed or capped stderr just loses the line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Formats one log line, trailing newline included.
pub(crate) fn format_line(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut line = String::with_capacity(64 + msg.len());
    line.push_str("{\"level\":\"");
    line.push_str(level.as_str());
    line.push_str("\",\"msg\":");
    push_json_string(&mut line, msg);
    line.push_str(",\"fields\":{");
    let mut value = String::new();
    for (i, (key, val)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_json_string(&mut line, key);
        line.push(':');
        value.clear();
        // Writing into a String only fails if the value's Display impl reports an error;
        // keep whatever it produced rather than dropping the field.
        let _ = write!(value, "{val}");
        push_json_string(&mut line, &value);
    }
    line.push_str("}}\n");
    line
}

/// Appends `s` to `out` as a quoted JSON string.
///
/// `"` and `\` are backslash-escaped and every control character (U+0000 to U+001F) is
/// written as `\u00XX`; everything else, non-ASCII included, is copied as UTF-8.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
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

/// Logs at [`Level::Trace`]: `trace!("msg", key = value, ...)`. See [`info!`](crate::info).
///
/// ```
/// vauban_guest::trace!("cell", row = 3, column = 7);
/// ```
#[macro_export]
macro_rules! trace {
    ($($args:tt)+) => { $crate::__log!($crate::Level::Trace, $($args)+) };
}

/// Logs at [`Level::Info`]: `info!("msg", key = value, ...)`.
///
/// The message is anything that is `AsRef<str>`; fields are optional `key = value` pairs
/// whose values implement [`Display`](std::fmt::Display). See [`log()`](crate::log()).
///
/// ```
/// let readings = 6;
/// vauban_guest::info!("fused", readings = readings, tracks = 3);
/// vauban_guest::info!("started");
/// ```
#[macro_export]
macro_rules! info {
    ($($args:tt)+) => { $crate::__log!($crate::Level::Info, $($args)+) };
}

/// Logs at [`Level::Warn`]: `warn!("msg", key = value, ...)`. See [`info!`](crate::info).
///
/// ```
/// vauban_guest::warn!("reading skipped", index = 4);
/// ```
#[macro_export]
macro_rules! warn {
    ($($args:tt)+) => { $crate::__log!($crate::Level::Warn, $($args)+) };
}

/// Logs at [`Level::Error`]: `error!("msg", key = value, ...)`. See [`info!`](crate::info).
///
/// ```
/// vauban_guest::error!("cannot open file", path = "/data/in.csv");
/// ```
#[macro_export]
macro_rules! error {
    ($($args:tt)+) => { $crate::__log!($crate::Level::Error, $($args)+) };
}

/// Logs at [`Level::Debug`]: `debug!("msg", key = value, ...)`. See [`info!`](crate::info).
///
/// ```
/// vauban_guest::debug!("chunk", offset = 65536, len = 4096);
/// ```
#[macro_export]
macro_rules! debug {
    ($($args:tt)+) => { $crate::__log!($crate::Level::Debug, $($args)+) };
}

/// Implementation detail of the logging macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log(
            $level,
            ::core::convert::AsRef::<str>::as_ref(&$msg),
            &[$((::core::stringify!($key), &$value as &dyn ::core::fmt::Display)),*],
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_chars() {
        assert_eq!(escaped(""), r#""""#);
        assert_eq!(escaped("plain"), r#""plain""#);
        assert_eq!(escaped(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(escaped(r"C:\dir"), r#""C:\\dir""#);
        assert_eq!(escaped("a\nb\tc\r"), r#""a\u000ab\u0009c\u000d""#);
        assert_eq!(escaped("\u{0}\u{1f}"), r#""\u0000\u001f""#);
        // DEL and non-ASCII need no escaping in JSON.
        assert_eq!(escaped("\u{7f}é✓"), "\"\u{7f}é✓\"");
    }

    #[test]
    fn escaping_round_trips_through_a_json_parser() {
        let nasty = "quote\" back\\ nl\n nul\0 bell\u{7} esc\u{1b} ünï ✓ /";
        let json = escaped(nasty);
        #[cfg(feature = "json")]
        assert_eq!(
            serde_json::from_str::<String>(&json).ok().as_deref(),
            Some(nasty)
        );
        assert!(
            !json[1..json.len() - 1]
                .chars()
                .any(|c| c.is_control() && c != '\u{7f}')
        );
    }

    #[test]
    fn formats_a_line_without_fields() {
        assert_eq!(
            format_line(Level::Info, "started", &[]),
            "{\"level\":\"info\",\"msg\":\"started\",\"fields\":{}}\n"
        );
    }

    #[test]
    fn formats_fields_in_order_as_strings() {
        let line = format_line(
            Level::Warn,
            "fused",
            &[("readings", &6), ("ratio", &0.5), ("sensor", &"eo-2")],
        );
        assert_eq!(
            line,
            "{\"level\":\"warn\",\"msg\":\"fused\",\
             \"fields\":{\"readings\":\"6\",\"ratio\":\"0.5\",\"sensor\":\"eo-2\"}}\n"
        );
    }

    #[test]
    fn escapes_message_keys_and_values() {
        let line = format_line(Level::Error, "bad \"x\"\n", &[("k\\", &"v\u{1}")]);
        assert_eq!(
            line,
            "{\"level\":\"error\",\"msg\":\"bad \\\"x\\\"\\u000a\",\
             \"fields\":{\"k\\\\\":\"v\\u0001\"}}\n"
        );
    }

    #[test]
    fn level_names() {
        let names: Vec<&str> = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]
        .into_iter()
        .map(Level::as_str)
        .collect();
        assert_eq!(names, ["trace", "debug", "info", "warn", "error"]);
        assert_eq!(Level::Warn.to_string(), "warn");
        assert!(Level::Trace < Level::Debug && Level::Debug < Level::Error);
    }

    #[cfg(feature = "json")]
    #[test]
    fn lines_are_valid_json() {
        let line = format_line(Level::Debug, "m\u{0}", &[("a", &1), ("b", &"x\"y")]);
        let value: serde_json::Value = match serde_json::from_str(line.trim_end()) {
            Ok(value) => value,
            Err(err) => panic!("not JSON: {err}: {line}"),
        };
        assert_eq!(
            value,
            serde_json::json!({"level": "debug", "msg": "m\u{0}", "fields": {"a": "1", "b": "x\"y"}})
        );
    }

    #[test]
    fn macros_accept_optional_fields_and_owned_messages() {
        let n = 3;
        crate::info!("plain");
        crate::warn!("with fields", n = n, what = "x",);
        crate::error!(format!("owned {n}"), n = n * 2);
        crate::debug!(String::from("owned"));
        crate::trace!("fine", step = 1);
    }
}
