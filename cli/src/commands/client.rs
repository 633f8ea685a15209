//! What the commands that talk to a scheduler share: the address, the output format, the
//! connection (mutual TLS by default), and how jobs, nodes and modules are shown.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vauban_core::Outcome;
use vauban_proto::v1;

/// Where `vauban dev` keeps its state unless told otherwise (its `--data-dir` default).
pub(crate) const DEV_DIR: &str = ".vauban/dev";

/// Where the scheduler is, who this client is, and how to print what it says.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The scheduler's gRPC address (`--scheduler` is an alias, as `vauban host` spells it).
    /// Without a scheme, https:// (or http:// with --insecure).
    #[arg(
        long,
        visible_alias = "scheduler",
        env = "VAUBAN_ADDR",
        default_value = "127.0.0.1:7070"
    )]
    pub(crate) addr: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// The CA the scheduler's certificate must chain to (PEM). Default, with --cert and --key
    /// also unset: `vauban dev`'s, `.vauban/dev/pki/` (or `$VAUBAN_DEV_DIR/pki/`), as operator.
    #[arg(long, env = "VAUBAN_CA", value_name = "PEM")]
    pub(crate) ca: Option<PathBuf>,
    /// This client's certificate (PEM), from `vauban pki issue --role submitter|operator|auditor`.
    #[arg(long, env = "VAUBAN_CERT", value_name = "PEM")]
    pub(crate) cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "VAUBAN_KEY", value_name = "PEM")]
    pub(crate) key: Option<PathBuf>,
    /// Talk to a plaintext scheduler (`vauban scheduler --insecure`): no identity, no
    /// encryption; --ca, --cert and --key are then ignored. Logs a warning.
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable tables.
    Table,
    /// JSON, one document per command, for scripts.
    Json,
}

/// A client's certificate, key and CA, as files.
#[derive(Debug)]
pub(crate) struct TlsFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl TlsFiles {
    /// Reads the three files into tonic's client TLS configuration.
    pub(crate) fn client_config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca, "CA certificate")?))
            .identity(Identity::from_pem(
                read(&self.cert, "client certificate")?,
                read(&self.key, "client key")?,
            )))
    }

    /// `vauban dev`'s operator certificate, if `vauban dev` made one under `dev_dir`.
    pub(crate) fn dev_operator(dev_dir: &Path) -> Option<Self> {
        let pki = dev_dir.join("pki");
        let files = Self {
            ca: pki.join("ca.pem"),
            cert: pki.join("operator.pem"),
            key: pki.join("operator.key"),
        };
        files.cert.exists().then_some(files)
    }
}

/// `vauban dev`'s data directory as clients find it: `$VAUBAN_DEV_DIR`, else `.vauban/dev`.
pub(crate) fn dev_dir() -> PathBuf {
    std::env::var_os("VAUBAN_DEV_DIR").map_or_else(|| PathBuf::from(DEV_DIR), PathBuf::from)
}

/// The client's TLS files from `--ca`, `--cert` and `--key`, all or none; with none, those of
/// `vauban dev`'s operator when they exist. `None` with `insecure`.
///
/// # Errors
/// When only some of the three are given, or none and there is no `vauban dev` certificate.
pub(crate) fn tls_files(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    insecure: bool,
) -> anyhow::Result<Option<TlsFiles>> {
    if insecure {
        return Ok(None);
    }
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
            ca: ca.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })),
        (None, None, None) => match TlsFiles::dev_operator(&dev_dir()) {
            Some(files) => Ok(Some(files)),
            None => bail!(
                "no client certificate: pass --ca, --cert and --key (or set VAUBAN_CA, \
                 VAUBAN_CERT and VAUBAN_KEY; `vauban pki issue` makes them), run where \
                 `vauban dev` keeps {}/pki, or pass --insecure for a plaintext scheduler",
                dev_dir().display()
            ),
        },
        _ => bail!(
            "mutual TLS needs all three of --ca, --cert and --key (VAUBAN_CA, VAUBAN_CERT, \
             VAUBAN_KEY); only {} given",
            [("--ca", ca), ("--cert", cert), ("--key", key)]
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    }
}

