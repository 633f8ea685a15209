//! [`job!`](crate::job): one function becomes a Vauban job on every target.

/// Turns a function into a Vauban job: `job!(f)` for JSON, `job!(bytes: f)` for raw bytes.
///
/// | form | the function | input | output |
/// |---|---|---|---|
/// | `job!(f)` or `job!(json: f)` | `fn(I) -> Result<O, Error>`, `I: Deserialize`, `O: Serialize` | one JSON document | compact JSON and `\n` |
/// | `job!(bytes: f)` | `fn(Vec<u8>) -> Result<Vec<u8>, Error>` | the bytes | the bytes, as returned |
///
/// `f` is any expression of such a function type: a function's path or a closure. The macro
/// goes at the top level of a binary crate (`src/main.rs`), which must not define `main` itself:
///
/// - everywhere, it expands to `fn main()`, which reads stdin, calls `f` and writes the result
///   to stdout, or logs the [`Error`](crate::Error) and exits with its code
///   ([`run_json`](crate::run_json) or [`run`](crate::run)). That is the wasm32-wasip1 command,
///   and the binary a native `cargo run` gives;
/// - on wasm32-wasip2 it also exports the `vauban:job` world's
///   `run: func(input: list<u8>) -> result<list<u8>, error>`, which calls `f` on `input`
///   (through [`call_json`](crate::call_json) for JSON) and returns the output bytes, or the
///   error's code and message. Vauban calls `run` rather than `main`; inside it,
///   [`log()`](crate::log()) and [`config()`](crate::config()) go through the world's imports.
///
/// Both ways produce the same bytes for the same input: the same output on stdout, the same log
/// lines and the same `error` line on stderr, the same exit code (except that a wasm32-wasip2
/// component run as a plain command can only exit with 0 or 1).
///
/// The JSON form needs the `json` feature (on by default).
///
/// # Examples
///
/// A JSON job (its unit tests call `greet` directly, natively):
///
/// ```no_run
/// # // The JSON form needs the `json` feature, on by default.
/// # #[cfg(feature = "json")] mod job {
/// use serde::{Deserialize, Serialize};
/// use vauban_guest::Error;
///
/// #[derive(Deserialize)]
/// struct Input {
///     name: String,
/// }
///
/// #[derive(Serialize)]
/// struct Output {
///     greeting: String,
/// }
///
/// fn greet(input: Input) -> Result<Output, Error> {
///     if input.name.is_empty() {
///         return Err(Error::bad_input("name is empty"));
///     }
///     vauban_guest::info!("greeting", name = input.name);
///     Ok(Output {
///         greeting: format!("hello, {}!", input.name),
///     })
/// }
///
/// vauban_guest::job!(greet);
/// # }
/// ```
///
/// A job over raw bytes:
///
/// ```no_run
/// use vauban_guest::Error;
///
/// fn reverse(input: Vec<u8>) -> Result<Vec<u8>, Error> {
///     if input.is_empty() {
///         return Err(Error::bad_input("empty input"));
///     }
///     Ok(input.into_iter().rev().collect())
/// }
///
/// vauban_guest::job!(bytes: reverse);
/// ```
#[macro_export]
macro_rules! job {
    (bytes: $job:expr $(,)?) => {
        fn main() {
            $crate::run($job)
        }
        $crate::__job_export!($job);
    };
    (json: $job:expr $(,)?) => {
        fn main() {
            $crate::run_json($job)
        }
        $crate::__job_export!(|input: ::std::vec::Vec<u8>| $crate::call_json($job, &input));
    };
    ($job:expr $(,)?) => {
        $crate::job!(json: $job);
    };
}

/// Implementation detail of [`job!`](crate::job): on wasm32-wasip2, exports the `vauban:job`
/// world's `run` as a call of `$bytes_job` (a `FnOnce(Vec<u8>) -> Result<Vec<u8>, Error>`).
/// Elsewhere it expands to nothing.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_export {
    ($bytes_job:expr) => {
        #[cfg(all(target_os = "wasi", target_env = "p2"))]
        const _: () = {
            // Items in a macro are not hygienic: a name no guest uses, so that `$bytes_job`
            // still means what it means outside.
            struct __VaubanJobExport;

            impl $crate::bindings::Guest for __VaubanJobExport {
                fn run(
                    input: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::Error> {
                    $crate::__run_export(input, $bytes_job)
                }
            }

    $crate::bindings::export!(__VaubanJobExport with_types_in $crate::bindings);
        };
    };
}
