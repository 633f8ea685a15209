//! `vauban` on one machine: keys, signing, verification and sandboxed runs with `exec`, as a
//! user types them. Each test spawns the real binary.

use std::process::{Command, Output};

use vauban_tests::{Target, sample_path};

use crate::support::{Workspace, code, text};

#[test]
fn every_command_has_help() {
    let ws = Workspace::new();
    for args in [
        &["--help"][..],
        &["key", "--help"],
        &["key", "generate", "--help"],
        &["sign", "--help"],
        &["verify", "--help"],
        &["exec", "--help"],
    ] {
        let out = ws.vauban(args);
        assert_eq!(code(&out), 0, "{args:?}");
        assert!(text(&out.stdout).contains("Usage: vauban"), "{args:?}");
    }
}

#[test]
fn key_generate_writes_an_owner_only_private_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    let mode = std::fs::metadata(ws.path("trust/publisher.key"))
        .expect("key written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(ws.path("trust/publisher.pub")).expect("pub");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));

    let again = ws.vauban(&["key", "generate", "--out", "trust/publisher"]);
    assert_eq!(code(&again), 125);
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("trust/publisher.pub")).expect("pub"),
        public,
        "unchanged"
    );
}

#[test]
fn verify_accepts_signed_modules_and_names_each_refusal() {
    let ws = Workspace::new();
    let signed = ws.signed_sample("hello", Target::P2);
    let out = ws.vauban(&["verify", "--trust", "trust", &signed]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("component (wasip2)"));

    std::fs::copy(sample_path("hello", Target::P2), ws.path("unsigned.wasm")).expect("copy");
    let mut tampered = std::fs::read(ws.path(&signed)).expect("read");
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    std::fs::write(ws.path("tampered.wasm"), tampered).expect("write");
    ws.vauban(&["key", "generate", "--out", "other/stranger"]);
    ws.vauban(&[
        "sign",
        "--key",
        "other/stranger.key",
        "unsigned.wasm",
        "-o",
        "stranger.wasm",
    ]);

    for (file, expected) in [
        ("unsigned.wasm", "module is not signed"),
        ("tampered.wasm", "modified after signing"),
        ("stranger.wasm", "not signed by a trusted key"),
    ] {
        let out = ws.vauban(&["verify", "--trust", "trust", file]);
        assert_eq!(code(&out), 1, "{file}");
        assert!(
            text(&out.stderr).contains(expected),
            "{file}: {}",
            text(&out.stderr)
        );
        let out = ws.vauban(&["exec", "--trust", "trust", file]);
        assert_eq!(code(&out), 125, "{file}");
        assert!(
            text(&out.stderr).contains(expected),
            "{file}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn exec_grants_every_capability_by_flag_on_both_targets() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("in")).expect("mkdir");
    std::fs::create_dir_all(ws.path("out")).expect("mkdir");
    std::fs::write(ws.path("in/message.txt"), "over the wire").expect("write");
    std::fs::write(ws.path("stdin.txt"), "job input").expect("write");
    for target in Target::BOTH {
        let module = ws.signed_sample("hello", target);
        let out = ws.vauban(&[
            "exec",
            "--trust",
            "trust",
            &module,
            "--env",
            "GREETING=salut",
            "--dir",
            "in:/in:ro",
            "--dir",
            "out:/out:rw",
            "--stdin",
            "stdin.txt",
            "--memory",
            "32MiB",
            "--timeout",
            "10s",
            "--arg",
            "--name",
            "--arg",
            "cli",
            "--",
            "--read",
            "/in/message.txt",
            "--write",
            "/out/done.txt",
            "ok",
        ]);
        assert_eq!(code(&out), 0, "{target:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "hello, cli!\nGREETING=salut\nstdin: 9 bytes: job input\n\
             read /in/message.txt: over the wire\nwrote /out/done.txt\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.path("out/done.txt")).expect("written"),
            "ok"
        );
        assert!(text(&out.stderr).contains("vauban: exited with code 0"));

        let out = ws.vauban(&["exec", "--trust", "trust", &module, "--", "--exit", "7"]);
        let expected = if target == Target::P1 { 7 } else { 1 };
        assert_eq!(
            code(&out),
            expected,
            "{target:?}: the guest's exit code is vauban's"
        );
    }
}

#[test]
fn a_second_process_loads_the_compiled_module_from_the_cache() {
    let ws = Workspace::new();
    let module = ws.signed_sample("track-fusion", Target::P2);
    let report = |out: &Output| -> serde_json::Value {
        assert_eq!(code(out), 0, "{}", text(&out.stderr));
        let last = text(&out.stderr)
            .lines()
            .last()
            .expect("report line")
            .to_owned();
        serde_json::from_str(&last).expect("json report")
    };
    let stdin = vauban_tests::workspace_root().join("samples/track-fusion/input.json");
    let args = [
        "exec",
        "--trust",
        "trust",
        &module,
        "--report",
        "json",
        "--stdin",
        stdin.to_str().expect("utf-8 path"),
    ];
    let first = report(&ws.vauban(&args));
    let second = report(&ws.vauban(&args));
    assert_eq!(first["code_source"], "compiled");
    assert_eq!(second["code_source"], "disk_cache");
    eprintln!(
        "track-fusion (component): compiled in {}, loaded from cache in {}",
        duration(&first["load_time"]),
        duration(&second["load_time"])
    );
    assert_eq!(first["stdout"], second["stdout"]);
}

fn duration(value: &serde_json::Value) -> String {
    let secs = value["secs"].as_f64().unwrap_or(0.0) + value["nanos"].as_f64().unwrap_or(0.0) / 1e9;
    format!("{:.2} ms", secs * 1e3)
}

#[test]
fn the_guest_never_sees_the_environment_of_vauban() {
    let ws = Workspace::new();
    let module = ws.signed_sample("env-snoop", Target::P1);
    let out = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args([
            "exec",
            "--trust",
            "trust",
            &module,
            "--env",
            "GRANTED=1",
            "--",
        ])
        .args(["VAUBAN_TEST_SECRET", "GRANTED"])
        .current_dir(ws.dir.path())
        .env("VAUBAN_CACHE", ws.path("cache"))
        .env("VAUBAN_TEST_SECRET", "hunter2")
        .output()
        .expect("run");
    assert_eq!(
        text(&out.stdout),
        "ENV GRANTED=1\nMISSING VAUBAN_TEST_SECRET\nFOUND GRANTED=1\n"
    );
}

#[test]
fn outcomes_that_are_not_exits_have_their_own_exit_codes() {
    let ws = Workspace::new();
    let spin = ws.signed_sample("infinite-loop", Target::P1);
    let bomb = ws.signed_sample("memory-bomb", Target::P2);
    let hello = ws.signed_sample("hello", Target::P1);
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["exec", "--trust", "trust", &spin, "--timeout", "200ms"],
            124,
            "timed out",
        ),
        (
            &["exec", "--trust", "trust", &spin, "--fuel", "1000000"],
            152,
            "out of fuel",
        ),
        (
            &["exec", "--trust", "trust", &bomb, "--memory", "40MiB"],
            137,
            "out of memory",
        ),
        (
            &["exec", "--trust", "trust", &hello, "--dir", "/etc:/etc"],
            126,
            "outside the allowed roots",
        ),
    ];
    for (args, expected, message) in cases {
        let out = ws.vauban(args);
        assert_eq!(code(&out), expected, "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }
}

#[test]
fn network_destinations_are_granted_by_flag() {
    let ws = Workspace::new();
    let module = ws.signed_sample("socket-connect", Target::P2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // Without a destination the component, which imports wasi:sockets, is refused before it
    // starts.
    let denied = ws.vauban(&["exec", "--trust", "trust", &module, "--", &addr]);
    assert_eq!(code(&denied), 126, "{}", text(&denied.stderr));
    assert!(
        text(&denied.stderr).contains("denied import wasi:sockets/")
            && text(&denied.stdout).is_empty(),
        "{}{}",
        text(&denied.stdout),
        text(&denied.stderr)
    );
    let allowed = ws.vauban(&[
        "exec",
        "--trust",
        "trust",
        &module,
        "--allow-net",
        &addr,
        "--",
        &addr,
    ]);
    assert_eq!(text(&allowed.stdout), format!("CONNECTED {addr}\n"));
}
