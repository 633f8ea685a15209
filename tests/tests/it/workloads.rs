//! The realistic sample workloads produce the right results in the sandbox.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use vauban_core::{Access, DirGrant, Outcome};
use vauban_tests::{Publisher, Target, caps, run, runtime, stderr, stdout, workspace_root};

#[tokio::test]
async fn track_fusion_fuses_readings_the_same_on_both_targets() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let dir = workspace_root().join("samples/track-fusion");
    let input = std::fs::read(dir.join("input.json")).expect("input");
    let expected = std::fs::read_to_string(dir.join("expected.json")).expect("expected");
    for target in Target::BOTH {
        let module = publisher.signed("track-fusion", target);
        let report = run(&runtime, &module, caps(), &input).await;
        assert_eq!(
            report.outcome,
            Outcome::Exited { code: 0 },
            "{}",
            stderr(&report)
        );
        assert_eq!(stdout(&report), expected, "{target:?}");
        assert!(
            stderr(&report).contains(r#""msg":"fused""#),
            "structured log line"
        );

        let bad = run(
            &runtime,
            &module,
            caps(),
            br#"{"readings":[{"sigma":"x"}]}"#,
        )
        .await;
        // A job-world component returns the code itself: bad input is 2 on both targets.
        assert_eq!(
            bad.outcome,
            Outcome::Exited { code: 2 },
            "{target:?}: bad input"
        );
        assert!(stderr(&bad).contains("invalid input"), "{}", stderr(&bad));
    }
}

#[tokio::test]
async fn integrity_scan_hashes_a_read_only_tree_into_a_read_write_report() {
    let publisher = Publisher::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(data.join("logs/2026")).expect("mkdir");
    std::fs::create_dir_all(&out).expect("mkdir");
    let files = BTreeMap::from([
        ("firmware.bin", vec![0xA5u8; 200_000]),
        ("logs/2026/11.log", b"boot ok\nlink up\n".to_vec()),
        ("readme.txt", b"integrity baseline".to_vec()),
    ]);
    for (path, contents) in &files {
        std::fs::write(data.join(path), contents).expect("write");
    }
    let runtime = runtime(publisher.trust(), &[tmp.path()]);

    for target in Target::BOTH {
        let mut granted = caps();
        granted.dirs = vec![
            DirGrant {
                host: data.clone(),
                guest: "/data".into(),
                access: Access::ReadOnly,
            },
            DirGrant {
                host: out.clone(),
                guest: "/out".into(),
                access: Access::ReadWrite,
            },
        ];
        let module = publisher.signed("integrity-scan", target);
        let report = run(&runtime, &module, granted, b"").await;
        assert_eq!(
            report.outcome,
            Outcome::Exited { code: 0 },
            "{}",
            stderr(&report)
        );
        let total: usize = files.values().map(Vec::len).sum();
        assert_eq!(stdout(&report), format!("scanned 3 files, {total} bytes\n"));

        let written = std::fs::read(out.join("report.json")).expect("report written");
        let json: serde_json::Value = serde_json::from_slice(&written).expect("json");
        let listed = json["files"].as_array().expect("files");
        assert_eq!(listed.len(), files.len());
        for (entry, (path, contents)) in listed.iter().zip(&files) {
            assert_eq!(entry["path"], *path);
            assert_eq!(entry["bytes"], contents.len());
            assert_eq!(entry["sha256"], hex::encode(Sha256::digest(contents)));
        }
        std::fs::remove_file(out.join("report.json")).expect("cleanup");
    }
}
