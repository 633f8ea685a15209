//! Real programs nobody on the team wrote, built from their published crates.io sources by
//! `cargo xtask build-third-party` (third-party/README.md), run in the sandbox on real inputs.

use std::path::Path;

use vauban_core::{Access, Capabilities, DirGrant, Outcome};
use vauban_tests::{Publisher, caps, run, runtime, stderr, stdout, workspace_root};

fn grant(host: &Path, guest: &str, access: Access) -> DirGrant {
    DirGrant {
        host: host.to_path_buf(),
        guest: guest.into(),
        access,
    }
}

fn with(args: &[&str], dirs: Vec<DirGrant>) -> Capabilities {
    Capabilities {
        args: args.iter().map(|a| a.to_string()).collect(),
        dirs,
        ..caps()
    }
}

/// brotli 9.1.1's own CLI compresses a file of this repository from a read-only grant into a
/// writable one and decompresses it back, byte for byte; its read-only input stays untouched.
#[tokio::test]
async fn brotli_round_trips_a_repository_file_through_preopened_directories() {
    let publisher = Publisher::new();
    let module = publisher.signed_third_party("brotli", "brotli");
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::create_dir_all(&output).expect("mkdir");
    let original = std::fs::read(workspace_root().join("Cargo.lock")).expect("Cargo.lock");
    std::fs::write(input.join("Cargo.lock"), &original).expect("write");
    let runtime = runtime(publisher.trust(), &[tmp.path()]);
    let dirs = || {
        vec![
            grant(&input, "/in", Access::ReadOnly),
            grant(&output, "/out", Access::ReadWrite),
        ]
    };
    // Quality 11 with the default 4 MiB window peaks near 50 MiB here: too close to the
    // 64 MiB these tests grant by default.
    let roomy = |args: &[&str]| {
        let mut caps = with(args, dirs());
        caps.limits.memory_bytes = 256 << 20;
        caps
    };

    let report = run(
        &runtime,
        &module,
        roomy(&["-c", "/in/Cargo.lock", "/out/Cargo.lock.br"]),
        b"",
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    let compressed = std::fs::read(output.join("Cargo.lock.br")).expect("compressed file");
    assert!(
        compressed.len() * 3 < original.len(),
        "a lock file compresses well: {} -> {} bytes",
        original.len(),
        compressed.len()
    );

    let report = run(
        &runtime,
        &module,
        roomy(&["/out/Cargo.lock.br", "/out/Cargo.lock"]),
        b"",
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    let round_trip = std::fs::read(output.join("Cargo.lock")).expect("decompressed file");
    assert!(
        round_trip == original,
        "decompression gives the original back"
    );

    // The same program, told to write into its read-only grant, is refused by the sandbox (the
    // CLI panics on the error, which a WASI guest turns into a trap).
    let report = run(
        &runtime,
        &module,
        roomy(&["-c", "/in/Cargo.lock", "/in/Cargo.lock.br"]),
        b"",
    )
    .await;
    assert_ne!(report.outcome, Outcome::Exited { code: 0 });
    assert!(
        stderr(&report).contains("couldn't open file for writing"),
        "{}",
        stderr(&report)
    );
    assert!(!input.join("Cargo.lock.br").exists(), "nothing was written");
}

const MARKDOWN: &str = r#"# Running a job

Vauban runs *signed* modules with **only** the capabilities granted:

1. sign the module
2. submit it with `vauban run`

| flag | grants |
|------|--------|
| `--dir` | a directory |

> Nothing is inherited: not even `PATH`.

```sh
vauban run app.wasm --dir ./in:/in:ro
```

Limits: memory < 64 MiB & time ~~unbounded~~ bounded. See [the guide](docs/guest-guide.md).
"#;

const HTML: &str = r#"<h1>Running a job</h1>
<p>Vauban runs <em>signed</em> modules with <strong>only</strong> the capabilities granted:</p>
<ol>
<li>sign the module</li>
<li>submit it with <code>vauban run</code></li>
</ol>
<table><thead><tr><th>flag</th><th>grants</th></tr></thead><tbody>
<tr><td><code>--dir</code></td><td>a directory</td></tr>
</tbody></table>
<blockquote>
<p>Nothing is inherited: not even <code>PATH</code>.</p>
</blockquote>
<pre><code class="language-sh">vauban run app.wasm --dir ./in:/in:ro
</code></pre>
<p>Limits: memory &lt; 64 MiB &amp; time <del>unbounded</del> bounded. See <a href="docs/guest-guide.md">the guide</a>.</p>
"#;

/// pulldown-cmark 0.13.6's own CLI renders Markdown to exactly the HTML CommonMark specifies,
/// from stdin and from a file in a read-only grant.
#[tokio::test]
async fn pulldown_cmark_renders_markdown_from_stdin_and_from_a_granted_file() {
    let publisher = Publisher::new();
    let module = publisher.signed_third_party("pulldown-cmark", "pulldown-cmark");
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("job.md"), MARKDOWN).expect("write");
    let runtime = runtime(publisher.trust(), &[tmp.path()]);

    // -T: tables, -S: strikethrough (GitHub extensions, off by default).
    let report = run(
        &runtime,
        &module,
        with(&["-T", "-S"], vec![]),
        MARKDOWN.as_bytes(),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    assert_eq!(stdout(&report), HTML);

    let report = run(
        &runtime,
        &module,
        with(
            &["-T", "-S", "/docs/job.md"],
            vec![grant(tmp.path(), "/docs", Access::ReadOnly)],
        ),
        b"",
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        stderr(&report)
    );
    assert_eq!(stdout(&report), HTML);
}

/// ripgrep 15.2.0 walks a granted tree with its ignore rules and reports exactly the matches;
/// its documented exit codes (1: no match, 2: an error) come through the sandbox unchanged.
#[tokio::test]
async fn ripgrep_searches_a_granted_tree_and_keeps_its_exit_codes() {
    let publisher = Publisher::new();
    let module = publisher.signed_third_party("ripgrep", "rg");
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("project");
    for (path, text) in [
        (
            "src/main.rs",
            "fn main() {\n    // TODO: parse flags\n    run();\n}\n",
        ),
        (
            "src/lib.rs",
            "pub fn run() {}\n// todo: lowercase, matched only with -i\n",
        ),
        ("docs/notes.md", "# Notes\nTODO: write the release notes\n"),
        ("vendor/dep/lib.rs", "// TODO: vendored, ignored\n"),
        (".ignore", "vendor/\n"),
    ] {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let runtime = runtime(publisher.trust(), &[tmp.path()]);
    let search = |args: &[&str]| with(args, vec![grant(&tree, "/src", Access::ReadOnly)]);

    let report = run(
        &runtime,
        &module,
        search(&["--sort", "path", "-n", "TODO", "/src"]),
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
        "/src/docs/notes.md:2:TODO: write the release notes\n\
         /src/src/main.rs:2:    // TODO: parse flags\n"
    );

    let report = run(
        &runtime,
        &module,
        search(&["--sort", "path", "--count", "-i", "todo", "/src"]),
        b"",
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 0 });
    assert_eq!(
        stdout(&report),
        "/src/docs/notes.md:1\n/src/src/lib.rs:1\n/src/src/main.rs:1\n"
    );

    let report = run(&runtime, &module, search(&["FIXME", "/src"]), b"").await;
    assert_eq!(report.outcome, Outcome::Exited { code: 1 }, "no match");
    assert_eq!(stdout(&report), "");

    let report = run(&runtime, &module, search(&["root", "/etc"]), b"").await;
    assert_eq!(report.outcome, Outcome::Exited { code: 2 }, "an error");
    assert!(
        stderr(&report).contains("/etc: IO error") && stdout(&report).is_empty(),
        "nothing outside the grant is visible: {}",
        stderr(&report)
    );
}
