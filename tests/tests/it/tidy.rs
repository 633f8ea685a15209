//! Checks on the source tree itself, so the architecture invariants and conventions stay true
//! as the code changes (after rust-analyzer's `tidy.rs`).

use std::path::{Path, PathBuf};

use vauban_tests::workspace_root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "audit",
        "core",
        "host",
        "cli",
        "proto",
        "scheduler",
        "guest-sdk",
        "tests",
        "xtask",
        "samples",
    ] {
        rust_files(&workspace_root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found the sources");
    files
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    for file in all_rust_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! doc comment",
            file.display()
        );
    }
}

#[test]
fn libraries_read_no_environment_variables() {
    for krate in ["audit", "core", "host", "proto", "scheduler", "guest-sdk"] {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(krate).join("src"), &mut files);
        for file in files {
            // The one exception: inside a guest, granted configuration arrives as
            // `VAUBAN_CONFIG_*` variables (commands have no other channel), and reading them is
            // the SDK's job.
            if file.ends_with("guest-sdk/src/config.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            for forbidden in [
                "env::var",
                "env::vars",
                "set_global_default",
                "tracing_subscriber",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}: libraries take configuration as data",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn only_the_host_links_wasmtime() {
    for krate in ["audit", "core", "scheduler", "proto"] {
        let manifest = std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml"))
            .expect("read manifest");
        assert!(
            !manifest.contains("wasmtime") && !manifest.contains("vauban-host"),
            "{krate} must not be able to execute guest code"
        );
    }
}

#[test]
fn every_crate_forbids_unsafe_code_unless_it_says_why() {
    let roots = [
        "audit/src/lib.rs",
        "core/src/lib.rs",
        "cli/src/main.rs",
        "proto/src/lib.rs",
        "scheduler/src/lib.rs",
        "guest-sdk/src/lib.rs",
        "tests/src/lib.rs",
        "xtask/src/main.rs",
    ];
    for root in roots {
        let text = std::fs::read_to_string(workspace_root().join(root)).expect("read");
        assert!(text.contains("#![forbid(unsafe_code)]"), "{root}");
    }
    let host = std::fs::read_to_string(workspace_root().join("host/src/lib.rs")).expect("read");
    assert!(host.contains("#![deny(unsafe_code)]") && host.contains("// Not `forbid`"));
    let mut files = Vec::new();
    rust_files(&workspace_root().join("host/src"), &mut files);
    let allowing: Vec<_> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .contains("allow(unsafe_code)")
        })
        .collect();
    assert_eq!(
        allowing.len(),
        1,
        "only cache.rs deserializes artifacts: {allowing:?}"
    );
}

/// Every guest in `samples/` is run by some test: its binary name appears, quoted, in a test.
#[test]
fn every_sample_has_a_test_that_runs_it() {
    let samples = workspace_root().join("samples");
    let mut bins = Vec::new();
    for krate in std::fs::read_dir(&samples).expect("read samples") {
        let krate = krate.expect("entry").path();
        if krate.join("src/main.rs").is_file() {
            bins.push(
                krate
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        if let Ok(entries) = std::fs::read_dir(krate.join("src/bin")) {
            for bin in entries {
                let bin = bin.expect("entry").path();
                bins.push(
                    bin.file_stem()
                        .expect("stem")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    // The C samples: each `samples/c/*.c` is one program, named after its file.
    for source in std::fs::read_dir(samples.join("c")).expect("read samples/c") {
        let source = source.expect("entry").path();
        if source.extension().is_some_and(|e| e == "c") {
            bins.push(
                source
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    assert!(bins.len() >= 10, "found the samples: {bins:?}");
    let mut tests = String::new();
    for dir in ["tests/tests", "cli/tests"] {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(dir), &mut files);
        for file in files.iter().filter(|f| !f.ends_with("tidy.rs")) {
            tests.push_str(&std::fs::read_to_string(file).expect("read"));
        }
    }
    for bin in bins {
        assert!(
            tests.contains(&format!("\"{bin}\"")),
            "sample {bin} has no test that runs it"
        );
    }
}
