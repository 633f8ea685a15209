//! Conversions between protobuf messages and `vauban-core` domain types.
//!
//! Protobuf → domain is `TryFrom`, failing with an [`InvalidField`] that names the field;
//! domain → protobuf is `From`. Both destructure every field.

use std::collections::BTreeMap;
use std::time::Duration;

use vauban_core::outcome::CapturedOutput;
use vauban_core::{Access, Capabilities, DirGrant, Limits, Outcome};

use crate::v1;

/// A protobuf message carried a value the domain does not accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    /// The field, as a path (`capabilities.network[2]`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidField {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<InvalidField> for tonic::Status {
    fn from(e: InvalidField) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Limits for a message that leaves some unset: zero means "the default".
pub fn limits_from_proto(limits: Option<v1::Limits>, defaults: Limits) -> Limits {
    let Some(v1::Limits {
        memory_bytes,
        timeout_ms,
        fuel,
        output_bytes,
    }) = limits
    else {
        return defaults;
    };
    let or = |v: u64, d: u64| if v == 0 { d } else { v };
    Limits {
        memory_bytes: or(memory_bytes, defaults.memory_bytes),
        timeout: if timeout_ms == 0 {
            defaults.timeout
        } else {
            Duration::from_millis(timeout_ms)
        },
        fuel: fuel.or(defaults.fuel),
        output_bytes: or(output_bytes, defaults.output_bytes),
    }
}

impl From<Limits> for v1::Limits {
    fn from(l: Limits) -> Self {
        let Limits {
            memory_bytes,
            timeout,
            fuel,
            output_bytes,
        } = l;
        Self {
            memory_bytes,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            fuel,
            output_bytes,
        }
    }
}

