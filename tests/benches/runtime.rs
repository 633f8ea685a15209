//! Host runtime benchmarks, run with `cargo xtask bench`.
//!
//! - instantiate + run + teardown of `hello` with its code already loaded, for a preview 1
//!   module and a preview 2 component (the per-job floor of the sandbox);
//! - the largest sample's compile time against loading it from the artifact cache in a fresh
//!   runtime, measured side by side in one run.
//!
//! These machines are shared and noisy: read ratios measured in the same run, not absolutes.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vauban_core::outcome::CodeSource;
use vauban_host::{RunRequest, Runtime, RuntimeConfig};
use vauban_tests::{Publisher, Target, caps, sample_path};

const RUNS: usize = 2_000;
const LOADS: usize = 5;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let publisher = Publisher::new();
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = new_runtime(&publisher, cache.path());

    println!(
        "{:<60} {:>10} {:>10} {:>10}",
        "benchmark", "p50", "p99", "mean"
    );
    for target in Target::BOTH {
        let module = runtime
            .load(&publisher.signed("hello", target))
            .expect("load");
        let mut samples = Vec::with_capacity(RUNS);
        tokio.block_on(async {
            for i in 0..RUNS + 100 {
                let request = RunRequest {
                    capabilities: caps(),
                    ..RunRequest::default()
                };
                let started = Instant::now();
                let report = runtime
                    .run(&module, request, &CancellationToken::new())
                    .await;
                let elapsed = started.elapsed();
                assert!(report.outcome.is_success());
                if i >= 100 {
                    samples.push(elapsed); // after warm-up
                }
            }
        });
        print_row(
            &format!("hello {}: instantiate+run+teardown", target.triple()),
            samples,
        );
    }

    let largest = ["hello", "track-fusion", "integrity-scan", "path-escape"]
        .into_iter()
        .flat_map(|name| Target::BOTH.map(|t| (name, t)))
        .max_by_key(|(name, t)| {
            std::fs::metadata(sample_path(name, *t))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .expect("samples");
    let bytes = publisher.signed(largest.0, largest.1);
    let (mut compile, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..LOADS {
        let empty = tempfile::tempdir().expect("tempdir");
        let cold = new_runtime(&publisher, empty.path());
        let loaded = cold.load(&bytes).expect("compile");
        assert_eq!(loaded.code_source, CodeSource::Compiled);
        compile.push(loaded.load_time);
        drop(cold);
        let warm = new_runtime(&publisher, empty.path());
        let loaded = warm.load(&bytes).expect("cache");
        assert_eq!(loaded.code_source, CodeSource::DiskCache);
        cached.push(loaded.load_time);
    }
    let name = format!(
        "{} {} ({} KB)",
        largest.0,
        largest.1.triple(),
        bytes.len() / 1000
    );
    print_row(&format!("{name}: verify+compile"), compile.clone());
    print_row(&format!("{name}: verify+load cached"), cached.clone());
    let ratio = median(&compile).as_secs_f64() / median(&cached).as_secs_f64();
    println!("cache load is {ratio:.0}x faster than compiling (medians, same run)");
}

fn new_runtime(publisher: &Publisher, cache: &std::path::Path) -> Runtime {
    let mut config = RuntimeConfig::new(cache);
    config.trust = publisher.trust();
    Runtime::new(config).expect("runtime")
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn print_row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<60} {:>10} {:>10} {:>10}",
        format!("{:.1?}", p(0.5)),
        format!("{:.1?}", p(0.99)),
        format!("{mean:.1?}")
    );
}
