//! `vauban new`: scaffold a guest project, a Rust job built for wasm32 with the Vauban guest SDK,
//! that `cargo test` checks natively and `vauban build` builds and signs.
//!
//! The files are the templates in `new/`, with the project's name, the SDK's path and the
//! target filled in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::build::{SETTINGS_FILE, Target};

/// The guest SDK of the checkout this binary was built from: the default `--sdk`.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// The SDK's package name, which `--sdk` must point at.
const SDK_PACKAGE: &str = "vauban-guest";

/// Names cargo refuses for a package (they would clash with its own directories or with the
/// standard library), plus the generated project's own dependencies.
const RESERVED: &[&str] = &[
    "build",
    "deps",
    "examples",
    "incremental",
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "serde",
    "vauban_guest",
];

/// Rust's keywords, strict and reserved: a crate is named in code, so none can be a name.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The project's name: a crate name (ASCII letters, digits, `-` and `_`, starting with a
    /// letter). It is also the directory created and the module's file name.
    #[arg(value_parser = crate_name)]
    name: String,
    /// The target `vauban build` builds for (written to Vauban.toml).
    #[arg(long, value_enum, default_value_t = Target::Wasip2)]
    target: Target,
    /// The guest SDK: the `guest-sdk` directory of a Vauban checkout. Default: the one this
    /// vauban was built from.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

pub(crate) fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let sdk = sdk_dir(args.sdk.as_deref())?;
    let dir = PathBuf::from(&args.name);
    // `create_dir`, not `create_dir_all`: an existing directory (or file) is refused, never
    // written into.
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{} already exists: choose another name", dir.display())
        }
        _ => anyhow::Error::new(e).context(format!("creating {}", dir.display())),
    })?;
    if let Err(error) = write_project(&dir, &args.name, &sdk, args.target) {
        // Only what this command created goes: the directory did not exist before.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error);
    }
    println!(
        "created {}/: a Vauban job for {}, with the guest SDK at {}",
        args.name,
        args.target.triple(),
        sdk.display()
    );
    println!(
        "next: cd {}; cargo test; vauban dev (in another terminal); vauban build",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the project's files into `dir`, which exists and is empty.
fn write_project(dir: &Path, name: &str, sdk: &Path, target: Target) -> anyhow::Result<()> {
    let sdk = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk.display()))?;
    // A TOML string, quoted and escaped as TOML wants.
    let sdk = toml::Value::from(sdk).to_string();
    let files = [
        (
            "Cargo.toml",
            include_str!("new/Cargo.toml.tmpl")
                .replace("{{name}}", name)
                .replace("{{sdk}}", &sdk),
        ),
        (
            "src/main.rs",
            include_str!("new/main.rs.tmpl").replace("{{name}}", name),
        ),
        (SETTINGS_FILE, settings(target)),
        (".gitignore", include_str!("new/gitignore.tmpl").to_owned()),
    ];
    std::fs::create_dir(dir.join("src"))
        .with_context(|| format!("creating {}/src", dir.display()))?;
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `Vauban.toml` of a new project.
pub(crate) fn settings(target: Target) -> String {
    include_str!("new/Vauban.toml.tmpl").replace("{{target}}", target.triple())
}