/// `address` with the scheme of the transport: `https://` with TLS, `http://` without. An
/// explicit scheme must match, since tonic would otherwise dial `http://` in plaintext even
/// with a certificate configured.
///
/// # Errors
/// When the scheme contradicts the transport.
pub(crate) fn scheduler_uri(address: &str, tls: bool) -> anyhow::Result<String> {
    let scheme = if tls { "https" } else { "http" };
    match address.split_once("://") {
        None => Ok(format!("{scheme}://{address}")),
        Some((given, _)) if given == scheme => Ok(address.to_owned()),
        Some(_) if tls => bail!(
            "the scheduler address {address} is not https:// but a client certificate is in use: \
             use https://, or --insecure for a plaintext scheduler"
        ),
        Some(_) => bail!(
            "the scheduler address {address} is not http:// but --insecure was given: use \
             http:// for a plaintext scheduler, or drop --insecure"
        ),
    }
}

impl ClientArgs {
    /// Connects to the scheduler: mutual TLS with this client's certificate, or plaintext with
    /// `--insecure` (and a warning).
    pub(crate) async fn connect(&self) -> anyhow::Result<Channel> {
        let tls = tls_files(
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
            self.insecure,
        )?;
        if tls.is_none() {
            tracing::warn!(
                "--insecure: talking to the scheduler in plaintext, with no identity; anyone on \
                 the network can read and change what is sent"
            );
        }
        let addr = scheduler_uri(&self.addr, tls.is_some())?;
        let mut endpoint = Endpoint::from_shared(addr.clone())
            .with_context(|| format!("invalid scheduler address {addr:?}"))?
            .connect_timeout(Duration::from_secs(5));
        if let Some(files) = &tls {
            endpoint = endpoint
                .tls_config(files.client_config()?)
                .with_context(|| {
                    format!(
                        "cannot use the client certificate {} with key {} and CA {}",
                        files.cert.display(),
                        files.key.display(),
                        files.ca.display()
                    )
                })?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the scheduler at {addr}"))
    }
}

/// A gRPC error as the user should read it: the scheduler's message, not the transport's dump.
/// A failure below gRPC (the connection, the TLS handshake) carries its causes, and a TLS alert
/// says where to look.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    let mut message = e.message().to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = format!("{message}: {cause_text}");
        }
        source = cause.source();
    }
    if message.contains("fatal alert") {
        message.push_str(
            " (the scheduler refused this client's TLS certificate: its log says why; check \
             --ca, --cert and --key)",
        );
    } else if message.contains("transport error") {
        message.push_str(
            " (the connection failed: a scheduler serving mutual TLS logs why it refused a \
             client's certificate)",
        );
    }
    anyhow::anyhow!("{message} ({:?})", e.code())
}

/// Unix milliseconds as RFC 3339, or "-" for unset.
pub(crate) fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A job state as a word.
pub(crate) fn state_name(state: i32) -> &'static str {
    match v1::JobState::try_from(state).unwrap_or(v1::JobState::Unspecified) {
        v1::JobState::Pending => "pending",
        v1::JobState::Running => "running",
        v1::JobState::Completed => "completed",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
        v1::JobState::Unspecified => "unknown",
    }
}

