//! Monitoring and cost from what ran: utilization time series (cluster, node, tenant),
//! GPU-hours and cost per tenant by price table, and an energy estimate with the savings of
//! powering idle nodes off. Input: the nodes and the [`Run`]s of a replay
//! ([`crate::sim::replay_runs`]) — or of any pool whose history is recorded the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::NodeSpec;
use crate::sim::Run;

/// Prices per hour. GPU prices by model, with `default` for models not listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Prices {
    /// Per GPU-hour, by GPU model (`default` for others).
    pub gpu_hour: BTreeMap<String, f64>,
    /// Per CPU-core-hour.
    pub cpu_hour: f64,
    /// Per GiB-hour of memory.
    pub mem_gib_hour: f64,
}

impl Default for Prices {
    /// Round on-demand cloud list prices (2026, USD): a GPU-hour 2.50 (an A100-class GPU;
    /// `default`), a core-hour 0.04, a GiB-hour 0.005. Replace them with yours.
    fn default() -> Self {
        Self {
            gpu_hour: BTreeMap::from([("default".to_string(), 2.5)]),
            cpu_hour: 0.04,
            mem_gib_hour: 0.005,
        }
    }
}

impl Prices {
    /// Parses the JSON form: `{"gpu_hour": {"A100": 2.5, "default": 1.0}, "cpu_hour": 0.04,
    /// "mem_gib_hour": 0.005}`.
    pub fn from_json(file: &str, text: &str) -> Result<Self> {
        let p: Prices = serde_json::from_str(text).map_err(|e| Error::Trace {
            file: file.into(),
            line: e.line(),
            reason: e.to_string(),
        })?;
        let bad = p
            .gpu_hour
            .values()
            .chain([&p.cpu_hour, &p.mem_gib_hour])
            .any(|v| !(v.is_finite() && *v >= 0.0));
        if bad {
            return Err(Error::invalid(file, "prices must be finite and ≥ 0"));
        }
        Ok(p)
    }

    fn gpu(&self, model: Option<&str>) -> f64 {
        model
            .and_then(|m| self.gpu_hour.get(m))
            .or_else(|| self.gpu_hour.get("default"))
            .copied()
            .unwrap_or(0.0)
    }
}

/// Power draw, watts. A node draws `node_idle` whenever it is on, plus per GPU `gpu_idle` or
/// `gpu_busy` (prorated by the fraction held) and per core `cpu_busy` while held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PowerModel {
    /// A node's base draw while on (fans, CPUs idle, NICs, memory).
    pub node_idle: f64,
    /// A GPU's draw while idle.
    pub gpu_idle: f64,
    /// A GPU's draw while held by a job.
    pub gpu_busy: f64,
    /// Extra draw per held CPU core.
    pub cpu_busy: f64,
}

impl Default for PowerModel {
    /// An 8-GPU A100 server in round numbers: 400 W base, a GPU 50 W idle and 300 W busy
    /// (its 400 W TDP derated to typical training load), 5 W per busy core.
    fn default() -> Self {
        Self {
            node_idle: 400.0,
            gpu_idle: 50.0,
            gpu_busy: 300.0,
            cpu_busy: 5.0,
        }
    }
}

/// One tenant's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// GPU-hours held.
    pub gpu_hours: f64,
    /// CPU-core-hours held.
    pub cpu_hours: f64,
    /// GiB-hours of memory held.
    pub mem_gib_hours: f64,
    /// At the price table.
    pub cost: f64,
}

/// One sample of the utilization series: fractions of capacity held, averaged over
/// `[t, t + step)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// Start of the bucket, seconds.
    pub t: f64,
    /// GPU.
    pub gpu: f64,
    /// CPU.
    pub cpu: f64,
    /// Memory.
    pub memory: f64,
    /// GPU share held by each tenant.
    pub gpu_by_tenant: BTreeMap<String, f64>,
}

/// A node's average utilization over the whole span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeUsage {
    /// The node.
    pub node: String,
    /// Average GPU fraction held.
    pub gpu: f64,
    /// Average CPU fraction held.
    pub cpu: f64,
    /// Seconds with nothing running on it.
    pub idle_seconds: f64,
}

/// Energy over the span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Energy {
    /// With every node on all the time, kWh.
    pub always_on_kwh: f64,
    /// Powering a node off once it has been idle `idle_timeout` seconds (and on again when
    /// work arrives), kWh.
    pub with_power_off_kwh: f64,
    /// The difference.
    pub saved_kwh: f64,
    /// Node-hours spent off.
    pub node_hours_off: f64,
    /// The timeout used, seconds.
    pub idle_timeout: f64,
}

