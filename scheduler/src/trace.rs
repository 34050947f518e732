//! Trace formats: the Tiresias simulator's job CSV and cluster spec, Alibaba's
//! cluster-trace-gpu-v2023 pod and node lists, and a documented generic CSV.

use crate::error::{Error, Result};
use crate::model::{JobSpec, NodeSpec};
use crate::resources::Resources;
use crate::sim::TraceJob;

fn err(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Trace {
        file: file.into(),
        line,
        reason: reason.into(),
    }
}

/// A header and its data rows with their 1-based line numbers.
type Rows<'a> = (Vec<&'a str>, Vec<(usize, Vec<&'a str>)>);

/// Splits CSV text into a header index and data rows (no quoting: these formats have none).
fn rows<'a>(file: &str, text: &'a str, need: &[&str]) -> Result<Rows<'a>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| err(file, 1, "empty file"))?;
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    for n in need {
        if !header.contains(n) {
            return Err(err(
                file,
                1,
                format!("missing column `{n}` (header: {})", header.join(",")),
            ));
        }
    }
    let data = lines
        .map(|(i, l)| (i + 1, l.split(',').map(str::trim).collect::<Vec<_>>()))
        .collect();
    Ok((header, data))
}

fn field<T: std::str::FromStr>(
    file: &str,
    line: usize,
    header: &[&str],
    row: &[&str],
    name: &str,
) -> Result<T> {
    let i = header.iter().position(|h| *h == name).unwrap_or(usize::MAX);
    let v = row.get(i).ok_or_else(|| {
        err(
            file,
            line,
            format!(
                "no value for `{name}` ({} fields, header has {})",
                row.len(),
                header.len()
            ),
        )
    })?;
    v.parse().map_err(|_| {
        err(
            file,
            line,
            format!("`{name}` = {v:?} is not a valid number"),
        )
    })
}

/// A Tiresias cluster spec (`num_switch,num_node_p_switch,num_gpu_p_node,num_cpu_p_node,mem_p_node`,
/// memory in GB) as nodes `s{switch}n{node}`, each under its switch.
pub fn tiresias_cluster(file: &str, text: &str) -> Result<Vec<NodeSpec>> {
    let cols = [
        "num_switch",
        "num_node_p_switch",
        "num_gpu_p_node",
        "num_cpu_p_node",
        "mem_p_node",
    ];
    let (h, data) = rows(file, text, &cols)?;
    let (line, row) = data.first().ok_or_else(|| err(file, 2, "no cluster row"))?;
    let v: Vec<u64> = cols
        .iter()
        .map(|c| field::<u64>(file, *line, &h, row, c))
        .collect::<Result<_>>()?;
    if v[..4].contains(&0) {
        return Err(err(
            file,
            *line,
            "switches, nodes per switch and CPUs per node must be > 0",
        ));
    }
    let mut nodes = Vec::new();
    for s in 0..v[0] {
        for n in 0..v[1] {
            nodes.push(
                NodeSpec::new(format!("s{s}n{n}"), Resources::new(v[3], v[4] * 1024, v[2]))
                    .switch(format!("s{s}")),
            );
        }
    }
    Ok(nodes)
}

