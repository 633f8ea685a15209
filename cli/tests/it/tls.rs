//! Mutual TLS end to end: a real `vauban scheduler` serving mTLS with the workspace PKI, real
//! `vauban host` processes and CLI commands holding certificates from it, and peers whose
//! certificates are wrong in each way that matters.
//!
//! Refusals are observed where they happen: the scheduler's and hosts' logs (their stderr, in
//! files) say why, and `ListNodes` says that no refused host became a node. Each test waits for
//! a good host to register as a sync point, never for a fixed time.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use vauban_proto::v1::{self, nodes_client::NodesClient};

use crate::cluster::Process;
use crate::support::{Workspace, code, connect, text};

/// How long a test waits for something that should happen in well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

/// A process whose stderr goes to a file in the workspace.
struct Logged {
    process: Process,
    log: PathBuf,
}

impl Logged {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, and returns the log.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{} never logged {needle:?}; it logged:\n{log}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `vauban scheduler` serving mutual TLS with the workspace PKI (CRL included), on a free port.
fn scheduler(ws: &Workspace) -> (Logged, String) {
    let log = ws.path("scheduler.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args([
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "sched",
        ])
        .args([
            "--trust",
            "trust",
            "--heartbeat",
            "200ms",
            "--down-after",
            "10s",
        ])
        .args(ws.scheduler_tls_args())
        .current_dir(ws.dir.path())
        .env_remove("VAUBAN_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start scheduler");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    assert!(addr.starts_with("https://127.0.0.1:"), "{line}");
    let scheduler = Logged {
        process: Process(child),
        log,
    };
    (scheduler, addr)
}

/// `vauban host` as `node`, dialing `addr` with `tls` flags.
fn host(ws: &Workspace, addr: &str, node: &str, tls: &[String]) -> Logged {
    let log = ws.path(&format!("host-{node}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args([
            "host",
            "--scheduler",
            addr,
            "--node-id",
            node,
            "--trust",
            "trust",
        ])
        .args(["--data-dir", &format!("hosts/{node}")])
        .args(tls)
        .current_dir(ws.dir.path())
        .env_remove("VAUBAN_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start host");
    Logged {
        process: Process(child),
        log,
    }
}

/// The ids of the nodes the scheduler knows, as the operator sees them.
async fn nodes(ws: &Workspace, addr: &str) -> BTreeSet<String> {
    node_states(ws, addr)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Each node's state, as the operator sees it.
async fn node_states(ws: &Workspace, addr: &str) -> Vec<(String, i32)> {
    let channel = connect(addr, Some(&ws.client_tls("operator")))
        .await
        .expect("operator connects");
    NodesClient::new(channel)
        .list_nodes(v1::ListNodesRequest {})
        .await
        .expect("operator lists nodes")
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| (n.id, n.state))
        .collect()
}

