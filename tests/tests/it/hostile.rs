//! Hostile guests are contained with the right outcome, and the host runs a normal job right
//! after each one.

use std::io::Read as _;
use std::net::TcpListener;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vauban_core::{Access, DirGrant, Outcome};
use vauban_host::{RunRequest, Runtime};
use vauban_tests::{Publisher, Target, caps, run, runtime, stdout};

/// The host still runs a well-behaved job correctly.
async fn assert_healthy(runtime: &Runtime, publisher: &Publisher) {
    for target in Target::BOTH {
        let report = run(runtime, &publisher.signed("hello", target), caps(), b"").await;
        assert_eq!(report.outcome, Outcome::Exited { code: 0 });
        assert_eq!(stdout(&report), "hello, world!\n");
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut limited = caps();
        limited.limits.timeout = Duration::from_millis(300);
        let report = run(
            &runtime,
            &publisher.signed("infinite-loop", target),
            limited,
            b"",
        )
        .await;
        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                limit: Duration::from_millis(300)
            },
            "{target:?}"
        );
        assert_eq!(stdout(&report), "spinning\n");
        assert_healthy(&runtime, &publisher).await;
    }
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut limited = caps();
        limited.limits.fuel = Some(50_000_000);
        let report = run(
            &runtime,
            &publisher.signed("infinite-loop", target),
            limited,
            b"",
        )
        .await;
        assert_eq!(
            report.outcome,
            Outcome::OutOfFuel { budget: 50_000_000 },
            "{target:?}"
        );
        assert_eq!(report.fuel_consumed, Some(50_000_000));
        assert_healthy(&runtime, &publisher).await;
    }
}

#[tokio::test]
async fn a_running_guest_can_be_cancelled() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let module = runtime
        .load(&publisher.signed("infinite-loop", Target::P2))
        .expect("loads");
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    let request = RunRequest {
        capabilities: caps(),
        ..RunRequest::default()
    };
    let report = runtime.run(&module, request, &cancel).await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_healthy(&runtime, &publisher).await;
}

#[tokio::test]
async fn a_memory_bomb_runs_out_of_memory() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut limited = caps();
        limited.limits.memory_bytes = 64 << 20;
        let report = run(
            &runtime,
            &publisher.signed("memory-bomb", target),
            limited,
            b"",
        )
        .await;
        match report.outcome {
            Outcome::OutOfMemory { limit, requested } => {
                assert_eq!(limit, 64 << 20);
                assert!(requested > limit);
            }
            other => panic!("{target:?}: expected out of memory, got {other}"),
        }
        assert!(report.peak_memory_bytes <= 64 << 20);
        assert!(report.peak_memory_bytes >= 32 << 20, "it did allocate");
        assert_healthy(&runtime, &publisher).await;
    }
}

#[tokio::test]
async fn a_stdout_flood_is_truncated_without_harming_the_guest() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut limited = caps();
        limited.limits.output_bytes = 100_000;
        let report = run(
            &runtime,
            &publisher.signed("stdout-flood", target),
            limited,
            b"",
        )
        .await;
        assert_eq!(
            report.outcome,
            Outcome::Exited { code: 0 },
            "{target:?}: no write failed"
        );
        assert_eq!(report.stdout.bytes.len(), 100_000);
        assert!(report.stdout.bytes.iter().all(|b| *b == b'A'));
        assert_eq!(report.stdout.dropped, (64 << 20) - 100_000);
        assert!(String::from_utf8_lossy(&report.stderr.bytes).contains("flood done"));
        assert_healthy(&runtime, &publisher).await;
    }
}

#[tokio::test]
async fn path_traversal_out_of_a_preopen_is_blocked() {
    let publisher = Publisher::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(data.join("inside.txt"), "visible").expect("write");
    std::fs::write(secrets.join("secret.txt"), "TOP-SECRET").expect("write");
    std::os::unix::fs::symlink(&secrets, data.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("../secrets", data.join("rel-link")).expect("symlink");
    let runtime = runtime(publisher.trust(), &[tmp.path()]);

    for target in Target::BOTH {
        let mut granted = caps();
        granted.dirs = vec![DirGrant {
            host: data.clone(),
            guest: "/data".into(),
            access: Access::ReadOnly,
        }];
        granted.args = [
            "/data/inside.txt",
            "/data/../secrets/secret.txt",
            "/data/../../../../etc/passwd",
            "../../etc/passwd",
            "/etc/passwd",
            "/data/abs-link/secret.txt",
            "/data/rel-link/secret.txt",
        ]
        .map(String::from)
        .to_vec();
        let report = run(
            &runtime,
            &publisher.signed("path-escape", target),
            granted,
            b"",
        )
        .await;
        assert_eq!(report.outcome, Outcome::Exited { code: 0 }, "{target:?}");
        let out = stdout(&report);
        assert!(
            out.contains("READ /data/inside.txt: visible"),
            "control: {out}"
        );
        assert_eq!(out.matches("BLOCKED ").count(), 6, "{target:?}: {out}");
        assert!(!out.contains("TOP-SECRET"), "{out}");
        assert!(!out.contains("root:"), "{out}");
        assert_healthy(&runtime, &publisher).await;
    }
}

#[tokio::test]
async fn writes_to_a_read_only_directory_are_blocked() {
    let publisher = Publisher::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("existing.txt"), "original").expect("write");
    let runtime = runtime(publisher.trust(), &[tmp.path()]);

    for (access, expect_written) in [(Access::ReadOnly, false), (Access::ReadWrite, true)] {
        for target in Target::BOTH {
            let mut granted = caps();
            granted.dirs = vec![DirGrant {
                host: data.clone(),
                guest: "/data".into(),
                access,
            }];
            granted.args = vec!["/data/existing.txt".into(), "/data/new.txt".into()];
            let report = run(
                &runtime,
                &publisher.signed("ro-write", target),
                granted,
                b"",
            )
            .await;
            let out = stdout(&report);
            let existing = std::fs::read_to_string(data.join("existing.txt")).expect("read");
            if expect_written {
                assert_eq!(out.matches("WROTE ").count(), 2, "control: {out}");
                assert_eq!(existing, "pwned");
                std::fs::write(data.join("existing.txt"), "original").expect("restore");
                std::fs::remove_file(data.join("new.txt")).expect("cleanup");
            } else {
                assert_eq!(out.matches("BLOCKED ").count(), 2, "{target:?}: {out}");
                assert_eq!(existing, "original");
                assert!(!data.join("new.txt").exists());
            }
        }
    }
    assert_healthy(&runtime, &publisher).await;
}