/// Tiresias jobs (`job_id,num_gpu,submit_time,iterations,model_name,duration,interval`). A job of
/// `g` GPUs on nodes of `gpus_per_node` is one task if it fits a node, else a gang of
/// `g / gpus_per_node` whole nodes; CPU and memory follow the node's per-GPU share.
pub fn tiresias_jobs(file: &str, text: &str, node: &NodeSpec) -> Result<Vec<TraceJob>> {
    let (h, data) = rows(
        file,
        text,
        &["job_id", "num_gpu", "submit_time", "duration"],
    )?;
    let per_node = node.capacity.gpu_milli / 1000;
    if per_node == 0 {
        return Err(Error::invalid("cluster", "nodes have no GPUs"));
    }
    let mut out = Vec::with_capacity(data.len());
    for (line, row) in data {
        let id: String = field(file, line, &h, &row, "job_id")?;
        let gpus: u64 = field(file, line, &h, &row, "num_gpu")?;
        let submit: f64 = field(file, line, &h, &row, "submit_time")?;
        let duration: f64 = field(file, line, &h, &row, "duration")?;
        if gpus == 0 {
            return Err(err(file, line, "`num_gpu` must be ≥ 1"));
        }
        if !(duration.is_finite() && duration >= 0.0 && submit.is_finite() && submit >= 0.0) {
            return Err(err(file, line, "`submit_time` and `duration` must be ≥ 0"));
        }
        let (tasks, gpus_per_task) = if gpus <= per_node {
            (1, gpus)
        } else if gpus.is_multiple_of(per_node) {
            (gpus / per_node, per_node)
        } else {
            return Err(err(
                file,
                line,
                format!("{gpus} GPUs is neither within one node nor whole {per_node}-GPU nodes"),
            ));
        };
        let cap = &node.capacity;
        let per_task = Resources {
            cpu_milli: cap.cpu_milli * gpus_per_task / per_node,
            memory_mib: cap.memory_mib * gpus_per_task / per_node,
            gpu_milli: gpus_per_task * 1000,
            ..Resources::zero()
        };
        let mut spec = JobSpec::new(format!("{file}:{line}:job{id}"), tasks as u32, per_task)
            .duration(duration);
        spec.runtime_estimate = Some(duration);
        if let Some(m) = h
            .iter()
            .position(|c| *c == "model_name")
            .and_then(|i| row.get(i))
        {
            spec.tenant = (*m).to_string();
        }
        out.push(TraceJob::new(submit, spec));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_traces_name_the_line() {
        let e = tiresias_jobs(
            "t.csv",
            "job_id,num_gpu,submit_time\n1,2,3\n",
            &NodeSpec::new("n", Resources::new(40, 1, 4)),
        )
        .expect_err("no duration column");
        assert!(
            e.to_string().contains("t.csv, line 1") && e.to_string().contains("duration"),
            "{e}"
        );
        let node = NodeSpec::new("n", Resources::new(40, 1, 4));
        let e = tiresias_jobs(
            "t.csv",
            "job_id,num_gpu,submit_time,duration\n1,2,0,10\n2,x,0,10\n",
            &node,
        )
        .expect_err("x");
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = tiresias_jobs(
            "t.csv",
            "job_id,num_gpu,submit_time,duration\n1,2,0,-10\n",
            &node,
        )
        .expect_err("neg");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = tiresias_jobs(
            "t.csv",
            "job_id,num_gpu,submit_time,duration\n1,6,0,10\n",
            &node,
        )
        .expect_err("6 of 4");
        assert!(e.to_string().contains("whole 4-GPU nodes"), "{e}");
        let jobs = tiresias_jobs(
            "t.csv",
            "job_id,num_gpu,submit_time,duration\n1,8,0,10\n",
            &node,
        )
        .expect("ok");
        assert_eq!(
            (jobs[0].spec.tasks, jobs[0].spec.per_task.gpu_milli),
            (2, 4000)
        );
        assert!(tiresias_cluster("c.csv", "num_switch,num_node_p_switch\n1,2\n").is_err());
    }
}

/// The generic trace format (CSV with a header; columns in any order):
/// `name,submit,tasks,cpu,mem_mib,gpu,duration` required, `tenant,priority,estimate,gpu_model,
/// max_tasks` optional (`max_tasks`: an elastic job may grow to that many tasks). `cpu` and `gpu` are per task and may be fractional; times are seconds.
pub fn generic_jobs(file: &str, text: &str) -> Result<Vec<TraceJob>> {
    let (h, data) = rows(
        file,
        text,
        &[
            "name", "submit", "tasks", "cpu", "mem_mib", "gpu", "duration",
        ],
    )?;
    let opt = |row: &[&str], name: &str| -> Option<String> {
        h.iter()
            .position(|c| *c == name)
            .and_then(|i| row.get(i))
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string())
    };
    let mut out = Vec::with_capacity(data.len());
    for (line, row) in data {
        let name: String = field(file, line, &h, &row, "name")?;
        let submit: f64 = field(file, line, &h, &row, "submit")?;
        let tasks: u32 = field(file, line, &h, &row, "tasks")?;
        let cpu: f64 = field(file, line, &h, &row, "cpu")?;
        let mem: u64 = field(file, line, &h, &row, "mem_mib")?;
        let gpu: f64 = field(file, line, &h, &row, "gpu")?;
        let duration: f64 = field(file, line, &h, &row, "duration")?;
        for (what, v) in [
            ("submit", submit),
            ("cpu", cpu),
            ("gpu", gpu),
            ("duration", duration),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(
                    file,
                    line,
                    format!("`{what}` = {v} must be a finite number ≥ 0"),
                ));
            }
        }
        if tasks == 0 {
            return Err(err(file, line, "`tasks` must be ≥ 1"));
        }
        let per_task = Resources {
            cpu_milli: (cpu * 1000.0).round() as u64,
            memory_mib: mem,
            gpu_milli: (gpu * 1000.0).round() as u64,
            ..Resources::zero()
        };
        let mut spec =
            JobSpec::new(format!("{file}:{line}:{name}"), tasks, per_task).duration(duration);
        if let Some(t) = opt(&row, "tenant") {
            spec.tenant = t;
        }
        if let Some(p) = opt(&row, "priority") {
            spec.priority = p
                .parse()
                .map_err(|_| err(file, line, format!("`priority` = {p:?} is not an integer")))?;
        }
        if let Some(e) = opt(&row, "estimate") {
            spec.runtime_estimate = Some(
                e.parse()
                    .map_err(|_| err(file, line, format!("`estimate` = {e:?} is not a number")))?,
            );
        }
        spec.gpu_model = opt(&row, "gpu_model");
        if let Some(m) = opt(&row, "max_tasks") {
            let m: u32 = m
                .parse()
                .map_err(|_| err(file, line, format!("`max_tasks` = {m:?} is not an integer")))?;
            if m < tasks {
                return Err(err(
                    file,
                    line,
                    format!("`max_tasks` = {m} is below `tasks` = {tasks}"),
                ));
            }
            spec.max_tasks = Some(m);
        }
        out.push(TraceJob::new(submit, spec));
    }
    Ok(out)
}

