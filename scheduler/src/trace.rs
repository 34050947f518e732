//! Trace formats: the Tiresias simulator's job CSV and cluster spec.

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
