//! Chain of trust end to end: keys with roles, a policy signed 2-of-3 by root keys, a grant that
//! needs two authorizers, and a tampered grant refused.

use crate::support::{Workspace, code, text};

fn ok(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.vauban(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn refused(ws: &Workspace, args: &[&str], expected: &str) {
    let out = ws.vauban(args);
    assert_eq!(
        code(&out),
        125,
        "{args:?} should fail: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr:?}"
    );
}

/// Generates a key with a role in `keys/NAME` and returns its `[[keys]]` policy entry.
fn key(ws: &Workspace, name: &str, role: &str) -> String {
    let out = ok(
        ws,
        &[
            "key",
            "generate",
            "--out",
            &format!("keys/{name}"),
            "--role",
            role,
        ],
    );
    assert!(out.contains(&format!("role:        {role}")), "{out}");
    let entry = out
        .split("# trust policy entry:\n")
        .nth(1)
        .expect("policy entry");
    entry.to_owned()
}

#[test]
fn a_grant_needs_the_policys_authorizers_under_a_root_signed_policy() {
    let ws = Workspace::new();
    let mut policy = String::from("version = 1\n");
    for (name, role) in [
        ("root1", "root"),
        ("root2", "root"),
        ("root3", "root"),
        ("pub", "publisher"),
        ("auth1", "authorizer"),
        ("auth2", "authorizer"),
    ] {
        policy += &key(&ws, name, role);
    }
    policy += "[thresholds]\nroot = 2\npublisher = 1\nauthorizer = 2\n\
               [[node_classes]]\nname = \"eu\"\nmatch = { jurisdiction = \"eu\" }\n";
    std::fs::write(ws.path("policy.toml"), &policy).expect("write policy");
    std::fs::create_dir(ws.path("roots")).expect("roots");
    for name in ["root1", "root2", "root3"] {
        std::fs::copy(
            ws.path(&format!("keys/{name}.pub")),
            ws.path(&format!("roots/{name}.pub")),
        )
        .expect("pin root");
    }

    // The policy: one root signature is not enough, two are.
    ok(
        &ws,
        &["policy", "sign", "--key", "keys/root1.key", "policy.toml"],
    );
    refused(
        &ws,
        &["policy", "verify", "--roots", "roots", "policy.toml"],
        "policy has 1 valid root signature(s), it needs 2",
    );
    ok(
        &ws,
        &["policy", "sign", "--key", "keys/root1.key", "policy.toml"],
    );
    refused(
        &ws,
        &["policy", "verify", "--roots", "roots", "policy.toml"],
        "it needs 2",
    );
    ok(
        &ws,
        &["policy", "sign", "--key", "keys/root2.key", "policy.toml"],
    );
    let verified = ok(
        &ws,
        &["policy", "verify", "--roots", "roots", "policy.toml"],
    );
    assert!(verified.contains("policy version 1: valid"), "{verified}");
    let shown = ok(&ws, &["policy", "show", "--roots", "roots", "policy.toml"]);
    assert!(
        shown.contains("authorizer 2") && shown.contains("eu (match jurisdiction=eu)"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &ws,
        &[
            "policy",
            "show",
            "--roots",
            "roots",
            "--output",
            "json",
            "policy.toml",
        ],
    ))
    .expect("json");
    assert_eq!(json["version"], 1);
    assert_eq!(json["keys"].as_array().map(Vec::len), Some(6));

    // The grant: one authorizer is not enough, two are.
    let module = ws.path("job.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0\x01\x01\x00").expect("module");
    ok(
        &ws,
        &[
            "grant",
            "create",
            "--module",
            "job.wasm",
            "--dir",
            "/srv/in:/in:ro",
            "--env",
            "LANG",
            "--network",
            "10.0.0.1:443",
            "--memory",
            "64MiB",
            "--fuel",
            "1000",
            "--timeout",
            "30s",
            "--node-class",
            "eu",
            "--valid-for",
            "30d",
            "--id",
            "g-1",
            "-o",
            "grant.json",
        ],
    );
    let verify = [
        "grant",
        "verify",
        "--policy",
        "policy.toml",
        "--roots",
        "roots",
        "--module",
        "job.wasm",
        "grant.json",
    ];
    refused(
        &ws,
        &verify,
        "grant g-1 has 0 valid authorizer signature(s), the policy needs 2",
    );
    ok(
        &ws,
        &["grant", "sign", "--key", "keys/auth1.key", "grant.json"],
    );
    refused(
        &ws,
        &verify,
        "grant g-1 has 1 valid authorizer signature(s), the policy needs 2",
    );
    ok(
        &ws,
        &["grant", "sign", "--key", "keys/pub.key", "grant.json"],
    );
    refused(&ws, &verify, "does not hold the authorizer role");
    ok(
        &ws,
        &["grant", "sign", "--key", "keys/auth2.key", "grant.json"],
    );
    let valid = ok(&ws, &verify);
    assert!(
        valid.contains("grant g-1: valid under policy version 1"),
        "{valid}"
    );
    assert!(
        valid.contains("/srv/in -> /in Ro") && valid.contains("10.0.0.1:443"),
        "{valid}"
    );

    // Another module is not covered.
    std::fs::write(ws.path("other.wasm"), b"\0asm\x01\0\0\0").expect("module");
    let mut other = verify;
    other[7] = "other.wasm";
    refused(&ws, &other, "not for this module");

    // A tampered grant (a wider memory ceiling in the payload) is refused.
    let json = std::fs::read_to_string(ws.path("grant.json")).expect("grant");
    let mut envelope: serde_json::Value = serde_json::from_str(&json).expect("json");
    let payload = envelope["payload"].as_str().expect("payload").to_owned();
    let decoded = String::from_utf8(base64_decode(&payload)).expect("utf8");
    let wider = decoded.replace("\"memory_bytes\":67108864", "\"memory_bytes\":1073741824");
    assert_ne!(wider, decoded);
    envelope["payload"] = base64_encode(wider.as_bytes()).into();
    std::fs::write(ws.path("grant.json"), envelope.to_string()).expect("tamper");
    refused(&ws, &verify, "signature does not verify");

    // An edited policy no longer matches its signatures.
    std::fs::write(
        ws.path("policy.toml"),
        policy.replace("authorizer = 2", "authorizer = 1"),
    )
    .expect("edit");
    refused(
        &ws,
        &["policy", "verify", "--roots", "roots", "policy.toml"],
        "changed after signing",
    );
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, for the test only (the CLI's dev-dependencies have no base64 crate).
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let digits: Vec<u32> = text
        .bytes()
        .filter(|&c| c != b'=')
        .map(|c| ALPHABET.iter().position(|&a| a == c).expect("base64") as u32)
        .collect();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0, |n, (i, d)| n | d << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
