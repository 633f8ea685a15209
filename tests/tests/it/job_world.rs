//! Components of the `vauban:job` world (`wit/job.wit`) are run through their `run` export, and
//! what they return, log and fail with looks exactly like the same job run as a preview-1
//! command through the SDK. `job-echo` is the guest: it logs one line, returns its input
//! reversed (plus the `greeting` configuration value when granted), and fails with code 3 on
//! `fail`.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use vauban_core::{Capabilities, Outcome, RunReport};
use vauban_host::{Entry, OutputStream, RunRequest, Runtime};
use vauban_tests::{Publisher, Target, caps, run, runtime, stderr, stdout};

const JOB: &str = "job-echo";

/// The line `job-echo` logs for an input of `len` bytes, in the SDK's format.
fn echo_line(len: usize) -> String {
    format!("{{\"level\":\"info\",\"msg\":\"echoing\",\"fields\":{{\"bytes\":\"{len}\"}}}}\n")
}

/// The line the SDK logs when `job-echo` is asked to fail.
const FAIL_LINE: &str =
    "{\"level\":\"error\",\"msg\":\"asked to fail\",\"fields\":{\"exit_code\":\"3\"}}\n";

fn with_config(pairs: &[(&str, &str)]) -> Capabilities {
    Capabilities {
        config: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..caps()
    }
}

#[tokio::test]
async fn a_job_component_is_called_through_run_and_its_result_is_its_output() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let module = publisher.signed(JOB, Target::P2);
    let loaded = runtime.load(&module).expect("loads");
    assert_eq!(loaded.entry(), Entry::Job, "detected from its `run` export");

    let report = run(&runtime, &module, caps(), b"hello").await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    assert_eq!(
        stdout(&report),
        "olleh",
        "the bytes `run` returned, as they are"
    );
    assert_eq!(stderr(&report), echo_line(5), "the one line it logged");
    assert!(!report.stdout.truncated() && !report.stderr.truncated());

    let empty = run(&runtime, &module, caps(), b"").await;
    assert_eq!(empty.outcome, Outcome::Exited { code: 0 });
    assert_eq!(stdout(&empty), "");
    assert_eq!(stderr(&empty), echo_line(0));
}

#[tokio::test]
async fn a_returned_error_is_its_exit_code_and_the_sdks_error_line() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let report = run(
        &runtime,
        &publisher.signed(JOB, Target::P2),
        caps(),
        b"fail",
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 3 },
        "the error's code, not the 1 a p2 command exit is reduced to"
    );
    assert_eq!(stdout(&report), "");
    assert_eq!(stderr(&report), format!("{}{FAIL_LINE}", echo_line(4)));
}

/// The same job built for both targets gives the same outcome, stdout and stderr, byte for
/// byte: the host writes a job component's result the way the SDK's `run` does on preview 1.
#[tokio::test]
async fn the_same_job_gives_the_same_output_on_both_targets() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let p1 = publisher.signed(JOB, Target::P1);
    let p2 = publisher.signed(JOB, Target::P2);
    assert_eq!(
        runtime.load(&p1).expect("loads").entry(),
        Entry::Command,
        "a preview-1 module is a command"
    );
    let configured = with_config(&[("greeting", "!")]);
    let cases = [
        (&b"hello"[..], caps()),
        (b"fail", caps()),
        (b"", caps()),
        ("ünïcode \"quoted\"\n".as_bytes(), caps()),
        (b"hello", configured.clone()),
        (b"fail", configured),
    ];
    for (input, caps) in cases {
        let command = run(&runtime, &p1, caps.clone(), input).await;
        let job = run(&runtime, &p2, caps, input).await;
        let what = String::from_utf8_lossy(input);
        assert_eq!(job.outcome, command.outcome, "{what:?}");
        assert_eq!(job.stdout, command.stdout, "{what:?}");
        assert_eq!(stderr(&job), stderr(&command), "{what:?}");
    }
}

