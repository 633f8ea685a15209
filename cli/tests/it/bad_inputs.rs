//! The table of bad inputs to the chain of trust (issue 5): malformed keys, grants, envelopes,
//! policies, modules, audit logs and proofs, each given to the real `vauban` binary, with the
//! exit status and the words of the error it must print. The expected text is part of the
//! table: a reworded message fails here on purpose, because the message is what an operator
//! reads to learn what was wrong.
//!
//! One [`Fixture`], built once through the CLI, is a valid world: root, publisher, authorizer
//! and audit keys, a policy signed 2-of-3 by the roots (two of them pinned), a signed sample
//! module, a grant for it signed by two authorizers, an audit log with a checkpoint after every
//! entry, and a proof. Each case writes its own files beside it, changes one thing, and returns
//! the command line to run. The controls at the head of the table run the unchanged world and
//! must succeed, so the table cannot pass by everything failing.
//!
//! Already covered elsewhere, and repeated here only to have the whole table in one place:
//! `trust.rs` (too few root or authorizer signatures, a publisher's signature on a grant,
//! another module, a grant payload or a policy changed after signing), `audit.rs` (a changed
//! entry, a checkpoint byte, another audit key, an edited proof) and `local.rs` (unsigned,
//! altered and untrusted modules).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use vauban_audit::Log;
use vauban_core::envelope::Envelope;
use vauban_core::grant::{GRANT_PAYLOAD_TYPE, Timestamp};
use vauban_core::policy::POLICY_PAYLOAD_TYPE;
use vauban_core::{Grant, ModuleDigest, ModuleKind, SecretKey, SignedGrant};
use vauban_tests::{Target, sample_path};

use crate::support::{Workspace, code, text};

/// `vauban` accepted the input.
const OK: i32 = 0;
/// `vauban` refused the input (its own error, not a guest's).
const REFUSED: i32 = 125;
/// `vauban verify` refused the module.
const MODULE_REFUSED: i32 = 1;

/// A key that is not Ed25519: NIST P-256, PKCS#8 (`openssl genpkey -algorithm ec -pkeyopt
/// ec_paramgen_curve:P-256`). A throwaway made for this test.
const P256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgF6NxVK4SQpOXL7Nm
KH8cMUD7KY9OPHwiDiUEcJu1FoShRANCAASXC1iWg6sXtmFM8P/jF01FonEC69Lt
KXflkeEEgRxV4H+mfdSFfg259yQ7dz6YI5BRCfW73n/DiLZxZqJ13euY
-----END PRIVATE KEY-----
";

/// Its public key, SPKI.
const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElwtYloOrF7ZhTPD/4xdNRaJxAuvS
7Sl35ZHhBIEcVeB/pn3UhX4NufckO3c+mCOQUQn1u95/w4i2cWaidd3rmA==
-----END PUBLIC KEY-----
";

/// An X25519 public key: the same length and layout as an Ed25519 SPKI key, but another
/// algorithm OID (1.3.101.110 instead of 1.3.101.112).
const X25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VuAyEANm93hLzpKS18LHI3BK3xtafpzPzos3zy5ZeaWDT750k=
-----END PUBLIC KEY-----
";

/// The keys of the fixture and their roles. `auth3` is revoked by the policy, `root3` is listed
/// in the policy but not pinned, `stranger` is in no policy.
const KEYS: [(&str, &str); 9] = [
    ("root1", "root"),
    ("root2", "root"),
    ("root3", "root"),
    ("pub", "publisher"),
    ("auth1", "authorizer"),
    ("auth2", "authorizer"),
    ("auth3", "authorizer"),
    ("audit", "audit"),
    ("stranger", "publisher"),
];

const ORIGIN: &str = "vauban.audit/bad-inputs";

/// One bad input (or a control).
struct Case {
    name: &'static str,
    /// Writes the case's files into the fixture and returns the `vauban` command line.
    setup: fn(&Fixture) -> Vec<String>,
    /// The exit status.
    status: i32,
    /// Text that standard error (when refused) or standard output (when accepted) must
    /// contain. `{NAME}` stands for the id of key NAME, `{job}` for the module's digest.
    says: &'static str,
}

/// The valid world every case starts from. Cases only add files.
struct Fixture {
    ws: Workspace,
    /// Key ids by key name (`keys/NAME.key`, `keys/NAME.pub`).
    ids: BTreeMap<&'static str, String>,
    /// `[[keys]]` policy entries, as `vauban key generate` prints them, by key name.
    entries: BTreeMap<&'static str, String>,
    /// `sha256:…` of `job.wasm`.
    digest: String,
}

impl Fixture {
    fn new() -> Self {
        let ws = Workspace::new();
        let mut ids = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (name, role) in KEYS {
            let out = ok(
                &ws,
                &[
                    "key",
                    "generate",
                    "--out",
                    &format!("keys/{name}"),
                    "--role",
                    role,
                ],
            );
            let id = out
                .lines()
                .find_map(|l| l.strip_prefix("key id:"))
                .expect("key id printed")
                .trim()
                .to_owned();
            let entry = out
                .split("# trust policy entry:\n")
                .nth(1)
                .expect("policy entry printed")
                .to_owned();
            ids.insert(name, id);
            entries.insert(name, entry);
        }
        let mut fx = Self {
            ws,
            ids,
            entries,
            digest: String::new(),
        };

        std::fs::create_dir(fx.ws.path("roots")).expect("roots");
        for name in ["root1", "root2"] {
            std::fs::copy(
                fx.ws.path(&format!("keys/{name}.pub")),
                fx.ws.path(&format!("roots/{name}.pub")),
            )
            .expect("pin root");
        }
        for (file, version) in [("policy.toml", 2), ("policy-v1.toml", 1)] {
            fx.write(file, fx.policy(version));
            fx.sign_policy(file, &["root1", "root2"]);
        }

        std::fs::copy(
            sample_path("hello", Target::P1),
            fx.ws.path("unsigned.wasm"),
        )
        .expect("copy sample");
        std::fs::copy(fx.ws.path("unsigned.wasm"), fx.ws.path("job.wasm")).expect("copy");
        ok(&fx.ws, &["sign", "--key", "keys/pub.key", "job.wasm"]);
        fx.digest = ModuleDigest::of(&fx.read("job.wasm")).to_string();

        ok(
            &fx.ws,
            &[
                "grant",
                "create",
                "--module",
                "job.wasm",
                "--dir",
                "/srv/in:/in:ro",
                "--memory",
                "64MiB",
                "--node-class",
                "eu",
                "--id",
                "g-1",
                "-o",
                "unsigned-grant.json",
            ],
        );
        std::fs::copy(fx.ws.path("unsigned-grant.json"), fx.ws.path("grant.json")).expect("copy");
        for signer in ["auth1", "auth2"] {
            fx.sign_grant("grant.json", signer);
        }

        // A checkpoint after every entry, so that a change is pinned to one entry. The log is
        // reopened for each append because the CLI writes the checkpoints in between.
        for (i, entry) in crate::audit::entries().iter().enumerate() {
            Log::open(&fx.ws.path("log"))
                .and_then(|mut log| log.append(entry))
                .expect("append");
            let mut args = vec![
                "audit",
                "checkpoint",
                "--log",
                "log",
                "--key",
                "keys/audit.key",
            ];
            if i == 0 {
                args.extend(["--origin", ORIGIN]);
            }
            ok(&fx.ws, &args);
        }
        ok(
            &fx.ws,
            &[
                "audit",
                "prove",
                "--log",
                "log",
                "--index",
                "2",
                "-o",
                "proof.json",
            ],
        );
        fx
    }

