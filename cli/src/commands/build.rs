//! `vauban build`: build a guest project (made by `vauban new`) for its wasm target, sign the
//! module with the developer's key and print the digest the scheduler will know it by.
//!
//! A project is a Cargo package with a `Vauban.toml` beside its `Cargo.toml`. Cargo does the
//! building, and its JSON messages say where the binary is, so a `CARGO_TARGET_DIR` or a
//! `build.target-dir` setting is honoured; the signed module always lands in the project's
//! `target/vauban/<bin>.wasm`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use vauban_core::{ModuleDigest, ModuleKind, SecretKey};

/// The project's Vauban settings, beside its `Cargo.toml`.
pub(crate) const SETTINGS_FILE: &str = "Vauban.toml";

/// The key `vauban dev` generates, relative to the directory it was started in (its default
/// `--data-dir`, `.vauban/dev`, then `keys/dev.key`).
const DEV_KEY: &str = ".vauban/dev/keys/dev.key";

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The private key (PKCS#8 PEM) to sign with. Default: the `key` in Vauban.toml, else the
    /// key `vauban dev` generated (.vauban/dev/keys/dev.key in the current directory, the
    /// project's or one of their parents).
    #[arg(long, short = 'k', env = "VAUBAN_SIGNING_KEY")]
    key: Option<PathBuf>,
    /// The wasm target to build for. Default: the `target` in Vauban.toml.
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// The project directory (the one holding Vauban.toml).
    #[arg(default_value = ".")]
    path: PathBuf,
}

/// The WASI targets a guest is built for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
pub(crate) enum Target {
    /// A component (WASI preview 2).
    #[default]
    #[value(name = "wasm32-wasip2")]
    #[serde(rename = "wasm32-wasip2")]
    Wasip2,
    /// A core module (WASI preview 1), run as a command.
    #[value(name = "wasm32-wasip1")]
    #[serde(rename = "wasm32-wasip1")]
    Wasip1,
}

impl Target {
    /// The target triple, as rustup and cargo spell it.
    pub(crate) fn triple(self) -> &'static str {
        match self {
            Self::Wasip2 => "wasm32-wasip2",
            Self::Wasip1 => "wasm32-wasip1",
        }
    }
}

/// `Vauban.toml`: what `vauban build` needs beyond Cargo.toml. Every field is optional; an
/// unknown one is refused, so a misspelt setting is not silently ignored.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// The target built for when `--target` is not given.
    #[serde(default)]
    pub(crate) target: Target,
    /// The signing key when neither `--key` nor `VAUBAN_SIGNING_KEY` is given, relative to the
    /// project directory.
    pub(crate) key: Option<PathBuf>,
}

impl Settings {
    /// Parses the text of a `Vauban.toml`.
    ///
    /// # Errors
    /// TOML that is malformed, or has unknown fields or an unknown target.
    pub(crate) fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads the `Vauban.toml` of a project directory.
    fn load(project: &Path) -> anyhow::Result<Self> {
        let path = project.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a project made by `vauban new`?)",
                path.display(),
                project.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Where the signing key was found, to say so in messages.
#[derive(Debug, PartialEq, Eq)]
enum KeySource {
    /// `--key` or `VAUBAN_SIGNING_KEY`.
    Flag,
    /// The project's `Vauban.toml`.
    Settings,
    /// The key `vauban dev` generated.
    Dev,
}

pub(crate) fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let project = cwd.join(&args.path);
    let settings = Settings::load(&project)?;
    let target = args.target.unwrap_or(settings.target);
    // Everything that can be refused quickly is, before a build that may take minutes.
    let (key_path, source) = signing_key(args.key.as_deref(), &settings, &project, &cwd)?;
    let key = SecretKey::from_file(&key_path).with_context(|| match source {
        KeySource::Flag => "loading the signing key given by --key or VAUBAN_SIGNING_KEY",
        KeySource::Settings => "loading the signing key named in Vauban.toml",
        KeySource::Dev => "loading the vauban dev key",
    })?;
    check_target_installed(&project, target)?;

    let (bin, wasm) = cargo_build(&project, target)?;
    let dir = project.join("target/vauban");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let output = dir.join(format!("{bin}.wasm"));
    let signed = super::sign::sign_to(&key, &wasm, &output)?;

    let shown = |path: &Path| {
        path.strip_prefix(&cwd)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    println!("built {}: {}", shown(&output), ModuleKind::detect(&signed)?);
    println!("digest: {}", ModuleDigest::of(&signed));
    println!(
        "signed by {} (key id {})",
        shown(&key_path),
        key.public_key().id()
    );
    Ok(ExitCode::SUCCESS)
}

/// Chooses the signing key: `--key` (or `VAUBAN_SIGNING_KEY`, which clap folds into it), else
/// the `key` of Vauban.toml (relative to the project), else the first `vauban dev` key found
/// in `cwd` or its parents, then in `project` or its parents.
///
/// # Errors
/// No key anywhere: the message says every way to give one.
fn signing_key(
    flag: Option<&Path>,
    settings: &Settings,
    project: &Path,
    cwd: &Path,
) -> anyhow::Result<(PathBuf, KeySource)> {
    if let Some(path) = flag {
        return Ok((cwd.join(path), KeySource::Flag));
    }
    if let Some(path) = &settings.key {
        return Ok((project.join(path), KeySource::Settings));
    }
    cwd.ancestors()
        .chain(project.ancestors())
        .map(|dir| dir.join(DEV_KEY))
        .find(|path| path.is_file())
        .map(|path| (path, KeySource::Dev))
        .with_context(|| {
            format!(
                "no signing key: pass --key PATH, set VAUBAN_SIGNING_KEY, name one in {} \
                 (key = \"PATH\"), or start `vauban dev` once in this directory: it generates {DEV_KEY}",
                SETTINGS_FILE
            )
        })
}

/// Fails, with the command that fixes it, if the toolchain that will build the project lacks
/// the target's standard library. (rustc runs in the project, so a `rust-toolchain.toml` there
/// is honoured, as cargo will honour it.)
fn check_target_installed(project: &Path, target: Target) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target.triple()])
        .current_dir(project)
        .stderr(Stdio::inherit())
        .output()
        .context("running rustc (install Rust with rustup: https://rustup.rs)")?;
    anyhow::ensure!(
        out.status.success(),
        "rustc --print target-libdir failed ({})",
        out.status
    );
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    anyhow::ensure!(
        libdir.is_dir(),
        "the Rust standard library for {t} is not installed: run `rustup target add {t}`",
        t = target.triple()
    );
    Ok(())
}

