//! What this host tells the audit log about each attempt it runs: a `JobStarted` when the guest
//! is about to run, and, when the host has a receipt key, a signed execution receipt riding in
//! the attempt's `JobFinished` (`docs/audit.md`).
//!
//! A receipt attests the module's digest, the capabilities the run was given (as canonical
//! strings), the node, the wall-clock start and end, the outcome, the fuel and the peak memory.
//! The scheduler checks it against the key this host registered and the result it came with,
//! and logs it; anyone can later check its signature offline, with the key it names.

use std::time::{SystemTime, UNIX_EPOCH};

use vauban_audit::{Receipt, SecretKey};
use vauban_core::{Access, Capabilities, Limits};
use vauban_proto::convert::RunResult;
use vauban_proto::v1::{self, host_message::Message};

use super::Agent;

/// One attempt from the moment its guest is about to run.
#[derive(Debug)]
pub(super) struct Attempt {
    job: String,
    attempt: u32,
    module: String,
    capabilities: Vec<String>,
    started_ms: u64,
}

impl Attempt {
    /// Notes the start of an attempt that will run `module` with `capabilities`, and tells the
    /// scheduler (`JobStarted`).
    pub(super) fn start(
        agent: &Agent,
        job: &str,
        attempt: u32,
        module: &vauban_core::ModuleDigest,
        capabilities: &Capabilities,
    ) -> Self {
        let started = Self {
            job: job.to_owned(),
            attempt,
            module: module.to_string(),
            capabilities: capability_strings(capabilities),
            started_ms: now_ms(),
        };
        agent.send(v1::HostMessage {
            message: Some(Message::Started(v1::JobStarted {
                job_id: started.job.clone(),
                attempt,
                started_at_ms: started.started_ms,
            })),
        });
        started
    }

    /// The signed receipt of the attempt that ended with `result`, as the JSON that
    /// `JobFinished.receipt` carries; empty when this host has no receipt key.
    pub(super) fn receipt(self, agent: &Agent, result: &RunResult) -> Vec<u8> {
        let Some(key) = &agent.config.receipt_key else {
            return Vec::new();
        };
        sign(self, &agent.config.node_id, result, now_ms(), key)
    }
}

/// Signs the receipt; a failure (serialisation, which cannot fail for these types) is logged
/// and sends none.
fn sign(
    attempt: Attempt,
    node: &str,
    result: &RunResult,
    ended_ms: u64,
    key: &SecretKey,
) -> Vec<u8> {
    let Attempt {
        job,
        attempt,
        module,
        capabilities,
        started_ms,
    } = attempt;
    let receipt = Receipt {
        job,
        attempt,
        module,
        capabilities,
        node: node.to_owned(),
        started_ms,
        ended_ms: ended_ms.max(started_ms),
        outcome: result.outcome.to_string(),
        fuel: result.fuel_consumed.unwrap_or(0),
        peak_memory_bytes: result.peak_memory_bytes,
    };
    match receipt.sign(key).and_then(|signed| signed.to_json()) {
        Ok(json) => json,
        Err(error) => {
            tracing::error!(%error, "cannot sign the execution receipt; sending none");
            Vec::new()
        }
    }
}

/// Puts a receipt into a `JobFinished` message.
pub(super) fn attach(message: &mut v1::HostMessage, receipt: Vec<u8>) {
    if let Some(Message::Finished(finished)) = &mut message.message {
        finished.receipt = receipt;
    }
}

