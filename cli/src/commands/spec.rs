//! Job spec files: the TOML a user writes to describe a job for `vauban job run|plan FILE`,
//! checked here and turned into a `v1::JobSpec` before anything is sent, so that a mistake is
//! reported with the field that holds it rather than as a refusal from the scheduler.
//!
//! Parsing is split from I/O: [`parse`] is a pure function of the text and the file's path
//! (relative paths in the file are taken from the file's directory), [`load`] reads the file,
//! a `stdin_file` and a `grant`. The format is documented in `docs/job-spec.md`; keep the two in step.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use vauban_core::{Access, Capabilities, DirGrant, Limits, ModuleDigest};
use vauban_proto::v1;

use super::caps::{parse_duration, parse_size};

/// The namespace of a spec that names none.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";
/// The priority of a spec that gives none (and what the wire's 0 means).
const DEFAULT_PRIORITY: i64 = 50;
/// The weight of an affinity or spread that gives none (and, for spreads, the wire's 0).
const DEFAULT_WEIGHT: i64 = 50;
/// The scheduler's restart delays when the spec leaves them out (jobs.proto, RestartPolicy).
const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
/// The constraint operators as a spec writes them, for error messages.
const OPERATORS: &str = r#""=", "!=", "in", "not in", "exists", "not exists", "semver""#;

/// A job spec file, checked.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct JobFile {
    /// What is sent. `module_digest` is empty while `module` is a path (the module is uploaded
    /// first); `stdin` holds inline text, or the file's bytes once [`load`] has read it.
    pub(crate) spec: v1::JobSpec,
    /// Where the module comes from.
    pub(crate) module: ModuleSource,
    /// The file the guest's stdin is read from, absolute; `None` for inline or empty stdin.
    pub(crate) stdin_file: Option<PathBuf>,
    /// The capability grant file (as `vauban grant` writes it), absolute; its bytes go in
    /// `spec.grant` once [`load`] has read it. `None`: no grant.
    pub(crate) grant_file: Option<PathBuf>,
}

/// Where a spec's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ModuleSource {
    /// A signed module file, to upload (its path resolved against the spec file's directory).
    Path(PathBuf),
    /// A module the scheduler already stores.
    Digest(ModuleDigest),
}