/// The Alibaba cluster-trace-gpu-v2023 node list (`openb_node_list_*.csv`:
/// `sn,cpu_milli,memory_mib,gpu,model`). An empty or `nan` model means no GPUs' model is known.
pub fn alibaba_nodes(file: &str, text: &str) -> Result<Vec<NodeSpec>> {
    let (h, data) = rows(
        file,
        text,
        &["sn", "cpu_milli", "memory_mib", "gpu", "model"],
    )?;
    let mut out = Vec::with_capacity(data.len());
    for (line, row) in data {
        let name: String = field(file, line, &h, &row, "sn")?;
        let cpu: u64 = field(file, line, &h, &row, "cpu_milli")?;
        let mem: u64 = field(file, line, &h, &row, "memory_mib")?;
        let gpus: u64 = field(file, line, &h, &row, "gpu")?;
        let model: String = field(file, line, &h, &row, "model")?;
        let capacity = Resources {
            cpu_milli: cpu,
            memory_mib: mem,
            gpu_milli: gpus * 1000,
            ..Resources::zero()
        };
        let mut spec = NodeSpec::new(name, capacity);
        if !model.is_empty() && model != "nan" {
            spec.gpu_model = Some(model);
        }
        out.push(spec);
    }
    if out.is_empty() {
        return Err(err(file, 1, "no nodes"));
    }
    Ok(out)
}

