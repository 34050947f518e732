//! [`SlurmPool`]: a [`ResourcePool`] over a real Slurm cluster, driven through its commands.
//!
//! Supported: Slurm 22.05 (Debian bookworm's 22.05.8), whose `sinfo --json` and `squeue --json`
//! speak the `openapi/v0.0.38` shapes read here; later releases that keep those fields work too.
//! What maps to what:
//!
//! | ours | Slurm |
//! |---|---|
//! | `nodes()` | `sinfo --json`: `cpus − alloc_cpus`, `real_memory − alloc_memory`, `gres − gres_used`; a down, drained or failed node has nothing free |
//! | a gang of `tasks` | `sbatch --ntasks=tasks`, each task `--cpus-per-task` whole cores, `--mem-per-cpu`, `--gpus-per-task=[model:]n`; the command runs under `srun` so every task runs it |
//! | `tenant` / `priority` | `--account` (Slurm lowercases it) / `--nice=-priority` (negative nice needs an operator) |
//! | a job without a command | `sleep duration` (or `sleep infinity`): it holds its allocation |
//! | [`SlurmPool::submit_array`] | `sbatch --array=0-(n−1)`; each element sees `SLURM_ARRAY_TASK_ID` |
//! | `status` | `squeue --json` (it lists finished jobs for `MinJobAge` seconds); states: `PENDING`, `REQUEUED`, `SUSPENDED` → pending; `RUNNING`, `CONFIGURING`, `COMPLETING` → running; `COMPLETED`; `CANCELLED`; every other end (`FAILED`, `TIMEOUT`, `NODE_FAIL`, `OUT_OF_MEMORY`, `PREEMPTED`, …) → failed |
//! | pending reasons | `Resources` / `None` → which resource no node has (from `sinfo`), `Priority` → the jobs ahead, anything else → [`PendingReason::Backend`] with Slurm's code |
//! | `cancel` | `scancel`, then wait until Slurm has released the allocation |
//! | `events` | built by comparing successive `squeue` snapshots, with Slurm's submit/start/end times |
//!
//! Not mapped: fractional GPUs (Slurm 22.05 allocates whole GPUs), custom resources, run-time
//! estimates (Slurm has time limits, which kill), preemptibility. Times are Unix seconds.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::core::explain;
use crate::error::{Error, Result};
use crate::model::{
    Event, JobId, JobSpec, JobState, JobStatus, NodeSpec, NodeStatus, PendingReason,
};
use crate::pool::ResourcePool;
use crate::resources::Resources;

/// A Slurm cluster as a [`ResourcePool`]. See the [module docs](self) for the mapping.
#[derive(Debug)]
pub struct SlurmPool {
    name: String,
    conf: Option<PathBuf>,
    partition: Option<String>,
    workdir: PathBuf,
    bin: Option<PathBuf>,
    settle: Duration,
    state: Mutex<Tracker>,
}

#[derive(Debug, Default)]
struct Tracker {
    /// What we submitted, to explain and place our own jobs exactly.
    specs: HashMap<JobId, JobSpec>,
    /// The last state seen per job.
    seen: BTreeMap<JobId, JobState>,
    events: Vec<Event>,
}

/// One job as `squeue --json` shows it.
#[derive(Debug, Clone)]
struct SlurmJob {
    id: JobId,
    name: String,
    state: String,
    reason: String,
    submit: f64,
    start: f64,
    end: f64,
    priority: u64,
    partition: String,
    tasks: u32,
    per_task: Resources,
    placement: Vec<(String, u32)>,
    array_job_id: JobId,
    array_task_id: Option<u32>,
    array_task_string: String,
}