/// The SDK directory, absolute: `--sdk`, else the one this binary was built from.
///
/// # Errors
/// The directory is gone or is not the SDK; the message asks for `--sdk`.
fn sdk_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = flag.unwrap_or(Path::new(BUILT_FROM_SDK));
    let manifest = dir.join("Cargo.toml");
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if flag.is_none() => anyhow::bail!(
            "the guest SDK this vauban was built from is not at {} ({e}): pass --sdk PATH, the \
             guest-sdk directory of a Vauban checkout",
            dir.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "--sdk {}: reading {}",
                dir.display(),
                manifest.display()
            )));
        }
    };
    let package = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
    anyhow::ensure!(
        package.as_deref() == Some(SDK_PACKAGE),
        "{} is not the guest SDK (its Cargo.toml is not package {SDK_PACKAGE:?}): pass --sdk PATH, \
         the guest-sdk directory of a Vauban checkout",
        dir.display()
    );
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// Checks that `name` can name a crate, a directory and a module file.
///
/// # Errors
/// What is wrong with it.
fn crate_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("the name is empty".to_owned()),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(format!("{name:?} must start with an ASCII letter"));
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!(
            "{name:?} contains {c:?}: use ASCII letters, digits, `-` and `_`"
        ));
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 characters"));
    }
    let ident = name.replace('-', "_");
    if KEYWORDS.contains(&ident.as_str()) {
        return Err(format!("{name:?} is a Rust keyword"));
    }
    if RESERVED.contains(&ident.as_str()) {
        return Err(format!("{name:?} is reserved (by cargo, Rust or the SDK)"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: Result<(), &str>) {
        match (crate_name(name), expected) {
            (Ok(got), Ok(())) => assert_eq!(got, name),
            (Err(got), Err(expected)) => assert!(got.contains(expected), "{name}: {got}"),
            (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn validates_names() {
        check("greeter", Ok(()));
        check("track-fusion", Ok(()));
        check("scan_v2", Ok(()));
        check("A1", Ok(()));
        check("", Err("empty"));
        check("2fast", Err("start with an ASCII letter"));
        check("-x", Err("start with an ASCII letter"));
        check("_x", Err("start with an ASCII letter"));
        check("my job", Err("contains ' '"));
        check("a/b", Err("contains '/'"));
        check("a.b", Err("contains '.'"));
        check("café", Err("contains 'é'"));
        check(&"a".repeat(65), Err("longer than 64"));
        check("fn", Err("keyword"));
        check("async", Err("keyword"));
        check("test", Err("reserved"));
        check("build", Err("reserved"));
        check("serde", Err("reserved"));
        check("vauban-guest", Err("reserved"));
    }

    #[test]
    fn scaffolds_a_project() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("greeter");
        let sdk = sdk_dir(None).expect("built from a checkout");
        std::fs::create_dir(&dir).expect("mkdir");
        write_project(&dir, "greeter", &sdk, Target::Wasip1).expect("written");

        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .expect("Cargo.toml")
            .parse()
            .expect("valid TOML");
        assert_eq!(manifest["package"]["name"].as_str(), Some("greeter"));
        assert!(
            manifest["workspace"]
                .as_table()
                .is_some_and(|t| t.is_empty())
        );
        let sdk_dep = manifest["dependencies"]["vauban-guest"]["path"].as_str();
        assert_eq!(sdk_dep.map(Path::new), Some(sdk.as_path()));
        assert_eq!(
            manifest["profile"]["release"]["opt-level"].as_str(),
            Some("s")
        );
        let main = std::fs::read_to_string(dir.join("src/main.rs")).expect("main.rs");
        assert!(main.starts_with("//! greeter: a Vauban job."), "{main}");
        assert!(main.contains("vauban_guest::job!(greet);"), "{main}");
        let settings = std::fs::read_to_string(dir.join(SETTINGS_FILE)).expect("Vauban.toml");
        assert_eq!(
            super::super::build::Settings::parse(&settings).map(|s| s.target),
            Ok(Target::Wasip1)
        );
        let ignored = std::fs::read_to_string(dir.join(".gitignore")).expect(".gitignore");
        assert!(ignored.contains("/target") && ignored.contains("/.vauban"));
    }

    #[test]
    fn an_sdk_elsewhere_must_be_the_sdk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = sdk_dir(Some(tmp.path())).expect_err("no Cargo.toml");
        assert!(err.to_string().contains("--sdk"), "{err}");
        std::fs::write(
            tmp.path().join("Cargo.toml"),
            "[package]\nname = \"other\"\n",
        )
        .expect("write");
        let err = sdk_dir(Some(tmp.path())).expect_err("another package");
        assert!(err.to_string().contains("is not the guest SDK"), "{err}");
    }
}
