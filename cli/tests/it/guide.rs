//! The guest guide (`docs/guest-guide.md`) and the operator's page (`docs/operator.md`) run as
//! written: each page's walkthrough blocks in order, in an empty directory, with the `vauban` under test first on `PATH` and `vauban dev` in the
//! background, and each block's output checked against what the guide says it prints.
//!
//! The blocks' roles are in their info strings, after the language, so the page renders as
//! usual: `sh guide` is run with `sh -e` in the directory the block before it ended in;
//! `sh guide-background` is `vauban dev` "in another terminal", started here on a free port and
//! given to the next blocks as `VAUBAN_ADDR`; `text guide-output` lists lines that the block
//! before prints (stdout and stderr together), in order, each whole, `…` standing for any text;
//! `<lang> guide-file=PATH` is the exact content of `PATH`.
//!
//! The guests are built into one target directory, `target/guide/`, shared by every run: only
//! the first compiles their dependencies. Cargo runs offline (they are the workspace's own, in
//! the local registry cache).

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cluster::Process;
use crate::support::{code, text};

/// One block of the walkthrough.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// `sh guide`: commands to run.
    Run(String),
    /// `sh guide-background`: `vauban dev`, started and left running.
    Background(String),
    /// `text guide-output`: what the block before prints.
    Output(String),
    /// `<lang> guide-file=PATH`: a file's exact content.
    File { path: String, text: String },
}

/// The walkthrough's blocks, in the order of the page. Blocks without a role are skipped.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        // `take_while` also consumes the closing fence.
        let text: String = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| format!("{l}\n"))
            .collect();
        let role = info.split_whitespace().nth(1).unwrap_or_default();
        steps.push(match role {
            "guide" => Step::Run(text),
            "guide-background" => Step::Background(text),
            "guide-output" => Step::Output(text),
            _ => match role.strip_prefix("guide-file=") {
                Some(path) => Step::File {
                    path: path.to_owned(),
                    text,
                },
                None if role.starts_with("guide") => panic!("unknown role in ```{info}"),
                None => continue,
            },
        });
    }
    steps
}

/// Whether `line` is `pattern`, each `…` in the pattern standing for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut pieces = pattern.split('…');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let mut middle: Vec<&str> = pieces.collect();
    let Some(last) = middle.pop() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The first line of `expected` that `printed` lacks: its lines must match `expected`'s, in
/// order (other lines may come between them, so a line that is only `…` is there for the reader
/// and matches nothing).
fn missing_line<'a>(expected: &'a str, printed: &str) -> Option<&'a str> {
    let mut lines = printed.lines().map(str::trim_end);
    expected
        .lines()
        .map(str::trim_end)
        .filter(|p| !p.is_empty() && *p != "…")
        .find(|pattern| !lines.any(|line| line_matches(pattern, line)))
}

/// The state a reader's terminals keep between the blocks.
struct Walkthrough {
    /// Holds `work/`, where the walkthrough starts, and the file each block leaves its
    /// directory in.
    root: tempfile::TempDir,
    /// Where the next block runs.
    cwd: PathBuf,
    /// The directory of the `vauban` under test, then the inherited `PATH`.
    path: OsString,
    /// The shared target directory of the guests.
    target_dir: PathBuf,
    /// Where `vauban dev` listens, once started.
    addr: Option<String>,
    /// `vauban dev`, killed when the test ends.
    dev: Option<Process>,
}

impl Walkthrough {
    fn new() -> Self {
        let vauban = Path::new(env!("CARGO_BIN_EXE_vauban"));
        let bin_dir = vauban.parent().expect("the binary's directory");
        let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        // `<target>/debug/vauban`: the guests get `<target>/guide`.
        let target_dir = bin_dir
            .parent()
            .expect("the target directory")
            .join("guide");
        let root = tempfile::tempdir().expect("tempdir");
        let cwd = root.path().join("work");
        std::fs::create_dir(&cwd).expect("mkdir");
        Self {
            root,
            cwd,
            path,
            target_dir,
            addr: None,
            dev: None,
        }
    }

    /// `sh -e -c script` in the current directory, in an environment of the test's making.
    fn shell(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-e", "-c", script])
            .current_dir(&self.cwd)
            .env("PATH", &self.path)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .env("CARGO_NET_OFFLINE", "true")
            .stdin(Stdio::null());
        for var in [
            "VAUBAN_ADDR",
            "VAUBAN_SIGNING_KEY",
            "VAUBAN_TRUST",
            "VAUBAN_CACHE",
            "VAUBAN_LOG",
        ] {
            cmd.env_remove(var);
        }
        if let Some(addr) = &self.addr {
            cmd.env("VAUBAN_ADDR", addr);
        }
        cmd
    }

    /// Runs a `sh guide` block and returns what it printed; the next block runs where it ended.
    fn run(&mut self, block: &str) -> String {
        let pwd = self.root.path().join("pwd");
        let out = self
            .shell(&format!("exec 2>&1\n{block}pwd > \"$GUIDE_PWD\"\n"))
            .env("GUIDE_PWD", &pwd)
            .output()
            .expect("run sh");
        let printed = text(&out.stdout);
        assert!(
            out.status.success(),
            "this block of the guide failed ({}):\n{block}it printed:\n{printed}",
            out.status
        );
        let dir = std::fs::read_to_string(&pwd).expect("the block's directory");
        self.cwd = PathBuf::from(dir.trim_end());
        printed
    }

