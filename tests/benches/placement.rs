//! Placement throughput: 100,000 instances placed one after another (`place` + `commit`, one
//! thread) on a simulated cluster of 10,000 nodes, run with
//! `cargo bench -p vauban-tests --bench placement`.
//!
//! Two scenarios on the same nodes and job mix: *roomy*, where the work fits with room to
//! spare (about three quarters of the memory taken at the end), and *tight*, where larger
//! instances ask for a little more memory than the cluster has, so that nodes fill up, scans
//! pass over full nodes, high-priority work preempts batch work and some instances wait.
//!
//! Nodes: 20 sites, 5 jurisdictions, 2 tiers, 2 architectures, 3 runtime versions (about
//! 1,200 label combinations), 32–128 slots, 8–64 GiB, 2% down or draining, a third holding
//! compiled artifacts. Jobs: 60% unconstrained, 30% with a jurisdiction constraint, 10% with
//! a constraint and an affinity, and about 3% of instances in four-replica services spread
//! over sites; priorities and memory mixed so that some nodes fill up and high-priority jobs
//! preempt batch work. Everything is drawn from a fixed seed: runs are comparable.
//!
//! These machines are shared and noisy: read the figures as orders of magnitude.

#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vauban_core::ModuleDigest;
use vauban_scheduler::placement::{
    Affinity, Ask, Cluster, Constraint, NodeView, Operator, PlacementSpec, Spread,
};
use vauban_scheduler::{JobId, NodeId};

const NODES: usize = 10_000;
const PLACEMENTS: usize = 100_000;
const MODULES: usize = 50;
const SITES: usize = 20;
const JURISDICTIONS: [&str; 5] = ["FR", "DE", "IT", "ES", "NL"];
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Each scenario's instance sizes, drawn evenly.
const SCENARIOS: [(&str, [u64; 6]); 2] = [
    (
        "roomy",
        [256 * MIB, 512 * MIB, GIB, 2 * GIB, 4 * GIB, 8 * GIB],
    ),
    (
        "tight",
        [512 * MIB, GIB, 2 * GIB, 4 * GIB, 6 * GIB, 8 * GIB],
    ),
];

/// The kinds of work, one row each in the report.
const MIXES: [&str; 4] = [
    "no constraint",
    "jurisdiction constraint",
    "constraint + affinity",
    "spread over sites (x4)",
];

/// splitmix64: small, fast, and the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

struct Job {
    id: JobId,
    mix: usize,
    module: usize,
    memory: u64,
    priority: u8,
    preemptible: bool,
    instances: u32,
    spec: PlacementSpec,
}

fn main() {
    let modules: Vec<ModuleDigest> = (0..MODULES)
        .map(|i| ModuleDigest::of(format!("module-{i}").as_bytes()))
        .collect();
    for (i, (name, sizes)) in SCENARIOS.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let mut rng = Rng(0x7661_7562_616e);
        let nodes = nodes(&mut rng, &modules);
        let jobs = jobs(&mut rng, sizes);
        println!("scenario {name}");
        run(&modules, nodes, &jobs);
    }
}

fn run(modules: &[ModuleDigest], nodes: Vec<NodeView>, jobs: &[Job]) {
    let started = Instant::now();
    let mut cluster = Cluster::new(nodes);
    let indexed = started.elapsed();

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); MIXES.len()];
    let mut evaluated = [0usize; MIXES.len()];
    let mut unplaceable = [0usize; MIXES.len()];
    let mut preemptions = 0;
    let mut victims = 0;
    let mut placed_on: Vec<NodeId> = Vec::new();
    let started = Instant::now();
    for job in jobs {
        placed_on.clear();
        for attempt in 0..job.instances {
            let ask = Ask {
                job: &job.id,
                module: &modules[job.module],
                memory_bytes: job.memory,
                priority: job.priority,
                spec: &job.spec,
                placed_on: &placed_on,
                only_node: None,
                preemptible: job.preemptible,
            };
            let one = Instant::now();
            let placement = cluster.place(&ask);
            if let Ok(placement) = &placement {
                cluster.commit(&ask, placement, attempt);
            }
            samples[job.mix].push(one.elapsed());
            match placement {
                Ok(placement) => {
                    evaluated[job.mix] += placement.explanation.evaluated;
                    if !placement.preempt.is_empty() {
                        preemptions += 1;
                        victims += placement.preempt.len();
                    }
                    placed_on.push(placement.node);
                }
                Err(wait) => {
                    evaluated[job.mix] += wait.explanation.evaluated;
                    unplaceable[job.mix] += 1;
                }
            }
        }
    }
    let total = started.elapsed();

    println!(
        "{NODES} nodes ({} label classes), indexed by Cluster::new in {indexed:.1?}",
        classes(&cluster)
    );
    println!(
        "{:<26} {:>10} {:>12} {:>9} {:>9} {:>10} {:>11}",
        "mix", "placements", "per second", "p50 µs", "p99 µs", "evaluated", "unplaceable"
    );
    for (mix, name) in MIXES.iter().enumerate() {
        let count = samples[mix].len();
        let busy: Duration = samples[mix].iter().sum();
        print_row(
            name,
            count,
            count as f64 / busy.as_secs_f64(),
            &mut samples[mix],
            evaluated[mix] as f64 / count.max(1) as f64,
            unplaceable[mix],
        );
    }
    let mut all: Vec<Duration> = samples.concat();
    let count = all.len();
    print_row(
        "all (wall clock)",
        count,
        count as f64 / total.as_secs_f64(),
        &mut all,
        evaluated.iter().sum::<usize>() as f64 / count as f64,
        unplaceable.iter().sum(),
    );
    let used: u64 = cluster
        .nodes()
        .iter()
        .flat_map(|n| &n.residents)
        .map(|r| r.memory_bytes)
        .sum();
    let offered: u64 = cluster.nodes().iter().map(|n| n.total_memory_bytes).sum();
    let slots: usize = cluster.nodes().iter().map(|n| n.residents.len()).sum();
    let offered_slots: u64 = cluster
        .nodes()
        .iter()
        .map(|n| u64::from(n.total_slots))
        .sum();
    println!(
        "{preemptions} placements preempted {victims} residents; at the end {:.0}% of slots and \
         {:.0}% of memory are taken",
        100.0 * slots as f64 / offered_slots as f64,
        100.0 * used as f64 / offered as f64,
    );
}