/// The capabilities a run is given, one canonical string each, sorted and without repeats:
/// `dir:HOST:GUEST:ro|rw`, `env:NAME`, `network:ADDR`, `config:KEY`, `interface:NAME`,
/// `memory_bytes:N`, `timeout_ms:N`, `fuel:N` (when metered), `output_bytes:N`. Environment and
/// configuration values are left out (they may be secrets); their names are what is granted.
/// Arguments are input, not capabilities, and are left out too.
pub(super) fn capability_strings(capabilities: &Capabilities) -> Vec<String> {
    // Destructured, so that a new capability cannot be left out of receipts silently.
    let Capabilities {
        args: _,
        env,
        dirs,
        network,
        limits,
        config,
        interfaces,
    } = capabilities;
    let Limits {
        memory_bytes,
        timeout,
        fuel,
        output_bytes,
    } = limits;
    let mut strings: Vec<String> = dirs
        .iter()
        .map(|d| {
            let access = match d.access {
                Access::ReadOnly => "ro",
                Access::ReadWrite => "rw",
            };
            format!("dir:{}:{}:{access}", d.host.display(), d.guest)
        })
        .chain(env.iter().map(|(name, _)| format!("env:{name}")))
        .chain(network.iter().map(|addr| format!("network:{addr}")))
        .chain(config.keys().map(|key| format!("config:{key}")))
        .chain(interfaces.iter().map(|name| format!("interface:{name}")))
        .chain([
            format!("memory_bytes:{memory_bytes}"),
            format!("timeout_ms:{}", timeout.as_millis()),
            format!("output_bytes:{output_bytes}"),
        ])
        .chain(fuel.map(|fuel| format!("fuel:{fuel}")))
        .collect();
    strings.sort();
    strings.dedup();
    strings
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vauban_audit::SignedReceipt;
    use vauban_core::outcome::CapturedOutput;
    use vauban_core::{DirGrant, ModuleDigest, Outcome};

    use super::*;

    #[test]
    fn capabilities_have_one_canonical_spelling() {
        let capabilities = Capabilities {
            args: vec!["--secret-arg".into()],
            env: vec![
                ("MODE".into(), "fast".into()),
                ("TOKEN".into(), "s3cr3t".into()),
                ("MODE".into(), "slow".into()),
            ],
            dirs: vec![DirGrant {
                host: "/srv/in".into(),
                guest: "/in".into(),
                access: Access::ReadOnly,
            }],
            network: vec!["10.0.0.5:443".parse().expect("addr")],
            limits: Limits {
                memory_bytes: 1 << 20,
                timeout: Duration::from_secs(2),
                fuel: Some(500),
                output_bytes: 64,
            },
            config: [("region".to_owned(), "eu".to_owned())].into(),
            interfaces: vec!["wasi:http/outgoing-handler".into()],
        };
        assert_eq!(
            capability_strings(&capabilities),
            [
                "config:region",
                "dir:/srv/in:/in:ro",
                "env:MODE",
                "env:TOKEN",
                "fuel:500",
                "interface:wasi:http/outgoing-handler",
                "memory_bytes:1048576",
                "network:10.0.0.5:443",
                "output_bytes:64",
                "timeout_ms:2000",
            ]
        );
        let text = capability_strings(&capabilities).join(" ");
        assert!(
            !text.contains("s3cr3t") && !text.contains("--secret-arg"),
            "{text}"
        );
        // The default grants nothing but the default limits, and meters no fuel.
        assert_eq!(
            capability_strings(&Capabilities::default()),
            [
                "memory_bytes:268435456",
                "output_bytes:1048576",
                "timeout_ms:30000"
            ]
        );
    }

    #[test]
    fn a_receipt_is_signed_over_what_the_attempt_ran_with() {
        let key = SecretKey::from_seed(&[6; 32]);
        let attempt = Attempt {
            job: "j1".into(),
            attempt: 2,
            module: ModuleDigest::of(b"m").to_string(),
            capabilities: capability_strings(&Capabilities::default()),
            started_ms: 1_000,
        };
        let result = RunResult {
            outcome: Outcome::Exited { code: 3 },
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            run_time: Duration::from_millis(5),
            fuel_consumed: Some(42),
            peak_memory_bytes: 65_536,
            denials: Vec::new(),
        };
        let json = sign(attempt, "n1", &result, 1_005, &key);
        let signed = SignedReceipt::from_json(&json).expect("a signed receipt");
        assert_eq!(
            signed.verify(&[key.public_key()]).expect("verifies"),
            key.public_key()
        );
        let receipt = signed.receipt;
        assert_eq!((receipt.job.as_str(), receipt.attempt), ("j1", 2));
        assert_eq!(receipt.node, "n1");
        assert_eq!((receipt.started_ms, receipt.ended_ms), (1_000, 1_005));
        assert_eq!(receipt.outcome, "exited with code 3");
        assert_eq!((receipt.fuel, receipt.peak_memory_bytes), (42, 65_536));

        let mut message = super::super::job::refused("j1".into(), 2, "placeholder");
        attach(&mut message, json.clone());
        let Some(Message::Finished(finished)) = message.message else {
            panic!("a JobFinished");
        };
        assert_eq!(finished.receipt, json);
    }
}