/// Why a spec file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecError {
    /// Not TOML, a misspelt or unknown key, a value of the wrong type, a missing `module`:
    /// the message (from the `toml` crate) names the key and shows the line.
    /// (Not a `source`: its message is the whole story, and would otherwise be printed twice.)
    #[error("{0}")]
    Syntax(toml::de::Error),
    /// A value that parses but is not accepted.
    #[error("{field}: {reason}")]
    Invalid {
        /// Where, as a path into the file: `limits.memory`, `constraint[1].op`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads and checks a job spec file, and the files its `stdin_file` and `grant` name.
///
/// # Errors
/// The file cannot be read, or [`parse`] refuses it (the message names the file and the field).
pub(crate) fn load(path: &Path) -> anyhow::Result<JobFile> {
    let path = std::path::absolute(path)
        .with_context(|| format!("resolving job spec path {}", path.display()))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading job spec {}", path.display()))?;
    let mut job =
        parse(&text, &path).with_context(|| format!("invalid job spec {}", path.display()))?;
    if let Some(stdin) = &job.stdin_file {
        job.spec.stdin = std::fs::read(stdin).with_context(|| {
            format!(
                "reading stdin_file {} (named by {})",
                stdin.display(),
                path.display()
            )
        })?;
    }
    if let Some(grant) = &job.grant_file {
        job.spec.grant = std::fs::read(grant).with_context(|| {
            format!(
                "reading grant {} (named by {})",
                grant.display(),
                path.display()
            )
        })?;
    }
    Ok(job)
}

/// Checks the text of a job spec file found at `path`. Relative paths in it (`module`,
/// `stdin_file`, `grant`, `dirs[].host`) are taken from `path`'s directory; the name defaults to
/// `path`'s file stem. Reads nothing.
///
/// # Errors
/// [`SpecError`] naming the first field refused.
pub(crate) fn parse(text: &str, path: &Path) -> Result<JobFile, SpecError> {
    let file: File = toml::from_str(text).map_err(SpecError::Syntax)?;
    file.check(path)
}

/// The file as written. Every table denies unknown keys, so a misspelt key is an error that
/// names it instead of a setting silently left at its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(rename = "type", default)]
    job_type: JobType,
    module: String,
    replicas: Option<u32>,
    priority: Option<i64>,
    #[serde(default)]
    args: Vec<String>,
    stdin: Option<String>,
    stdin_file: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    dirs: Vec<Dir>,
    #[serde(default)]
    network: Vec<String>,
    #[serde(default)]
    interfaces: Vec<String>,
    grant: Option<PathBuf>,
    #[serde(default)]
    limits: LimitsTable,
    restart: Option<Restart>,
    #[serde(default)]
    constraint: Vec<ConstraintTable>,
    #[serde(default)]
    affinity: Vec<AffinityTable>,
    #[serde(default)]
    spread: Vec<SpreadTable>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JobType {
    #[default]
    Batch,
    Service,
    System,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dir {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    write: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    memory: Option<String>,
    timeout: Option<String>,
    fuel: Option<u64>,
    output: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Restart {
    attempts: Option<u32>,
    initial_delay: Option<String>,
    max_delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintTable {
    label: String,
    #[serde(default = "default_op")]
    op: String,
    value: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AffinityTable {
    label: String,
    #[serde(default = "default_op")]
    op: String,
    value: Option<String>,
    values: Option<Vec<String>>,
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpreadTable {
    label: String,
    weight: Option<i64>,
    #[serde(default)]
    targets: BTreeMap<String, u32>,
}

fn default_op() -> String {
    "=".to_owned()
}

impl File {
    fn check(self, path: &Path) -> Result<JobFile, SpecError> {
        let Self {
            name,
            namespace,
            job_type,
            module,
            replicas,
            priority,
            args,
            stdin,
            stdin_file,
            env,
            config,
            dirs,
            network,
            interfaces,
            grant,
            limits,
            restart,
            constraint,
            affinity,
            spread,
        } = self;
        let base = path.parent().unwrap_or(Path::new(""));

        let name = match name {
            Some(name) if name.trim().is_empty() => return Err(invalid("name", "is empty")),
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        if namespace.is_empty() || namespace.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid(
                "namespace",
                format!("{namespace:?} is not a namespace name (non-empty, no spaces or '/')"),
            ));
        }

        let module = if module.starts_with("sha256:") {
            ModuleSource::Digest(module.parse().map_err(
                |e: vauban_core::module::InvalidDigest| invalid("module", e.to_string()),
            )?)
        } else if module.is_empty() {
            return Err(invalid(
                "module",
                "is empty: give a path to a signed module file or sha256:<hex>",
            ));
        } else {
            ModuleSource::Path(base.join(module))
        };

        let replicas = match (job_type, replicas) {
            (JobType::Service, None) => 1,
            (JobType::Service, Some(0)) => {
                return Err(invalid("replicas", "must be at least 1"));
            }
            (JobType::Service, Some(n)) => n,
            (_, None) => 0,
            (JobType::Batch, Some(_)) => {
                return Err(invalid(
                    "replicas",
                    "only a service job has replicas: a batch job runs once (set type = \"service\")",
                ));
            }
            (JobType::System, Some(_)) => {
                return Err(invalid(
                    "replicas",
                    "only a service job has replicas: a system job runs one instance on every eligible node",
                ));
            }
        };

        let priority = priority.unwrap_or(DEFAULT_PRIORITY);
        // The wire reads 0 as "the default, 50": 0 cannot be asked for.
        if !(1..=100).contains(&priority) {
            return Err(invalid(
                "priority",
                format!("{priority} is out of range 1..=100 (default {DEFAULT_PRIORITY})"),
            ));
        }

        let stdin_bytes = match (&stdin, &stdin_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "stdin_file",
                    "give stdin (inline text) or stdin_file (a file), not both",
                ));
            }
            (Some(text), None) => text.clone().into_bytes(),
            _ => Vec::new(),
        };
        let stdin_file = stdin_file.map(|f| base.join(f));
        let grant_file = match grant {
            Some(g) if g.as_os_str().is_empty() => {
                return Err(invalid(
                    "grant",
                    "is empty: give the path of a grant file (`vauban grant create`)",
                ));
            }
            g => g.map(|g| base.join(g)),
        };

        for name in env.keys() {
            if name.is_empty() || name.contains('=') {
                return Err(invalid(
                    format!("env.{name:?}"),
                    "a variable name must be non-empty and contain no '='",
                ));
            }
        }
        if config.contains_key("") {
            return Err(invalid(
                "config.\"\"",
                "a configuration key must be non-empty",
            ));
        }
        let dirs = dirs
            .into_iter()
            .enumerate()
            .map(|(i, Dir { host, guest, write })| {
                if host.as_os_str().is_empty() {
                    return Err(invalid(format!("dirs[{i}].host"), "is empty"));
                }
                if guest.is_empty() {
                    return Err(invalid(format!("dirs[{i}].guest"), "is empty"));
                }
                Ok(DirGrant {
                    host: base.join(host),
                    guest,
                    access: if write {
                        Access::ReadWrite
                    } else {
                        Access::ReadOnly
                    },
                })
            })
            .collect::<Result<_, _>>()?;
        let network = network
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                addr.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        format!("network[{i}]"),
                        format!("{addr:?} is not IP:PORT (an IP literal: no DNS names)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some((i, name)) = interfaces
            .iter()
            .enumerate()
            .find(|(_, name)| name.is_empty() || name.contains(char::is_whitespace))
        {
            return Err(invalid(
                format!("interfaces[{i}]"),
                format!("{name:?} is not an interface name such as \"wasi:http/outgoing-handler\""),
            ));
        }
        let capabilities = Capabilities {
            args,
            env: env.into_iter().collect(),
            dirs,
            network,
            limits: limits.check()?,
            config,
            interfaces,
        };

        let restart = match (job_type, restart) {
            (_, None) => None,
            (JobType::Batch, Some(_)) => {
                return Err(invalid(
                    "restart",
                    "a batch job is not restarted when it ends (a lost attempt is rescheduled on its own); restart is for service and system jobs",
                ));
            }
            (_, Some(restart)) => Some(restart.check()?),
        };

        let constraints = constraint
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                test(
                    &format!("constraint[{i}]"),
                    c.label,
                    &c.op,
                    c.value,
                    c.values,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        if job_type == JobType::System && (!affinity.is_empty() || !spread.is_empty()) {
            let field = if affinity.is_empty() {
                "spread"
            } else {
                "affinity"
            };
            return Err(invalid(
                field,
                "a system job runs on every eligible node, so there is no choice to prefer or spread: use constraint",
            ));
        }
        let affinities = affinity
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let field = format!("affinity[{i}]");
                let weight = a.weight.unwrap_or(DEFAULT_WEIGHT);
                if weight == 0 || !(-100..=100).contains(&weight) {
                    return Err(invalid(
                        format!("{field}.weight"),
                        format!(
                            "{weight} is out of range -100..=100 or 0 (negative: avoid, positive: prefer)"
                        ),
                    ));
                }
                Ok(v1::Affinity {
                    constraint: Some(test(&field, a.label, &a.op, a.value, a.values)?),
                    weight: i32::try_from(weight).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let spreads = spread
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.check(&format!("spread[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let spec = v1::JobSpec {
            name,
            module_digest: match &module {
                ModuleSource::Digest(d) => d.to_string(),
                ModuleSource::Path(_) => String::new(),
            },
            capabilities: Some(capabilities.into()),
            stdin: stdin_bytes,
            label_selector: HashMap::new(),
            namespace,
            r#type: match job_type {
                JobType::Batch => v1::JobType::Batch,
                JobType::Service => v1::JobType::Service,
                JobType::System => v1::JobType::System,
            } as i32,
            replicas,
            restart,
            priority: u32::try_from(priority).unwrap_or_default(),
            constraints,
            affinities,
            spreads,
            // Read by `load`.
            grant: Vec::new(),
        };
        Ok(JobFile {
            spec,
            module,
            stdin_file,
            grant_file,
        })
    }
}

impl LimitsTable {
    /// The limits, each left out taken from `vauban run`'s defaults ([`Limits::DEFAULT`]).
    fn check(self) -> Result<Limits, SpecError> {
        let Self {
            memory,
            timeout,
            fuel,
            output,
        } = self;
        let size = |field: &str, value: Option<String>, default: u64| match value {
            None => Ok(default),
            Some(text) => match parse_size(&text) {
                Ok(0) => Err(invalid(field, "must be more than 0")),
                Ok(n) => Ok(n),
                Err(e) => Err(invalid(field, e)),
            },
        };
        let limits = Limits {
            memory_bytes: size("limits.memory", memory, Limits::DEFAULT.memory_bytes)?,
            timeout: positive_duration("limits.timeout", timeout)?
                .unwrap_or(Limits::DEFAULT.timeout),
            fuel,
            output_bytes: size("limits.output", output, Limits::DEFAULT.output_bytes)?,
        };
        if fuel == Some(0) {
            return Err(invalid(
                "limits.fuel",
                "0 would stop the guest before its first instruction (leave it out for unmetered)",
            ));
        }
        Ok(limits)
    }
}

impl Restart {
    fn check(self) -> Result<v1::RestartPolicy, SpecError> {
        let Self {
            attempts,
            initial_delay,
            max_delay,
        } = self;
        // On the wire, 0 means "the scheduler's default" for each field: never send a 0 asked for.
        if attempts == Some(0) {
            return Err(invalid(
                "restart.attempts",
                "must be at least 1 (leave it out for the default, 3)",
            ));
        }
        let initial = positive_duration("restart.initial_delay", initial_delay)?;
        let max = positive_duration("restart.max_delay", max_delay)?;
        let (first, ceiling) = (
            initial.unwrap_or(DEFAULT_INITIAL_DELAY),
            max.unwrap_or(DEFAULT_MAX_DELAY),
        );
        if first > ceiling {
            return Err(invalid(
                "restart.initial_delay",
                format!(
                    "{} is longer than max_delay ({}{})",
                    humantime::format_duration(first),
                    humantime::format_duration(ceiling),
                    if max.is_none() { ", the default" } else { "" },
                ),
            ));
        }
        let ms =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(v1::RestartPolicy {
            attempts: attempts.unwrap_or(0),
            initial_delay_ms: ms(initial),
            max_delay_ms: ms(max),
        })
    }
}

impl SpreadTable {
    fn check(self, field: &str) -> Result<v1::Spread, SpecError> {
        let Self {
            label,
            weight,
            targets,
        } = self;
        if label.is_empty() {
            return Err(invalid(format!("{field}.label"), "is empty"));
        }
        let weight = weight.unwrap_or(DEFAULT_WEIGHT);
        // The wire reads 0 as "the default, 50": 0 cannot be asked for.
        if !(1..=100).contains(&weight) {
            return Err(invalid(
                format!("{field}.weight"),
                format!("{weight} is out of range 1..=100 (default {DEFAULT_WEIGHT})"),
            ));
        }
        let mut total = 0;
        for (value, percent) in &targets {
            if value.is_empty() {
                return Err(invalid(
                    format!("{field}.targets"),
                    "a label value is empty",
                ));
            }
            if *percent > 100 {
                return Err(invalid(
                    format!("{field}.targets.{value}"),
                    format!("{percent} is not a percentage (0..=100)"),
                ));
            }
            total += percent;
        }
        if total > 100 {
            return Err(invalid(
                format!("{field}.targets"),
                format!("the percentages add up to {total}, more than 100"),
            ));
        }
        Ok(v1::Spread {
            label,
            weight: u32::try_from(weight).unwrap_or_default(),
            targets: targets.into_iter().collect(),
        })
    }
}

/// A duration field that must be more than zero when given (the wire reads 0 as "default").
fn positive_duration(field: &str, value: Option<String>) -> Result<Option<Duration>, SpecError> {
    let Some(text) = value else {
        return Ok(None);
    };
    match parse_duration(&text) {
        Ok(d) if d.is_zero() => Err(invalid(field, "must be more than 0")),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(invalid(field, e)),
    }
}

/// A test on a node label, shared by constraints and affinities: the operator decides whether
/// `value` (one) or `values` (a list) is needed.
fn test(
    field: &str,
    label: String,
    op: &str,
    value: Option<String>,
    values: Option<Vec<String>>,
) -> Result<v1::Constraint, SpecError> {
    use v1::ConstraintOperator as Op;
    if label.is_empty() {
        return Err(invalid(format!("{field}.label"), "is empty"));
    }
    let normalised = op.split_whitespace().collect::<Vec<_>>().join(" ");
    let operator = match normalised.as_str() {
        "=" => Op::Eq,
        "!=" => Op::NotEq,
        "in" => Op::In,
        "not in" => Op::NotIn,
        "exists" => Op::Exists,
        "not exists" => Op::NotExists,
        "semver" => Op::Version,
        _ => {
            return Err(invalid(
                format!("{field}.op"),
                format!("unknown operator {op:?}: expected one of {OPERATORS}"),
            ));
        }
    };
    let values = match operator {
        Op::Eq | Op::NotEq | Op::Version => {
            if values.is_some() {
                return Err(invalid(
                    format!("{field}.values"),
                    format!("operator {op:?} takes one `value`, not a list"),
                ));
            }
            let Some(value) = value else {
                return Err(invalid(
                    format!("{field}.value"),
                    format!("operator {op:?} needs a value"),
                ));
            };
            if operator == Op::Version {
                semver::VersionReq::parse(&value).map_err(|e| {
                    invalid(
                        format!("{field}.value"),
                        format!(
                            "{value:?} is not a semantic version requirement such as \">=1.2, <2\": {e}"
                        ),
                    )
                })?;
            }
            vec![value]
        }
        Op::In | Op::NotIn => {
            if value.is_some() {
                return Err(invalid(
                    format!("{field}.value"),
                    format!("operator {op:?} takes a list: values = [\"a\", \"b\"]"),
                ));
            }
            match values {
                Some(values) if !values.is_empty() => values,
                _ => {
                    return Err(invalid(
                        format!("{field}.values"),
                        format!("operator {op:?} needs a non-empty list of values"),
                    ));
                }
            }
        }
        Op::Exists | Op::NotExists | Op::Unspecified => {
            if value.is_some() || values.is_some() {
                return Err(invalid(
                    format!(
                        "{field}.{}",
                        if value.is_some() { "value" } else { "values" }
                    ),
                    format!("operator {op:?} takes no value"),
                ));
            }
            Vec::new()
        }
    };
    Ok(v1::Constraint {
        label,
        operator: operator as i32,
        values,
    })
}

/// An operator as a spec file writes it.
pub(crate) fn op_name(operator: i32) -> &'static str {
    use v1::ConstraintOperator as Op;
    match Op::try_from(operator).unwrap_or(Op::Unspecified) {
        Op::Eq => "=",
        Op::NotEq => "!=",
        Op::In => "in",
        Op::NotIn => "not in",
        Op::Exists => "exists",
        Op::NotExists => "not exists",
        Op::Version => "semver",
        Op::Unspecified => "?",
    }
}

/// A constraint as a spec file writes it: `zone = alpha`, `tier in (core, edge)`, `gpu exists`.
pub(crate) fn describe(constraint: &v1::Constraint) -> String {
    use v1::ConstraintOperator as Op;
    let v1::Constraint {
        label,
        operator,
        values,
    } = constraint;
    let op = op_name(*operator);
    match Op::try_from(*operator).unwrap_or(Op::Unspecified) {
        Op::In | Op::NotIn => format!("{label} {op} ({})", values.join(", ")),
        Op::Exists | Op::NotExists => format!("{label} {op}"),
        Op::Eq | Op::NotEq | Op::Version | Op::Unspecified => {
            format!("{label} {op} {}", values.join(", "))
        }
    }
}

/// A job type as a spec file writes it.
pub(crate) fn type_name(job_type: i32) -> &'static str {
    match v1::JobType::try_from(job_type).unwrap_or(v1::JobType::Unspecified) {
        v1::JobType::Batch | v1::JobType::Unspecified => "batch",
        v1::JobType::Service => "service",
        v1::JobType::System => "system",
    }
}

#[cfg(test)]
mod tests;