/// Waits until the scheduler knows exactly `expected`.
async fn wait_for_nodes(ws: &Workspace, addr: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let known = nodes(ws, addr).await;
        if known == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {known:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A certificate for `uri` from the workspace CA, valid from `from` to `to` (offsets from now),
/// written as `PREFIX.pem` and `PREFIX.key`: what `vauban pki issue` refuses to make, such as
/// one that has already expired.
fn forge(
    ws: &Workspace,
    uri: Option<&str>,
    from: time::Duration,
    to: time::Duration,
    prefix: &str,
) {
    ws.pki();
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(ws.path("pki/ca.key")).expect("read CA key"))
            .expect("CA key");
    let ca_pem = std::fs::read_to_string(ws.path("pki/ca.pem")).expect("read CA");
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + from;
    params.not_after = now + to;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = uri
        .map(|u| SanType::URI(u.try_into().expect("uri")))
        .into_iter()
        .collect();
    let cert = params.signed_by(&key, &issuer).expect("sign");
    std::fs::write(ws.path(&format!("{prefix}.pem")), cert.pem()).expect("write cert");
    std::fs::write(ws.path(&format!("{prefix}.key")), key.serialize_pem()).expect("write key");
}

/// A good host registers: the sync point after which a refused host would have shown up.
async fn a_good_host(ws: &Workspace, addr: &str) -> Logged {
    let good = host(ws, addr, "good", &ws.host_tls_args("good"));
    wait_for_nodes(ws, addr, &["good"]).await;
    good
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_a_certificate_from_another_ca_cannot_connect() {
    let ws = Workspace::new();
    let (scheduler, addr) = scheduler(&ws);
    ws.vauban_ok(&["pki", "init", "--out", "other-ca"]);
    ws.vauban_ok(&[
        "pki",
        "issue",
        "--ca",
        "other-ca",
        "--role",
        "host",
        "--name",
        "stranger",
        "--out",
        "other-ca/stranger",
    ]);
    // It trusts the scheduler's CA, but its own certificate is from another CA.
    let tls = [
        "--ca",
        "pki/ca.pem",
        "--cert",
        "other-ca/stranger.pem",
        "--key",
        "other-ca/stranger.key",
    ]
    .map(str::to_owned);
    let mut stranger = host(&ws, &addr, "stranger", &tls);
    scheduler.wait_for("the certificate is not issued by the trusted CA");
    stranger.wait_for("no connection to the scheduler");
    let _good = a_good_host(&ws, &addr).await;
    assert_eq!(nodes(&ws, &addr).await, BTreeSet::from(["good".to_owned()]));
    // Still trying, still refused, and the scheduler still serves.
    let exited = stranger.process.0.try_wait().expect("try_wait");
    assert!(exited.is_none(), "{exited:?}: {}", stranger.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_a_revoked_certificate_cannot_connect() {
    let ws = Workspace::new();
    let revoked = ws.host_tls_args("revoked");
    let out = ws.vauban_ok(&[
        "pki",
        "revoke",
        "--ca",
        "pki",
        "--cert",
        "pki/host-revoked.pem",
    ]);
    assert!(
        text(&out.stdout).contains("spiffe://vauban.local/host/revoked"),
        "{}",
        text(&out.stdout)
    );
    let again = ws.vauban_ok(&[
        "pki",
        "revoke",
        "--ca",
        "pki",
        "--cert",
        "pki/host-revoked.pem",
    ]);
    assert!(
        text(&again.stdout).contains("already revoked"),
        "{}",
        text(&again.stdout)
    );
    // The scheduler reads the revocation list at start.
    let (scheduler, addr) = scheduler(&ws);
    let host = host(&ws, &addr, "revoked", &revoked);
    scheduler.wait_for("the certificate is revoked");
    host.wait_for("no connection to the scheduler");
    let _good = a_good_host(&ws, &addr).await;
    assert_eq!(nodes(&ws, &addr).await, BTreeSet::from(["good".to_owned()]));
}

/// Sends SIGHUP to a process.
fn hang_up(process: &Process) {
    let status = Command::new("kill")
        .args(["-HUP", &process.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "{status:?}");
}

/// A certificate revoked while its host is connected: nothing changes until the scheduler is
/// told to read its revocation list again (SIGHUP), which then closes that host's connection
/// and refuses its reconnections, while other peers go on. A list that cannot be used is
/// refused, and the one in force stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_reloaded_on_sighup_disconnects_a_connected_host() {
    let ws = Workspace::new();
    let edge = ws.host_tls_args("edge");
    let (scheduler, addr) = scheduler(&ws);
    let _edge = host(&ws, &addr, "edge", &edge);
    let _good = host(&ws, &addr, "good", &ws.host_tls_args("good"));
    wait_for_nodes(&ws, &addr, &["edge", "good"]).await;
    let ready = v1::NodeState::Ready as i32;
    let down = v1::NodeState::Down as i32;

    ws.vauban_ok(&[
        "pki",
        "revoke",
        "--ca",
        "pki",
        "--cert",
        "pki/host-edge.pem",
    ]);
    let states = node_states(&ws, &addr).await;
    assert_eq!(
        states,
        [("edge".to_owned(), ready), ("good".to_owned(), ready)],
        "the scheduler has not read the list again yet"
    );
    hang_up(&scheduler.process);
    let log = scheduler.wait_for("closing a connection its certificate no longer admits");
    assert!(log.contains("the certificate is revoked"), "{log}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let states = node_states(&ws, &addr).await;
        if states == [("edge".to_owned(), down), ("good".to_owned(), ready)] {
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An unusable list: refused, logged, and the scheduler goes on with the one in force.
    std::fs::write(ws.path("pki/crl.pem"), "not a list").expect("write");
    hang_up(&scheduler.process);
    scheduler.wait_for("cannot reload the certificate revocation list");
    let states = node_states(&ws, &addr).await;
    assert_eq!(
        states,
        [("edge".to_owned(), down), ("good".to_owned(), ready)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_an_expired_certificate_cannot_connect() {
    let ws = Workspace::new();
    forge(
        &ws,
        Some("spiffe://vauban.local/host/old"),
        time::Duration::days(-30),
        time::Duration::days(-1),
        "pki/host-old",
    );
    let (scheduler, addr) = scheduler(&ws);
    let old = host(&ws, &addr, "old", &ws.tls_args("pki/host-old"));
    scheduler.wait_for("the certificate has expired (not after ");
    old.wait_for("no connection to the scheduler");
    let _good = a_good_host(&ws, &addr).await;
    assert_eq!(nodes(&ws, &addr).await, BTreeSet::from(["good".to_owned()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_registers_only_as_the_node_its_certificate_names() {
    let ws = Workspace::new();
    let (_scheduler, addr) = scheduler(&ws);
    // A certificate for node a, and a host that says it is b.
    let impostor = host(&ws, &addr, "b", &ws.host_tls_args("a"));
    impostor.wait_for("this host's certificate is for node a; it cannot register as node b");
    let _good = a_good_host(&ws, &addr).await;
    assert_eq!(nodes(&ws, &addr).await, BTreeSet::from(["good".to_owned()]));

    // Without --node-id, the host takes its certificate's node id and is let in.
    let child = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args(["host", "--scheduler", &addr, "--trust", "trust"])
        .args(["--data-dir", "hosts/a"])
        .args(ws.host_tls_args("a"))
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start host");
    let _a = Process(child);
    wait_for_nodes(&ws, &addr, &["a", "good"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitter_cannot_drain_a_node_while_an_operator_can() {
    let ws = Workspace::new();
    let (_scheduler, addr) = scheduler(&ws);
    let _good = a_good_host(&ws, &addr).await;
    let as_role = |role: &str, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--addr".to_owned(), addr.clone()]);
        all.extend(ws.tls_args(&format!("pki/{role}")));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        ws.vauban(&all)
    };

    let out = as_role("submitter", &["node", "drain", "good"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "draining a node needs the operator role; this client is a submitter (PermissionDenied)"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = as_role("auditor", &["node", "eligibility", "good", "ineligible"]);
    assert!(
        text(&out.stderr).contains(
            "setting a node's eligibility needs the operator role; this client is an auditor"
        ),
        "{}",
        text(&out.stderr)
    );
    // A host's certificate is no client's.
    let out = as_role("host-good", &["node", "list"]);
    assert!(
        text(&out.stderr).contains(
            "listing nodes needs the submitter, operator or auditor role; this client is a host"
        ),
        "{}",
        text(&out.stderr)
    );
    // An auditor reads.
    let out = as_role("auditor", &["node", "list"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("good"), "{}", text(&out.stdout));
    let out = as_role("auditor", &["job", "list"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));

    let out = as_role("operator", &["node", "drain", "good"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = as_role("submitter", &["node", "show", "good", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(node["state"], "draining", "{node}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_a_usable_certificate_is_refused() {
    let ws = Workspace::new();
    let (scheduler, addr) = scheduler(&ws);
    let list = |channel| async move {
        NodesClient::new(channel)
            .list_nodes(v1::ListNodesRequest {})
            .await
    };

    // No certificate at all: the handshake fails (at connect, or at the first call).
    let ca = std::fs::read(ws.path("pki/ca.pem")).expect("ca");
    let anonymous = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    match connect(&addr, Some(&anonymous)).await {
        Ok(channel) => {
            let refused = list(channel).await.expect_err("no certificate");
            assert_ne!(refused.code(), tonic::Code::Ok);
        }
        Err(_refused) => {}
    }
    scheduler.wait_for("the client presented no certificate");

    // Plaintext against a TLS scheduler.
    let plain = addr.replacen("https://", "http://", 1);
    let out = ws.vauban(&["node", "list", "--insecure", "--addr", &plain]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--insecure: talking to the scheduler in plaintext"),
        "the insecure client warns: {}",
        text(&out.stderr)
    );

    // A certificate from the CA that names no one: the connection is up, every call refused.
    forge(
        &ws,
        None,
        time::Duration::days(-1),
        time::Duration::days(1),
        "pki/nobody",
    );
    let channel = connect(&addr, Some(&ws.client_tls("nobody")))
        .await
        .expect("the handshake succeeds");
    let refused = list(channel).await.expect_err("no identity");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused
            .message()
            .contains("the certificate has no spiffe:// URI SAN"),
        "{refused:?}"
    );

    // An expired client certificate.
    forge(
        &ws,
        Some("spiffe://vauban.local/client/operator/old"),
        time::Duration::days(-30),
        time::Duration::days(-1),
        "pki/old-operator",
    );
    let mut expired = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    expired = expired.identity(Identity::from_pem(
        std::fs::read(ws.path("pki/old-operator.pem")).expect("cert"),
        std::fs::read(ws.path("pki/old-operator.key")).expect("key"),
    ));
    if let Ok(channel) = connect(&addr, Some(&expired)).await {
        list(channel).await.expect_err("expired");
    }
    scheduler.wait_for("the certificate has expired");

    // None of it took the scheduler down.
    assert!(nodes(&ws, &addr).await.is_empty());
}

#[test]
fn the_scheduler_and_hosts_refuse_to_start_without_tls_or_insecure() {
    let ws = Workspace::new();
    let out = ws.vauban(&["scheduler", "--listen", "127.0.0.1:0", "--trust", "trust"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr)
            .contains("no TLS certificate: pass --tls-cert, --tls-key and --client-ca"),
        "{}",
        text(&out.stderr)
    );
    let out = ws.vauban(&["host", "--node-id", "a", "--trust", "trust"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("no TLS certificate: pass --ca, --cert and --key"),
        "{}",
        text(&out.stderr)
    );
    let out = ws.vauban(&["node", "list"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("no client certificate: pass --ca, --cert and --key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pki_show_names_the_identity_role_and_validity() {
    let ws = Workspace::new();
    ws.pki();
    let out = ws.vauban_ok(&["pki", "show", "pki/scheduler.pem", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["identity"], "spiffe://vauban.local/scheduler/main");
    assert_eq!(shown["role"], "scheduler");
    assert_eq!(shown["status"], "valid");
    assert_eq!(shown["dns"], serde_json::json!(["localhost"]));
    assert_eq!(shown["ips"], serde_json::json!(["127.0.0.1"]));
    let out = ws.vauban_ok(&["pki", "show", "pki/submitter.pem"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("identity:     spiffe://vauban.local/client/submitter/tester"),
        "{table}"
    );
    assert!(table.contains("role:         submitter"), "{table}");
    assert!(table.contains("serial:"), "{table}");
    let out = ws.vauban_ok(&["pki", "show", "pki/ca.pem"]);
    assert!(
        text(&out.stdout).contains("role:         ca"),
        "{}",
        text(&out.stdout)
    );

    // The CA key is the owner's alone, and so are the keys it issues.
    use std::os::unix::fs::PermissionsExt as _;
    for key in ["pki/ca.key", "pki/operator.key"] {
        let mode = std::fs::metadata(ws.path(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // Names outside SPIFFE's characters are refused before anything is written.
    let out = ws.vauban(&[
        "pki", "issue", "--ca", "pki", "--role", "host", "--name", "a/b", "--out", "pki/x",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("invalid name \"a/b\""),
        "{}",
        text(&out.stderr)
    );
    assert!(!ws.path("pki/x.pem").exists());
}
