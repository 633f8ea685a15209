//! `env-snoop`: prints every environment variable it can see, then probes for specific
//! names given as arguments.
//!
//! Output: `ENV {K}={V}` for each visible variable (sorted by name, lossy UTF-8), then for
//! each argument `NAME`: `FOUND {NAME}={V}` or `MISSING {NAME}`. Exits 0.
//!
//! What a host test expects: only the variables the job was explicitly granted appear;
//! host variables (`PATH`, `HOME`, secrets set in the host's environment) are `MISSING`.

use std::ffi::OsString;

fn main() {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    for (key, value) in &vars {
        println!("ENV {}={}", key.to_string_lossy(), value.to_string_lossy());
    }
    for name in std::env::args().skip(1) {
        match std::env::var_os(&name) {
            Some(value) => println!("FOUND {name}={}", value.to_string_lossy()),
            None => println!("MISSING {name}"),
        }
    }
}
