//! The C sample (`samples/c/csv-summary.c`, built with clang and wasi-libc by
//! `cargo xtask build-samples`) runs in the sandbox like any Rust guest.

use std::path::Path;

use vauban_core::{Access, Capabilities, DirGrant, Outcome};
use vauban_tests::{Publisher, Target, caps, run, runtime, stderr, stdout};

/// Quoted fields with the delimiter, doubled quotes and CRLF, an empty field, a blank line.
const READINGS: &str = "station,temp_c,note\n\
                        brest,14,\"ok, dry\"\n\
                        lyon,,\"said \"\"hi\"\"\"\n\
                        \n\
                        nice,-2.5,x\r\n\
                        \"toulon\",7.0,\n";

const SUMMARY: &str = "column,type,count,empty,min,max,mean\n\
                       station,text,4,0,,,\n\
                       temp_c,number,3,1,-2.5,14,6.16667\n\
                       note,text,3,1,,,\n";

fn with(args: &[&str], dirs: Vec<DirGrant>) -> Capabilities {
    Capabilities {
        args: args.iter().map(|a| a.to_string()).collect(),
        dirs,
        ..caps()
    }
}

fn grant(host: &Path, guest: &str, access: Access) -> DirGrant {
    DirGrant {
        host: host.to_path_buf(),
        guest: guest.into(),
        access,
    }
}

#[tokio::test]
async fn csv_summary_summarises_a_table_on_stdin() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let module = publisher.signed("csv-summary", Target::P1);

    let report = run(&runtime, &module, with(&[], vec![]), READINGS.as_bytes()).await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    assert_eq!(stdout(&report), SUMMARY);
    assert_eq!(stderr(&report), "");

    let report = run(
        &runtime,
        &module,
        with(&["-d", ";"], vec![]),
        b"id;\"a;b\"\n1;2\n3;\n",
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 0 });
    assert_eq!(
        stdout(&report),
        "column,type,count,empty,min,max,mean\nid,number,2,0,1,3,2\na;b,number,1,1,2,2,2\n"
    );
}

#[tokio::test]
async fn csv_summary_reads_a_read_only_grant_and_writes_a_read_write_one() {
    let publisher = Publisher::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(data.join("readings.csv"), READINGS).expect("write");
    let runtime = runtime(publisher.trust(), &[tmp.path()]);
    let module = publisher.signed("csv-summary", Target::P1);
    let dirs = || {
        vec![
            grant(&data, "/data", Access::ReadOnly),
            grant(&out, "/out", Access::ReadWrite),
        ]
    };

    let report = run(
        &runtime,
        &module,
        with(&["-o", "/out/summary.csv", "/data/readings.csv"], dirs()),
        b"",
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    assert_eq!(
        stdout(&report),
        "summarised 4 rows, 3 columns into /out/summary.csv\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("summary.csv")).expect("summary"),
        SUMMARY
    );

    // The read-only grant refuses the write; outside the grants nothing exists.
    let report = run(
        &runtime,
        &module,
        with(&["-o", "/data/summary.csv", "/data/readings.csv"], dirs()),
        b"",
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 1 });
    assert!(
        stderr(&report).starts_with("csv-summary: /data/summary.csv: "),
        "{}",
        stderr(&report)
    );
    assert!(!data.join("summary.csv").exists(), "nothing was written");
    let report = run(&runtime, &module, with(&["/etc/passwd"], dirs()), b"").await;
    assert_eq!(report.outcome, Outcome::Exited { code: 1 });
    assert!(
        stderr(&report).starts_with("csv-summary: /etc/passwd: ") && stdout(&report).is_empty(),
        "{}",
        stderr(&report)
    );
}

#[tokio::test]
async fn csv_summary_rejects_malformed_input_with_exit_code_2() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let module = publisher.signed("csv-summary", Target::P1);
    for (args, input, message) in [
        (
            &[][..],
            "a,b,c\n1,2,3\n4,5\n",
            "csv-summary: line 3: expected 3 fields, got 2\n",
        ),
        (
            &[][..],
            "a\n\"open\n",
            "csv-summary: line 3: quoted field not closed\n",
        ),
        (&[][..], "", "csv-summary: line 1: no header\n"),
        (&["-x"][..], "a\n", "csv-summary: unknown option\n"),
    ] {
        let report = run(&runtime, &module, with(args, vec![]), input.as_bytes()).await;
        assert_eq!(report.outcome, Outcome::Exited { code: 2 }, "{input:?}");
        assert!(stderr(&report).starts_with(message), "{}", stderr(&report));
        assert_eq!(stdout(&report), "");
    }
}
