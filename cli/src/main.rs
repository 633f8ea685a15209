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
    /// Sign a module or component with a publisher key.
    Sign(commands::sign::SignArgs),
    /// Verify a module's signature against trusted keys.
    Verify(commands::verify::VerifyArgs),
    /// Run a signed module locally in the sandbox, with exactly the capabilities given.
    Exec(Box<commands::exec::ExecArgs>),
}

/// Exit code when vauban itself fails (bad input, refused module), as opposed to the guest.
const EXIT_VAUBAN_ERROR: u8 = 125;

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
        Command::Sign(args) => commands::sign::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Exec(args) => commands::exec::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_VAUBAN_ERROR)
        }
    }
}
