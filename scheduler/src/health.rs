//! Node health from NVIDIA Xid events in kernel logs, other kernel hardware errors, GPU
//! telemetry and heartbeats.
//!
//! The driver logs `NVRM: Xid (PCI:0000:3b:00): 79, pid=…, GPU has fallen off the bus.` Each
//! Xid code maps to what an operator does about it, after NVIDIA's Xid catalog: errors that mean
//! the GPU or its memory is broken (fallen off the bus, uncorrectable ECC, NVLink failure, GSP
//! failure) make the node **Unhealthy** — drain it and requeue its jobs; errors that mean memory
//! is wearing (page retirement, row remapping, excessive correctable ECC) make it **Degraded**;
//! application faults (illegal memory access, MMU faults, a killed context) leave it Healthy.
//!
//! Other signals ([`Signal`]): kernel machine-check and EDAC memory errors (uncorrected:
//! Unhealthy; corrected: Degraded), a filesystem remounted read-only (Unhealthy), a NIC link
//! down (Degraded); `nvidia-smi --query-gpu=index,temperature.gpu,
//! ecc.errors.uncorrected.volatile.total,retired_pages.pending --format=csv,noheader,nounits`
//! readings (uncorrectable ECC errors: Unhealthy; at or above the slowdown temperature, or
//! retired pages pending a reset: Degraded; at or above the shutdown temperature: Unhealthy);
//! and a node whose heartbeat is older than the timeout (Unhealthy).
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

/// A kernel log event other than an Xid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KernelEvent {
    /// A machine-check exception (`mce: … Machine Check Exception`, uncorrected).
    MachineCheckUncorrected,
    /// Corrected machine-check events (`mce: [Hardware Error]: Machine check events logged`).
    MachineCheckCorrected,
    /// EDAC uncorrectable memory error (`EDAC MC0: 1 UE …`).
    MemoryUncorrectable,
    /// EDAC correctable memory error (`EDAC MC0: 1 CE …`).
    MemoryCorrectable,
    /// A filesystem remounted read-only after errors.
    FilesystemReadOnly,
    /// A network link went down.
    LinkDown,
}

impl KernelEvent {
    /// What it means for the node.
    pub fn health(self) -> NodeHealth {
        match self {
            KernelEvent::MachineCheckUncorrected
            | KernelEvent::MemoryUncorrectable
            | KernelEvent::FilesystemReadOnly => NodeHealth::Unhealthy,
            KernelEvent::MachineCheckCorrected
            | KernelEvent::MemoryCorrectable
            | KernelEvent::LinkDown => NodeHealth::Degraded,
        }
    }
}

/// Recognises the kernel log lines of [`KernelEvent`].
pub fn parse_kernel(line: &str) -> Option<KernelEvent> {
    let l = line.to_ascii_lowercase();
    if l.contains("machine check exception") || l.contains("mce: uncorrected") {
        Some(KernelEvent::MachineCheckUncorrected)
    } else if l.contains("machine check events logged") {
        Some(KernelEvent::MachineCheckCorrected)
    } else if l.contains("edac") && l.contains(" ue ") {
        Some(KernelEvent::MemoryUncorrectable)
    } else if l.contains("edac") && l.contains(" ce ") {
        Some(KernelEvent::MemoryCorrectable)
    } else if l.contains("remounting filesystem read-only") {
        Some(KernelEvent::FilesystemReadOnly)
    } else if l.contains("link is down") || l.contains(": link down") {
        Some(KernelEvent::LinkDown)
    } else {
        None
    }
}

/// One GPU's telemetry reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuReading {
    /// Device index.
    pub gpu: u32,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Uncorrectable ECC errors since the driver loaded.
    pub uncorrectable_ecc: Option<u64>,
    /// Retired pages waiting for a GPU reset.
    pub retired_pages_pending: Option<bool>,
}