    /// The fixture's policy at `version`: every key but `stranger`, `auth3` revoked, 2 roots,
    /// 1 publisher and 2 authorizers needed, one node class.
    fn policy(&self, version: u64) -> String {
        let mut toml = format!(
            "version = {version}\nrevoked_keys = [\"{}\"]\n",
            self.ids["auth3"]
        );
        for (name, _) in KEYS.iter().filter(|(name, _)| *name != "stranger") {
            toml += &self.entries[name];
        }
        toml += "[thresholds]\nroot = 2\npublisher = 1\nauthorizer = 2\n\n\
                 [[node_classes]]\nname = \"eu\"\nmatch = { jurisdiction = \"eu\" }\n";
        toml
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.ws.path(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    fn read_text(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).expect("utf-8")
    }

    /// Writes a file, creating its directory.
    /// A CA in `pki/` and a host certificate `pki/n1.pem` (made once), returned as PEM.
    fn pki_cert(&self) -> String {
        if !self.path("pki/n1.pem").exists() {
            ok(&self.ws, &["pki", "init", "--out", "pki", "--force"]);
            ok(
                &self.ws,
                &[
                    "pki", "issue", "--ca", "pki", "--role", "host", "--name", "n1", "--out",
                    "pki/n1", "--force",
                ],
            );
        }
        self.read_text("pki/n1.pem")
    }

    fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create dir");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
    }

    /// Replaces `{NAME}` by key NAME's id and `{job}` by the module's digest.
    fn expand(&self, template: &str) -> String {
        let mut out = template.replace("{job}", &self.digest);
        for (name, id) in &self.ids {
            out = out.replace(&format!("{{{name}}}"), id);
        }
        out
    }

    fn sign_policy(&self, file: &str, by: &[&str]) {
        for name in by {
            ok(
                &self.ws,
                &["policy", "sign", "--key", &format!("keys/{name}.key"), file],
            );
        }
    }

    /// Writes a policy and a signatures file whose payload is exactly it, signed by the two
    /// pinned roots through the library: `vauban policy sign` itself refuses a malformed policy,
    /// but a verifier must refuse one even when its roots signed it.
    fn root_signed_policy(&self, file: &str, toml: &str) -> Vec<String> {
        self.write(file, toml);
        let mut envelope = Envelope::new(POLICY_PAYLOAD_TYPE, toml.as_bytes());
        for name in ["root1", "root2"] {
            envelope.sign(&self.secret(name)).expect("sign");
        }
        self.write(&format!("{file}.sig.json"), envelope.to_json());
        verify_policy(file)
    }

    fn secret(&self, name: &str) -> SecretKey {
        SecretKey::from_file(&self.path(&format!("keys/{name}.key"))).expect("key")
    }

    fn sign_grant(&self, file: &str, by: &str) {
        ok(
            &self.ws,
            &["grant", "sign", "--key", &format!("keys/{by}.key"), file],
        );
    }

    /// The unsigned grant the fixture created.
    fn grant(&self) -> Grant {
        SignedGrant::from_json(&self.read("unsigned-grant.json"))
            .expect("grant")
            .unverified_grant()
            .clone()
    }

    /// The payload of the fixture's grant as JSON, to be changed in ways `Grant` cannot hold.
    fn grant_json(&self) -> Value {
        serde_json::to_value(self.grant()).expect("json")
    }

    /// Writes `grant` in an envelope signed through the CLI by `by`; returns `grant verify`.
    fn signed_grant(&self, file: &str, grant: Grant, by: &[&str]) -> Vec<String> {
        self.write(file, SignedGrant::unsigned(grant).expect("grant").to_json());
        for name in by {
            self.sign_grant(file, name);
        }
        verify_grant(file)
    }

    /// Writes an unsigned grant envelope around exactly these payload bytes.
    fn grant_payload(&self, file: &str, payload: &[u8]) -> Vec<String> {
        self.write(file, Envelope::new(GRANT_PAYLOAD_TYPE, payload).to_json());
        verify_grant(file)
    }

    /// The signed grant's envelope as JSON, to be changed.
    fn envelope(&self) -> Value {
        serde_json::from_slice(&self.read("grant.json")).expect("json")
    }

    /// Copies the audit log to `dir` and returns its entries' lines.
    fn copy_log(&self, dir: &str) -> Vec<String> {
        std::fs::create_dir_all(self.path(&format!("{dir}/checkpoints"))).expect("mkdir");
        for size in 1..=4 {
            let rel = format!("checkpoints/{size}");
            std::fs::copy(
                self.path(&format!("log/{rel}")),
                self.path(&format!("{dir}/{rel}")),
            )
            .expect("copy checkpoint");
        }
        let entries = self.read_text("log/entries.jsonl");
        self.write(&format!("{dir}/entries.jsonl"), &entries);
        entries.lines().map(str::to_owned).collect()
    }

    /// A copy of the audit log whose entry lines `change` edits; returns `audit verify` on it.
    fn log_with_lines(&self, dir: &str, change: fn(&mut Vec<String>)) -> Vec<String> {
        let mut lines = self.copy_log(dir);
        change(&mut lines);
        let mut text = lines.join("\n");
        text.push('\n');
        self.write(&format!("{dir}/entries.jsonl"), text);
        verify_log(dir)
    }

    /// The fixture's proof as JSON, to be changed.
    fn proof(&self) -> Value {
        serde_json::from_slice(&self.read("proof.json")).expect("json")
    }