/// The simulated cluster: 10,000 nodes, 2% of them not schedulable.
fn nodes(rng: &mut Rng, modules: &[ModuleDigest]) -> Vec<NodeView> {
    (0..NODES)
        .map(|i| {
            let mut labels = BTreeMap::new();
            let site = rng.below(SITES);
            let mut label = |k: &str, v: String| labels.insert(k.to_owned(), v);
            label("site", format!("site-{site:02}"));
            // Sites belong to one jurisdiction each, as they would.
            label(
                "jurisdiction",
                JURISDICTIONS[site % JURISDICTIONS.len()].to_owned(),
            );
            label("tier", ["edge", "core"][rng.below(2)].to_owned());
            label("arch", ["x86_64", "aarch64"][rng.below(2)].to_owned());
            label(
                "runtime",
                ["1.2.0", "1.3.1", "2.0.0"][rng.below(3)].to_owned(),
            );
            let (schedulable, unschedulable_reason) = match rng.below(100) {
                0 => (false, "down"),
                1 => (false, "draining"),
                _ => (true, ""),
            };
            let mut cached_modules = BTreeSet::new();
            if rng.chance(33) {
                for _ in 0..rng.range(1, 3) {
                    cached_modules.insert(modules[rng.below(modules.len())]);
                }
            }
            NodeView {
                id: NodeId::from(format!("node-{i:05}")),
                labels,
                schedulable,
                unschedulable_reason,
                total_slots: rng.range(32, 128) as u32,
                total_memory_bytes: rng.range(8, 64) * GIB,
                residents: Vec::new(),
                cached_modules,
            }
        })
        .collect()
}

/// Jobs until they make [`PLACEMENTS`] instances.
fn jobs(rng: &mut Rng, sizes: &[u64; 6]) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut instances = 0;
    while instances < PLACEMENTS {
        let jurisdiction = Constraint {
            label: "jurisdiction".to_owned(),
            op: Operator::Eq(JURISDICTIONS[rng.below(JURISDICTIONS.len())].to_owned()),
        };
        let mut spec = PlacementSpec::default();
        let roll = rng.below(1000);
        let mix = match roll {
            0..8 => 3,
            8..600 => 0,
            600..900 => 1,
            _ => 2,
        };
        match mix {
            1 => spec.constraints.push(jurisdiction),
            2 => {
                spec.constraints.push(jurisdiction);
                let site = rng.below(SITES);
                spec.affinities.push(Affinity {
                    label: "site".to_owned(),
                    op: Operator::Eq(format!("site-{site:02}")),
                    weight: 50,
                });
                spec.affinities.push(Affinity {
                    label: "tier".to_owned(),
                    op: Operator::Eq("edge".to_owned()),
                    weight: -20,
                });
            }
            3 => spec.spreads.push(Spread {
                label: "site".to_owned(),
                weight: 50,
                targets: BTreeMap::new(),
            }),
            _ => {}
        }
        // A fifth of the work is batch (preemptible, low priority), a few are urgent.
        let (priority, preemptible) = match rng.below(100) {
            0..20 => (20, true),
            20..25 => (90, false),
            _ => (50, false),
        };
        let memory = sizes[rng.below(sizes.len())];
        let count = if mix == 3 { 4 } else { 1 };
        jobs.push(Job {
            id: JobId::from(format!("job-{:06}", jobs.len())),
            mix,
            module: rng.below(MODULES),
            memory,
            priority,
            preemptible,
            instances: count,
            spec,
        });
        instances += count as usize;
    }
    jobs
}

/// Distinct label maps among the nodes (what the cluster groups into classes).
fn classes(cluster: &Cluster) -> usize {
    let distinct: BTreeSet<_> = cluster
        .nodes()
        .iter()
        .map(|n| (&n.labels, n.unschedulable_reason))
        .collect();
    distinct.len()
}

fn print_row(
    name: &str,
    count: usize,
    per_second: f64,
    samples: &mut [Duration],
    evaluated: f64,
    unplaceable: usize,
) {
    samples.sort();
    let p = |q: f64| {
        let i = ((samples.len().max(1) - 1) as f64 * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{name:<26} {count:>10} {per_second:>12.0} {:>9.1} {:>9.1} {evaluated:>10.0} \
         {unplaceable:>11}",
        p(0.5),
        p(0.99)
    );
}
