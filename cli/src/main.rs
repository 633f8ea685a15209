//! The `vauban` command: one binary for every role, like `nomad` or `wash`.
//!
//! `main` only parses the command line, installs logging and maps the command's result to an
//! exit code; each subcommand lives in its own file under `commands/`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Vauban: a sovereign orchestrator for signed WebAssembly jobs.
#[derive(Debug, Parser)]
#[command(name = "vauban", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage signing keys.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Capability grants: what a module may do and where, signed by authorizers.
    #[command(subcommand)]
    Grant(commands::grant::GrantCommand),
    /// The trust policy: keys and roles, thresholds, node classes, revocations.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Certificates for mutual TLS: a CA, certificates per role, revocation.
    #[command(subcommand)]
    Pki(commands::pki::PkiCommand),
    /// Sign a module or component with a publisher key.
    Sign(commands::sign::SignArgs),
    /// Verify a module's signature against trusted keys.
    Verify(commands::verify::VerifyArgs),
    /// Create a guest project: a Rust job for wasm32 using the Vauban guest SDK.
    New(commands::new::NewArgs),
    /// Build the guest project here (or at PATH) for its target, sign it and print its digest.
    Build(commands::build::BuildArgs),
    /// Run a signed module locally in the sandbox, with exactly the capabilities given.
    Exec(Box<commands::exec::ExecArgs>),
    /// Run a scheduler and hosts in one process, with a generated development key.
    Dev(commands::dev::DevArgs),
    /// Run a module through the scheduler: upload, submit, stream output, exit with its code.
    Run(Box<commands::run::RunArgs>),
    /// Run and plan jobs from spec files; inspect, list, cancel jobs and read their output.
    #[command(subcommand)]
    Job(commands::job::JobCommand),
    /// The hosts the scheduler knows: list, show, drain, set eligibility.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Upload and list signed modules.
    #[command(subcommand)]
    Module(commands::module::ModuleCommand),
    /// Namespaces, the units of tenancy, and their quotas.
    #[command(subcommand)]
    Namespace(commands::namespace::NamespaceCommand),
    /// Run the scheduler (control plane).
    Scheduler(commands::scheduler::SchedulerArgs),
    /// Run a host agent that connects to a scheduler.
    Host(Box<commands::host::HostArgs>),
    /// The tamper-evident audit log: sign checkpoints, verify offline, prove entries, tail.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
}

/// Exit code when vauban itself fails (bad input, refused module), as opposed to the guest.
pub(crate) const EXIT_VAUBAN_ERROR: u8 = 125;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAUBAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Key(cmd) => commands::key::run(cmd),
        Command::Grant(cmd) => commands::grant::run(cmd),
        Command::Policy(cmd) => commands::policy::run(cmd),
        Command::Pki(cmd) => commands::pki::run(cmd),
        Command::Sign(args) => commands::sign::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::New(args) => commands::new::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Exec(args) => commands::exec::run(*args),
        Command::Dev(args) => block_on(commands::dev::run(args)),
        Command::Run(args) => block_on(commands::run::run(*args)),
        Command::Job(cmd) => block_on(commands::job::run(cmd)),
        Command::Node(cmd) => block_on(commands::node::run(cmd)),
        Command::Module(cmd) => block_on(commands::module::run(cmd)),
        Command::Namespace(cmd) => block_on(commands::namespace::run(cmd)),
        Command::Scheduler(args) => block_on(commands::scheduler::run(args)),
        Command::Host(args) => block_on(commands::host::run(*args)),
        Command::Audit(cmd) => commands::audit::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_VAUBAN_ERROR)
        }
    }
}

/// Runs an async command on a multi-threaded runtime. (`exec` builds its own.)
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

#[cfg(test)]
mod tests {
    /// Clap checks a command line's definition only for the subcommand being parsed; this
    /// checks every one (duplicate flags, bad defaults) without running any.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
