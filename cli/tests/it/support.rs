//! Test support: a scratch workspace with a publisher key, a PKI for mutual TLS, and the real
//! `vauban` binary.

use std::path::PathBuf;
use std::process::{Command, Output};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vauban_tests::{Target, sample_path};

/// A scratch directory with a publisher key pair and a trust directory holding its public key.
pub(crate) struct Workspace {
    pub(crate) dir: tempfile::TempDir,
}

/// The client roles the workspace PKI issues a certificate for, under `pki/<role>.pem`.
pub(crate) const CLIENT_ROLES: [&str; 3] = ["operator", "submitter", "auditor"];

impl Workspace {
    pub(crate) fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let out = ws.vauban(&["key", "generate", "--out", "trust/publisher"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ws
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs vauban in the workspace, with a cache of its own and an otherwise clean environment.
    /// Once the workspace has a PKI ([`Workspace::pki`]), client commands authenticate as its
    /// operator (`VAUBAN_CA`, `VAUBAN_CERT`, `VAUBAN_KEY`).
    pub(crate) fn vauban(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vauban"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("VAUBAN_CACHE", self.path("cache"))
            .env_remove("VAUBAN_TRUST")
            .env_remove("VAUBAN_DEV_DIR");
        if self.path("pki/operator.pem").exists() {
            cmd.env("VAUBAN_CA", self.path("pki/ca.pem"))
                .env("VAUBAN_CERT", self.path("pki/operator.pem"))
                .env("VAUBAN_KEY", self.path("pki/operator.key"));
        } else {
            cmd.env_remove("VAUBAN_CA")
                .env_remove("VAUBAN_CERT")
                .env_remove("VAUBAN_KEY");
        }
        cmd.output().expect("run vauban")
    }

    /// Runs vauban and asserts that it succeeded.
    pub(crate) fn vauban_ok(&self, args: &[&str]) -> Output {
        let out = self.vauban(args);
        assert_eq!(
            code(&out),
            0,
            "vauban {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Copies a sample into the workspace and signs it with the workspace key.
    pub(crate) fn signed_sample(&self, name: &str, target: Target) -> String {
        let file = format!("{name}-{}.wasm", target.triple());
        std::fs::copy(sample_path(name, target), self.path(&file)).expect("copy sample");
        let out = self.vauban(&["sign", "--key", "trust/publisher.key", &file]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        file
    }

    /// The workspace's PKI, made on first use with `vauban pki`: a CA in `pki/` (`ca.pem`,
    /// `ca.key`, `crl.pem`), the scheduler's certificate `pki/scheduler.pem`, and one client
    /// certificate per role in [`CLIENT_ROLES`]. Host certificates come from
    /// [`Workspace::host_tls_args`].
    pub(crate) fn pki(&self) {
        if self.path("pki/operator.pem").exists() {
            return;
        }
        self.vauban_ok(&["pki", "init", "--out", "pki"]);
        self.issue("scheduler", "main", "pki/scheduler");
        for role in CLIENT_ROLES {
            self.issue(role, "tester", &format!("pki/{role}"));
        }
    }

    /// `vauban pki issue` from the workspace CA; writes `PREFIX.pem` and `PREFIX.key`.
    pub(crate) fn issue(&self, role: &str, name: &str, prefix: &str) {
        self.vauban_ok(&[
            "pki", "issue", "--ca", "pki", "--role", role, "--name", name, "--out", prefix,
        ]);
    }

    /// `vauban scheduler` flags serving mutual TLS with the workspace PKI and its revocation
    /// list.
    pub(crate) fn scheduler_tls_args(&self) -> Vec<String> {
        self.pki();
        [
            "--tls-cert",
            "pki/scheduler.pem",
            "--tls-key",
            "pki/scheduler.key",
            "--client-ca",
            "pki/ca.pem",
            "--crl",
            "pki/crl.pem",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `vauban host` flags dialing with a certificate for `node`, issued on first use as
    /// `pki/host-<node>.pem`.
    pub(crate) fn host_tls_args(&self, node: &str) -> Vec<String> {
        self.pki();
        let prefix = format!("pki/host-{node}");
        if !self.path(&format!("{prefix}.pem")).exists() {
            self.issue("host", node, &prefix);
        }
        self.tls_args(&prefix)
    }

    /// `--ca pki/ca.pem --cert PREFIX.pem --key PREFIX.key`.
    pub(crate) fn tls_args(&self, prefix: &str) -> Vec<String> {
        vec![
            "--ca".to_owned(),
            "pki/ca.pem".to_owned(),
            "--cert".to_owned(),
            format!("{prefix}.pem"),
            "--key".to_owned(),
            format!("{prefix}.key"),
        ]
    }

    /// tonic's client TLS with the certificate `pki/<name>.pem` (a role in [`CLIENT_ROLES`],
    /// or any certificate issued there).
    pub(crate) fn client_tls(&self, name: &str) -> ClientTlsConfig {
        self.pki();
        let read = |rel: &str| std::fs::read(self.path(rel)).expect("read pki file");
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("pki/ca.pem")))
            .identity(Identity::from_pem(
                read(&format!("pki/{name}.pem")),
                read(&format!("pki/{name}.key")),
            ))
    }
}

/// An endpoint for `addr` (`https://` with `tls`, else `http://`).
pub(crate) fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> Endpoint {
    let endpoint = Endpoint::from_shared(addr.to_owned()).expect("uri");
    match tls {
        Some(tls) => endpoint.tls_config(tls.clone()).expect("tls config"),
        None => endpoint,
    }
}

/// Connects to `addr`, with `tls` if given.
pub(crate) async fn connect(
    addr: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    endpoint(addr, tls).connect().await
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}