/// True for states a job never leaves.
pub(crate) fn is_terminal(state: i32) -> bool {
    matches!(
        v1::JobState::try_from(state),
        Ok(v1::JobState::Completed | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

/// An allocation state as a word.
pub(crate) fn allocation_state_name(state: i32) -> &'static str {
    use v1::AllocationState as S;
    match S::try_from(state).unwrap_or(S::Unspecified) {
        S::Running => "running",
        S::Completed => "completed",
        S::Failed => "failed",
        S::Lost => "lost",
        S::Preempted => "preempted",
        S::Stopped => "stopped",
        S::Cancelled => "cancelled",
        S::Unspecified => "unknown",
    }
}

/// A job's outcome, if it has a result.
pub(crate) fn outcome(job: &v1::Job) -> Option<Outcome> {
    job.result
        .as_ref()
        .and_then(|r| r.outcome.clone())
        .and_then(|o| Outcome::try_from(o).ok())
}

/// A job for scripts.
pub(crate) fn job_json(job: &v1::Job) -> Value {
    let spec = job.spec.clone().unwrap_or_default();
    let result = job.result.as_ref().map(|r| {
        json!({
            "outcome": outcome(job).map(|o| serde_json::to_value(o).unwrap_or(Value::Null)),
            "stdout": String::from_utf8_lossy(&r.stdout),
            "stdout_dropped": r.stdout_dropped,
            "stderr": String::from_utf8_lossy(&r.stderr),
            "stderr_dropped": r.stderr_dropped,
            "run_time_us": r.run_time_us,
            "fuel_consumed": r.fuel_consumed,
            "peak_memory_bytes": r.peak_memory_bytes,
            "denials": r.denials,
        })
    });
    let allocations: Vec<Value> = job
        .allocations
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "instance": a.instance,
                "node_id": a.node_id,
                "state": allocation_state_name(a.state),
                "started_at": time(a.started_at_ms),
                "finished_at": time(a.finished_at_ms),
                "message": a.message,
                "placement": a.placement,
                "stale_result": a.stale_result,
            })
        })
        .collect();
    json!({
        "id": job.id,
        "name": spec.name,
        "namespace": namespace(&spec.namespace),
        "type": super::spec::type_name(spec.r#type),
        "priority": spec.priority,
        "replicas": spec.replicas,
        "module_digest": spec.module_digest,
        "label_selector": spec.label_selector,
        "constraints": spec.constraints.iter().map(constraint_json).collect::<Vec<_>>(),
        "affinities": spec.affinities.iter().map(|a| json!({
            "constraint": a.constraint.as_ref().map(constraint_json),
            "weight": a.weight,
        })).collect::<Vec<_>>(),
        "spreads": spec.spreads.iter().map(|s| json!({
            "label": s.label, "weight": s.weight, "targets": s.targets,
        })).collect::<Vec<_>>(),
        "restart": spec.restart.map(|r| json!({
            "attempts": r.attempts,
            "initial_delay_ms": r.initial_delay_ms,
            "max_delay_ms": r.max_delay_ms,
        })),
        "state": state_name(job.state),
        "running": job.running,
        "node_id": job.node_id,
        "attempts": job.attempts,
        "message": job.message,
        "submitted_at": time(job.submitted_at_ms),
        "finished_at": time(job.finished_at_ms),
        "allocations": allocations,
        "result": result,
    })
}

fn constraint_json(c: &v1::Constraint) -> Value {
    json!({ "label": c.label, "op": super::spec::op_name(c.operator), "values": c.values })
}

/// A namespace name as shown: the wire's empty string is "default".
pub(crate) fn namespace(name: &str) -> &str {
    if name.is_empty() {
        super::spec::DEFAULT_NAMESPACE
    } else {
        name
    }
}

/// A size in bytes as shown in tables.
pub(crate) fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

/// Prints rows under headers, columns padded to their widest cell.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{scheduler_uri, tls_files};

    #[test]
    fn the_scheme_follows_the_transport_and_a_contradiction_is_refused() {
        let cases = [
            ("127.0.0.1:7070", true, Ok("https://127.0.0.1:7070")),
            ("127.0.0.1:7070", false, Ok("http://127.0.0.1:7070")),
            ("https://sched:7070", true, Ok("https://sched:7070")),
            ("http://sched:7070", false, Ok("http://sched:7070")),
            (
                "http://sched:7070",
                true,
                Err("is not https:// but a client certificate"),
            ),
            (
                "https://sched:7070",
                false,
                Err("is not http:// but --insecure was given"),
            ),
        ];
        for (address, tls, expected) in cases {
            match (scheduler_uri(address, tls), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.to_string().contains(want), "{got}"),
                (got, want) => panic!("{address} tls={tls}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn tls_files_are_all_three_or_none() {
        let (ca, cert) = (Path::new("ca.pem"), Path::new("c.pem"));
        let err = tls_files(Some(ca), Some(cert), None, false).expect_err("no key");
        assert!(
            err.to_string()
                .ends_with("VAUBAN_KEY); only --ca and --cert given"),
            "{err}"
        );
        let files = tls_files(Some(ca), Some(cert), Some(Path::new("k.pem")), false)
            .expect("three")
            .expect("tls");
        assert_eq!(files.key, Path::new("k.pem"));
        assert!(
            tls_files(None, None, None, true)
                .expect("insecure")
                .is_none()
        );
    }
}
