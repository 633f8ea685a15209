//! Both kinds of guest get exactly the capabilities granted: args, env, stdin, directories.

use std::path::PathBuf;

use vauban_core::{Access, DirGrant, Outcome};
use vauban_tests::{Publisher, Target, caps, run, runtime, stdout};

#[tokio::test]
async fn preview1_and_preview2_run_with_args_env_stdin_and_directories() {
    let publisher = Publisher::new();
    let root = tempfile::tempdir().expect("tempdir");
    let input = root.path().join("in");
    let output = root.path().join("out");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::create_dir_all(&output).expect("mkdir");
    std::fs::write(input.join("message.txt"), "from the host\n").expect("write");
    let runtime = runtime(publisher.trust(), &[root.path()]);

    for target in Target::BOTH {
        let mut granted = caps();
        granted.args = [
            "--name",
            "Vauban",
            "--read",
            "/in/message.txt",
            "--write",
            "/out/result.txt",
            "written by the guest",
            "--list",
            "/in",
        ]
        .map(String::from)
        .to_vec();
        granted.env = vec![("GREETING".into(), "bonjour".into())];
        granted.dirs = vec![
            DirGrant {
                host: input.clone(),
                guest: "/in".into(),
                access: Access::ReadOnly,
            },
            DirGrant {
                host: output.clone(),
                guest: "/out".into(),
                access: Access::ReadWrite,
            },
        ];
        let report = run(
            &runtime,
            &publisher.signed("hello", target),
            granted,
            b"payload\n",
        )
        .await;
        assert_eq!(
            report.outcome,
            Outcome::Exited { code: 0 },
            "{target:?}: {report:?}"
        );
        assert_eq!(
            stdout(&report),
            "hello, Vauban!\n\
             GREETING=bonjour\n\
             stdin: 8 bytes: payload\n\
             read /in/message.txt: from the host\n\
             wrote /out/result.txt\n\
             list /in: message.txt\n",
            "{target:?}"
        );
        assert_eq!(
            std::fs::read_to_string(output.join("result.txt")).expect("guest wrote the file"),
            "written by the guest"
        );
        std::fs::remove_file(output.join("result.txt")).expect("cleanup");
        assert!(report.peak_memory_bytes > 0);
        assert!(report.fuel_consumed.is_some_and(|f| f > 0));
    }
}

#[tokio::test]
async fn exit_codes_are_data() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let mut granted = caps();
    granted.args = vec!["--exit".into(), "7".into()];
    let p1 = run(
        &runtime,
        &publisher.signed("hello", Target::P1),
        granted.clone(),
        b"",
    )
    .await;
    assert_eq!(p1.outcome, Outcome::Exited { code: 7 });
    // A preview 2 command can only say success or failure (wasi:cli/exit).
    let p2 = run(
        &runtime,
        &publisher.signed("hello", Target::P2),
        granted,
        b"",
    )
    .await;
    assert_eq!(p2.outcome, Outcome::Exited { code: 1 });
}

#[tokio::test]
async fn nothing_is_granted_by_default() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let mut granted = caps();
        granted.args = vec!["--list".into(), "/".into()];
        let report = run(&runtime, &publisher.signed("hello", target), granted, b"").await;
        assert_eq!(report.outcome, Outcome::Exited { code: 1 }, "{target:?}");
        assert_eq!(
            stdout(&report),
            "hello, world!\n",
            "no env, no stdin, no root dir"
        );

        let report = run(
            &runtime,
            &publisher.signed("env-snoop", target),
            caps(),
            b"",
        )
        .await;
        assert_eq!(stdout(&report), "", "{target:?}: no environment at all");
    }
}

#[tokio::test]
async fn directories_outside_the_allowed_roots_are_denied_before_the_guest_starts() {
    let publisher = Publisher::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let allowed = tmp.path().join("allowed");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, allowed.join("link")).expect("symlink");
    let runtime = runtime(publisher.trust(), &[allowed.as_path()]);
    let module = publisher.signed("hello", Target::P1);

    let cases: [(PathBuf, &str); 4] = [
        (PathBuf::from("/etc"), "outside the allowed roots"),
        (elsewhere.clone(), "outside the allowed roots"),
        (allowed.join("link"), "symlink leading out of the root"),
        (allowed.join("../elsewhere"), "must not contain '..'"),
    ];
    for (host, expected) in cases {
        let mut granted = caps();
        granted.dirs = vec![DirGrant {
            host: host.clone(),
            guest: "/data".into(),
            access: Access::ReadOnly,
        }];
        let report = run(&runtime, &module, granted, b"").await;
        match &report.outcome {
            Outcome::Denied { capability, reason } => {
                assert!(capability.contains("directory"), "{capability}");
                assert!(reason.contains(expected), "{}: {reason}", host.display());
            }
            other => panic!("{}: expected denied, got {other}", host.display()),
        }
        assert_eq!(stdout(&report), "", "the guest never started");
    }
}
