//! A real program nobody on the team wrote (pulldown-cmark, built from its published crates.io
//! source by `cargo xtask build-third-party`) run as a job through a real `vauban dev`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use vauban_tests::third_party_path;

use crate::cluster::Process;
use crate::support::{Workspace, code, text};

/// `vauban run` uploads the module (verified by the scheduler), the job is placed on a host
/// (which verifies it again), the program reads its input through a `--dir` grant resolved
/// against the client's directory, and its HTML streams back.
#[tokio::test(flavor = "multi_thread")]
async fn vauban_dev_runs_pulldown_cmark_on_a_granted_markdown_file() {
    let ws = Workspace::new();
    std::fs::copy(
        third_party_path("pulldown-cmark", "pulldown-cmark"),
        ws.path("pulldown-cmark.wasm"),
    )
    .expect("copy pulldown-cmark");
    let out = ws.vauban(&[
        "sign",
        "--key",
        "trust/publisher.key",
        "pulldown-cmark.wasm",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::create_dir_all(ws.path("docs")).expect("mkdir");
    std::fs::write(
        ws.path("docs/release.md"),
        "## Release 0.2\n\n- signed *modules* only\n- [x] ~~TLS~~ later\n",
    )
    .expect("write");

    let mut dev = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args(["dev", "--listen", "127.0.0.1:0", "--trust", "trust"])
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dev");
    let mut lines = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("line").expect("read");
    let _dev = Process(dev);
    let addr = first.rsplit(' ').next().expect("addr").to_owned();
    let vauban = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(ws.dir.path())
            .env("VAUBAN_ADDR", &addr)
            .output()
            .expect("vauban")
    };

    let out = vauban(&[
        "run",
        "pulldown-cmark.wasm",
        "--dir",
        "docs:/docs:ro",
        "--",
        "--enable-strikethrough",
        "--enable-tasklists",
        "/docs/release.md",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "<h2>Release 0.2</h2>\n\
         <ul>\n\
         <li>signed <em>modules</em> only</li>\n\
         <li><input disabled=\"\" type=\"checkbox\" checked=\"\"/>\n<del>TLS</del> later</li>\n\
         </ul>\n"
    );

    let out = vauban(&["job", "list", "--output", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(jobs[0]["state"], "completed", "{jobs}");
}
