//! Configuration values granted to the job (`--config KEY=VALUE`, `config` in a job spec).
//!
//! A job sees only the values it was granted, read-only. How they reach it depends on how it
//! runs: a component the host called through the `vauban:job` world asks the world's `config`
//! import; a command (a wasm32-wasip1 module, a component run through `wasi:cli/run`, a native
//! test) finds each value in the environment variable `VAUBAN_CONFIG_<KEY>`, which the host sets
//! for it. [`config()`] and [`config_all`] give the same answer either way.

use std::ffi::OsString;

/// The prefix of the environment variables that carry granted values to a command:
/// `VAUBAN_CONFIG_<KEY>`, the key exactly as granted.
///
/// ```
/// assert_eq!(vauban_guest::CONFIG_ENV_PREFIX, "VAUBAN_CONFIG_");
/// ```
pub const CONFIG_ENV_PREFIX: &str = "VAUBAN_CONFIG_";

/// The value granted to the job under `key`, if any.
///
/// Keys are compared exactly (case included). A value that is not UTF-8 reads as absent.
///
/// ```
/// // Natively, `VAUBAN_CONFIG_region=eu-west cargo test` grants `region`.
/// let region = vauban_guest::config("region").unwrap_or_else(|| "eu-west".to_owned());
/// vauban_guest::info!("configured", region = region);
/// ```
#[must_use]
pub fn config(key: &str) -> Option<String> {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    if let Some(world) = crate::world::entered() {
        return (world.config)(key);
    }
    // Such a key names no variable (and `var_os` may panic on it): it was not granted.
    if key.is_empty() || key.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(format!("{CONFIG_ENV_PREFIX}{key}")).and_then(|value| value.into_string().ok())
}

/// Every value granted to the job, as `(key, value)` pairs sorted by key.
///
/// ```
/// for (key, value) in vauban_guest::config_all() {
///     vauban_guest::debug!("config", key = key, value = value);
/// }
/// ```
#[must_use]
pub fn config_all() -> Vec<(String, String)> {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    if let Some(world) = crate::world::entered() {
        return (world.config_all)();
    }
    granted(std::env::vars_os())
}

/// The granted values among environment variables, sorted by key; variables without the
/// prefix, with an empty key, or not UTF-8 are not granted values.
fn granted(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let key = name.to_str()?.strip_prefix(CONFIG_ENV_PREFIX)?;
            if key.is_empty() {
                return None;
            }
            Some((key.to_owned(), value.into_string().ok()?))
        })
        .collect();
    values.sort();
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vars: &[(&str, &str)], expected: &[(&str, &str)]) {
        let vars = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(granted(vars), expected);
    }

    #[test]
    fn only_prefixed_variables_are_granted_values_sorted_by_key() {
        check(
            &[
                ("PATH", "/bin"),
                ("VAUBAN_CONFIG_zone", "alpha"),
                ("VAUBAN_CONFIG_", "no key"),
                ("VAUBAN_CONFIG_Region", "eu"),
                ("vauban_config_lower", "other prefix"),
                ("VAUBAN_CONFIG_empty", ""),
            ],
            &[("Region", "eu"), ("empty", ""), ("zone", "alpha")],
        );
        check(&[], &[]);
    }

    #[cfg(unix)]
    #[test]
    fn values_that_are_not_utf8_are_not_granted() {
        use std::os::unix::ffi::OsStringExt;
        let vars = [
            (
                OsString::from("VAUBAN_CONFIG_bad"),
                OsString::from_vec(vec![0xff]),
            ),
            (OsString::from("VAUBAN_CONFIG_ok"), OsString::from("1")),
        ];
        assert_eq!(granted(vars), [("ok".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn keys_that_name_no_variable_are_absent() {
        assert_eq!(config(""), None);
        assert_eq!(config("a=b"), None);
        assert_eq!(config("a\0b"), None);
        assert_eq!(config("surely-not-granted-to-a-unit-test"), None);
    }
}