/// Runs `cargo build --release --target T` in the project, its progress and diagnostics
/// streamed to our stderr, and returns the name and path of the binary it built.
fn cargo_build(project: &Path, target: Target) -> anyhow::Result<(String, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", target.triple()])
        // JSON messages on stdout (read here), diagnostics rendered on stderr as usual.
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo (install Rust with rustup: https://rustup.rs)")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut bins = Vec::new();
    for line in BufReader::new(stdout).lines() {
        bins.extend(bin_artifact(&line.context("reading cargo's output")?));
    }
    let status = child.wait().context("waiting for cargo")?;
    anyhow::ensure!(status.success(), "cargo build failed ({status})");
    match <[_; 1]>::try_from(bins) {
        Ok([bin]) => Ok(bin),
        Err(bins) => {
            let names: Vec<&str> = bins.iter().map(|(name, _)| name.as_str()).collect();
            anyhow::bail!(
                "expected cargo to build one binary, it built {}: [{}]",
                names.len(),
                names.join(", ")
            )
        }
    }
}

/// The name and file of a binary, if `line` is cargo's JSON message announcing one.
fn bin_artifact(line: &str) -> Option<(String, PathBuf)> {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        target: Option<CargoTarget>,
        executable: Option<PathBuf>,
    }
    #[derive(Deserialize)]
    struct CargoTarget {
        name: String,
        kind: Vec<String>,
    }
    let message: Message = serde_json::from_str(line).ok()?;
    let target = message.target?;
    (message.reason == "compiler-artifact" && target.kind.iter().any(|k| k == "bin"))
        .then_some((target.name, message.executable?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Settings, &str>) {
        match (Settings::parse(text), expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{text}"),
            (Err(got), Err(expected)) => {
                assert!(got.to_string().contains(expected), "{text}: {got}")
            }
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_settings() {
        check("", Ok(Settings::default()));
        check(
            "# comment only\n",
            Ok(Settings {
                target: Target::Wasip2,
                key: None,
            }),
        );
        check(
            "target = \"wasm32-wasip1\"\nkey = \"keys/me.key\"\n",
            Ok(Settings {
                target: Target::Wasip1,
                key: Some(PathBuf::from("keys/me.key")),
            }),
        );
        check("target = \"wasm32-wasip3\"", Err("unknown variant"));
        check("targt = \"wasm32-wasip1\"", Err("unknown field `targt`"));
        check("key = 3", Err("invalid type"));
    }

    #[test]
    fn the_template_is_the_default_plus_its_target() {
        let text = super::super::new::settings(Target::Wasip1);
        assert_eq!(
            Settings::parse(&text).expect("the template parses"),
            Settings {
                target: Target::Wasip1,
                key: None
            }
        );
    }

    #[test]
    fn a_key_is_chosen_by_flag_then_settings_then_the_dev_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let project = root.join("work/greeter");
        let cwd = root.join("work");
        std::fs::create_dir_all(&project).expect("mkdir");
        let named = Settings {
            key: Some(PathBuf::from("keys/me.key")),
            ..Settings::default()
        };
        let none = Settings::default();

        let got = signing_key(Some(Path::new("k.key")), &named, &project, &cwd).expect("flag");
        assert_eq!(got, (cwd.join("k.key"), KeySource::Flag));
        let got = signing_key(None, &named, &project, &cwd).expect("settings");
        assert_eq!(got, (project.join("keys/me.key"), KeySource::Settings));
        let err = signing_key(None, &none, &project, &cwd).expect_err("no key anywhere");
        assert!(err.to_string().contains("vauban dev"), "{err}");

        // The dev key: the project's, when that is the only one.
        let in_project = project.join(DEV_KEY);
        std::fs::create_dir_all(in_project.parent().expect("parent")).expect("mkdir");
        std::fs::write(&in_project, "").expect("write");
        let got = signing_key(None, &none, &project, &cwd).expect("project's");
        assert_eq!(got, (in_project, KeySource::Dev));
        // The current directory's parents come first: where `vauban dev` was started.
        let in_root = root.join(DEV_KEY);
        std::fs::create_dir_all(in_root.parent().expect("parent")).expect("mkdir");
        std::fs::write(&in_root, "").expect("write");
        let got = signing_key(None, &none, &project, &cwd).expect("parent's");
        assert_eq!(got, (in_root, KeySource::Dev));
    }

    #[test]
    fn finds_the_binary_in_cargos_messages() {
        let bin = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"greeter"},"executable":"/t/wasm32-wasip2/release/greeter.wasm"}"#;
        assert_eq!(
            bin_artifact(bin),
            Some((
                "greeter".to_owned(),
                PathBuf::from("/t/wasm32-wasip2/release/greeter.wasm")
            ))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"serde"},"executable":null}"#;
        assert_eq!(bin_artifact(lib), None);
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(bin_artifact(done), None);
        assert_eq!(bin_artifact("not json"), None);
    }
}
