//! Node health from NVIDIA Xid events in kernel logs.
//!
//! The driver logs `NVRM: Xid (PCI:0000:3b:00): 79, pid=…, GPU has fallen off the bus.` Each
//! Xid code maps to what an operator does about it, after NVIDIA's Xid catalog: errors that mean
//! the GPU or its memory is broken (fallen off the bus, uncorrectable ECC, NVLink failure, GSP
//! failure) make the node **Unhealthy** — drain it and requeue its jobs; errors that mean memory
//! is wearing (page retirement, row remapping, excessive correctable ECC) make it **Degraded**;
//! application faults (illegal memory access, MMU faults, a killed context) leave it Healthy.
//!
//! ```
//! use aistd_scheduler::health::{HealthTracker, NodeHealth};
//!
//! let mut t = HealthTracker::default();
//! t.observe("gpu-3", "[ 9.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=2211, GPU has fallen off the bus.");
//! assert_eq!(t.health("gpu-3"), NodeHealth::Unhealthy);
//! # Ok::<(), aistd_scheduler::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    /// Schedulable.
    Healthy,
    /// Schedulable, but flagged for maintenance.
    Degraded,
    /// Drained: no placements, running jobs requeued.
    Unhealthy,
}

/// One Xid event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct XidEvent {
    /// The GPU's PCI address as logged.
    pub pci: String,
    /// The Xid code.
    pub code: u32,
    /// The rest of the line after the code.
    pub detail: String,
}

/// Parses an `NVRM: Xid (PCI:…): CODE, …` kernel log line.
pub fn parse_xid(line: &str) -> Option<XidEvent> {
    let rest = &line[line.find("NVRM: Xid")? + "NVRM: Xid".len()..];
    let open = rest.find('(')?;
    let close = rest[open..].find(')')? + open;
    let inside = rest[open + 1..close].trim();
    let pci = inside.strip_prefix("PCI:").unwrap_or(inside).to_string();
    let after = rest[close + 1..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse().ok()?;
    let detail = after[digits.len()..]
        .trim_start_matches([',', ' '])
        .trim()
        .to_string();
    Some(XidEvent { pci, code, detail })
}

/// What an Xid means for the node.
pub fn classify(code: u32) -> NodeHealth {
    match code {
        // Double-bit ECC, internal micro-controller errors, NVLink failure, GPU off the bus,
        // uncontained ECC, GSP RPC timeouts and errors.
        48 | 61 | 62 | 74 | 79 | 95 | 119 | 120 => NodeHealth::Unhealthy,
        // Page retirement / row remapping events and failures, excessive single-bit ECC,
        // contained ECC errors.
        63 | 64 | 92 | 94 => NodeHealth::Degraded,
        // Application faults (13 graphics exception, 31 MMU fault, 43 stopped, 45 preemptive
        // cleanup, 68 video decoder) and everything else: no node action.
        _ => NodeHealth::Healthy,
    }
}

/// The worst health seen per node, from log lines.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    nodes: BTreeMap<String, (NodeHealth, Vec<XidEvent>)>,
}

impl HealthTracker {
    /// Reads one log line of `node`; returns the Xid event it held, if any.
    pub fn observe(&mut self, node: &str, line: &str) -> Option<XidEvent> {
        let ev = parse_xid(line)?;
        let h = classify(ev.code);
        let e = self
            .nodes
            .entry(node.to_string())
            .or_insert((NodeHealth::Healthy, Vec::new()));
        e.0 = e.0.max(h);
        e.1.push(ev.clone());
        Some(ev)
    }

    /// A node's health (Healthy if nothing was seen).
    pub fn health(&self, node: &str) -> NodeHealth {
        self.nodes.get(node).map_or(NodeHealth::Healthy, |e| e.0)
    }

    /// The Xid events seen on a node.
    pub fn events(&self, node: &str) -> &[XidEvent] {
        self.nodes.get(node).map_or(&[], |e| e.1.as_slice())
    }

    /// Marks a node healthy again (after repair), forgetting its events.
    pub fn repaired(&mut self, node: &str) {
        self.nodes.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_lines_and_classifies() {
        let e = parse_xid("[ 1234.5] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.").expect("xid");
        assert_eq!((e.pci.as_str(), e.code), ("0000:3b:00", 79));
        assert!(e.detail.starts_with("pid=1234"), "{}", e.detail);
        let e = parse_xid("kernel: NVRM: Xid (PCI:0000:18:00): 13, Graphics SM Warp Exception")
            .expect("xid");
        assert_eq!(e.code, 13);
        assert_eq!(
            parse_xid("NVRM: loading NVIDIA UNIX x86_64 Kernel Module"),
            None
        );
        assert_eq!(parse_xid("NVRM: Xid (PCI:0000:18:00): , no code"), None);
        assert_eq!(classify(79), NodeHealth::Unhealthy);
        assert_eq!(classify(48), NodeHealth::Unhealthy);
        assert_eq!(classify(94), NodeHealth::Degraded);
        assert_eq!(classify(31), NodeHealth::Healthy);
        let mut t = HealthTracker::default();
        t.observe("n1", "NVRM: Xid (PCI:0000:18:00): 63, Row remapping event");
        assert_eq!(t.health("n1"), NodeHealth::Degraded);
        t.observe("n1", "NVRM: Xid (PCI:0000:18:00): 13, app fault");
        assert_eq!(
            t.health("n1"),
            NodeHealth::Degraded,
            "health never improves by itself"
        );
        t.observe(
            "n1",
            "NVRM: Xid (PCI:0000:18:00): 95, Uncontained ECC error",
        );
        assert_eq!(
            (t.health("n1"), t.events("n1").len()),
            (NodeHealth::Unhealthy, 3)
        );
        assert_eq!(t.health("n2"), NodeHealth::Healthy);
        t.repaired("n1");
        assert_eq!(t.health("n1"), NodeHealth::Healthy);
    }
}