/// Parses `nvidia-smi --query-gpu=index,temperature.gpu,ecc.errors.uncorrected.volatile.total,
/// retired_pages.pending --format=csv,noheader,nounits` output (`[N/A]` fields are unknown).
pub fn parse_nvidia_smi(text: &str) -> crate::Result<Vec<GpuReading>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |why: &str| crate::Error::Trace {
            file: "nvidia-smi".into(),
            line: n + 1,
            reason: format!("{why}: {line:?}"),
        };
        if f.len() != 4 {
            return Err(bad(
                "expected 4 fields (index, temperature, ECC, retired pages)",
            ));
        }
        let known = |v: &str| !(v.starts_with('[') || v.eq_ignore_ascii_case("n/a"));
        let gpu = f[0].parse().map_err(|_| bad("the index is not a number"))?;
        let temperature_c = if known(f[1]) {
            Some(
                f[1].parse()
                    .map_err(|_| bad("the temperature is not a number"))?,
            )
        } else {
            None
        };
        let uncorrectable_ecc = if known(f[2]) {
            Some(
                f[2].parse()
                    .map_err(|_| bad("the ECC count is not a number"))?,
            )
        } else {
            None
        };
        let retired_pages_pending = match f[3] {
            v if !known(v) => None,
            "Yes" | "yes" => Some(true),
            "No" | "no" => Some(false),
            _ => return Err(bad("retired pages pending is not Yes or No")),
        };
        out.push(GpuReading {
            gpu,
            temperature_c,
            uncorrectable_ecc,
            retired_pages_pending,
        });
    }
    Ok(out)
}

/// Temperatures that matter, °C (NVIDIA data-centre GPUs slow down around 87–90 °C and shut
/// down around 92–95 °C; take yours from `nvidia-smi -q -d TEMPERATURE`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Thresholds {
    /// Degraded at or above.
    pub slowdown_c: f64,
    /// Unhealthy at or above.
    pub shutdown_c: f64,
    /// Unhealthy when the last heartbeat is older, seconds.
    pub heartbeat_timeout: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            slowdown_c: 88.0,
            shutdown_c: 93.0,
            heartbeat_timeout: 60.0,
        }
    }
}

/// Anything that tells how a node is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Signal {
    /// An NVIDIA Xid.
    Xid(XidEvent),
    /// Another kernel hardware event.
    Kernel {
        /// Which.
        event: KernelEvent,
        /// The log line.
        line: String,
    },
    /// A GPU reading beyond a threshold.
    Gpu(GpuReading),
    /// No heartbeat for this long, seconds.
    HeartbeatLost {
        /// Age of the last heartbeat.
        age: f64,
    },
}

/// The worst health seen per node, from log lines, GPU readings and heartbeats.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    thresholds: Thresholds,
    nodes: BTreeMap<String, (NodeHealth, Vec<Signal>)>,
    heartbeats: BTreeMap<String, f64>,
}