    /// Starts the `sh guide-background` block, `vauban dev`, on a free port, and returns what
    /// it printed until ready.
    fn background(&mut self, block: &str) -> String {
        let commands: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let [command] = commands.as_slice() else {
            panic!("a guide-background block is one `vauban dev` command, not:\n{block}");
        };
        assert!(command.starts_with("vauban dev"), "{block}");
        // `exec`: the process killed at the end is vauban itself, not a shell waiting for it.
        let mut child = self
            .shell(&format!("exec {command} --listen 127.0.0.1:0"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vauban dev");
        let stdout = child.stdout.take().expect("stdout");
        self.dev = Some(Process(child));
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = String::new();
        for line in lines.by_ref() {
            let line = line.expect("read vauban dev's output");
            if let Some(addr) = line.strip_prefix("vauban dev: scheduler listening on ") {
                self.addr = Some(addr.to_owned());
            }
            printed.push_str(&line);
            printed.push('\n');
            if line == "vauban dev: ready" {
                break;
            }
        }
        assert!(
            printed.ends_with("vauban dev: ready\n") && self.addr.is_some(),
            "vauban dev stopped before it was ready:\n{printed}"
        );
        // Keep reading, so that vauban dev never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        printed
    }

    /// Checks a `guide-file` block against the file.
    fn file(&self, path: &str, expected: &str) {
        let file = self.cwd.join(path);
        let got = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("the guide shows {}: {e}", file.display()));
        assert_eq!(got, expected, "{path} is not what the guide shows");
    }
}

#[test]
fn the_guest_guide_runs_as_written() {
    run_page("guest-guide.md");
}

#[test]
fn the_operator_page_runs_as_written() {
    run_page("operator.md");
}

/// Runs the walkthrough of `docs/<page>`, checking every output and file it shows.
fn run_page(page: &str) {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(page);
    let guide = std::fs::read_to_string(guide).expect("read the page");
    let steps = steps(&guide);
    assert!(
        steps.iter().any(|s| matches!(s, Step::Background(_))),
        "the walkthrough starts vauban dev"
    );
    let mut walk = Walkthrough::new();
    // The block whose output the next `guide-output` block describes, and that output.
    let mut last: Option<(&str, String)> = None;
    for step in &steps {
        match step {
            Step::Run(block) => last = Some((block, walk.run(block))),
            Step::Background(block) => last = Some((block, walk.background(block))),
            Step::Output(expected) => {
                let (block, printed) = last
                    .take()
                    .expect("a guide-output block follows the block whose output it shows");
                if let Some(line) = missing_line(expected, &printed) {
                    panic!(
                        "the guide says that\n{block}prints the line\n{line}\n(after the lines \
                         before it), but it printed:\n{printed}"
                    );
                }
            }
            Step::File { path, text } => walk.file(path, text),
        }
    }
}

#[test]
fn output_patterns_match_whole_lines_with_elisions() {
    assert!(line_matches("digest: sha256:…", "digest: sha256:00ff"));
    assert!(line_matches("digest: sha256:…", "digest: sha256:"));
    assert!(!line_matches("digest: sha256:…", "the digest: sha256:00ff"));
    assert!(line_matches(
        "vauban: exited with code 0 · job … · node dev-… · ran …",
        "vauban: exited with code 0 · job 01J · node dev-2 · ran 3.1ms"
    ));
    assert!(!line_matches(
        "vauban: exited with code 0 · job …",
        "vauban: exited with code 2 · job 01J"
    ));
    assert!(line_matches(
        "{\"greeting\":\"hello, Ada!\"}",
        "{\"greeting\":\"hello, Ada!\"}"
    ));
    assert!(!line_matches(
        "{\"greeting\":\"hello, Ada!\"}",
        "{\"greeting\":\"hello, Ada!\"} "
    ));
    assert!(
        line_matches("a…b…c", "abc")
            && line_matches("a…b…c", "a-b-b-c")
            && !line_matches("a…b…c", "acb")
    );

    let printed = "one\ntwo\nthree\n";
    assert_eq!(missing_line("one\n…\nthree\n", printed), None);
    assert_eq!(
        missing_line("three\none\n", printed),
        Some("one"),
        "in order"
    );
    assert_eq!(missing_line("one\nfour\n", printed), Some("four"));
}

#[test]
fn the_guide_s_blocks_are_read_with_their_roles() {
    let page = "text\n```sh guide\nvauban new x\ncd x\n```\n\n```sh\nnot run\n```\n\
                ```text guide-output\ncreated x/\n```\n```toml guide-file=Vauban.toml\nk = 1\n```\n";
    assert_eq!(
        steps(page),
        [
            Step::Run("vauban new x\ncd x\n".to_owned()),
            Step::Output("created x/\n".to_owned()),
            Step::File {
                path: "Vauban.toml".to_owned(),
                text: "k = 1\n".to_owned()
            },
        ]
    );
}

#[test]
fn new_refuses_an_existing_directory_and_build_wants_a_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vauban = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("VAUBAN_SIGNING_KEY")
            .output()
            .expect("run vauban")
    };
    std::fs::create_dir(dir.path().join("taken")).expect("mkdir");
    std::fs::write(dir.path().join("taken/notes.txt"), "mine").expect("write");

    let out = vauban(&["new", "taken"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("taken already exists"),
        "{}",
        text(&out.stderr)
    );
    let entries = std::fs::read_dir(dir.path().join("taken"))
        .expect("read dir")
        .count();
    assert_eq!(entries, 1, "nothing was written into it");

    let out = vauban(&["new", "fn"]);
    assert_eq!(code(&out), 2, "a usage error: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("keyword"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("fn").exists());

    let out = vauban(&["build"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Vauban.toml") && text(&out.stderr).contains("vauban new"),
        "{}",
        text(&out.stderr)
    );
}