/// The Alibaba cluster-trace-gpu-v2023 pod list (`openb_pod_list_*.csv`:
/// `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
/// deletion_time,scheduled_time`). Each pod is a one-task job arriving at `creation_time` and
/// running for `deletion_time − scheduled_time` (from creation when it was never scheduled).
/// A pod with `num_gpu = 1` asks for `gpu_milli` thousandths of one GPU (GPU sharing); more
/// GPUs are whole. `gpu_spec` lists the GPU models it accepts (`V100M16|V100M32`). The QoS
/// class becomes the tenant, and sets priority (`LS`, `Guaranteed` 2; `Burstable` 1; `BE` 0,
/// and preemptible).
pub fn alibaba_jobs(file: &str, text: &str) -> Result<Vec<TraceJob>> {
    let (h, data) = rows(
        file,
        text,
        &[
            "name",
            "cpu_milli",
            "memory_mib",
            "num_gpu",
            "gpu_milli",
            "gpu_spec",
            "qos",
            "creation_time",
            "deletion_time",
            "scheduled_time",
        ],
    )?;
    let text_field = |row: &[&str], name: &str| -> String {
        h.iter()
            .position(|c| *c == name)
            .and_then(|i| row.get(i))
            .map_or(String::new(), |v| v.to_string())
    };
    let mut out = Vec::with_capacity(data.len());
    for (line, row) in data {
        let name: String = field(file, line, &h, &row, "name")?;
        let cpu: u64 = field(file, line, &h, &row, "cpu_milli")?;
        let mem: u64 = field(file, line, &h, &row, "memory_mib")?;
        let num_gpu: u64 = field(file, line, &h, &row, "num_gpu")?;
        let gpu_milli: u64 = field(file, line, &h, &row, "gpu_milli")?;
        let created: f64 = field(file, line, &h, &row, "creation_time")?;
        let deleted: f64 = field(file, line, &h, &row, "deletion_time")?;
        let scheduled = text_field(&row, "scheduled_time");
        let began: f64 = if scheduled.is_empty() {
            created
        } else {
            field(file, line, &h, &row, "scheduled_time")?
        };
        if created < 0.0 {
            return Err(err(
                file,
                line,
                format!("`creation_time` = {created} is negative"),
            ));
        }
        let duration = deleted - began;
        if !(duration.is_finite() && duration >= 0.0) {
            return Err(err(
                file,
                line,
                format!("negative run time: deleted at {deleted}, before it started at {began}"),
            ));
        }
        let gpu = match num_gpu {
            0 => 0,
            1 if gpu_milli == 0 || gpu_milli > 1000 => {
                return Err(err(
                    file,
                    line,
                    format!("one GPU with `gpu_milli` = {gpu_milli}: expected 1 to 1000"),
                ));
            }
            1 => gpu_milli,
            n => n * 1000,
        };
        let per_task = Resources {
            cpu_milli: cpu,
            memory_mib: mem,
            gpu_milli: gpu,
            ..Resources::zero()
        };
        let qos = text_field(&row, "qos");
        let priority = match qos.as_str() {
            "LS" | "Guaranteed" => 2,
            "Burstable" => 1,
            _ => 0,
        };
        let mut spec = JobSpec::new(name, 1, per_task)
            .duration(duration)
            .priority(priority)
            .preemptible(qos == "BE");
        if !qos.is_empty() {
            spec.tenant = qos;
        }
        let models = text_field(&row, "gpu_spec");
        if !models.is_empty() && models != "nan" {
            spec.gpu_model = Some(models);
        }
        out.push(TraceJob::new(created, spec));
    }
    Ok(out)
}

#[cfg(test)]
mod alibaba_tests {
    use super::*;

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
        node-a,64000,262144,2,P100\n\
        node-b,96000,786432,8,V100M32\n\
        node-c,32000,131072,0,\n";
    const PODS: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
        pod-0,12000,16384,1,1000,,LS,Running,0,500,0\n\
        pod-1,6000,12288,1,460,,BE,Running,10,110,12\n\
        pod-2,88000,327680,8,1000,,Burstable,Succeeded,20,1020,20\n\
        pod-3,16000,32768,1,1000,V100M16|V100M32,LS,Pending,30,90,\n";

    #[test]
    fn nodes_and_pods_parse_with_shares_models_and_qos() {
        let nodes = alibaba_nodes("n.csv", NODES).expect("nodes");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].capacity, Resources::new(96, 786_432, 8));
        assert_eq!(nodes[1].gpu_model.as_deref(), Some("V100M32"));
        assert_eq!(nodes[2].gpu_model, None);
        let jobs = alibaba_jobs("p.csv", PODS).expect("pods");
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[1].spec.per_task.gpu_milli, 460, "a shared GPU");
        assert_eq!(jobs[1].spec.duration, Some(98.0), "deleted − scheduled");
        assert!(jobs[1].spec.preemptible && jobs[1].spec.tenant == "BE");
        assert_eq!(jobs[2].spec.per_task.gpu_milli, 8000);
        assert_eq!(jobs[2].spec.priority, 1);
        assert_eq!(jobs[3].spec.gpu_model.as_deref(), Some("V100M16|V100M32"));
        assert_eq!(
            jobs[3].spec.duration,
            Some(60.0),
            "never scheduled: from creation"
        );
    }

    #[test]
    fn bad_rows_name_the_line() {
        let header = PODS.lines().next().expect("header");
        for (row, why) in [
            (
                "p,1000,10,1,1000,,LS,Running,100,50,100",
                "negative run time",
            ),
            ("p,1000,10,1,0,,LS,Running,0,50,0", "gpu_milli"),
            ("p,x,10,1,1000,,LS,Running,0,50,0", "cpu_milli"),
            ("p,1000,10", "no value"),
        ] {
            let e = alibaba_jobs("p.csv", &format!("{header}\n{row}\n")).expect_err(row);
            let msg = e.to_string();
            assert!(msg.contains("p.csv, line 2") && msg.contains(why), "{msg}");
        }
        let e = alibaba_jobs("p.csv", "name,cpu_milli\np,1\n").expect_err("columns");
        assert!(e.to_string().contains("missing column `memory_mib`"), "{e}");
        assert!(alibaba_nodes("n.csv", "sn,cpu_milli,memory_mib,gpu,model\n").is_err());
    }
}