/// Everything measured over `[start, end]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageReport {
    /// First run start.
    pub start: f64,
    /// Last run end.
    pub end: f64,
    /// Average GPU fraction held over the span.
    pub gpu_utilization: f64,
    /// Average CPU fraction held.
    pub cpu_utilization: f64,
    /// The series.
    pub series: Vec<Sample>,
    /// GPU fraction held per node, per bucket of the series (nodes with GPUs).
    pub node_series: BTreeMap<String, Vec<f64>>,
    /// Per node.
    pub nodes: Vec<NodeUsage>,
    /// Per tenant, most GPU-hours first.
    pub tenants: Vec<TenantUsage>,
    /// Total cost.
    pub total_cost: f64,
    /// Energy.
    pub energy: Energy,
}

/// Measures `runs` on `nodes`: the series in `buckets` equal steps, bills at `prices`, energy
/// by `power` with nodes powered off after `idle_timeout` seconds idle.
pub fn account(
    nodes: &[NodeSpec],
    runs: &[Run],
    prices: &Prices,
    power: &PowerModel,
    idle_timeout: f64,
    buckets: usize,
) -> Result<UsageReport> {
    if buckets == 0 || !(idle_timeout.is_finite() && idle_timeout >= 0.0) {
        return Err(Error::invalid(
            "accounting",
            "needs ≥ 1 bucket and an idle timeout ≥ 0",
        ));
    }
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    for r in runs {
        if !(r.start.is_finite() && r.end.is_finite() && r.end >= r.start) {
            return Err(Error::invalid(
                format!("run of {:?}", r.job),
                format!("times {}..{} are not an interval", r.start, r.end),
            ));
        }
        if let Some((n, _)) = r
            .placement
            .iter()
            .find(|(n, _)| !index.contains_key(n.as_str()))
        {
            return Err(Error::invalid(
                format!("run of {:?}", r.job),
                format!("node {n:?} is not in the cluster"),
            ));
        }
    }
    let start = runs.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    let end = runs.iter().map(|r| r.end).fold(f64::NEG_INFINITY, f64::max);
    let (start, end) = if runs.is_empty() {
        (0.0, 0.0)
    } else {
        (start, end)
    };
    let span = end - start;
    let cap_gpu: f64 = nodes.iter().map(|n| n.capacity.gpu_milli as f64).sum();
    let cap_cpu: f64 = nodes.iter().map(|n| n.capacity.cpu_milli as f64).sum();
    let cap_mem: f64 = nodes.iter().map(|n| n.capacity.memory_mib as f64).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };

    // Bills and per-node held resource-seconds.
    let mut bills: BTreeMap<String, TenantUsage> = BTreeMap::new();
    let mut node_gpu = vec![0.0; nodes.len()];
    let mut node_cpu = vec![0.0; nodes.len()];
    let mut busy: Vec<Vec<(f64, f64)>> = vec![Vec::new(); nodes.len()];
    let (mut gpu_s, mut cpu_s) = (0.0, 0.0);
    for r in runs {
        let secs = r.end - r.start;
        let b = bills
            .entry(r.tenant.clone())
            .or_insert_with(|| TenantUsage {
                tenant: r.tenant.clone(),
                gpu_hours: 0.0,
                cpu_hours: 0.0,
                mem_gib_hours: 0.0,
                cost: 0.0,
            });
        for (n, k) in &r.placement {
            let i = index[n.as_str()];
            let k = f64::from(*k);
            let g = r.per_task.gpu_milli as f64 * k;
            let c = r.per_task.cpu_milli as f64 * k;
            let m = r.per_task.memory_mib as f64 * k;
            let hours = secs / 3600.0;
            b.gpu_hours += g / 1000.0 * hours;
            b.cpu_hours += c / 1000.0 * hours;
            b.mem_gib_hours += m / 1024.0 * hours;
            b.cost += g / 1000.0 * hours * prices.gpu(nodes[i].gpu_model.as_deref())
                + c / 1000.0 * hours * prices.cpu_hour
                + m / 1024.0 * hours * prices.mem_gib_hour;
            node_gpu[i] += g * secs;
            node_cpu[i] += c * secs;
            gpu_s += g * secs;
            cpu_s += c * secs;
            busy[i].push((r.start, r.end));
        }
    }
    let mut tenants: Vec<TenantUsage> = bills.into_values().collect();
    tenants.sort_by(|a, b| {
        b.gpu_hours
            .total_cmp(&a.gpu_hours)
            .then(a.tenant.cmp(&b.tenant))
    });
    let total_cost = tenants.iter().map(|t| t.cost).sum();

    // Idle intervals per node, and energy.
    let mut node_usage = Vec::with_capacity(nodes.len());
    let (mut on_j, mut off_j, mut off_s) = (0.0, 0.0, 0.0);
    for (i, n) in nodes.iter().enumerate() {
        let merged = merge(&mut busy[i]);
        let busy_s: f64 = merged.iter().map(|(a, b)| b - a).sum();
        let idle_s = (span - busy_s).max(0.0);
        // Gaps: before the first run, between runs, after the last.
        let mut gaps = Vec::new();
        let mut t = start;
        for (a, b) in &merged {
            gaps.push(a - t);
            t = *b;
        }
        gaps.push(end - t);
        let off: f64 = gaps.iter().map(|g| (g - idle_timeout).max(0.0)).sum();
        let gpus = n.capacity.gpu_milli as f64 / 1000.0;
        let held_gpu_s = node_gpu[i] / 1000.0;
        let held_cpu_s = node_cpu[i] / 1000.0;
        let base = power.node_idle + gpus * power.gpu_idle;
        let joules = base * span
            + held_gpu_s * (power.gpu_busy - power.gpu_idle)
            + held_cpu_s * power.cpu_busy;
        on_j += joules;
        off_j += joules - base * off;
        off_s += off;
        node_usage.push(NodeUsage {
            node: n.name.clone(),
            gpu: ratio(node_gpu[i], n.capacity.gpu_milli as f64 * span),
            cpu: ratio(node_cpu[i], n.capacity.cpu_milli as f64 * span),
            idle_seconds: idle_s,
        });
    }
    let kwh = |j: f64| j / 3.6e6;
    let energy = Energy {
        always_on_kwh: kwh(on_j),
        with_power_off_kwh: kwh(off_j),
        saved_kwh: kwh(on_j - off_j),
        node_hours_off: off_s / 3600.0,
        idle_timeout,
    };

    // The series: each run's resources spread over the buckets it overlaps.
    let step = if span > 0.0 {
        span / buckets as f64
    } else {
        1.0
    };
    let mut series: Vec<Sample> = (0..buckets)
        .map(|b| Sample {
            t: start + b as f64 * step,
            gpu: 0.0,
            cpu: 0.0,
            memory: 0.0,
            gpu_by_tenant: BTreeMap::new(),
        })
        .collect();
    let mut node_series: BTreeMap<String, Vec<f64>> = nodes
        .iter()
        .filter(|n| n.capacity.gpu_milli > 0)
        .map(|n| (n.name.clone(), vec![0.0; buckets]))
        .collect();
    if span > 0.0 {
        for r in runs {
            let tasks: f64 = r.placement.iter().map(|(_, k)| f64::from(*k)).sum();
            let g = r.per_task.gpu_milli as f64 * tasks;
            let c = r.per_task.cpu_milli as f64 * tasks;
            let m = r.per_task.memory_mib as f64 * tasks;
            let first = (((r.start - start) / step).floor() as usize).min(buckets - 1);
            let last = (((r.end - start) / step).ceil() as usize).clamp(first + 1, buckets);
            for (b, s) in series.iter_mut().enumerate().take(last).skip(first) {
                let lo = start + b as f64 * step;
                let overlap = (r.end.min(lo + step) - r.start.max(lo)).max(0.0) / step;
                s.gpu += ratio(g, cap_gpu) * overlap;
                s.cpu += ratio(c, cap_cpu) * overlap;
                s.memory += ratio(m, cap_mem) * overlap;
                *s.gpu_by_tenant.entry(r.tenant.clone()).or_default() +=
                    ratio(g, cap_gpu) * overlap;
                for (n, k) in &r.placement {
                    if let Some(v) = node_series.get_mut(n) {
                        let cap = nodes[index[n.as_str()]].capacity.gpu_milli as f64;
                        v[b] += ratio(r.per_task.gpu_milli as f64 * f64::from(*k), cap) * overlap;
                    }
                }
            }
        }
    }
    Ok(UsageReport {
        start,
        end,
        gpu_utilization: ratio(gpu_s, cap_gpu * span),
        cpu_utilization: ratio(cpu_s, cap_cpu * span),
        series,
        node_series,
        nodes: node_usage,
        tenants,
        total_cost,
        energy,
    })
}