/// Capabilities from the wire, with unset limits taken from `defaults`.
///
/// # Errors
/// [`InvalidField`] naming the first invalid entry (a network destination that is not
/// `IP:PORT`, a directory without paths, an environment variable without a name, a configuration
/// value without a name or named twice).
pub fn capabilities_from_proto(
    caps: v1::Capabilities,
    defaults: Limits,
) -> Result<Capabilities, InvalidField> {
    let v1::Capabilities {
        args,
        env,
        dirs,
        network,
        limits,
        config,
        interfaces,
    } = caps;
    let env = env
        .into_iter()
        .enumerate()
        .map(|(i, v1::EnvVar { name, value })| {
            if name.is_empty() || name.contains('=') {
                Err(InvalidField::new(
                    format!("capabilities.env[{i}].name"),
                    "must be non-empty and contain no '='",
                ))
            } else {
                Ok((name, value))
            }
        })
        .collect::<Result<_, _>>()?;
    let dirs = dirs
        .into_iter()
        .enumerate()
        .map(
            |(
                i,
                v1::DirGrant {
                    host_path,
                    guest_path,
                    read_write,
                },
            )| {
                if host_path.is_empty() || guest_path.is_empty() {
                    return Err(InvalidField::new(
                        format!("capabilities.dirs[{i}]"),
                        "host_path and guest_path are required",
                    ));
                }
                Ok(DirGrant {
                    host: host_path.into(),
                    guest: guest_path,
                    access: if read_write {
                        Access::ReadWrite
                    } else {
                        Access::ReadOnly
                    },
                })
            },
        )
        .collect::<Result<_, _>>()?;
    let network = network
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            addr.parse().map_err(|_| {
                InvalidField::new(
                    format!("capabilities.network[{i}]"),
                    format!("{addr:?} is not IP:PORT"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut config_map = BTreeMap::new();
    for (i, v1::EnvVar { name, value }) in config.into_iter().enumerate() {
        if name.is_empty() {
            return Err(InvalidField::new(
                format!("capabilities.config[{i}].name"),
                "must be non-empty",
            ));
        }
        if config_map.contains_key(&name) {
            return Err(InvalidField::new(
                format!("capabilities.config[{i}].name"),
                format!("{name:?} is given twice"),
            ));
        }
        config_map.insert(name, value);
    }
    for (i, name) in interfaces.iter().enumerate() {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(InvalidField::new(
                format!("capabilities.interfaces[{i}]"),
                format!("{name:?} is not an interface name such as wasi:http/outgoing-handler"),
            ));
        }
    }
    Ok(Capabilities {
        args,
        env,
        dirs,
        network,
        limits: limits_from_proto(limits, defaults),
        config: config_map,
        interfaces,
    })
}

impl From<Capabilities> for v1::Capabilities {
    fn from(c: Capabilities) -> Self {
        let Capabilities {
            args,
            env,
            dirs,
            network,
            limits,
            config,
            interfaces,
        } = c;
        Self {
            args,
            env: env
                .into_iter()
                .map(|(name, value)| v1::EnvVar { name, value })
                .collect(),
            dirs: dirs
                .into_iter()
                .map(
                    |DirGrant {
                         host,
                         guest,
                         access,
                     }| v1::DirGrant {
                        host_path: host.to_string_lossy().into_owned(),
                        guest_path: guest,
                        read_write: access == Access::ReadWrite,
                    },
                )
                .collect(),
            network: network.iter().map(ToString::to_string).collect(),
            limits: Some(limits.into()),
            config: config
                .into_iter()
                .map(|(name, value)| v1::EnvVar { name, value })
                .collect(),
            interfaces,
        }
    }
}

impl From<Outcome> for v1::Outcome {
    fn from(o: Outcome) -> Self {
        use v1::outcome::Kind;
        let kind = match o {
            Outcome::Exited { code } => Kind::Exited(code),
            Outcome::Trapped { message } => Kind::Trapped(message),
            Outcome::TimedOut { limit } => {
                Kind::TimedOutMs(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
            }
            Outcome::OutOfMemory { limit, requested } => Kind::OutOfMemory(v1::OutOfMemory {
                limit_bytes: limit,
                requested_bytes: requested,
            }),
            Outcome::OutOfFuel { budget } => Kind::OutOfFuel(budget),
            Outcome::Cancelled => Kind::Cancelled(true),
            Outcome::Denied { capability, reason } => {
                Kind::Denied(v1::Denied { capability, reason })
            }
        };
        Self { kind: Some(kind) }
    }
}

impl TryFrom<v1::Outcome> for Outcome {
    type Error = InvalidField;

    fn try_from(o: v1::Outcome) -> Result<Self, Self::Error> {
        use v1::outcome::Kind;
        let v1::Outcome { kind } = o;
        Ok(
            match kind.ok_or_else(|| InvalidField::new("outcome", "missing"))? {
                Kind::Exited(code) => Outcome::Exited { code },
                Kind::Trapped(message) => Outcome::Trapped { message },
                Kind::TimedOutMs(ms) => Outcome::TimedOut {
                    limit: Duration::from_millis(ms),
                },
                Kind::OutOfMemory(v1::OutOfMemory {
                    limit_bytes,
                    requested_bytes,
                }) => Outcome::OutOfMemory {
                    limit: limit_bytes,
                    requested: requested_bytes,
                },
                Kind::OutOfFuel(budget) => Outcome::OutOfFuel { budget },
                Kind::Cancelled(_) => Outcome::Cancelled,
                Kind::Denied(v1::Denied { capability, reason }) => {
                    Outcome::Denied { capability, reason }
                }
            },
        )
    }
}

/// The part of a run report that travels back to the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Standard output (bounded).
    pub stdout: CapturedOutput,
    /// Standard error (bounded).
    pub stderr: CapturedOutput,
    /// Instantiation to end.
    pub run_time: Duration,
    /// Fuel used, when metered and the run ended on its own.
    pub fuel_consumed: Option<u64>,
    /// Highest total linear memory.
    pub peak_memory_bytes: u64,
    /// Capability uses refused during the run.
    pub denials: Vec<String>,
}

impl From<vauban_core::RunReport> for RunResult {
    fn from(r: vauban_core::RunReport) -> Self {
        Self {
            outcome: r.outcome,
            stdout: r.stdout,
            stderr: r.stderr,
            run_time: r.run_time,
            fuel_consumed: r.fuel_consumed,
            peak_memory_bytes: r.peak_memory_bytes,
            denials: r.denials,
        }
    }
}

impl From<RunResult> for v1::RunResult {
    fn from(r: RunResult) -> Self {
        let RunResult {
            outcome,
            stdout,
            stderr,
            run_time,
            fuel_consumed,
            peak_memory_bytes,
            denials,
        } = r;
        Self {
            outcome: Some(outcome.into()),
            stdout: stdout.bytes,
            stdout_dropped: stdout.dropped,
            stderr: stderr.bytes,
            stderr_dropped: stderr.dropped,
            run_time_us: u64::try_from(run_time.as_micros()).unwrap_or(u64::MAX),
            fuel_consumed,
            peak_memory_bytes,
            denials,
        }
    }
}

impl TryFrom<v1::RunResult> for RunResult {
    type Error = InvalidField;

    fn try_from(r: v1::RunResult) -> Result<Self, Self::Error> {
        let v1::RunResult {
            outcome,
            stdout,
            stdout_dropped,
            stderr,
            stderr_dropped,
            run_time_us,
            fuel_consumed,
            peak_memory_bytes,
            denials,
        } = r;
        Ok(Self {
            outcome: outcome
                .ok_or_else(|| InvalidField::new("result.outcome", "missing"))?
                .try_into()?,
            stdout: CapturedOutput {
                bytes: stdout,
                dropped: stdout_dropped,
            },
            stderr: CapturedOutput {
                bytes: stderr,
                dropped: stderr_dropped,
            },
            run_time: Duration::from_micros(run_time_us),
            fuel_consumed,
            peak_memory_bytes,
            denials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_round_trip_and_name_bad_fields() {
        let caps = Capabilities {
            args: vec!["-v".into()],
            env: vec![("K".into(), "V".into())],
            dirs: vec![DirGrant {
                host: "/srv/in".into(),
                guest: "/in".into(),
                access: Access::ReadWrite,
            }],
            network: vec!["10.0.0.1:443".parse().expect("addr")],
            limits: Limits::DEFAULT,
            config: BTreeMap::from([
                ("greeting".into(), "hi".into()),
                ("mode".into(), String::new()),
            ]),
            interfaces: vec!["wasi:http/outgoing-handler".into()],
        };
        let wire = v1::Capabilities::from(caps.clone());
        assert_eq!(
            capabilities_from_proto(wire.clone(), Limits::DEFAULT),
            Ok(caps)
        );

        let mut bad = wire.clone();
        bad.network.push("example.org:80".into());
        let err = capabilities_from_proto(bad, Limits::DEFAULT).expect_err("refused");
        assert_eq!(err.field, "capabilities.network[1]");

        let config = |name: &str| v1::EnvVar {
            name: name.into(),
            value: "x".into(),
        };
        let mut empty = wire.clone();
        empty.config.push(config(""));
        let err = capabilities_from_proto(empty, Limits::DEFAULT).expect_err("empty key");
        assert_eq!(err.field, "capabilities.config[2].name");

        let mut spaced = wire.clone();
        spaced.interfaces.push("wasi:http outgoing".into());
        let err = capabilities_from_proto(spaced, Limits::DEFAULT).expect_err("bad interface");
        assert_eq!(err.field, "capabilities.interfaces[1]");

        let mut twice = wire;
        twice.config.push(config("greeting"));
        let err = capabilities_from_proto(twice, Limits::DEFAULT).expect_err("duplicate key");
        assert_eq!(err.field, "capabilities.config[2].name");
        assert!(err.reason.contains("\"greeting\" is given twice"), "{err}");
    }

    #[test]
    fn unset_limits_take_the_defaults() {
        let partial = v1::Limits {
            memory_bytes: 1 << 20,
            ..Default::default()
        };
        let limits = limits_from_proto(Some(partial), Limits::DEFAULT);
        assert_eq!(limits.memory_bytes, 1 << 20);
        assert_eq!(limits.timeout, Limits::DEFAULT.timeout);
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            Outcome::Exited { code: 3 },
            Outcome::Trapped {
                message: "unreachable".into(),
            },
            Outcome::TimedOut {
                limit: Duration::from_millis(1500),
            },
            Outcome::OutOfMemory {
                limit: 10,
                requested: 20,
            },
            Outcome::OutOfFuel { budget: 7 },
            Outcome::Cancelled,
            Outcome::Denied {
                capability: "directory /etc".into(),
                reason: "outside".into(),
            },
        ] {
            let wire = v1::Outcome::from(outcome.clone());
            assert_eq!(Outcome::try_from(wire), Ok(outcome));
        }
    }
}
