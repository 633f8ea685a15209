//! The job spec parser: defaults, each operator, path resolution, and errors that name the
//! field. The sample specs in `samples/jobs/` must parse too.

use std::path::{Path, PathBuf};

use vauban_proto::v1::{self, ConstraintOperator as Op};

use super::{JobFile, ModuleSource, SpecError, load, parse};

const SPEC_PATH: &str = "/srv/jobs/fusion.toml";
const MODULE: &str = "module = \"../wasm/app.wasm\"\n";

/// Parses `body` (with a module line prepended) as if it were `/srv/jobs/fusion.toml`.
fn ok(body: &str) -> JobFile {
    match parse(&format!("{MODULE}{body}"), Path::new(SPEC_PATH)) {
        Ok(job) => job,
        Err(e) => panic!("refused: {e}\n---\n{body}"),
    }
}

/// Checks that `body` is refused with a message containing each of `expected`.
fn check_err(body: &str, expected: &[&str]) {
    let message = match parse(&format!("{MODULE}{body}"), Path::new(SPEC_PATH)) {
        Ok(job) => panic!("accepted: {job:?}\n---\n{body}"),
        Err(e) => e.to_string(),
    };
    for part in expected {
        assert!(
            message.contains(part),
            "error for\n{body}\nwas {message:?}, expected it to contain {part:?}"
        );
    }
}

fn limits(job: &JobFile) -> v1::Limits {
    job.spec
        .capabilities
        .clone()
        .and_then(|c| c.limits)
        .unwrap_or_default()
}

