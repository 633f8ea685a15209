//! Placement: which node runs a job. A pure function of the nodes' current capacity and the
//! job's requirements, so it is tested with tables and never touches the network or the store.

use std::collections::BTreeMap;
use std::fmt;

use crate::node::NodeId;

/// What placement knows of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub id: NodeId,
    /// Its labels, matched against a job's selector.
    pub labels: BTreeMap<String, String>,
    /// Connected and heartbeating; a node that is not ready gets no work.
    pub ready: bool,
    /// Slots not held by an attempt.
    pub free_slots: u32,
    /// Memory not reserved by the attempts it holds, bytes.
    pub free_memory_bytes: u64,
}

/// What a job needs of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Labels the node must carry with exactly these values.
    pub label_selector: BTreeMap<String, String>,
    /// The job's memory limit, reserved on the node while it runs.
    pub memory_bytes: u64,
}

/// No node can take the job now: how many nodes each filter ruled out. Each node is counted
/// once, by the first filter it fails (ready, labels, slots, memory, in that order).
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct Unplaceable {
    /// Nodes known to the scheduler.
    pub nodes: usize,
    /// Not ready.
    pub down: usize,
    /// Ruled out by a label, keyed by the first selector entry (`key=value`) they fail.
    pub filtered_by_label: BTreeMap<String, usize>,
    /// Without a free slot.
    pub out_of_slots: usize,
    /// Without enough free memory.
    pub out_of_memory: usize,
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no node fits: no node has registered");
        }
        write!(f, "no node fits: {} down, ", self.down)?;
        if self.filtered_by_label.is_empty() {
            f.write_str("0 filtered by label, ")?;
        }
        for (label, count) in &self.filtered_by_label {
            write!(f, "{count} filtered by label {label}, ")?;
        }
        write!(
            f,
            "{} out of slots, {} out of memory",
            self.out_of_slots, self.out_of_memory
        )
    }
}

/// Chooses the node for a job: among the ready nodes that carry every selector label, have a
/// free slot and enough free memory, the one with the most free slots, then the most free
/// memory, then the smallest id, so that the choice is deterministic and spreads the load.
///
/// # Errors
/// [`Unplaceable`] explaining, filter by filter, why no node fits.
pub fn place(nodes: &[NodeView], req: &Requirements) -> Result<NodeId, Unplaceable> {
    let mut why = Unplaceable {
        nodes: nodes.len(),
        ..Unplaceable::default()
    };
    let mut best: Option<&NodeView> = None;
    for node in nodes {
        if !node.ready {
            why.down += 1;
            continue;
        }
        if let Some((key, value)) = req
            .label_selector
            .iter()
            .find(|(k, v)| node.labels.get(*k) != Some(*v))
        {
            *why.filtered_by_label
                .entry(format!("{key}={value}"))
                .or_default() += 1;
            continue;
        }
        if node.free_slots == 0 {
            why.out_of_slots += 1;
            continue;
        }
        if node.free_memory_bytes < req.memory_bytes {
            why.out_of_memory += 1;
            continue;
        }
        let better = best.is_none_or(|b| {
            (
                node.free_slots,
                node.free_memory_bytes,
                std::cmp::Reverse(&node.id),
            ) > (b.free_slots, b.free_memory_bytes, std::cmp::Reverse(&b.id))
        });
        if better {
            best = Some(node);
        }
    }
    best.map(|n| n.id.clone()).ok_or(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"id ready slots memory k=v,k=v"`, ready being `up` or `down`.
    fn node(spec: &str) -> NodeView {
        let mut parts = spec.split_whitespace();
        let mut next = || parts.next().unwrap_or_default();
        let id = NodeId::from(next());
        let ready = next() == "up";
        let free_slots = next().parse().expect("slots");
        let free_memory_bytes = next().parse().expect("memory");
        let labels = next()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        NodeView {
            id,
            labels,
            ready,
            free_slots,
            free_memory_bytes,
        }
    }

    fn check(nodes: &[&str], selector: &str, memory_bytes: u64, expected: &str) {
        let nodes: Vec<_> = nodes.iter().map(|s| node(s)).collect();
        let req = Requirements {
            label_selector: selector
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            memory_bytes,
        };
        let got = match place(&nodes, &req) {
            Ok(id) => id.to_string(),
            Err(why) => why.to_string(),
        };
        assert_eq!(got, expected, "nodes {nodes:?}, selector {selector:?}");
    }

    #[test]
    fn filters() {
        // each filter on its own
        check(&["a down 4 100 -", "b up 4 100 -"], "", 10, "b");
        check(
            &["a up 4 100 zone=beta", "b up 4 100 zone=alpha"],
            "zone=alpha",
            10,
            "b",
        );
        check(&["a up 0 100 -", "b up 1 100 -"], "", 10, "b");
        check(&["a up 4 9 -", "b up 1 10 -"], "", 10, "b");
        // every selector label must match, not just one
        check(
            &["a up 4 100 zone=alpha", "b up 1 100 zone=alpha,gpu=yes"],
            "zone=alpha,gpu=yes",
            10,
            "b",
        );
        // a job without a memory requirement fits a node with no free memory
        check(&["a up 1 0 -"], "", 0, "a");
    }

    #[test]
    fn tie_breaks() {
        // most free slots first, even with less memory
        check(&["a up 2 1000 -", "b up 3 10 -"], "", 10, "b");
        // then most free memory
        check(&["a up 3 100 -", "b up 3 200 -"], "", 10, "b");
        // then the smallest id, whatever the order given
        check(
            &["c up 3 100 -", "a up 3 100 -", "b up 3 100 -"],
            "",
            10,
            "a",
        );
    }

    #[test]
    fn explanations() {
        check(&[], "", 10, "no node fits: no node has registered");
        check(
            &[
                "a down 4 100 zone=beta",
                "b up 4 100 zone=beta",
                "c up 4 100 -",
                "d up 0 100 zone=alpha",
            ],
            "zone=alpha",
            10,
            "no node fits: 1 down, 2 filtered by label zone=alpha, 1 out of slots, 0 out of memory",
        );
        // counted once, by the first filter failed; labels by the first entry they fail
        check(
            &[
                "a down 0 0 -",
                "b up 0 0 gpu=yes",
                "c up 0 0 zone=alpha",
                "d up 1 5 gpu=yes,zone=alpha",
            ],
            "gpu=yes,zone=alpha",
            10,
            "no node fits: 1 down, 1 filtered by label gpu=yes, \
             1 filtered by label zone=alpha, 0 out of slots, 1 out of memory",
        );
        check(
            &["a up 0 100 -"],
            "",
            10,
            "no node fits: 0 down, 0 filtered by label, 1 out of slots, 0 out of memory",
        );
    }
}