/// Sorts and merges overlapping intervals.
fn merge(v: &mut [(f64, f64)]) -> Vec<(f64, f64)> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(a, b) in v.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

impl UsageReport {
    /// Prometheus / OpenMetrics text: utilization, per-tenant GPU-hours and cost, energy.
    pub fn openmetrics(&self) -> String {
        let mut o = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                o.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        metric(
            "aistd_sched_utilization_ratio",
            "Average fraction of capacity held over the span.",
            "gauge",
            vec![
                ("{resource=\"gpu\"}".into(), self.gpu_utilization),
                ("{resource=\"cpu\"}".into(), self.cpu_utilization),
            ],
        );
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        metric(
            "aistd_sched_tenant_gpu_hours",
            "GPU-hours held per tenant.",
            "gauge",
            self.tenants
                .iter()
                .map(|t| (format!("{{tenant=\"{}\"}}", esc(&t.tenant)), t.gpu_hours))
                .collect(),
        );
        metric(
            "aistd_sched_tenant_cost",
            "Cost per tenant at the price table.",
            "gauge",
            self.tenants
                .iter()
                .map(|t| (format!("{{tenant=\"{}\"}}", esc(&t.tenant)), t.cost))
                .collect(),
        );
        metric(
            "aistd_sched_energy_kwh",
            "Energy over the span.",
            "gauge",
            vec![
                ("{mode=\"always_on\"}".into(), self.energy.always_on_kwh),
                (
                    "{mode=\"idle_power_off\"}".into(),
                    self.energy.with_power_off_kwh,
                ),
            ],
        );
        o.push_str("# EOF\n");
        o
    }