#[tokio::test]
async fn environment_variables_that_were_not_granted_are_invisible() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut granted = caps();
        granted.env = vec![("GRANTED".into(), "yes".into())];
        granted.args = vec!["GRANTED".into(), "HOME".into(), "PATH".into()];
        let report = run(
            &runtime,
            &publisher.signed("env-snoop", target),
            granted,
            b"",
        )
        .await;
        assert_eq!(
            stdout(&report),
            "ENV GRANTED=yes\nFOUND GRANTED=yes\nMISSING HOME\nMISSING PATH\n",
            "{target:?}"
        );
        assert_healthy(&runtime, &publisher).await;
    }
}

/// Accepts at most one connection within the time the guest needs, and returns what it read.
fn accepted(listener: &TcpListener) -> Option<String> {
    listener.set_nonblocking(true).expect("nonblocking");
    let (mut stream, _) = listener.accept().ok()?;
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = String::new();
    stream.read_to_string(&mut got).ok()?;
    Some(got)
}

#[tokio::test]
async fn sockets_need_a_grant_for_their_destination() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_addr = other.local_addr().expect("addr");
    let module = publisher.signed("socket-connect", Target::P2);

    // No network destination at all: the component imports wasi:sockets, so it is refused
    // before it is instantiated, and never runs.
    let mut granted = caps();
    granted.args = vec![addr.to_string()];
    let report = run(&runtime, &module, granted.clone(), b"").await;
    let Outcome::Denied { capability, reason } = &report.outcome else {
        panic!("denied at import time: {report:?}")
    };
    assert!(
        capability.starts_with("import wasi:sockets/") && reason.contains("network destination"),
        "{capability}: {reason}"
    );
    assert_eq!(stdout(&report), "", "the guest never ran");
    assert_eq!(accepted(&listener), None);

    // A grant for another destination: refused, and the refusal is reported.
    granted.network = vec![other_addr];
    let report = run(&runtime, &module, granted.clone(), b"").await;
    assert!(
        stdout(&report).starts_with(&format!("BLOCKED {addr}")),
        "{report:?}"
    );
    assert!(
        report.denials.iter().any(|d| d.contains(&addr.to_string())),
        "{:?}",
        report.denials
    );
    assert_eq!(accepted(&listener), None);

    // The control: granting the destination lets the guest connect.
    granted.network = vec![addr];
    let report = run(&runtime, &module, granted, b"").await;
    assert_eq!(stdout(&report), format!("CONNECTED {addr}\n"), "{report:?}");
    assert_eq!(accepted(&listener).as_deref(), Some("hello"));

    // Preview 1 has no socket API at all (this guest imports no `sock_*` function, so it
    // passes the import check and finds no socket to use).
    let mut granted = caps();
    granted.args = vec![addr.to_string()];
    let report = run(
        &runtime,
        &publisher.signed("socket-connect", Target::P1),
        granted,
        b"",
    )
    .await;
    assert!(stdout(&report).starts_with("BLOCKED"), "{report:?}");
    assert_eq!(accepted(&listener), None);
    assert_healthy(&runtime, &publisher).await;
}

#[tokio::test]
async fn more_runs_than_slots_wait_instead_of_failing() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]); // 4 instance slots
    let module = runtime
        .load(&publisher.signed("hello", Target::P2))
        .expect("loads");
    let runs = (0..24).map(|i| {
        let runtime = runtime.clone();
        let module = module.clone();
        async move {
            let mut granted = caps();
            granted.args = vec!["--name".into(), format!("job-{i}")];
            let request = RunRequest {
                capabilities: granted,
                ..RunRequest::default()
            };
            runtime
                .run(&module, request, &CancellationToken::new())
                .await
        }
    });
    let reports = futures_join_all(runs).await;
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.outcome, Outcome::Exited { code: 0 });
        assert_eq!(stdout(report), format!("hello, job-{i}!\n"));
    }
}

/// Runs futures concurrently on the current task (no extra dependency for `join_all`).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}