/// SplitMix64 as uniform draws in [0, 1): deterministic for a seed.
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Random node failures for a replay: each node fails after exponentially distributed times
/// with mean `mtbf` seconds of being up, and is repaired `repair` seconds later, until
/// `horizon`. Deterministic for a seed.
pub fn random_failures(
    nodes: &[NodeSpec],
    horizon: f64,
    mtbf: f64,
    repair: f64,
    seed: u64,
) -> Result<Vec<crate::sim::Failure>> {
    if !(mtbf > 0.0 && mtbf.is_finite() && repair >= 0.0 && repair.is_finite() && horizon >= 0.0) {
        return Err(Error::invalid(
            "node failures",
            "MTBF must be > 0, repair time ≥ 0 and the horizon ≥ 0",
        ));
    }
    let mut next = uniform(seed);
    let mut out = Vec::new();
    for n in nodes {
        let mut t = 0.0;
        loop {
            t += -mtbf * (1.0 - next()).ln();
            if t >= horizon {
                break;
            }
            out.push(crate::sim::Failure::new(n.name.clone(), t, repair));
            t += repair;
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.node.cmp(&b.node)));
    Ok(out)
}

/// Parameters of [`synthetic`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Synthetic {
    /// Jobs to generate.
    pub jobs: usize,
    /// Mean seconds between arrivals (Poisson arrivals).
    pub mean_interarrival: f64,
    /// Median run time in seconds (log-normal, σ = 1).
    pub median_duration: f64,
    /// GPUs per job and their weights, e.g. 1, 2, 4, 8 GPUs.
    pub gpu_mix: Vec<(u64, u32)>,
    /// GPUs per node: wider jobs become gangs of whole nodes.
    pub gpus_per_node: u64,
    /// Tenants the jobs are spread over.
    pub tenants: usize,
    /// Seed: the same seed gives the same trace.
    pub seed: u64,
}

impl Default for Synthetic {
    fn default() -> Self {
        Self {
            jobs: 1000,
            mean_interarrival: 30.0,
            median_duration: 600.0,
            gpu_mix: vec![(1, 60), (2, 15), (4, 15), (8, 10)],
            gpus_per_node: 8,
            tenants: 4,
            seed: 1,
        }
    }
}

/// A synthetic workload (splitmix64 stream; no dependency): exponential inter-arrival times,
/// log-normal durations, GPU counts from `gpu_mix`, 8 CPUs and 64 GiB per GPU.
pub fn synthetic(p: &Synthetic) -> Result<Vec<TraceJob>> {
    if p.gpu_mix.is_empty()
        || p.gpu_mix.iter().all(|(_, w)| *w == 0)
        || p.gpus_per_node == 0
        || p.tenants == 0
    {
        return Err(Error::invalid(
            "synthetic workload",
            "needs a GPU mix with weight, GPUs per node and tenants",
        ));
    }
    let mut next = uniform(p.seed);
    let total: u32 = p.gpu_mix.iter().map(|(_, w)| w).sum();
    let mut t = 0.0;
    let mut out = Vec::with_capacity(p.jobs);
    for i in 0..p.jobs {
        t += -p.mean_interarrival * (1.0 - next()).ln();
        let z = (-2.0 * (1.0 - next()).ln()).sqrt() * (2.0 * std::f64::consts::PI * next()).cos();
        let duration = (p.median_duration * z.exp()).round().max(1.0);
        let mut pick = (next() * f64::from(total)) as u32;
        let gpus = p
            .gpu_mix
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(1, |(g, _)| *g);
        let (tasks, per) = if gpus <= p.gpus_per_node {
            (1, gpus)
        } else {
            (gpus.div_ceil(p.gpus_per_node), p.gpus_per_node)
        };
        let spec = JobSpec::new(
            format!("synthetic-{i}"),
            tasks as u32,
            Resources::new(8 * per, 65_536 * per, per),
        )
        .tenant(format!("tenant-{}", i % p.tenants))
        .duration(duration)
        .estimate(duration);
        out.push(TraceJob::new(t.round(), spec));
    }
    Ok(out)
}