#[test]
fn a_minimal_spec_takes_the_defaults() {
    let job = ok("");
    let spec = &job.spec;
    assert_eq!(spec.name, "fusion", "the file stem");
    assert_eq!(spec.namespace, "default");
    assert_eq!(spec.r#type, v1::JobType::Batch as i32);
    assert_eq!(spec.replicas, 0, "replicas are for services");
    assert_eq!(spec.priority, 50);
    assert_eq!(spec.restart, None);
    assert!(spec.stdin.is_empty());
    assert!(spec.label_selector.is_empty());
    assert!(spec.constraints.is_empty() && spec.affinities.is_empty() && spec.spreads.is_empty());
    assert_eq!(
        spec.module_digest, "",
        "filled in once the module is uploaded"
    );
    let caps = spec.capabilities.clone().unwrap_or_default();
    assert!(caps.args.is_empty() && caps.env.is_empty() && caps.dirs.is_empty());
    assert!(caps.network.is_empty());
    assert_eq!(
        limits(&job),
        v1::Limits {
            memory_bytes: 256 << 20,
            timeout_ms: 30_000,
            fuel: None,
            output_bytes: 1 << 20,
        }
    );
    assert_eq!(job.stdin_file, None);
    assert_eq!(job.grant_file, None);
    assert!(spec.grant.is_empty() && caps.interfaces.is_empty());
}

#[test]
fn relative_paths_are_taken_from_the_spec_files_directory() {
    let job = ok(r#"
        stdin_file = "input/readings.json"
        grant = "grants/fusion.grant.json"
        [[dirs]]
        host = "data"
        guest = "/data"
        [[dirs]]
        host = "/srv/out"
        guest = "/out"
        write = true
    "#);
    assert_eq!(
        job.module,
        ModuleSource::Path(PathBuf::from("/srv/jobs/../wasm/app.wasm"))
    );
    assert_eq!(
        job.stdin_file,
        Some(PathBuf::from("/srv/jobs/input/readings.json"))
    );
    assert_eq!(
        job.grant_file,
        Some(PathBuf::from("/srv/jobs/grants/fusion.grant.json"))
    );
    let dirs = job.spec.capabilities.unwrap_or_default().dirs;
    assert_eq!(
        dirs,
        [
            v1::DirGrant {
                host_path: "/srv/jobs/data".into(),
                guest_path: "/data".into(),
                read_write: false,
            },
            v1::DirGrant {
                host_path: "/srv/out".into(),
                guest_path: "/out".into(),
                read_write: true,
            },
        ]
    );
}

#[test]
fn a_module_digest_is_used_as_is() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let job = parse(&format!("module = \"{digest}\""), Path::new(SPEC_PATH)).expect("parses");
    assert_eq!(job.spec.module_digest, digest);
    assert!(matches!(job.module, ModuleSource::Digest(d) if d.to_string() == digest));
    let err = parse("module = \"sha256:abc\"", Path::new(SPEC_PATH))
        .expect_err("a short digest")
        .to_string();
    assert!(err.starts_with("module: invalid module digest"), "{err}");
}

#[test]
fn a_full_service_spec() {
    let job = ok(r#"
        name = "track-fusion"
        namespace = "ops"
        type = "service"
        replicas = 3
        priority = 70
        args = ["--sleep", "600000"]
        stdin = "text"
        env = { GREETING = "hi", MODE = "fast" }
        network = ["10.0.0.1:443", "[::1]:8080"]
        [limits]
        memory = "64MiB"
        timeout = "1h"
        fuel = 1000000
        output = "4KiB"
        [restart]
        attempts = 5
        initial_delay = "2s"
        max_delay = "1m"
    "#);
    let spec = &job.spec;
    assert_eq!(spec.name, "track-fusion");
    assert_eq!(spec.namespace, "ops");
    assert_eq!(spec.r#type, v1::JobType::Service as i32);
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.priority, 70);
    assert_eq!(spec.stdin, b"text");
    assert_eq!(
        spec.restart,
        Some(v1::RestartPolicy {
            attempts: 5,
            initial_delay_ms: 2000,
            max_delay_ms: 60_000,
        })
    );
    let caps = spec.capabilities.clone().unwrap_or_default();
    assert_eq!(caps.args, ["--sleep", "600000"]);
    let env: Vec<(String, String)> = caps.env.into_iter().map(|e| (e.name, e.value)).collect();
    assert_eq!(
        env,
        [
            ("GREETING".to_owned(), "hi".to_owned()),
            ("MODE".to_owned(), "fast".to_owned())
        ]
    );
    assert_eq!(caps.network, ["10.0.0.1:443", "[::1]:8080"]);
    assert_eq!(
        limits(&job),
        v1::Limits {
            memory_bytes: 64 << 20,
            timeout_ms: 3_600_000,
            fuel: Some(1_000_000),
            output_bytes: 4096,
        }
    );
}

#[test]
fn config_values_are_granted_sorted_by_key_and_apart_from_env() {
    let job = ok(r#"
        env = { GREETING = "env" }
        config = { mode = "fast", greeting = "bonjour", "db.url" = "" }
    "#);
    let caps = job.spec.capabilities.unwrap_or_default();
    let config: Vec<(String, String)> =
        caps.config.into_iter().map(|e| (e.name, e.value)).collect();
    assert_eq!(
        config,
        [
            ("db.url".to_owned(), String::new()),
            ("greeting".to_owned(), "bonjour".to_owned()),
            ("mode".to_owned(), "fast".to_owned()),
        ]
    );
    assert_eq!(caps.env.len(), 1, "config is not put in the environment");
    assert!(
        ok("")
            .spec
            .capabilities
            .unwrap_or_default()
            .config
            .is_empty()
    );
}

#[test]
fn a_service_has_one_replica_unless_told_and_restart_defaults_stay_unset() {
    let job = ok("type = \"service\"\n[restart]\nattempts = 2");
    assert_eq!(job.spec.replicas, 1);
    assert_eq!(
        job.spec.restart,
        Some(v1::RestartPolicy {
            attempts: 2,
            initial_delay_ms: 0,
            max_delay_ms: 0,
        }),
        "0 on the wire: the scheduler's default"
    );
    let job = ok("type = \"system\"\n[restart]\nmax_delay = \"5m\"");
    assert_eq!(job.spec.r#type, v1::JobType::System as i32);
    assert_eq!(job.spec.replicas, 0);
}

#[test]
fn each_operator_becomes_its_proto_constraint() {
    let cases: &[(&str, Op, &[&str])] = &[
        (r#"op = "=", value = "FR""#, Op::Eq, &["FR"]),
        (r#"value = "FR""#, Op::Eq, &["FR"]),
        (r#"op = "!=", value = "FR""#, Op::NotEq, &["FR"]),
        (r#"op = "in", values = ["FR", "BE"]"#, Op::In, &["FR", "BE"]),
        (r#"op = "not in", values = ["US"]"#, Op::NotIn, &["US"]),
        (r#"op = "not  in", values = ["US"]"#, Op::NotIn, &["US"]),
        (r#"op = "exists""#, Op::Exists, &[]),
        (r#"op = "not exists""#, Op::NotExists, &[]),
        (
            r#"op = "semver", value = ">=1.2, <2""#,
            Op::Version,
            &[">=1.2, <2"],
        ),
    ];
    for (fields, op, values) in cases {
        let job = ok(&format!(
            "constraint = [{{ label = \"jurisdiction\", {fields} }}]"
        ));
        assert_eq!(
            job.spec.constraints,
            [v1::Constraint {
                label: "jurisdiction".into(),
                operator: *op as i32,
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }],
            "{fields}"
        );
        // Affinities share the operators.
        let job = ok(&format!(
            "affinity = [{{ label = \"tier\", {fields}, weight = -20 }}]"
        ));
        assert_eq!(job.spec.affinities[0].weight, -20, "{fields}");
        assert_eq!(
            job.spec.affinities[0]
                .constraint
                .as_ref()
                .map(|c| c.operator),
            Some(*op as i32),
            "{fields}"
        );
    }
}

#[test]
fn describe_writes_constraints_as_a_spec_does() {
    let job = ok(r#"
        [[constraint]]
        label = "zone"
        value = "alpha"
        [[constraint]]
        label = "tier"
        op = "not in"
        values = ["core", "edge"]
        [[constraint]]
        label = "gpu"
        op = "exists"
        [[constraint]]
        label = "os"
        op = "semver"
        value = "^1.4"
    "#);
    let described: Vec<String> = job.spec.constraints.iter().map(super::describe).collect();
    assert_eq!(
        described,
        [
            "zone = alpha",
            "tier not in (core, edge)",
            "gpu exists",
            "os semver ^1.4"
        ]
    );
}

#[test]
fn affinities_and_spreads() {
    let job = ok(r#"
        type = "service"
        replicas = 4
        [[affinity]]
        label = "tier"
        value = "edge"
        [[spread]]
        label = "site"
        weight = 80
        targets = { paris = 50, lyon = 30 }
        [[spread]]
        label = "rack"
    "#);
    assert_eq!(job.spec.affinities[0].weight, 50, "the default weight");
    let site = &job.spec.spreads[0];
    assert_eq!((site.label.as_str(), site.weight), ("site", 80));
    assert_eq!(site.targets.get("paris"), Some(&50));
    assert_eq!(site.targets.get("lyon"), Some(&30));
    let rack = &job.spec.spreads[1];
    assert_eq!(rack.weight, 50);
    assert!(rack.targets.is_empty(), "even");
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &[&str])] = &[
        // Syntax and shape, reported by the toml crate with the key and the line.
        ("nmae = \"x\"", &["unknown field `nmae`", "line 2"]),
        (
            "[limits]\nmemroy = \"1MiB\"",
            &["unknown field `memroy`", "memory"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nvalue = \"b\"\noperator = \"=\"",
            &["unknown field `operator`"],
        ),
        (
            "type = \"daemon\"",
            &["unknown variant `daemon`", "service"],
        ),
        ("priority = -1", &["priority: -1 is out of range 1..=100"]),
        ("replicas = \"3\"", &["replicas"]),
        // Values.
        ("name = \" \"", &["name: is empty"]),
        ("namespace = \"a b\"", &["namespace:"]),
        ("priority = 101", &["priority: 101 is out of range 1..=100"]),
        ("priority = 0", &["priority: 0 is out of range"]),
        ("replicas = 2", &["replicas: only a service job", "batch"]),
        (
            "type = \"system\"\nreplicas = 2",
            &["replicas: only a service job", "every eligible node"],
        ),
        (
            "type = \"service\"\nreplicas = 0",
            &["replicas: must be at least 1"],
        ),
        (
            "[restart]\nattempts = 3",
            &["restart: a batch job is not restarted"],
        ),
        (
            "type = \"service\"\n[restart]\nattempts = 0",
            &["restart.attempts: must be at least 1"],
        ),
        (
            "type = \"service\"\n[restart]\ninitial_delay = \"soon\"",
            &["restart.initial_delay:", "\"soon\" is not a duration"],
        ),
        (
            "type = \"service\"\n[restart]\ninitial_delay = \"2m\"",
            &["restart.initial_delay: 2m is longer than max_delay (1m, the default)"],
        ),
        (
            "type = \"service\"\n[restart]\ninitial_delay = \"10s\"\nmax_delay = \"5s\"",
            &["restart.initial_delay: 10s is longer than max_delay (5s)"],
        ),
        (
            "stdin = \"a\"\nstdin_file = \"b\"",
            &["stdin_file: give stdin (inline text) or stdin_file"],
        ),
        ("grant = \"\"", &["grant: is empty"]),
        (
            "interfaces = [\"wasi:http/outgoing-handler\", \"\"]",
            &["interfaces[1]: \"\" is not an interface name"],
        ),
        ("env = { \"A=B\" = \"x\" }", &["env.\"A=B\""]),
        ("env = { \"\" = \"x\" }", &["env.\"\""]),
        ("config = { \"\" = \"x\" }", &["config.\"\"", "non-empty"]),
        ("config = { greeting = 3 }", &["config", "string"]),
        (
            "network = [\"example.com:443\"]",
            &["network[0]", "not IP:PORT"],
        ),
        ("network = [\"10.0.0.1\"]", &["network[0]"]),
        (
            "[[dirs]]\nhost = \"\"\nguest = \"/in\"",
            &["dirs[0].host: is empty"],
        ),
        (
            "[[dirs]]\nhost = \"in\"\nguest = \"\"",
            &["dirs[0].guest: is empty"],
        ),
        ("[[dirs]]\nhost = \"in\"", &["missing field `guest`"]),
        (
            "[limits]\nmemory = \"lots\"",
            &["limits.memory:", "\"lots\" is not a size"],
        ),
        (
            "[limits]\nmemory = \"0B\"",
            &["limits.memory: must be more than 0"],
        ),
        (
            "[limits]\noutput = \"0\"",
            &["limits.output: must be more than 0"],
        ),
        (
            "[limits]\ntimeout = \"0s\"",
            &["limits.timeout: must be more than 0"],
        ),
        ("[limits]\ntimeout = \"30\"", &["limits.timeout:"]),
        (
            "[limits]\nfuel = 0",
            &["limits.fuel: 0 would stop the guest"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"==\"\nvalue = \"b\"",
            &["constraint[0].op: unknown operator \"==\"", "\"not in\""],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"=\"",
            &["constraint[0].value: operator \"=\" needs a value"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"!=\"\nvalues = [\"b\"]",
            &["constraint[0].values: operator \"!=\" takes one `value`"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"in\"\nvalue = \"b\"",
            &["constraint[0].value: operator \"in\" takes a list"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"not in\"\nvalues = []",
            &["constraint[0].values: operator \"not in\" needs a non-empty list"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"exists\"\nvalue = \"b\"",
            &["constraint[0].value: operator \"exists\" takes no value"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"not exists\"\nvalues = [\"b\"]",
            &["constraint[0].values: operator \"not exists\" takes no value"],
        ),
        (
            "[[constraint]]\nlabel = \"v\"\nop = \"semver\"\nvalue = \"version one\"",
            &["constraint[0].value: \"version one\" is not a semantic version requirement"],
        ),
        (
            "[[constraint]]\nlabel = \"\"\nop = \"exists\"",
            &["constraint[0].label: is empty"],
        ),
        (
            "[[constraint]]\nlabel = \"a\"\nop = \"exists\"\n[[constraint]]\nlabel = \"b\"\nop = \"in\"",
            &["constraint[1].values"],
        ),
        (
            "[[affinity]]\nlabel = \"a\"\nvalue = \"b\"\nweight = 101",
            &["affinity[0].weight: 101 is out of range"],
        ),
        (
            "[[affinity]]\nlabel = \"a\"\nvalue = \"b\"\nweight = -101",
            &["affinity[0].weight: -101"],
        ),
        (
            "[[affinity]]\nlabel = \"a\"\nvalue = \"b\"\nweight = 0",
            &["affinity[0].weight: 0"],
        ),
        (
            "[[affinity]]\nlabel = \"a\"\nop = \"~\"",
            &["affinity[0].op: unknown operator \"~\""],
        ),
        (
            "[[spread]]\nlabel = \"site\"\nweight = 0",
            &["spread[0].weight: 0 is out of range 1..=100"],
        ),
        (
            "[[spread]]\nlabel = \"site\"\ntargets = { paris = 60, lyon = 50 }",
            &["spread[0].targets: the percentages add up to 110, more than 100"],
        ),
        (
            "[[spread]]\nlabel = \"site\"\ntargets = { paris = 101 }",
            &["spread[0].targets.paris: 101 is not a percentage"],
        ),
        ("[[spread]]\nlabel = \"\"", &["spread[0].label: is empty"]),
        (
            "type = \"system\"\n[[affinity]]\nlabel = \"a\"\nvalue = \"b\"",
            &["affinity: a system job runs on every eligible node"],
        ),
        (
            "type = \"system\"\n[[spread]]\nlabel = \"site\"",
            &["spread: a system job runs on every eligible node"],
        ),
    ];
    for (body, expected) in cases {
        check_err(body, expected);
    }
}

#[test]
fn the_module_is_required_and_not_empty() {
    let err = parse("name = \"x\"", Path::new(SPEC_PATH)).expect_err("no module");
    assert!(matches!(err, SpecError::Syntax(_)));
    assert!(err.to_string().contains("missing field `module`"), "{err}");
    let err = parse("module = \"\"", Path::new(SPEC_PATH)).expect_err("empty module");
    assert!(err.to_string().starts_with("module: is empty"), "{err}");
}

#[test]
fn load_reads_stdin_file_and_names_the_spec_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("in.txt"), "from a file").expect("write");
    let path = dir.path().join("job.toml");
    std::fs::write(&path, "module = \"app.wasm\"\nstdin_file = \"in.txt\"\n").expect("write");
    let job = load(&path).expect("loads");
    assert_eq!(job.spec.stdin, b"from a file");

    std::fs::write(dir.path().join("g.json"), "{\"grant\": 1}").expect("write");
    std::fs::write(
        &path,
        "module = \"app.wasm\"\ngrant = \"g.json\"\ninterfaces = [\"wasi:http/outgoing-handler\"]\n",
    )
    .expect("write");
    let job = load(&path).expect("loads");
    assert_eq!(
        job.spec.grant, b"{\"grant\": 1}",
        "sent as it is: the scheduler checks it"
    );
    assert_eq!(
        job.spec.capabilities.unwrap_or_default().interfaces,
        ["wasi:http/outgoing-handler"]
    );
    std::fs::write(&path, "module = \"app.wasm\"\ngrant = \"missing.json\"\n").expect("write");
    let err = format!("{:#}", load(&path).expect_err("no grant file"));
    assert!(
        err.contains("reading grant") && err.contains("missing.json"),
        "{err}"
    );
    assert_eq!(job.module, ModuleSource::Path(dir.path().join("app.wasm")));

    std::fs::write(&path, "module = \"app.wasm\"\npriority = 500\n").expect("write");
    let err = format!("{:#}", load(&path).expect_err("refused"));
    assert!(
        err.contains("job.toml") && err.contains("priority: 500"),
        "{err}"
    );
}

#[test]
fn the_sample_job_specs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/jobs");
    for (file, job_type) in [
        ("batch.toml", v1::JobType::Batch),
        ("service.toml", v1::JobType::Service),
        ("system.toml", v1::JobType::System),
    ] {
        let job = load(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(job.spec.r#type, job_type as i32, "{file}");
        let ModuleSource::Path(module) = &job.module else {
            panic!("{file}: the samples name the hello module by path");
        };
        assert!(
            module.ends_with("target/samples/wasm32-wasip1/release/hello.wasm"),
            "{file}: {}",
            module.display()
        );
    }
}