    fn proof_with(&self, file: &str, proof: &Value) -> Vec<String> {
        self.write(file, proof.to_string());
        args(&["audit", "verify-proof", "--key", "keys/audit.pub", file])
    }
}

fn ok(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.vauban(args);
    assert!(
        out.status.success(),
        "fixture: vauban {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn verify_grant(file: &str) -> Vec<String> {
    verify_grant_of(file, "job.wasm")
}

fn verify_grant_of(file: &str, module: &str) -> Vec<String> {
    args(&[
        "grant",
        "verify",
        "--policy",
        "policy.toml",
        "--roots",
        "roots",
        "--module",
        module,
        file,
    ])
}

fn verify_policy(file: &str) -> Vec<String> {
    args(&["policy", "verify", "--roots", "roots", file])
}

fn verify_module(file: &str) -> Vec<String> {
    args(&["verify", "--trust", "keys/pub.pub", file])
}

fn verify_log(dir: &str) -> Vec<String> {
    args(&["audit", "verify", "--log", dir, "--key", "keys/audit.pub"])
}

/// A signing command with the key at `key`, on a copy of the grant.
fn sign_grant_with(fx: &Fixture, key: &str) -> Vec<String> {
    let copy = format!("s/{}.grant.json", key.replace('/', "_"));
    fx.write(&copy, fx.read("unsigned-grant.json"));
    args(&["grant", "sign", "--key", key, &copy])
}

/// The grant's JSON payload changed by `change`, in canonical form but for that change.
fn grant_json_with(fx: &Fixture, file: &str, change: fn(&mut Value)) -> Vec<String> {
    let mut grant = fx.grant_json();
    change(&mut grant);
    fx.grant_payload(file, &serde_json::to_vec(&grant).expect("json"))
}

/// The signed grant's envelope changed by `change`.
fn envelope_with(fx: &Fixture, file: &str, change: fn(&mut Value)) -> Vec<String> {
    let mut envelope = fx.envelope();
    change(&mut envelope);
    fx.write(file, envelope.to_string());
    verify_grant(file)
}

/// The standard base64 of `bytes`, through the library's envelope (the test has no base64
/// crate of its own).
fn base64(bytes: &[u8]) -> String {
    Envelope::new("", bytes).payload
}

fn decode_base64(text: &str) -> Vec<u8> {
    let mut envelope = Envelope::new("", b"");
    envelope.payload = text.to_owned();
    envelope.payload_bytes().expect("base64")
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // ---- controls: the unchanged world is accepted ----
        Case {
            name: "control: the grant verifies",
            setup: |_| verify_grant("grant.json"),
            status: OK,
            says: "grant g-1: valid under policy version 2",
        },
        Case {
            name: "control: the policy verifies",
            setup: |_| verify_policy("policy.toml"),
            status: OK,
            says: "policy version 2: valid (root threshold 2 met)",
        },
        Case {
            name: "control: a newer policy replaces the one held",
            setup: |_| args(&["policy", "verify", "--roots", "roots", "--current", "policy-v1.toml", "policy.toml"]),
            status: OK,
            says: "policy version 2: valid",
        },
        Case {
            name: "control: the module verifies",
            setup: |_| verify_module("job.wasm"),
            status: OK,
            says: "verified job.wasm (core module (wasip1))",
        },
        Case {
            name: "control: the audit log verifies",
            setup: |_| verify_log("log"),
            status: OK,
            says: "ok: 4 entries, 4 checkpoints verified",
        },
        Case {
            name: "control: the proof verifies",
            setup: |_| args(&["audit", "verify-proof", "--key", "keys/audit.pub", "proof.json"]),
            status: OK,
            says: "ok: entry 2 is in vauban.audit/bad-inputs at size 4",
        },

        // ---- keys ----
        Case {
            name: "private key: not PEM at all",
            setup: |fx| {
                fx.write("bad/garbage.key", "this is not a key\n");
                sign_grant_with(fx, "bad/garbage.key")
            },
            status: REFUSED,
            says: "bad/garbage.key is not an Ed25519 private key (PKCS#8) in PEM form",
        },
        Case {
            name: "private key: PEM armour around bytes that are not base64",
            setup: |fx| {
                fx.write("bad/armour.key", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n");
                sign_grant_with(fx, "bad/armour.key")
            },
            status: REFUSED,
            says: "bad/armour.key is not an Ed25519 private key (PKCS#8) in PEM form",
        },
        Case {
            name: "private key: truncated",
            setup: |fx| {
                let key = fx.read("keys/auth1.key");
                fx.write("bad/truncated.key", &key[..key.len() / 2]);
                sign_grant_with(fx, "bad/truncated.key")
            },
            status: REFUSED,
            says: "bad/truncated.key is not an Ed25519 private key (PKCS#8) in PEM form",
        },
        Case {
            name: "private key: P-256, another algorithm",
            setup: |fx| {
                fx.write("bad/p256.key", P256_PRIVATE);
                sign_grant_with(fx, "bad/p256.key")
            },
            status: REFUSED,
            says: "bad/p256.key is not an Ed25519 private key (PKCS#8) in PEM form",
        },
        Case {
            name: "private key: a public key file given to sign",
            setup: |fx| sign_grant_with(fx, "keys/auth1.pub"),
            status: REFUSED,
            says: "keys/auth1.pub is not an Ed25519 private key (PKCS#8) in PEM form",
        },
        Case {
            name: "public key: P-256 trusted for modules",
            setup: |fx| {
                fx.write("bad/p256.pub", P256_PUBLIC);
                args(&["verify", "--trust", "bad/p256.pub", "job.wasm"])
            },
            status: REFUSED,
            says: "loading trust store bad/p256.pub: bad/p256.pub is not an Ed25519 public key (SPKI) in PEM form",
        },
        Case {
            name: "public key: X25519 (wrong algorithm OID) pinned as a root",
            setup: |fx| {
                fx.write("roots-x25519/x25519.pub", X25519_PUBLIC);
                args(&["policy", "verify", "--roots", "roots-x25519", "policy.toml"])
            },
            status: REFUSED,
            says: "loading root keys roots-x25519: roots-x25519/x25519.pub is not an Ed25519 public key (SPKI) in PEM form",
        },
        Case {
            name: "public key: a private key pinned as a root",
            setup: |fx| {
                fx.write("roots-private/root1.pub", fx.read("keys/root1.key"));
                args(&["policy", "verify", "--roots", "roots-private", "policy.toml"])
            },
            status: REFUSED,
            says: "roots-private/root1.pub is not an Ed25519 public key (SPKI) in PEM form",
        },
        Case {
            name: "public key: truncated audit key",
            setup: |fx| {
                let key = fx.read("keys/audit.pub");
                fx.write("bad/audit.pub", &key[..key.len() - 20]);
                args(&["audit", "verify", "--log", "log", "--key", "bad/audit.pub"])
            },
            status: REFUSED,
            says: "loading the audit public key: bad/audit.pub: not an Ed25519 public key (SPKI PEM)",
        },

        // ---- grant payloads ----
        Case {
            name: "grant: payload not in canonical form (pretty-printed)",
            setup: |fx| fx.grant_payload("g/pretty.json", &serde_json::to_vec_pretty(&fx.grant_json()).expect("json")),
            status: REFUSED,
            says: "grant g/pretty.json refused: grant payload is not in canonical JSON form (RFC 8785)",
        },
        Case {
            name: "grant: an unknown field",
            setup: |fx| grant_json_with(fx, "g/unknown-field.json", |g| { g["comment"] = json!("trust me"); }),
            status: REFUSED,
            says: "grant payload is not a grant: unknown field `comment`",
        },
        Case {
            name: "grant: a missing field",
            setup: |fx| grant_json_with(fx, "g/missing-field.json", |g| { g.as_object_mut().expect("object").remove("not_after"); }),
            status: REFUSED,
            says: "grant payload is not a grant: missing field `not_after`",
        },
        Case {
            name: "grant: an integer above 2^53 - 1",
            setup: |fx| grant_json_with(fx, "g/big.json", |g| { g["resources"]["memory_bytes"] = json!(1_u64 << 53); }),
            status: REFUSED,
            says: "grant g-1 is not valid: resources.memory_bytes is 9007199254740992, above 9007199254740991 (2^53 - 1, the largest integer canonical JSON holds exactly)",
        },
        Case {
            name: "grant: a relative directory",
            setup: |fx| grant_json_with(fx, "g/relative.json", |g| { g["capabilities"]["dirs"][0]["host"] = json!("srv/in"); }),
            status: REFUSED,
            says: "grant g-1 is not valid: directory srv/in is not absolute",
        },
        Case {
            name: "grant: an empty id",
            setup: |fx| grant_json_with(fx, "g/no-id.json", |g| { g["id"] = json!(""); }),
            status: REFUSED,
            says: "grant g/no-id.json refused: a grant without an id is not valid: the id is empty",
        },
        Case {
            name: "grant: a window that ends before it starts",
            setup: |fx| {
                let mut g = fx.grant();
                std::mem::swap(&mut g.not_before, &mut g.not_after);
                let mut json = serde_json::to_value(g).expect("json");
                json["id"] = json!("g-backwards");
                fx.grant_payload("g/backwards.json", &serde_json::to_vec(&json).expect("json"))
            },
            status: REFUSED,
            says: "grant g-backwards is not valid: not_after is not after not_before",
        },
        Case {
            name: "grant: a time with a fraction of a second",
            setup: |fx| grant_json_with(fx, "g/fraction.json", |g| { g["not_before"] = json!("2026-01-01T00:00:00.5Z"); }),
            status: REFUSED,
            says: "grant payload is not a grant: \"2026-01-01T00:00:00.5Z\" is not written as 2026-01-01T00:00:00Z",
        },
        Case {
            name: "grant: an unknown module kind",
            setup: |fx| grant_json_with(fx, "g/kind.json", |g| { g["module"]["kind"] = json!("native"); }),
            status: REFUSED,
            says: "grant payload is not a grant: unknown variant `native`, expected `core_module` or `component`",
        },
        Case {
            name: "grant: a malformed module digest",
            setup: |fx| grant_json_with(fx, "g/digest.json", |g| { g["module"]["digest"] = json!("sha256:beef"); }),
            status: REFUSED,
            says: "grant payload is not a grant: invalid module digest \"sha256:beef\": expected sha256:<64 hex characters>",
        },

        // ---- grant envelopes ----
        Case {
            name: "grant envelope: not JSON",
            setup: |fx| {
                fx.write("e/not-json.json", "payloadType: grant\n");
                verify_grant("e/not-json.json")
            },
            status: REFUSED,
            says: "grant e/not-json.json refused: grant envelope: not a signed envelope (DSSE JSON with payloadType, payload, signatures)",
        },
        Case {
            name: "grant envelope: the policy's signatures replayed as a grant (payloadType)",
            setup: |fx| {
                fx.write("e/policy-as-grant.json", fx.read("policy.toml.sig.json"));
                verify_grant("e/policy-as-grant.json")
            },
            status: REFUSED,
            says: "grant envelope: envelope holds \"application/vnd.vauban.policy+toml\", expected \"application/vnd.vauban.grant+json\"",
        },
        Case {
            name: "grant envelope: an unknown field",
            setup: |fx| envelope_with(fx, "e/unknown-field.json", |e| { e["note"] = json!("x"); }),
            status: REFUSED,
            says: "grant envelope: not a signed envelope (DSSE JSON with payloadType, payload, signatures): unknown field `note`",
        },
        Case {
            name: "grant envelope: payload not base64",
            setup: |fx| envelope_with(fx, "e/payload-base64.json", |e| { e["payload"] = json!("%%%"); }),
            status: REFUSED,
            says: "grant envelope: the payload is not valid base64",
        },
        Case {
            name: "grant envelope: a signature not base64",
            setup: |fx| envelope_with(fx, "e/sig-base64.json", |e| { e["signatures"][0]["sig"] = json!("not base64!"); }),
            status: REFUSED,
            says: "grant envelope: the signature by key {auth1} is not valid base64",
        },
        Case {
            name: "grant envelope: a signature one byte short",
            setup: |fx| envelope_with(fx, "e/sig-short.json", |e| {
                let sig = decode_base64(e["signatures"][0]["sig"].as_str().expect("sig"));
                e["signatures"][0]["sig"] = json!(base64(&sig[..63]));
            }),
            status: REFUSED,
            says: "grant envelope: the signature by key {auth1} is 63 bytes long, but ed25519 signatures are 64 bytes",
        },
        Case {
            name: "grant envelope: an unknown signature algorithm",
            setup: |fx| envelope_with(fx, "e/alg.json", |e| { e["signatures"][1]["alg"] = json!("ml-dsa-65"); }),
            status: REFUSED,
            says: "grant envelope: signature by key {auth2}: unsupported signature algorithm \"ml-dsa-65\": this version of vauban knows only \"ed25519\"",
        },

        // ---- grant verification under the policy ----
        Case {
            name: "grant: expired",
            setup: |fx| {
                let mut g = fx.grant();
                let now = SystemTime::now();
                g.not_before = Timestamp::new(now - days(30));
                g.not_after = Timestamp::new(now - days(1));
                fx.signed_grant("v/expired.json", g, &["auth1", "auth2"])
            },
            status: REFUSED,
            says: "grant v/expired.json refused: grant g-1 expired at ",
        },
        Case {
            name: "grant: not yet valid",
            setup: |fx| {
                let mut g = fx.grant();
                let now = SystemTime::now();
                g.not_before = Timestamp::new(now + days(1));
                g.not_after = Timestamp::new(now + days(30));
                fx.signed_grant("v/future.json", g, &["auth1", "auth2"])
            },
            status: REFUSED,
            says: "grant v/future.json refused: grant g-1 is not valid before ",
        },
        Case {
            name: "grant: signed by a publisher key (wrong role)",
            setup: |fx| fx.signed_grant("v/publisher.json", fx.grant(), &["auth1", "pub"]),
            status: REFUSED,
            says: "grant g-1 has 1 valid authorizer signature(s), the policy needs 2 (not counted: key {pub}: does not hold the authorizer role)",
        },
        Case {
            name: "grant: signed by a root key (wrong role)",
            setup: |fx| fx.signed_grant("v/root.json", fx.grant(), &["root1", "auth2"]),
            status: REFUSED,
            says: "grant g-1 has 1 valid authorizer signature(s), the policy needs 2 (not counted: key {root1}: does not hold the authorizer role)",
        },
        Case {
            name: "grant: signed by a revoked authorizer",
            setup: |fx| fx.signed_grant("v/revoked.json", fx.grant(), &["auth1", "auth3"]),
            status: REFUSED,
            says: "grant g-1 has 1 valid authorizer signature(s), the policy needs 2 (not counted: key {auth3}: revoked)",
        },
        Case {
            name: "grant: one authorizer's signature twice, counted once (threshold 2)",
            setup: |fx| {
                let file = "v/twice.json";
                fx.signed_grant(file, fx.grant(), &["auth1"]);
                let mut envelope: Value = serde_json::from_slice(&fx.read(file)).expect("json");
                let first = envelope["signatures"][0].clone();
                envelope["signatures"].as_array_mut().expect("array").push(first);
                fx.write(file, envelope.to_string());
                verify_grant(file)
            },
            status: REFUSED,
            says: "grant g-1 has 1 valid authorizer signature(s), the policy needs 2 (not counted: key {auth1}: signed more than once, counted once)",
        },
        Case {
            name: "grant: signed by a key the policy does not list",
            setup: |fx| fx.signed_grant("v/stranger.json", fx.grant(), &["auth1", "stranger"]),
            status: REFUSED,
            says: "(not counted: key {stranger}: not in the policy)",
        },
        Case {
            name: "grant: payload changed after signing",
            setup: |fx| {
                let mut wider = fx.grant();
                wider.resources.memory_bytes = 1 << 30;
                let mut envelope = fx.envelope();
                envelope["payload"] = json!(SignedGrant::unsigned(wider).expect("grant").envelope().payload);
                fx.write("v/tampered.json", envelope.to_string());
                verify_grant("v/tampered.json")
            },
            status: REFUSED,
            says: "grant g-1 has 0 valid authorizer signature(s), the policy needs 2 (not counted: key {auth1}: signature does not verify (changed after signing?); key {auth2}: signature does not verify (changed after signing?))",
        },
        Case {
            name: "grant: for another module digest",
            setup: |_| verify_grant_of("grant.json", "unsigned.wasm"),
            status: REFUSED,
            says: "grant g-1 is for {job} (core module (wasip1)), not for this module (sha256:",
        },
        Case {
            name: "grant: for the module's digest but the wrong kind",
            setup: |fx| {
                let mut g = fx.grant();
                g.module.kind = ModuleKind::Component;
                fx.signed_grant("v/kind.json", g, &["auth1", "auth2"])
            },
            status: REFUSED,
            says: "grant g-1 is for {job} (component (wasip2)), not for this module ({job}, core module (wasip1))",
        },
        Case {
            name: "grant: for a module whose header was changed to a component's",
            setup: |fx| {
                let mut bytes = fx.read("job.wasm");
                bytes[..8].copy_from_slice(b"\0asm\x0d\0\x01\0");
                fx.write("v/header.wasm", bytes);
                verify_grant_of("grant.json", "v/header.wasm")
            },
            status: REFUSED,
            says: "grant g-1 is for {job} (core module (wasip1)), not for this module (sha256:",
        },
        Case {
            name: "grant: names a node class the policy does not define",
            setup: |fx| {
                let mut g = fx.grant();
                g.node_classes = vec!["eu".into(), "mars".into()];
                fx.signed_grant("v/mars.json", g, &["auth1", "auth2"])
            },
            status: REFUSED,
            says: "grant g-1 names node class \"mars\", which the policy does not define",
        },
        Case {
            name: "grant: for a module the policy revokes",
            setup: |fx| {
                let toml = fx.policy(3).replacen(
                    "revoked_keys",
                    &format!("revoked_modules = [\"{}\"]\nrevoked_keys", fx.digest),
                    1,
                );
                fx.write("revoking.toml", toml);
                fx.sign_policy("revoking.toml", &["root1", "root2"]);
                args(&["grant", "verify", "--policy", "revoking.toml", "--roots", "roots", "grant.json"])
            },
            status: REFUSED,
            says: "grant g-1 is for module {job}, which the policy revokes",
        },

        // ---- policies ----
        Case {
            name: "policy: not TOML",
            setup: |fx| fx.root_signed_policy("p/not-toml.toml", "version = \n"),
            status: REFUSED,
            says: "policy p/not-toml.toml refused: policy is not valid: TOML parse error at line 1",
        },
        Case {
            name: "policy: an unknown field",
            setup: |fx| fx.root_signed_policy("p/unknown.toml", &fx.policy(2).replacen("version = 2\n", "version = 2\ncolour = \"blue\"\n", 1)),
            status: REFUSED,
            says: "unknown field `colour`",
        },
        Case {
            name: "policy: version 0",
            setup: |fx| fx.root_signed_policy("p/v0.toml", &fx.policy(0)),
            status: REFUSED,
            says: "policy is not valid: version must be 1 or more",
        },
        Case {
            name: "policy: threshold 0",
            setup: |fx| fx.root_signed_policy("p/zero.toml", &fx.policy(2).replace("authorizer = 2", "authorizer = 0")),
            status: REFUSED,
            says: "policy is not valid: thresholds.authorizer must be 1 or more",
        },
        Case {
            name: "policy: threshold above the unrevoked keys holding the role",
            setup: |fx| fx.root_signed_policy("p/above.toml", &fx.policy(2).replace("authorizer = 2", "authorizer = 3")),
            status: REFUSED,
            says: "policy is not valid: thresholds.authorizer is 3 but only 2 unrevoked key(s) hold the authorizer role",
        },
        Case {
            name: "policy: a key listed twice",
            setup: |fx| fx.root_signed_policy("p/twice.toml", &format!("{}{}", fx.policy(2), fx.entries["pub"])),
            status: REFUSED,
            says: "policy is not valid: key {pub} is listed twice",
        },
        Case {
            name: "policy: a key id that is not its key's",
            setup: |fx| {
                let toml = fx.policy(2).replacen(&fx.ids["root1"], &fx.ids["stranger"], 1);
                fx.root_signed_policy("p/wrong-id.toml", &toml)
            },
            status: REFUSED,
            says: "policy is not valid: key {stranger}: the id is not that of its public key, which is {root1}",
        },
        Case {
            name: "policy: a P-256 public key",
            setup: |fx| {
                let ed25519 = fx.read_text("keys/auth2.pub");
                let toml = fx.policy(2).replacen(&ed25519, P256_PUBLIC, 1);
                fx.root_signed_policy("p/p256.toml", &toml)
            },
            status: REFUSED,
            says: "policy is not valid: key {auth2}: public_key is not an Ed25519 public key in PEM form (SPKI)",
        },
        Case {
            name: "policy: a raw public key of 31 bytes",
            setup: |fx| {
                let ed25519 = fx.read_text("keys/auth2.pub");
                let toml = fx.policy(2).replacen(&format!("\"\"\"\n{ed25519}\"\"\""), &format!("\"{}\"", base64(&[7; 31])), 1);
                fx.root_signed_policy("p/raw31.toml", &toml)
            },
            status: REFUSED,
            says: "policy is not valid: key {auth2}: public_key is 31 bytes of base64, not the 32 bytes of an Ed25519 public key",
        },
        Case {
            name: "policy: an unknown key algorithm",
            setup: |fx| fx.root_signed_policy("p/rsa.toml", &fx.policy(2).replacen("alg = \"ed25519\"", "alg = \"rsa\"", 1)),
            status: REFUSED,
            says: "unsupported signature algorithm \"rsa\": this version of vauban knows only \"ed25519\"",
        },
        Case {
            name: "policy: an unknown role",
            setup: |fx| fx.root_signed_policy("p/admin.toml", &fx.policy(2).replacen("roles = [\"publisher\"]", "roles = [\"admin\"]", 1)),
            status: REFUSED,
            says: "unknown variant `admin`, expected one of `root`, `publisher`, `authorizer`, `audit`",
        },
        Case {
            name: "policy: signed by fewer roots than its threshold",
            setup: |fx| {
                fx.write("p/one-root.toml", fx.policy(2));
                fx.sign_policy("p/one-root.toml", &["root1"]);
                verify_policy("p/one-root.toml")
            },
            status: REFUSED,
            says: "policy p/one-root.toml refused: policy has 1 valid root signature(s), it needs 2",
        },
        Case {
            name: "policy: one root's signature twice, counted once",
            setup: |fx| {
                fx.write("p/dup.toml", fx.policy(2));
                fx.sign_policy("p/dup.toml", &["root1"]);
                let mut envelope: Value = serde_json::from_slice(&fx.read("p/dup.toml.sig.json")).expect("json");
                let first = envelope["signatures"][0].clone();
                envelope["signatures"].as_array_mut().expect("array").push(first);
                fx.write("p/dup.toml.sig.json", envelope.to_string());
                verify_policy("p/dup.toml")
            },
            status: REFUSED,
            says: "policy has 1 valid root signature(s), it needs 2 (not counted: key {root1}: signed more than once, counted once)",
        },
        Case {
            name: "policy: signed by an unpinned root",
            setup: |fx| {
                fx.write("p/unpinned.toml", fx.policy(2));
                fx.sign_policy("p/unpinned.toml", &["root1", "root3"]);
                verify_policy("p/unpinned.toml")
            },
            status: REFUSED,
            says: "policy has 1 valid root signature(s), it needs 2 (not counted: key {root3}: not an anchored root key)",
        },
        Case {
            name: "policy: signed by a root it revokes",
            setup: |fx| {
                let toml = fx.policy(2).replacen("revoked_keys = [", &format!("revoked_keys = [\"{}\", ", fx.ids["root2"]), 1);
                fx.write("p/revoked-root.toml", toml);
                fx.sign_policy("p/revoked-root.toml", &["root1", "root2"]);
                verify_policy("p/revoked-root.toml")
            },
            status: REFUSED,
            says: "policy has 1 valid root signature(s), it needs 2 (not counted: key {root2}: revoked)",
        },
        Case {
            name: "policy: a byte changed after signing",
            setup: |fx| {
                fx.write("p/changed.toml", fx.policy(2).replace("authorizer = 2", "authorizer = 1"));
                fx.write("p/changed.toml.sig.json", fx.read("policy.toml.sig.json"));
                verify_policy("p/changed.toml")
            },
            status: REFUSED,
            says: "policy p/changed.toml refused: the policy file differs from the payload its signatures cover: it was changed after signing",
        },
        Case {
            name: "policy: a grant's envelope given as its signatures",
            setup: |_| args(&["policy", "verify", "--roots", "roots", "--signatures", "grant.json", "policy.toml"]),
            status: REFUSED,
            says: "reading grant.json: envelope holds \"application/vnd.vauban.grant+json\", expected \"application/vnd.vauban.policy+toml\"",
        },
        Case {
            name: "policy: no signatures file",
            setup: |fx| {
                fx.write("p/unsigned.toml", fx.policy(2));
                verify_policy("p/unsigned.toml")
            },
            status: REFUSED,
            says: "reading the policy's signatures p/unsigned.toml.sig.json",
        },
        Case {
            name: "policy: a downgraded version",
            setup: |_| args(&["policy", "verify", "--roots", "roots", "--current", "policy.toml", "policy-v1.toml"]),
            status: REFUSED,
            says: "policy policy-v1.toml refused: policy version 1 is older than the version 2 this machine holds",
        },
        Case {
            name: "policy: the version already held",
            setup: |_| args(&["policy", "verify", "--roots", "roots", "--current", "policy.toml", "policy.toml"]),
            status: REFUSED,
            says: "policy version 2 is the version this machine already holds: a new policy needs a higher version",
        },

        // ---- modules ----
        Case {
            name: "module: unsigned",
            setup: |_| verify_module("unsigned.wasm"),
            status: MODULE_REFUSED,
            says: "refused unsigned.wasm: module is not signed: it has no signature section",
        },
        Case {
            name: "module: altered after signing",
            setup: |fx| {
                let mut bytes = fx.read("job.wasm");
                let at = bytes.len() - 10;
                bytes[at] ^= 1;
                fx.write("m/altered.wasm", bytes);
                verify_module("m/altered.wasm")
            },
            status: MODULE_REFUSED,
            says: "refused m/altered.wasm: module was modified after signing: its content does not match the signed hash",
        },
        Case {
            name: "module: signed by a key that is not trusted",
            setup: |fx| {
                std::fs::create_dir_all(fx.path("m")).expect("mkdir");
                ok(&fx.ws, &["sign", "--key", "keys/stranger.key", "unsigned.wasm", "-o", "m/stranger.wasm"]);
                verify_module("m/stranger.wasm")
            },
            status: MODULE_REFUSED,
            says: "refused m/stranger.wasm: module is not signed by a trusted key (signed by: {stranger})",
        },
        Case {
            name: "module: not WebAssembly",
            setup: |fx| {
                fx.write("m/elf.wasm", b"\x7fELF\x02\x01\x01\0\0\0\0\0");
                verify_module("m/elf.wasm")
            },
            status: MODULE_REFUSED,
            says: "refused m/elf.wasm: not a WebAssembly module or component",
        },

        // ---- audit logs ----
        Case {
            name: "audit log: an entry changed",
            setup: |fx| fx.log_with_lines("a/changed", |l| l[1] = l[1].replace("node-a", "node-b")),
            status: REFUSED,
            says: "checkpoint 2 does not match the entries: entry 1 was changed, or an entry was removed, inserted or reordered there",
        },
        Case {
            name: "audit log: an entry deleted",
            setup: |fx| fx.log_with_lines("a/deleted", |l| { l.remove(1); }),
            status: REFUSED,
            says: "checkpoint 2 does not match the entries: entry 1 was changed, or an entry was removed, inserted or reordered there",
        },
        Case {
            name: "audit log: the last entry deleted",
            setup: |fx| fx.log_with_lines("a/last-deleted", |l| { l.pop(); }),
            status: REFUSED,
            says: "checkpoint 4 covers 4 entries but the log holds only 3: entries were removed",
        },
        Case {
            name: "audit log: two entries reordered",
            setup: |fx| fx.log_with_lines("a/reordered", |l| l.swap(2, 3)),
            status: REFUSED,
            says: "checkpoint 3 does not match the entries: entry 2 was changed, or an entry was removed, inserted or reordered there",
        },
        Case {
            name: "audit log: an entry inserted",
            setup: |fx| fx.log_with_lines("a/inserted", |l| { let copy = l[0].clone(); l.insert(1, copy); }),
            status: REFUSED,
            says: "checkpoint 2 does not match the entries: entry 1 was changed, or an entry was removed, inserted or reordered there",
        },
        Case {
            name: "audit log: an entry that is not JSON",
            setup: |fx| fx.log_with_lines("a/not-json", |l| l[2].insert(0, '[')),
            status: REFUSED,
            says: "entry 2 is not a valid audit entry",
        },
        Case {
            name: "audit log: cut in the middle of the last entry",
            setup: |fx| {
                fx.copy_log("a/torn");
                let entries = fx.read("a/torn/entries.jsonl");
                fx.write("a/torn/entries.jsonl", &entries[..entries.len() - 5]);
                verify_log("a/torn")
            },
            status: REFUSED,
            says: "the entries end in an incomplete line after entry 2: an append was interrupted or the file was cut",
        },
        Case {
            name: "audit log: a byte of a checkpoint's root hash",
            setup: |fx| {
                fx.copy_log("a/root-byte");
                let note = fx.read_text("a/root-byte/checkpoints/3");
                let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
                let changed = if lines[2].starts_with('A') { "B" } else { "A" };
                lines[2].replace_range(..1, changed);
                fx.write("a/root-byte/checkpoints/3", lines.join("\n"));
                verify_log("a/root-byte")
            },
            status: REFUSED,
            says: "checkpoint 3 is not signed by the audit key",
        },
        Case {
            name: "audit log: a checkpoint that claims another size",
            setup: |fx| {
                fx.copy_log("a/size");
                let note = fx.read_text("a/size/checkpoints/3");
                fx.write("a/size/checkpoints/3", note.replacen("\n3\n", "\n2\n", 1));
                verify_log("a/size")
            },
            status: REFUSED,
            says: "checkpoint 3 is malformed: it holds a checkpoint of size 2",
        },
        Case {
            name: "audit log: verified with a key that is not the audit key",
            setup: |_| args(&["audit", "verify", "--log", "log", "--key", "keys/auth1.pub"]),
            status: REFUSED,
            says: "checkpoint 1 is not signed by the audit key",
        },
        Case {
            name: "audit log: another origin than the one required",
            setup: |_| args(&["audit", "verify", "--log", "log", "--key", "keys/audit.pub", "--origin", "vauban.audit/prod"]),
            status: REFUSED,
            says: "checkpoint 1 is for origin \"vauban.audit/bad-inputs\", expected \"vauban.audit/prod\"",
        },
        Case {
            name: "audit log: a directory that is not a log",
            setup: |_| verify_log("keys"),
            status: REFUSED,
            says: "audit log keys does not verify: cannot open keys/entries.jsonl",
        },

        // ---- proofs ----
        Case {
            name: "proof: not a proof bundle",
            setup: |fx| fx.proof_with("r/empty.json", &json!({})),
            status: REFUSED,
            says: "proof r/empty.json does not verify: proof does not verify: not a proof bundle: missing field `format`",
        },
        Case {
            name: "proof: an unknown format",
            setup: |fx| { let mut p = fx.proof(); p["format"] = json!("vauban.audit.proof/v0"); fx.proof_with("r/format.json", &p) },
            status: REFUSED,
            says: "proof does not verify: unknown format \"vauban.audit.proof/v0\", expected \"vauban.audit.proof/v1\"",
        },
        Case {
            name: "proof: the entry changed",
            setup: |fx| {
                let mut p = fx.proof();
                p["entry"] = json!(p["entry"].as_str().expect("entry").replace("node-a", "node-b"));
                fx.proof_with("r/entry.json", &p)
            },
            status: REFUSED,
            says: "proof does not verify: entry 2 is not in the tree of size 4",
        },
        Case {
            name: "proof: an inclusion hash dropped",
            setup: |fx| {
                let mut p = fx.proof();
                p["inclusion"].as_array_mut().expect("hashes").pop();
                fx.proof_with("r/short.json", &p)
            },
            status: REFUSED,
            says: "proof does not verify: entry 2 is not in the tree of size 4",
        },
        Case {
            name: "proof: an inclusion hash that is not base64",
            setup: |fx| {
                let mut p = fx.proof();
                p["inclusion"][0] = json!("***");
                fx.proof_with("r/hash.json", &p)
            },
            status: REFUSED,
            says: "proof does not verify: not a proof bundle: hash 0 (\"***\") is not a base64 SHA-256 hash",
        },
        Case {
            name: "proof: the entry moved to another index",
            setup: |fx| { let mut p = fx.proof(); p["index"] = json!(3); fx.proof_with("r/index.json", &p) },
            status: REFUSED,
            says: "proof does not verify: entry 3 is not in the tree of size 4",
        },
        Case {
            name: "proof: the checkpoint's size changed",
            setup: |fx| {
                let mut p = fx.proof();
                p["checkpoint"] = json!(p["checkpoint"].as_str().expect("note").replacen("\n4\n", "\n5\n", 1));
                fx.proof_with("r/checkpoint.json", &p)
            },
            status: REFUSED,
            says: "checkpoint 5 is not signed by the audit key",
        },

        // ---- certificates (mTLS, `vauban pki`) ----
        // What a scheduler does with a bad certificate on a connection (another CA, expired,
        // revoked, no identity, the wrong role, a node id it does not name) is tested over real
        // connections in `tls.rs`, and 18 certificate parses in `identity.rs`'s table; these
        // are the operator's own inputs to `vauban pki`.
        Case {
            name: "certificate: not PEM",
            setup: |fx| {
                fx.write("bad.pem", "garbage\n");
                args(&["pki", "show", "bad.pem"])
            },
            status: REFUSED,
            says: "reading bad.pem: no certificate in the PEM input",
        },
        Case {
            name: "certificate: truncated PEM",
            setup: |fx| {
                let cert = fx.pki_cert();
                fx.write("trunc.pem", &cert[..cert.len() / 4]);
                args(&["pki", "show", "trunc.pem"])
            },
            status: REFUSED,
            says: "malformed certificate PEM: a block has no \"-----END CERTIFICATE-----\" line (truncated?)",
        },
        Case {
            name: "certificate: a private key given as a certificate",
            setup: |fx| {
                fx.pki_cert();
                args(&["pki", "show", "pki/n1.key"])
            },
            status: REFUSED,
            says: "reading pki/n1.key: no certificate in the PEM input",
        },
        Case {
            name: "certificate: revoking one that another CA issued",
            setup: |fx| {
                fx.pki_cert();
                ok(&fx.ws, &["pki", "init", "--out", "other", "--force"]);
                ok(&fx.ws, &["pki", "issue", "--ca", "other", "--role", "host", "--name", "n2", "--out", "other/n2", "--force"]);
                args(&["pki", "revoke", "--ca", "pki", "--cert", "other/n2.pem"])
            },
            status: REFUSED,
            says: "this certificate was not issued by the CA in pki",
        },
        Case {
            name: "certificate: a node id outside SPIFFE's characters",
            setup: |fx| {
                fx.pki_cert();
                args(&["pki", "issue", "--ca", "pki", "--role", "host", "--name", "a/b", "--out", "x"])
            },
            status: REFUSED,
            says: "invalid name \"a/b\" for a host certificate",
        },
        Case {
            name: "certificate: an unknown role",
            setup: |fx| {
                fx.pki_cert();
                args(&["pki", "issue", "--ca", "pki", "--role", "wizard", "--name", "a", "--out", "x"])
            },
            status: 2,
            says: "unknown role \"wizard\"",
        },
        Case {
            name: "certificate: outliving its CA",
            setup: |fx| {
                fx.pki_cert();
                args(&["pki", "issue", "--ca", "pki", "--role", "host", "--name", "a", "--valid-for", "20y", "--out", "x"])
            },
            status: REFUSED,
            says: "the certificate would outlive its CA",
        },
        Case {
            name: "certificate: a CA that does not exist",
            setup: |_| args(&["pki", "issue", "--ca", "nowhere", "--role", "host", "--name", "a", "--out", "x"]),
            status: REFUSED,
            says: "create a CA with `vauban pki init --out nowhere`",
        },
        Case {
            name: "certificate: a new CA over an existing one",
            setup: |fx| {
                fx.pki_cert();
                args(&["pki", "init", "--out", "pki"])
            },
            status: REFUSED,
            says: "(use --force to overwrite)",
        },
    ]
}

#[test]
fn bad_inputs_to_the_chain_of_trust_are_refused_with_their_reason() {
    let fx = Fixture::new();
    let cases = cases();
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "two cases named {:?}", case.name);
    }
    let refused = cases.iter().filter(|c| c.status != OK).count();
    let controls = cases
        .iter()
        .filter(|c| c.name.starts_with("control:"))
        .count();
    assert!(refused >= 30, "the table holds only {refused} bad inputs");
    assert!(controls >= 1, "the table needs a control that passes");

    let mut failures = Vec::new();
    for case in &cases {
        let command = (case.setup)(&fx);
        let argv: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = fx.ws.vauban(&argv);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let expected = fx.expand(case.says);
        let shown = if case.status == OK { &stdout } else { &stderr };
        let status = code(&out);
        // Exactly once: a message must not be repeated by its own error chain.
        if status != case.status || shown.matches(expected.as_str()).count() != 1 {
            failures.push(format!(
                "{}\n  vauban {}\n  expected status {} and {:?}\n  got status {status}\n  stdout: {}\n  stderr: {}",
                case.name,
                command.join(" "),
                case.status,
                expected,
                stdout.trim_end(),
                stderr.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    // Nothing a case did touched the fixture's own files: the controls still pass.
    for control in cases.iter().filter(|c| c.name.starts_with("control:")) {
        let command = (control.setup)(&fx);
        let argv: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = fx.ws.vauban(&argv);
        assert_eq!(
            code(&out),
            OK,
            "{} (again): {}",
            control.name,
            text(&out.stderr)
        );
    }
}