    /// An SVG plot of GPU utilization over time, stacked by tenant, with the CPU line.
    pub fn svg(&self, title: &str) -> String {
        let (w, h, pad) = (800.0, 320.0, 40.0);
        let n = self.series.len().max(1) as f64;
        let x = |i: f64| pad + (w - 2.0 * pad) * i / n;
        let y = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(0.0, 1.0);
        let tenants: Vec<String> = self.tenants.iter().map(|t| t.tenant.clone()).collect();
        let palette = [
            "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        ];
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut o = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <title>{}</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
             <text x=\"{pad}\" y=\"20\" font-size=\"13\">{}</text>\n",
            esc(title),
            esc(title)
        );
        // Stacked bars per bucket.
        for (i, s) in self.series.iter().enumerate() {
            let mut acc = 0.0;
            for (k, t) in tenants.iter().enumerate() {
                let v = s.gpu_by_tenant.get(t).copied().unwrap_or(0.0);
                if v <= 0.0 {
                    continue;
                }
                let (y0, y1) = (y(acc), y(acc + v));
                o.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {:.1}% of GPUs</title></rect>\n",
                    x(i as f64),
                    y1,
                    (x(i as f64 + 1.0) - x(i as f64)).max(0.5),
                    (y0 - y1).max(0.0),
                    palette[k % palette.len()],
                    esc(t),
                    v * 100.0
                ));
                acc += v;
            }
        }
        let cpu: Vec<String> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:.1},{:.1}", x(i as f64 + 0.5), y(s.cpu)))
            .collect();
        o.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            cpu.join(" ")
        ));
        // Axes and legend.
        o.push_str(&format!(
            "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/>\n<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{0}\" stroke=\"#333\"/>\n",
            h - pad,
            w - pad
        ));
        for v in [0.0, 0.5, 1.0] {
            o.push_str(&format!(
                "<text x=\"4\" y=\"{:.1}\">{:.0}%</text>\n",
                y(v) + 4.0,
                v * 100.0
            ));
        }
        o.push_str(&format!(
            "<text x=\"{pad}\" y=\"{}\">{:.0} s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0} s</text>\n",
            h - 12.0,
            self.start,
            w - pad,
            h - 12.0,
            self.end
        ));
        let mut lx = pad + 200.0;
        for (k, t) in tenants.iter().enumerate().take(8) {
            o.push_str(&format!(
                "<rect x=\"{lx:.0}\" y=\"10\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"19\">{}</text>\n",
                palette[k % palette.len()],
                lx + 14.0,
                esc(t)
            ));
            lx += 14.0 + 7.0 * t.len() as f64 + 12.0;
        }
        o.push_str(&format!(
            "<text x=\"{:.0}\" y=\"19\">— CPU</text>\n</svg>\n",
            lx
        ));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    fn run(job: &str, tenant: &str, node: &str, gpus: u64, start: f64, end: f64) -> Run {
        Run {
            job: job.into(),
            tenant: tenant.into(),
            start,
            end,
            per_task: Resources::new(4, 1024, gpus),
            placement: vec![(node.into(), 1)],
        }
    }

    #[test]
    fn hand_checked_bill_series_and_energy() {
        // Two nodes of 4 GPUs (A100 and unnamed), 0..3600 s. Tenant a: 4 GPUs on n0 for the
        // whole hour. Tenant b: 2 GPUs on n1 for the first half hour.
        let nodes = vec![
            NodeSpec::new("n0", Resources::new(32, 65_536, 4)).gpu_model("A100"),
            NodeSpec::new("n1", Resources::new(32, 65_536, 4)),
        ];
        let runs = vec![
            run("x", "a", "n0", 4, 0.0, 3600.0),
            run("y", "b", "n1", 2, 0.0, 1800.0),
        ];
        let prices = Prices {
            gpu_hour: BTreeMap::from([("A100".into(), 3.0), ("default".into(), 1.0)]),
            cpu_hour: 0.0,
            mem_gib_hour: 0.0,
        };
        let power = PowerModel {
            node_idle: 100.0,
            gpu_idle: 10.0,
            gpu_busy: 110.0,
            cpu_busy: 0.0,
        };
        let r = account(&nodes, &runs, &prices, &power, 600.0, 2).expect("account");
        assert_eq!((r.start, r.end), (0.0, 3600.0));
        // GPU-hours: a 4 (at 3.0 = 12), b 1 (at 1.0 = 1).
        assert_eq!(r.tenants[0].tenant, "a");
        assert!((r.tenants[0].gpu_hours - 4.0).abs() < 1e-9);
        assert!((r.tenants[0].cost - 12.0).abs() < 1e-9);
        assert!((r.tenants[1].gpu_hours - 1.0).abs() < 1e-9);
        assert!((r.total_cost - 13.0).abs() < 1e-9);
        // Utilization: 5 of 8 GPU-hours.
        assert!((r.gpu_utilization - 5.0 / 8.0).abs() < 1e-9);
        // Series: first half 6/8, second half 4/8.
        assert!((r.series[0].gpu - 0.75).abs() < 1e-9, "{:?}", r.series[0]);
        assert!((r.series[1].gpu - 0.5).abs() < 1e-9);
        assert!((r.series[0].gpu_by_tenant["b"] - 0.25).abs() < 1e-9);
        assert_eq!(r.node_series["n0"], vec![1.0, 1.0]);
        assert!((r.node_series["n1"][0] - 0.5).abs() < 1e-9 && r.node_series["n1"][1] == 0.0);
        // Energy, always on: base (100 + 4·10) W × 2 nodes × 1 h = 280 Wh, plus busy extra
        // 100 W × 5 GPU-h = 500 Wh: 0.78 kWh. n1 idles 1800 s; off after 600 s: 1200 s × 140 W
        // = 46.67 Wh saved.
        assert!(
            (r.energy.always_on_kwh - 0.78).abs() < 1e-9,
            "{:?}",
            r.energy
        );
        assert!((r.energy.saved_kwh - 140.0 * 1200.0 / 3.6e6).abs() < 1e-9);
        assert!((r.energy.node_hours_off - 1200.0 / 3600.0).abs() < 1e-9);
        assert!((r.nodes[1].idle_seconds - 1800.0).abs() < 1e-9);
        let text = r.openmetrics();
        assert!(text.contains("aistd_sched_tenant_cost{tenant=\"a\"} 12"));
        assert!(text.ends_with("# EOF\n"));
        let svg = r.svg("t <1>");
        assert!(
            svg.starts_with("<svg")
                && svg.contains("t &lt;1&gt;")
                && svg.trim_end().ends_with("</svg>")
        );
    }

    #[test]
    fn bad_runs_and_prices_are_refused() {
        let nodes = vec![NodeSpec::new("n0", Resources::new(1, 1, 1))];
        let e = account(
            &nodes,
            &[run("x", "a", "nope", 1, 0.0, 1.0)],
            &Prices::default(),
            &PowerModel::default(),
            0.0,
            1,
        )
        .expect_err("unknown node");
        assert!(e.to_string().contains("nope"), "{e}");
        let e = account(
            &nodes,
            &[run("x", "a", "n0", 1, 2.0, 1.0)],
            &Prices::default(),
            &PowerModel::default(),
            0.0,
            1,
        )
        .expect_err("reversed");
        assert!(e.to_string().contains("not an interval"), "{e}");
        assert!(
            Prices::from_json(
                "p.json",
                r#"{"gpu_hour":{"default":-1},"cpu_hour":0,"mem_gib_hour":0}"#
            )
            .is_err()
        );
        assert!(Prices::from_json("p.json", r#"{"gpu":{}}"#).is_err());
    }
}