impl HealthTracker {
    /// A tracker with these thresholds.
    pub fn with_thresholds(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    fn record(&mut self, node: &str, h: NodeHealth, signal: Signal) {
        let e = self
            .nodes
            .entry(node.to_string())
            .or_insert((NodeHealth::Healthy, Vec::new()));
        e.0 = e.0.max(h);
        e.1.push(signal);
    }

    /// Reads one kernel log line of `node`; returns the signal it held (an Xid or another
    /// hardware event), if any.
    pub fn observe(&mut self, node: &str, line: &str) -> Option<Signal> {
        let (h, signal) = if let Some(ev) = parse_xid(line) {
            (classify(ev.code), Signal::Xid(ev))
        } else {
            let event = parse_kernel(line)?;
            (
                event.health(),
                Signal::Kernel {
                    event,
                    line: line.trim().to_string(),
                },
            )
        };
        self.record(node, h, signal.clone());
        Some(signal)
    }

    /// Reads `nvidia-smi` output of `node` (see [`parse_nvidia_smi`]); returns the node's
    /// health after it.
    pub fn observe_gpus(&mut self, node: &str, nvidia_smi: &str) -> crate::Result<NodeHealth> {
        for r in parse_nvidia_smi(nvidia_smi)? {
            let t = r.temperature_c.unwrap_or(0.0);
            let h = if r.uncorrectable_ecc.unwrap_or(0) > 0 || t >= self.thresholds.shutdown_c {
                NodeHealth::Unhealthy
            } else if t >= self.thresholds.slowdown_c || r.retired_pages_pending == Some(true) {
                NodeHealth::Degraded
            } else {
                NodeHealth::Healthy
            };
            if h != NodeHealth::Healthy {
                self.record(node, h, Signal::Gpu(r));
            }
        }
        Ok(self.health(node))
    }

    /// A heartbeat from `node` at `now`.
    pub fn heartbeat(&mut self, node: &str, now: f64) {
        self.heartbeats.insert(node.to_string(), now);
    }

    /// Marks Unhealthy every node whose last heartbeat is older than the timeout at `now`;
    /// returns the nodes newly marked.
    pub fn check_heartbeats(&mut self, now: f64) -> Vec<String> {
        let lost: Vec<(String, f64)> = self
            .heartbeats
            .iter()
            .filter(|(_, t)| now - **t > self.thresholds.heartbeat_timeout)
            .map(|(n, t)| (n.clone(), now - t))
            .filter(|(n, _)| self.health(n) != NodeHealth::Unhealthy)
            .collect();
        for (n, age) in &lost {
            self.record(
                n,
                NodeHealth::Unhealthy,
                Signal::HeartbeatLost { age: *age },
            );
        }
        lost.into_iter().map(|(n, _)| n).collect()
    }

    /// A node's health (Healthy if nothing was seen).
    pub fn health(&self, node: &str) -> NodeHealth {
        self.nodes.get(node).map_or(NodeHealth::Healthy, |e| e.0)
    }

    /// The signals seen on a node.
    pub fn events(&self, node: &str) -> &[Signal] {
        self.nodes.get(node).map_or(&[], |e| e.1.as_slice())
    }

    /// Marks a node healthy again (after repair), forgetting its signals.
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

    #[test]
    fn kernel_gpu_telemetry_and_heartbeat_signals() {
        for (line, want) in [
            (
                "mce: [Hardware Error]: CPU 3: Machine Check Exception: 5 Bank 4",
                KernelEvent::MachineCheckUncorrected,
            ),
            (
                "mce: [Hardware Error]: Machine check events logged",
                KernelEvent::MachineCheckCorrected,
            ),
            (
                "EDAC MC0: 1 UE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
                KernelEvent::MemoryUncorrectable,
            ),
            (
                "EDAC MC1: 3 CE memory scrubbing error on CPU_SrcID#1",
                KernelEvent::MemoryCorrectable,
            ),
            (
                "EXT4-fs (nvme0n1p2): Remounting filesystem read-only",
                KernelEvent::FilesystemReadOnly,
            ),
            (
                "mlx5_core 0000:5e:00.0 ib0: Link down",
                KernelEvent::LinkDown,
            ),
            (
                "ice 0000:31:00.0 ens1f0: NIC Link is Down",
                KernelEvent::LinkDown,
            ),
        ] {
            assert_eq!(parse_kernel(line), Some(want), "{line}");
        }
        assert_eq!(
            parse_kernel("Out of memory: Killed process 1234 (python)"),
            None
        );
        let mut t = HealthTracker::default();
        t.observe("a", "EDAC MC1: 3 CE memory scrubbing error");
        assert_eq!(t.health("a"), NodeHealth::Degraded);
        t.observe("a", "EXT4-fs (sda1): Remounting filesystem read-only");
        assert_eq!(t.health("a"), NodeHealth::Unhealthy);
        // nvidia-smi readings.
        let smi = "0, 45, 0, No\n1, 89, 0, No\n2, 50, [N/A], [N/A]\n";
        assert_eq!(t.observe_gpus("b", smi).expect("smi"), NodeHealth::Degraded);
        assert_eq!(t.events("b").len(), 1, "only the hot GPU is a signal");
        assert_eq!(
            t.observe_gpus("c", "0, 40, 2, No\n").expect("smi"),
            NodeHealth::Unhealthy
        );
        assert_eq!(
            t.observe_gpus("d", "0, 40, 0, Yes\n").expect("smi"),
            NodeHealth::Degraded
        );
        let e = t.observe_gpus("e", "0, hot, 0, No\n").expect_err("bad");
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(t.observe_gpus("e", "0, 40\n").is_err());
        // Heartbeats.
        t.heartbeat("f", 100.0);
        t.heartbeat("g", 150.0);
        assert!(t.check_heartbeats(160.0).is_empty());
        assert_eq!(t.check_heartbeats(161.0), vec!["f".to_string()]);
        assert_eq!(t.health("f"), NodeHealth::Unhealthy);
        assert!(t.check_heartbeats(170.0).is_empty(), "marked once");
    }
}