/// A job component reads its configuration through `vauban:job/config`, the same job as a
/// command in `VAUBAN_CONFIG_<KEY>` variables: either way only what was granted.
#[tokio::test]
async fn configuration_is_visible_only_when_granted() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let module = publisher.signed(JOB, target);
        let seen = async |caps: Capabilities| {
            let report = run(&runtime, &module, caps, b"ab").await;
            assert_eq!(report.outcome, Outcome::Exited { code: 0 }, "{target:?}");
            stdout(&report)
        };
        assert_eq!(
            seen(with_config(&[("greeting", " bonjour"), ("other", "x")])).await,
            "ba bonjour",
            "{target:?}"
        );
        assert_eq!(seen(caps()).await, "ba", "{target:?}: nothing granted");
        assert_eq!(
            seen(with_config(&[("greetings", "x")])).await,
            "ba",
            "{target:?}: only the key asked for"
        );
        let mut env_only = caps();
        env_only.env = vec![("greeting".into(), "from env".into())];
        assert_eq!(
            seen(env_only).await,
            "ba",
            "{target:?}: an environment variable is not configuration"
        );

        let empty_key = run(&runtime, &module, with_config(&[("", "x")]), b"ab").await;
        assert!(
            matches!(&empty_key.outcome, Outcome::Denied { capability, .. } if capability.contains("configuration")),
            "{target:?}: {:?}",
            empty_key.outcome
        );
    }

    // A key that cannot name an environment variable is refused to a command only.
    let odd = with_config(&[("a=b", "x")]);
    let command = run(
        &runtime,
        &publisher.signed(JOB, Target::P1),
        odd.clone(),
        b"",
    )
    .await;
    assert!(
        matches!(&command.outcome, Outcome::Denied { capability, .. } if capability.contains("\"a=b\"")),
        "{:?}",
        command.outcome
    );
    let job = run(&runtime, &publisher.signed(JOB, Target::P2), odd, b"").await;
    assert_eq!(job.outcome, Outcome::Exited { code: 0 });
}

#[tokio::test]
async fn returned_output_over_the_limit_is_truncated_and_counted() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let mut limited = caps();
    limited.limits.output_bytes = 100;
    let input: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let report = run(
        &runtime,
        &publisher.signed(JOB, Target::P2),
        limited,
        &input,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 0 });
    let reversed: Vec<u8> = input.iter().rev().copied().collect();
    assert_eq!(report.stdout.bytes, reversed[..100]);
    assert_eq!(report.stdout.dropped, 900);
    assert_eq!(stderr(&report), echo_line(1000), "stderr is bounded apart");
}

/// The call of `run` goes through the same bounded run loop as a command: the same limits end
/// it with the same outcomes.
#[tokio::test]
async fn limits_end_a_job_as_they_end_a_command() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let module = publisher.signed(JOB, target);
        let mut fuel = caps();
        fuel.limits.fuel = Some(1_000);
        let report = run(&runtime, &module, fuel, b"hello").await;
        assert_eq!(
            report.outcome,
            Outcome::OutOfFuel { budget: 1_000 },
            "{target:?}"
        );

        let mut memory = caps();
        memory.limits.memory_bytes = 64 << 10;
        let report = run(&runtime, &module, memory, b"hello").await;
        assert!(
            matches!(report.outcome, Outcome::OutOfMemory { limit, .. } if limit == 64 << 10),
            "{target:?}: {:?}",
            report.outcome
        );
    }
}

#[tokio::test]
async fn log_lines_and_output_stream_live_through_the_sink() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = run_with_sink(&runtime, &publisher.signed(JOB, Target::P2), b"xyz", tx).await;
    assert_eq!(report.outcome, Outcome::Exited { code: 0 });
    let mut streamed: BTreeMap<_, Vec<u8>> = BTreeMap::new();
    // Everything kept was sent before `run` returned.
    while let Ok(event) = rx.try_recv() {
        let stream = match event.stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        streamed
            .entry(stream)
            .or_default()
            .extend_from_slice(&event.data);
    }
    assert_eq!(streamed.get("stdout").map(Vec::as_slice), Some(&b"zyx"[..]));
    assert_eq!(
        streamed
            .get("stderr")
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        Some(echo_line(3))
    );
}

/// Plain `wasi:cli/run` components and preview-1 commands are still run as commands, beside
/// job components on the same runtime.
#[tokio::test]
async fn command_components_still_run_as_commands() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let module = publisher.signed("hello", target);
        assert_eq!(
            runtime.load(&module).expect("loads").entry(),
            Entry::Command,
            "{target:?}"
        );
        let report = run(&runtime, &module, with_config(&[("greeting", "x")]), b"in").await;
        assert_eq!(
            report.outcome,
            Outcome::Exited { code: 0 },
            "{target:?}: {}",
            stderr(&report)
        );
        assert_eq!(
            stdout(&report),
            "hello, world!\nstdin: 2 bytes: in\n",
            "{target:?}: stdin still reaches a command"
        );
    }
    let job = run(&runtime, &publisher.signed(JOB, Target::P2), caps(), b"ok").await;
    assert_eq!(stdout(&job), "ko");
}

async fn run_with_sink(
    runtime: &Runtime,
    module: &[u8],
    stdin: &[u8],
    sink: vauban_host::OutputSink,
) -> RunReport {
    let loaded = runtime.load(module).expect("module loads");
    let request = RunRequest {
        capabilities: caps(),
        stdin: stdin.to_vec(),
        program: "guest".into(),
        output: Some(sink),
    };
    runtime
        .run(&loaded, request, &CancellationToken::new())
        .await
}
