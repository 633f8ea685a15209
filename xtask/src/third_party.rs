//! `cargo xtask build-third-party`: real programs nobody on the team wrote, built for
//! `wasm32-wasip1` from their published crates.io sources, so the tests run workloads Vauban was
//! not shaped around (third-party/README.md says which, and why these).
//!
//! Each program is `cargo install --locked`ed at a pinned version (the crate's own binaries, its
//! own published lock file) into `target/third-party/<crate>/bin/`. A stamp file beside `bin/`
//! records what was built; a program whose stamp matches its pin and whose binaries are there is
//! not built again, so only the first run (or a changed pin) pays for the build.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

/// One published program.
struct Program {
    /// The crates.io package.
    krate: &'static str,
    /// The exact version built.
    version: &'static str,
    /// `cargo install` flags beyond the pin (features).
    flags: &'static [&'static str],
    /// The binaries the tests run, as `target/third-party/<crate>/bin/<bin>.wasm`.
    bins: &'static [&'static str],
}

/// The programs, with the versions the tests were written against.
const PROGRAMS: [Program; 3] = [
    Program {
        krate: "brotli",
        version: "9.1.1",
        flags: &[],
        bins: &["brotli"],
    },
    Program {
        krate: "pulldown-cmark",
        version: "0.13.6",
        flags: &[],
        bins: &["pulldown-cmark"],
    },
    Program {
        krate: "ripgrep",
        version: "15.2.0",
        flags: &[],
        bins: &["rg"],
    },
];

const TARGET: &str = "wasm32-wasip1";

/// Overrides the crates' release profiles in one respect: no DWARF, as the samples do (ripgrep's
/// `debug = 1` is 16 MiB of its 20 MiB module). The name section stays, so traps name functions.
const PROFILE: [&str; 2] = ["--config", "profile.release.strip=\"debuginfo\""];

impl Program {
    /// The `cargo install` arguments that decide what is built (the stamp records them); the
    /// install root and target directory are added at the call.
    fn install_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["install", "--locked", "--no-track", "--target", TARGET]
            .into_iter()
            .chain(PROFILE)
            .chain(self.flags.iter().copied())
            .map(String::from)
            .collect();
        args.push(format!("{}@{}", self.krate, self.version));
        args
    }

    fn stamp(&self) -> String {
        self.install_args().join(" ") + "\n"
    }
}

/// Builds every program whose stamp does not match its pin.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    crate::ensure_wasm_targets()?;
    let base = root.join("target/third-party");
    for program in &PROGRAMS {
        let dir = base.join(program.krate);
        let stamp_file = dir.join("stamp");
        let built = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == program.stamp())
            && program
                .bins
                .iter()
                .all(|bin| dir.join("bin").join(format!("{bin}.wasm")).is_file());
        if built {
            eprintln!(
                "third-party {}@{}: built, up to date",
                program.krate, program.version
            );
            continue;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let started = Instant::now();
        crate::run(
            crate::cargo()
                .args(program.install_args())
                .arg("--root")
                .arg(&dir)
                // Kept between runs: a changed pin rebuilds only what changed.
                .arg("--target-dir")
                .arg(base.join("build"))
                .current_dir(root),
        )?;
        std::fs::write(&stamp_file, program.stamp())
            .with_context(|| format!("writing {}", stamp_file.display()))?;
        eprintln!(
            "third-party {}@{}: built in {:.1} s",
            program.krate,
            program.version,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