impl SlurmPool {
    /// The cluster the Slurm commands on `PATH` reach (with `SLURM_CONF` as the environment
    /// has it). Job output goes to the current directory.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            conf: None,
            partition: None,
            workdir: PathBuf::from("."),
            bin: None,
            settle: Duration::from_secs(5),
            state: Mutex::new(Tracker::default()),
        }
    }

    /// The cluster described by this `slurm.conf` (sets `SLURM_CONF` for every command).
    pub fn conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.conf = Some(path.into());
        self
    }

    /// Only this partition: its nodes, and jobs submitted to it.
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Where jobs start and write `aistd-<id>.out` / `.err`.
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = dir.into();
        self
    }

    /// Where the Slurm commands are (default: `PATH`).
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin = Some(dir.into());
        self
    }

    /// How long `submit` waits for Slurm's scheduler to look at a new job, and `cancel` for
    /// Slurm to release an allocation (default 5 s).
    pub fn settle(mut self, wait: Duration) -> Self {
        self.settle = wait;
        self
    }

    /// Where a job's standard output goes.
    pub fn output_path(&self, id: JobId) -> PathBuf {
        self.workdir.join(format!("aistd-{id}.out"))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tracker>> {
        self.state
            .lock()
            .map_err(|_| Error::invalid("slurm pool", "a thread panicked while holding it"))
    }

    fn run(&self, program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
        let exe = match &self.bin {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let shown = format!("{program} {}", args.join(" "));
        let fail = |message: String| Error::Backend {
            command: shown.clone(),
            message,
        };
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(conf) = &self.conf {
            cmd.env("SLURM_CONF", conf);
        }
        let mut child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot run {}: {e} (is Slurm installed and on PATH?)",
                exe.display()
            ))
        })?;
        let mut broken = None;
        if let Some(text) = stdin
            && let Some(mut pipe) = child.stdin.take()
        {
            // A command that refuses its arguments may exit before reading
            // its input; its own error (below) then says more than the
            // broken pipe, so that one is kept for a command that succeeded.
            if let Err(e) = pipe.write_all(text.as_bytes()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(fail(format!("writing its input: {e}")));
                }
                broken = Some(e);
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for it: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(fail(format!("{}: {stderr}", out.status)));
        }
        if let Some(e) = broken {
            return Err(fail(format!("it did not read all its input: {e}")));
        }
        String::from_utf8(out.stdout).map_err(|_| fail("its output is not UTF-8".into()))
    }

    fn json(&self, program: &str, args: &[&str]) -> Result<Value> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.push("--json".into());
        let text = self.run(program, &a, None)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::Backend {
            command: format!("{program} {}", a.join(" ")),
            message: format!("its output is not the JSON expected: {e}"),
        })?;
        if let Some(errs) = v.get("errors").and_then(Value::as_array)
            && !errs.is_empty()
        {
            return Err(Error::Backend {
                command: format!("{program} {}", a.join(" ")),
                message: format!("Slurm reports errors: {}", Value::Array(errs.clone())),
            });
        }
        Ok(v)
    }

    fn squeue(&self) -> Result<Vec<SlurmJob>> {
        // `squeue --json` ignores filters in 22.05: list everything and filter here.
        let v = self.json("squeue", &[])?;
        let jobs = v
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Backend {
                command: "squeue --json".into(),
                message: "no `jobs` array in its output".into(),
            })?;
        Ok(jobs.iter().map(parse_job).collect())
    }

    fn job(&self, id: JobId) -> Result<SlurmJob> {
        self.squeue()?
            .into_iter()
            .find(|j| j.id == id)
            .ok_or(Error::NotFound(id))
    }

    /// Submits `count` copies of `job` as one Slurm job array (a sweep). Each element sees its
    /// index in `SLURM_ARRAY_TASK_ID`. Returns the array's id, for [`Self::array_status`].
    pub fn submit_array(&self, job: JobSpec, count: u32) -> Result<JobId> {
        if count == 0 {
            return Err(Error::invalid("job array", "needs at least one element"));
        }
        self.submit_inner(job, Some(count))
    }

    /// Every element of the array `id`: its index and state (elements Slurm has not started
    /// yet share the array's record and show as pending).
    pub fn array_status(&self, id: JobId) -> Result<Vec<(u32, JobState)>> {
        let mut out = Vec::new();
        for j in self.squeue()?.into_iter().filter(|j| j.array_job_id == id) {
            let state = map_state(&j.state)?;
            match j.array_task_id {
                Some(i) => out.push((i, state)),
                None => {
                    for i in parse_index_list(&j.array_task_string) {
                        out.push((i, state));
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::NotFound(id));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    fn sbatch_args(&self, job: &JobSpec, array: Option<u32>) -> Result<Vec<String>> {
        let what = format!("job {:?} on Slurm", job.name);
        let t = &job.per_task;
        if let Some((k, _)) = t.custom.iter().next() {
            return Err(Error::invalid(
                what,
                format!("custom resource `{k}` has no Slurm equivalent here"),
            ));
        }
        if !t.gpu_milli.is_multiple_of(1000) {
            return Err(Error::invalid(
                what,
                format!(
                    "{} GPUs per task: Slurm 22.05 allocates whole GPUs",
                    t.gpu_milli as f64 / 1000.0
                ),
            ));
        }
        let cpus = t.cpu_milli.div_ceil(1000).max(1);
        let mem_per_cpu = t.memory_mib.div_ceil(cpus).max(1);
        let mut a = vec![
            "--parsable".to_string(),
            format!("--job-name={}", job.name),
            format!("--ntasks={}", job.tasks),
            format!("--cpus-per-task={cpus}"),
            format!("--mem-per-cpu={mem_per_cpu}"),
            format!("--chdir={}", self.workdir.display()),
            format!("--output={}", self.workdir.join("aistd-%j.out").display()),
            format!("--error={}", self.workdir.join("aistd-%j.err").display()),
        ];
        if let Some(m) = &job.gpu_model
            && m.contains('|')
        {
            return Err(Error::invalid(
                what,
                format!("GPU model alternatives `{m}`: a Slurm request names one GPU type"),
            ));
        }
        if t.gpu_milli > 0 {
            let n = t.gpu_milli / 1000;
            a.push(match &job.gpu_model {
                Some(m) => format!("--gpus-per-task={m}:{n}"),
                None => format!("--gpus-per-task={n}"),
            });
        }
        if job.tenant != "default" {
            a.push(format!("--account={}", job.tenant));
        }
        if job.priority != 0 {
            a.push(format!("--nice={}", job.priority.saturating_neg()));
        }
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(n) = array {
            a.push(format!("--array=0-{}", n - 1));
        }
        Ok(a)
    }

    fn submit_inner(&self, job: JobSpec, array: Option<u32>) -> Result<JobId> {
        // Reject what can never run here with our reason, before Slurm would.
        let nodes = self.nodes()?;
        let specs: Vec<NodeSpec> = nodes.iter().map(|n| n.spec.clone()).collect();
        if specs.is_empty() {
            return Err(Error::NeverFits {
                job: job.name.clone(),
                reason: "the Slurm partition has no nodes".into(),
            });
        }
        let mut probe = crate::core::Core::new(
            specs,
            crate::core::QueuePolicy::Fifo,
            crate::core::Blocking::Strict,
        )?;
        probe.submit(job.clone(), 0.0)?;
        let args = self.sbatch_args(&job, array)?;
        let script = batch_script(&job);
        let out = self.run("sbatch", &args, Some(&script))?;
        let id: JobId = out
            .trim()
            .split(';')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Backend {
                command: "sbatch --parsable".into(),
                message: format!("expected a job id, got {:?}", out.trim()),
            })?;
        self.lock()?.specs.insert(id, job);
        // Wait (briefly) until Slurm's scheduler has looked at the job, so that its status
        // says why it waits.
        let deadline = Instant::now() + self.settle;
        loop {
            let j = self.job(id)?;
            if j.state != "PENDING" || j.reason != "None" || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.refresh()?;
        Ok(id)
    }

    /// Compares the current `squeue` snapshot with the last one and records what changed.
    fn refresh(&self) -> Result<()> {
        let jobs = self.squeue()?;
        let mut t = self.lock()?;
        let mut new = Vec::new();
        for j in &jobs {
            let state = map_state(&j.state)?;
            let before = t.seen.get(&j.id).copied();
            if before == Some(state) {
                continue;
            }
            if before.is_none() {
                new.push(Event {
                    time: j.submit,
                    job: j.id,
                    state: JobState::Pending,
                });
            }
            let started = j.start > 0.0 && state != JobState::Pending;
            if started && before != Some(JobState::Running) {
                new.push(Event {
                    time: j.start,
                    job: j.id,
                    state: JobState::Running,
                });
            }
            if state.is_final() {
                new.push(Event {
                    time: j.end.max(j.start),
                    job: j.id,
                    state,
                });
            }
            if state == JobState::Pending && before == Some(JobState::Running) {
                // Requeued.
                new.push(Event {
                    time: j.submit.max(j.start),
                    job: j.id,
                    state,
                });
            }
            t.seen.insert(j.id, state);
        }
        new.sort_by(|a, b| a.time.total_cmp(&b.time).then(a.job.cmp(&b.job)));
        let mut last = t.events.last().map_or(f64::MIN, |e| e.time);
        for mut e in new {
            e.time = e.time.max(last);
            last = e.time;
            t.events.push(e);
        }
        Ok(())
    }

    fn reason(&self, j: &SlurmJob, all: &[SlurmJob]) -> Result<PendingReason> {
        Ok(match j.reason.as_str() {
            "Resources" | "None" => {
                let spec =
                    self.lock()?.specs.get(&j.id).cloned().unwrap_or_else(|| {
                        JobSpec::new(j.name.clone(), j.tasks, j.per_task.clone())
                    });
                match explain(&spec, &self.nodes()?) {
                    Some(r) => r,
                    None if j.reason == "None" => PendingReason::NotScheduledYet,
                    None => PendingReason::Backend {
                        code: "Resources".into(),
                    },
                }
            }
            "Priority" => PendingReason::BehindJobs {
                ahead: all
                    .iter()
                    .filter(|o| {
                        o.state == "PENDING"
                            && o.partition == j.partition
                            && (o.priority, std::cmp::Reverse(o.id))
                                > (j.priority, std::cmp::Reverse(j.id))
                    })
                    .count(),
            },
            other => PendingReason::Backend {
                code: other.to_string(),
            },
        })
    }
}

impl ResourcePool for SlurmPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let v = self.json("sinfo", &[])?;
        let nodes = v
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Backend {
                command: "sinfo --json".into(),
                message: "no `nodes` array in its output".into(),
            })?;
        let mut out: Vec<NodeStatus> = Vec::new();
        for n in nodes {
            let st = parse_node(n);
            if let Some(p) = &self.partition
                && !st
                    .spec
                    .labels
                    .get("partitions")
                    .is_some_and(|ps| ps.split(',').any(|x| x == p))
            {
                continue;
            }
            if !out.iter().any(|o| o.spec.name == st.spec.name) {
                out.push(st);
            }
        }
        Ok(out)
    }

    fn submit(&self, job: JobSpec) -> Result<JobId> {
        self.submit_inner(job, None)
    }

    fn status(&self, id: JobId) -> Result<JobStatus> {
        let all = self.squeue()?;
        let j = all.iter().find(|j| j.id == id).ok_or(Error::NotFound(id))?;
        let state = map_state(&j.state)?;
        let reason = if state == JobState::Pending {
            Some(self.reason(j, &all)?)
        } else {
            None
        };
        let ran = state != JobState::Pending && j.start > 0.0;
        Ok(JobStatus {
            id,
            name: j.name.clone(),
            state,
            reason,
            submitted: j.submit,
            started: ran.then_some(j.start),
            finished: state.is_final().then_some(j.end.max(j.start)),
            placement: if state == JobState::Running {
                j.placement.clone()
            } else {
                Vec::new()
            },
        })
    }

    fn cancel(&self, id: JobId) -> Result<()> {
        let j = self.job(id)?;
        if map_state(&j.state)?.is_final() {
            return Ok(());
        }
        self.run("scancel", &[id.to_string()], None)?;
        let deadline = Instant::now() + self.settle;
        loop {
            let j = self.job(id)?;
            if map_state(&j.state)?.is_final() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Backend {
                    command: format!("scancel {id}"),
                    message: format!("the job is still {} after {:?}", j.state, self.settle),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.refresh()
    }

    /// Slurm's own estimate (its backfill scheduler's planned start time), when it has one.
    fn estimated_start(&self, id: JobId) -> Result<Option<f64>> {
        let j = self.job(id)?;
        Ok((j.start > 0.0).then_some(j.start))
    }

    fn events(&self, since: usize) -> Result<Vec<Event>> {
        self.refresh()?;
        Ok(self
            .lock()?
            .events
            .get(since..)
            .unwrap_or_default()
            .to_vec())
    }
}

/// The batch script: every task runs the command (through `srun` for gangs).
fn batch_script(job: &JobSpec) -> String {
    let argv: Vec<String> = match (&job.command, job.duration) {
        (Some(c), _) if !c.is_empty() => c.clone(),
        (_, Some(d)) => vec!["sleep".into(), format!("{d}")],
        _ => vec!["sleep".into(), "infinity".into()],
    };
    let line = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    if job.tasks > 1 {
        format!("#!/bin/sh\nexec srun {line}\n")
    } else {
        format!("#!/bin/sh\nexec {line}\n")
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Slurm's job state → ours.
fn map_state(s: &str) -> Result<JobState> {
    Ok(match s {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "RESV_DEL_HOLD"
        | "STOPPED" => JobState::Pending,
        "RUNNING" | "CONFIGURING" | "COMPLETING" | "RESIZING" | "SIGNALING" | "STAGE_OUT" => {
            JobState::Running
        }
        "COMPLETED" => JobState::Completed,
        "CANCELLED" => JobState::Cancelled,
        "FAILED" | "TIMEOUT" | "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE"
        | "OUT_OF_MEMORY" | "SPECIAL_EXIT" | "REVOKED" => JobState::Failed,
        other => {
            return Err(Error::Backend {
                command: "squeue --json".into(),
                message: format!("unknown job state {other:?}"),
            });
        }
    })
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Splits a gres list (`gpu:a100:4(S:0-1),gpu:v100:2`) at top-level commas.
fn gres_entries(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|e| !e.is_empty()).collect()
}

/// GPUs in a gres list: (count, the first model named).
fn gres_gpus(s: &str) -> (u64, Option<String>) {
    let mut count = 0;
    let mut model = None;
    for e in gres_entries(s) {
        let e = e.split('(').next().unwrap_or("");
        let parts: Vec<&str> = e.split(':').collect();
        if parts.first() != Some(&"gpu") {
            continue;
        }
        let (m, n) = match parts.as_slice() {
            [_, n] => (None, n),
            [_, m, n, ..] => (Some(m.to_string()), n),
            _ => continue,
        };
        count += n.parse::<u64>().unwrap_or(0);
        if model.is_none() {
            model = m;
        }
    }
    (count, model)
}

fn parse_node(n: &Value) -> NodeStatus {
    let cpus = num(n, "cpus");
    let mem = num(n, "real_memory");
    let (gpus, model) = gres_gpus(&text(n, "gres"));
    let (used_gpus, _) = gres_gpus(&text(n, "gres_used"));
    let state = text(n, "state");
    let flags: Vec<String> = n
        .get("state_flags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let usable = matches!(
        state.as_str(),
        "idle" | "mixed" | "allocated" | "completing"
    ) && !flags.iter().any(|f| f == "DRAIN" || f == "NOT_RESPONDING");
    let capacity = Resources::new(cpus, mem, gpus);
    let free = if usable {
        Resources::new(
            cpus.saturating_sub(num(n, "alloc_cpus")),
            mem.saturating_sub(num(n, "alloc_memory")),
            gpus.saturating_sub(used_gpus),
        )
    } else {
        Resources::zero()
    };
    let mut spec = NodeSpec::new(text(n, "name"), capacity);
    spec.gpu_model = model;
    let partitions = n
        .get("partitions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    spec.labels.insert("partitions".into(), partitions);
    spec.labels.insert("state".into(), state);
    let features = text(n, "active_features");
    if !features.is_empty() {
        spec.labels.insert("features".into(), features);
    }
    NodeStatus { spec, free }
}

fn parse_job(j: &Value) -> SlurmJob {
    let tasks = num(j, "tasks").max(1) as u32;
    // What the whole job asked for: `tres_req_str` = `cpu=2,mem=20M,node=1,billing=2`.
    let mut cpu = 0u64;
    let mut mem = 0u64;
    for kv in text(j, "tres_req_str").split(',') {
        match kv.split_once('=') {
            Some(("cpu", v)) => cpu = v.parse().unwrap_or(0),
            Some(("mem", v)) => mem = parse_mem_mib(v),
            _ => {}
        }
    }
    let gpus_per_task = gres_gpus(&text(j, "tres_per_task").replace("gres:", "")).0;
    let mut per_task = Resources::new(cpu / u64::from(tasks), mem / u64::from(tasks), 0);
    per_task.gpu_milli = gpus_per_task * 1000;
    let cpt = (cpu / u64::from(tasks)).max(1);
    let mut placement = Vec::new();
    if let Some(nodes) = j
        .pointer("/job_resources/allocated_nodes")
        .and_then(Value::as_array)
    {
        for n in nodes {
            let cores: u64 = n
                .get("sockets")
                .and_then(Value::as_object)
                .map(|s| {
                    s.values()
                        .filter_map(|sock| sock.get("cores").and_then(Value::as_object))
                        .map(|c| c.len() as u64)
                        .sum()
                })
                .unwrap_or(0);
            placement.push((text(n, "nodename"), (cores / cpt) as u32));
        }
        let placed: u32 = placement.iter().map(|(_, c)| c).sum();
        if placement.len() == 1 && placed != tasks {
            placement[0].1 = tasks;
        }
    }
    SlurmJob {
        id: num(j, "job_id"),
        name: text(j, "name"),
        state: text(j, "job_state"),
        reason: text(j, "state_reason"),
        submit: num(j, "submit_time") as f64,
        start: num(j, "start_time") as f64,
        end: num(j, "end_time") as f64,
        priority: num(j, "priority"),
        partition: text(j, "partition"),
        tasks,
        per_task,
        placement,
        array_job_id: num(j, "array_job_id"),
        array_task_id: j
            .get("array_task_id")
            .and_then(Value::as_u64)
            .map(|i| i as u32),
        array_task_string: text(j, "array_task_string"),
    }
}

/// `20M`, `4G`, `1T` → MiB.
fn parse_mem_mib(v: &str) -> u64 {
    let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "G" => n * 1024,
        "T" => n * 1024 * 1024,
        "K" => n / 1024,
        _ => n,
    }
}

/// `0-3,7,9-10%2` → the indices.
fn parse_index_list(s: &str) -> Vec<u32> {
    let s = s.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_lists_parse_with_models_and_index_ranges() {
        assert_eq!(gres_gpus("gpu:fake:2"), (2, Some("fake".into())));
        assert_eq!(gres_gpus("gpu:4"), (4, None));
        assert_eq!(
            gres_gpus("gpu:a100:4(S:0-1),gpu:v100:2(IDX:0,2),shard:8"),
            (6, Some("a100".into()))
        );
        assert_eq!(gres_gpus("gpu:fake:1(IDX:0)"), (1, Some("fake".into())));
        assert_eq!(gres_gpus(""), (0, None));
        assert_eq!(gres_gpus("(null)"), (0, None));
    }

    #[test]
    fn states_map_and_unknown_ones_are_errors() {
        assert_eq!(map_state("COMPLETING").expect("known"), JobState::Running);
        assert_eq!(map_state("TIMEOUT").expect("known"), JobState::Failed);
        assert_eq!(map_state("REQUEUED").expect("known"), JobState::Pending);
        assert!(matches!(map_state("WEIRD"), Err(Error::Backend { .. })));
    }

    #[test]
    fn memory_units_and_array_index_lists_parse() {
        assert_eq!(parse_mem_mib("20M"), 20);
        assert_eq!(parse_mem_mib("4G"), 4096);
        assert_eq!(parse_index_list("0-3"), vec![0, 1, 2, 3]);
        assert_eq!(parse_index_list("1,4-5%2"), vec![1, 4, 5]);
    }

    #[test]
    fn batch_scripts_quote_arguments_and_run_gangs_under_srun() {
        let j = JobSpec::new("x", 1, Resources::new(1, 10, 0)).command(["echo", "it's $HOME"]);
        assert_eq!(batch_script(&j), "#!/bin/sh\nexec echo 'it'\\''s $HOME'\n");
        let g = JobSpec::new("g", 4, Resources::new(1, 10, 0)).duration(2.5);
        assert_eq!(batch_script(&g), "#!/bin/sh\nexec srun sleep 2.5\n");
        let hold = JobSpec::new("h", 1, Resources::new(1, 10, 0));
        assert_eq!(batch_script(&hold), "#!/bin/sh\nexec sleep infinity\n");
    }

    #[test]
    fn sbatch_arguments_carry_the_request_and_refuse_what_slurm_cannot_do() {
        let pool = SlurmPool::new("s").workdir("/tmp").partition("main");
        let j = JobSpec::new("train", 2, Resources::new(3, 1000, 2))
            .gpu_model("a100")
            .tenant("vision")
            .priority(5);
        let a = pool.sbatch_args(&j, Some(4)).expect("args");
        for want in [
            "--ntasks=2",
            "--cpus-per-task=3",
            "--mem-per-cpu=334",
            "--gpus-per-task=a100:2",
            "--account=vision",
            "--nice=-5",
            "--partition=main",
            "--array=0-3",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        let mut frac = Resources::new(1, 10, 0);
        frac.gpu_milli = 500;
        let e = pool
            .sbatch_args(&JobSpec::new("f", 1, frac), None)
            .expect_err("fractional GPU");
        assert!(e.to_string().contains("whole GPUs"), "{e}");
        let e = pool
            .sbatch_args(
                &JobSpec::new("c", 1, Resources::new(1, 10, 0).with("licence", 1)),
                None,
            )
            .expect_err("custom");
        assert!(e.to_string().contains("licence"), "{e}");
    }

    #[test]
    fn a_missing_slurm_is_a_backend_error_naming_the_command() {
        let pool = SlurmPool::new("s").bin_dir("/nonexistent/slurm/bin");
        match pool.nodes() {
            Err(Error::Backend { command, message }) => {
                assert!(command.starts_with("sinfo"), "{command}");
                assert!(message.contains("cannot run"), "{message}");
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    }

    /// A fake command in a fresh directory, for [`SlurmPool::bin_dir`].
    fn fake_command(name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "aistd-slurm-fake-{name}-{}-{}",
            std::process::id(),
            body.len()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let exe = dir.join(name);
        std::fs::write(&exe, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    #[test]
    fn a_command_that_refuses_before_reading_its_input_reports_its_own_words() {
        // More input than a pipe holds, so the write always meets the closed pipe.
        let input = "#SBATCH\n".repeat(1 << 17);
        let dir = fake_command(
            "sbatch",
            "echo 'sbatch: error: Invalid --nice value' >&2; exit 1",
        );
        let pool = SlurmPool::new("s").bin_dir(&dir);
        match pool.run("sbatch", &["--nice=-5".into()], Some(&input)) {
            Err(Error::Backend { command, message }) => {
                assert_eq!(command, "sbatch --nice=-5");
                assert!(message.contains("Invalid --nice value"), "{message}");
            }
            other => panic!("expected sbatch's own error, got {other:?}"),
        }
        // One that exits 0 without reading its script did not take the job.
        let dir = fake_command("sbatch", "echo 12; exit 0");
        let pool = SlurmPool::new("s").bin_dir(&dir);
        match pool.run("sbatch", &[], Some(&input)) {
            Err(Error::Backend { message, .. }) => {
                assert!(message.contains("did not read all its input"), "{message}")
            }
            other => panic!("expected an error for the unread input, got {other:?}"),
        }
        let dir = fake_command("sbatch", "cat >/dev/null; echo 13");
        let pool = SlurmPool::new("s").bin_dir(&dir);
        assert_eq!(
            pool.run("sbatch", &[], Some(&input)).expect("reads"),
            "13\n"
        );
    }
}