#[cfg(test)]
mod generic_tests {
    use super::*;

    #[test]
    fn generic_format_and_synthetic_workloads() {
        let text = "name,submit,tasks,cpu,mem_mib,gpu,duration,tenant,priority,estimate,gpu_model\n\
                    a,0,2,4,16384,1,600,ml,5,500,A100\n\
                    b,10,1,0.5,1024,0.25,60,,,,\n";
        let jobs = generic_jobs("g.csv", text).expect("parse");
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (
                jobs[0].spec.tasks,
                jobs[0].spec.priority,
                jobs[0].spec.gpu_model.as_deref()
            ),
            (2, 5, Some("A100"))
        );
        assert_eq!(
            (
                jobs[1].spec.per_task.cpu_milli,
                jobs[1].spec.per_task.gpu_milli
            ),
            (500, 250)
        );
        assert_eq!(jobs[1].spec.tenant, "default");
        let e = generic_jobs(
            "g.csv",
            "name,submit,tasks,cpu,mem_mib,gpu,duration\nx,0,0,1,1,0,1\n",
        )
        .expect_err("0 tasks");
        assert!(e.to_string().contains("g.csv, line 2"), "{e}");
        let e =
            generic_jobs("g.csv", "name,submit,tasks,cpu,mem_mib,gpu\n").expect_err("no duration");
        assert!(e.to_string().contains("duration"), "{e}");

        let p = Synthetic {
            jobs: 2000,
            ..Synthetic::default()
        };
        let a = synthetic(&p).expect("gen");
        assert_eq!(a, synthetic(&p).expect("gen"), "deterministic for a seed");
        assert_ne!(
            a,
            synthetic(&Synthetic {
                seed: 2,
                ..p.clone()
            })
            .expect("gen")
        );
        let mean_gap = a.last().map_or(0.0, |j| j.submit) / 2000.0;
        assert!((mean_gap - 30.0).abs() < 3.0, "{mean_gap}");
        let mut d: Vec<f64> = a.iter().map(|j| j.spec.duration.unwrap_or(0.0)).collect();
        d.sort_by(f64::total_cmp);
        assert!((d[1000] / 600.0 - 1.0).abs() < 0.15, "median {}", d[1000]);
        let ones = a
            .iter()
            .filter(|j| j.spec.total().gpu_milli == 1000)
            .count() as f64
            / 2000.0;
        assert!((ones - 0.6).abs() < 0.05, "{ones}");
        assert!(
            synthetic(&Synthetic {
                gpu_mix: vec![],
                ..Synthetic::default()
            })
            .is_err()
        );
    }
}

/// Writes jobs in the generic format (what [`generic_jobs`] reads).
pub fn write_generic(jobs: &[TraceJob]) -> String {
    let mut s = String::from(
        "name,submit,tasks,cpu,mem_mib,gpu,duration,tenant,priority,estimate,gpu_model\n",
    );
    for j in jobs {
        let t = &j.spec.per_task;
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            j.spec.name.replace(',', ";"),
            j.submit,
            j.spec.tasks,
            t.cpu_milli as f64 / 1000.0,
            t.memory_mib,
            t.gpu_milli as f64 / 1000.0,
            j.spec.duration.unwrap_or(0.0),
            j.spec.tenant.replace(',', ";"),
            j.spec.priority,
            j.spec
                .runtime_estimate
                .map(|e| e.to_string())
                .unwrap_or_default(),
            j.spec.gpu_model.as_deref().unwrap_or(""),
        ));
    }
    s
}
