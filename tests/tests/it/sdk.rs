//! The guest SDK makes one job function behave the same on both WASI targets: built with
//! `vauban_guest::job!`, the `sdk-equivalence` sample gives the same stdout, stderr and exit code
//! through the runtime as a preview-1 command and as a component of the `vauban:job` world, and
//! the samples built with `job!` are components the runtime calls through that world's `run`.

use std::collections::BTreeMap;

use vauban_core::{Capabilities, Outcome};
use vauban_host::{Entry, Runtime};
use vauban_tests::{Publisher, Target, caps, run, runtime, stderr, stdout};

/// What a run of a job shows its user.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    outcome: Outcome,
    stdout: String,
    stderr: String,
}

/// Runs `sdk-equivalence` on `input` with `caps`, built for each target.
async fn run_on_both(
    runtime: &Runtime,
    publisher: &Publisher,
    caps: &Capabilities,
    input: &[u8],
) -> [Seen; 2] {
    let mut seen = Vec::new();
    for target in Target::BOTH {
        let module = publisher.signed("sdk-equivalence", target);
        let report = run(runtime, &module, caps.clone(), input).await;
        seen.push(Seen {
            stdout: stdout(&report),
            stderr: stderr(&report),
            outcome: report.outcome,
        });
    }
    let [p1, p2]: [Seen; 2] = seen.try_into().expect("two targets");
    [p1, p2]
}

/// Checks that both builds, given `input`, exit with `code` and write exactly `out` and `err`.
async fn check(
    runtime: &Runtime,
    publisher: &Publisher,
    input: &str,
    code: i32,
    out: &str,
    err: &str,
) {
    let [p1, p2] = run_on_both(runtime, publisher, &caps(), input.as_bytes()).await;
    let expected = Seen {
        outcome: Outcome::Exited { code },
        stdout: out.to_owned(),
        stderr: err.to_owned(),
    };
    assert_eq!(p1, expected, "wasm32-wasip1 command, input {input:?}");
    assert_eq!(
        p2, p1,
        "wasm32-wasip2 component against the command, input {input:?}"
    );
}

#[tokio::test]
async fn one_job_function_gives_the_same_output_on_both_targets() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let cases: &[(&str, i32, &str, &str)] = &[
        // Success: one compact JSON line out, one log line.
        (
            r#"{"name":"Ada"}"#,
            0,
            "{\"greeting\":\"hello, Ada!\",\"config\":[]}\n",
            "{\"level\":\"info\",\"msg\":\"greeting\",\
             \"fields\":{\"name\":\"Ada\",\"chars\":\"3\",\"region\":\"-\"}}\n",
        ),
        // Text that needs escaping: serde_json escapes the output, the log line is escaped the
        // SDK's way whether the SDK or the host writes it.
        (
            r#"{"name":"Zoë \"Z\"\n\u0001/"}"#,
            0,
            "{\"greeting\":\"hello, Zoë \\\"Z\\\"\\n\\u0001/!\",\"config\":[]}\n",
            "{\"level\":\"info\",\"msg\":\"greeting\",\"fields\":{\"name\":\"Zoë \\\"Z\\\"\\u000a\
             \\u0001/\",\"chars\":\"10\",\"region\":\"-\"}}\n",
        ),
        // Input the JSON does not fit: bad input, exit 2, serde's message.
        (
            r#"{"nom":"Ada"}"#,
            2,
            "",
            "{\"level\":\"error\",\"msg\":\"invalid input: missing field `name` at line 1 \
             column 13\",\"fields\":{\"exit_code\":\"2\"}}\n",
        ),
        (
            "",
            2,
            "",
            "{\"level\":\"error\",\"msg\":\"invalid input: EOF while parsing a value at line 1 \
             column 0\",\"fields\":{\"exit_code\":\"2\"}}\n",
        ),
        // The job's own bad-input error.
        (
            r#"{"name":""}"#,
            2,
            "",
            "{\"level\":\"error\",\"msg\":\"name is empty\",\"fields\":{\"exit_code\":\"2\"}}\n",
        ),
        // Any other code, after a log line: the component's exit code is the job's, not 1.
        (
            r#"{"name":"Ada","fail_with":7}"#,
            7,
            "",
            "{\"level\":\"warn\",\"msg\":\"failing on request\",\"fields\":{\"code\":\"7\"}}\n\
             {\"level\":\"error\",\"msg\":\"asked to fail\",\"fields\":{\"exit_code\":\"7\"}}\n",
        ),
        // Code 0 is no failure code: the job fails with 1.
        (
            r#"{"name":"Ada","fail_with":0}"#,
            1,
            "",
            "{\"level\":\"warn\",\"msg\":\"failing on request\",\"fields\":{\"code\":\"0\"}}\n\
             {\"level\":\"error\",\"msg\":\"asked to fail\",\"fields\":{\"exit_code\":\"1\"}}\n",
        ),
    ];
    for (input, code, out, err) in cases {
        check(&runtime, &publisher, input, *code, out, err).await;
    }
}

#[tokio::test]
async fn granted_configuration_reaches_the_job_on_both_targets() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let mut granted = caps();
    granted.config = BTreeMap::from([
        ("zone".to_owned(), "alpha".to_owned()),
        ("region".to_owned(), "eu-west".to_owned()),
    ]);
    let [p1, p2] = run_on_both(&runtime, &publisher, &granted, br#"{"name":"Ada"}"#).await;
    let expected = Seen {
        outcome: Outcome::Exited { code: 0 },
        stdout: "{\"greeting\":\"hello, Ada!\",\
                 \"config\":[[\"region\",\"eu-west\"],[\"zone\",\"alpha\"]]}\n"
            .to_owned(),
        stderr: "{\"level\":\"info\",\"msg\":\"greeting\",\
                 \"fields\":{\"name\":\"Ada\",\"chars\":\"3\",\"region\":\"eu-west\"}}\n"
            .to_owned(),
    };
    // The command reads `VAUBAN_CONFIG_<KEY>` variables, the component `vauban:job/config`.
    assert_eq!(
        [p1, p2],
        [expected.clone(), expected],
        "[wasm32-wasip1 command, wasm32-wasip2 component]"
    );
}

#[test]
fn samples_built_with_the_job_macro_export_the_job_world_on_wasip2() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for sample in ["sdk-equivalence", "track-fusion", "integrity-scan"] {
        for (target, entry) in [(Target::P1, Entry::Command), (Target::P2, Entry::Job)] {
            let loaded = runtime
                .load(&publisher.signed(sample, target))
                .unwrap_or_else(|e| panic!("{sample} for {target:?} loads: {e}"));
            assert_eq!(loaded.entry(), entry, "{sample} for {target:?}");
        }
    }
}
