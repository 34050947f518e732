//! [`LocalPool`]: real work on this machine — child processes or closures — with the scheduling
//! core's queueing, gangs and resource accounting. The embedded default pool.
//!
//! One node (this machine). Each task of a running job is a child process (the job's `command`,
//! with `AISTD_JOB_ID`, `AISTD_TASK_INDEX`, `AISTD_TASKS` and, when it holds GPUs,
//! `CUDA_VISIBLE_DEVICES` set) or a thread running a closure ([`LocalPool::submit_fn`]). A job
//! without either holds its resources for its `duration`, or until cancelled. A job completes
//! when every task succeeds and fails when one fails; `cancel` kills its processes (closures see
//! [`TaskContext::cancelled`]). The pool's clock is seconds since it was created.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::{Blocking, Core, QueuePolicy};
use crate::error::{Error, Result};
use crate::model::{Event, JobId, JobSpec, JobState, JobStatus, NodeSpec, NodeStatus};
use crate::pool::ResourcePool;
use crate::resources::Resources;

/// What a closure task is told.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The job.
    pub job: JobId,
    /// This task's index in the gang (0-based).
    pub task: u32,
    /// Gang size.
    pub tasks: u32,
    /// GPU device indices this task holds.
    pub gpus: Vec<usize>,
    cancel: Arc<AtomicBool>,
}

impl TaskContext {
    /// Whether the job was cancelled: long work should check and return.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A closure task: `Err` fails the job with that message.
pub type TaskFn = dyn Fn(&TaskContext) -> std::result::Result<(), String> + Send + Sync;

enum Work {
    Command(Vec<String>),
    Closure(Arc<TaskFn>),
    Hold(Option<f64>),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Work::Closure(_) => f.write_str("Closure"),
            Work::Hold(d) => f.debug_tuple("Hold").field(d).finish(),
        }
    }
}

#[derive(Debug)]
struct State {
    core: Core,
    events: Vec<Event>,
    work: HashMap<JobId, Work>,
    cancel: HashMap<JobId, Arc<AtomicBool>>,
    failures: HashMap<JobId, String>,
    /// Thousandths of each GPU device still free.
    devices: Vec<u64>,
    held_devices: HashMap<JobId, Vec<(usize, u64)>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    epoch: Instant,
    log_dir: Option<PathBuf>,
}

/// This machine as a [`ResourcePool`]. See the [module docs](self).
#[derive(Debug)]
pub struct LocalPool {
    name: String,
    shared: Arc<Shared>,
}

impl LocalPool {
    /// A pool with `capacity`, queueing by `policy` (one node, named `name`).
    pub fn new(
        name: impl Into<String>,
        capacity: Resources,
        policy: QueuePolicy,
        blocking: Blocking,
    ) -> Result<Self> {
        let name = name.into();
        let gpus = capacity.gpu_milli.div_ceil(1000) as usize;
        let mut devices = vec![1000; gpus];
        if let Some(last) = devices.last_mut()
            && !capacity.gpu_milli.is_multiple_of(1000)
        {
            *last = capacity.gpu_milli % 1000;
        }
        let core = Core::new(
            vec![NodeSpec::new(name.clone(), capacity)],
            policy,
            blocking,
        )?;
        Ok(Self {
            name,
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    core,
                    events: Vec::new(),
                    work: HashMap::new(),
                    cancel: HashMap::new(),
                    failures: HashMap::new(),
                    devices,
                    held_devices: HashMap::new(),
                }),
                changed: Condvar::new(),
                epoch: Instant::now(),
                log_dir: None,
            }),
        })
    }

    /// This machine's cores, memory and NVIDIA GPUs (`/dev/nvidia<N>`), FIFO with backfill
    /// by skipping.
    pub fn detect(name: impl Into<String>) -> Result<Self> {
        Self::new(name, detect_capacity(), QueuePolicy::Fifo, Blocking::Skip)
    }

    /// Writes each job's output to `<dir>/<id>.out` and `.err` (default: discarded).
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::Backend {
            command: format!("create {}", dir.display()),
            message: e.to_string(),
        })?;
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            Error::invalid("local pool", "set the log directory before submitting")
        })?;
        shared.log_dir = Some(dir);
        Ok(self)
    }

    /// Queues a job whose every task runs `f` on its own thread.
    pub fn submit_fn(
        &self,
        job: JobSpec,
        f: impl Fn(&TaskContext) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Result<JobId> {
        self.enqueue(job, Some(Work::Closure(Arc::new(f))))
    }

    /// Why a job failed (the command could not start, a task's exit status, a closure's error).
    pub fn failure(&self, id: JobId) -> Result<Option<String>> {
        Ok(lock(&self.shared)?.failures.get(&id).cloned())
    }

    /// Waits until the job ends or `timeout` passes; returns its status then.
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<JobStatus> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.shared)?;
        loop {
            let st = s.core.status(id)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if st.state.is_final() || left.is_zero() {
                return Ok(st);
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .map_err(|_| poisoned())?
                .0;
        }
    }

    fn enqueue(&self, job: JobSpec, work: Option<Work>) -> Result<JobId> {
        let work = work.unwrap_or_else(|| match &job.command {
            Some(c) if !c.is_empty() => Work::Command(c.clone()),
            _ => Work::Hold(job.duration),
        });
        let mut s = lock(&self.shared)?;
        let now = self.shared.now();
        let id = s.core.submit(job, now)?;
        s.work.insert(id, work);
        s.events.push(Event {
            time: now,
            job: id,
            state: JobState::Pending,
        });
        start_ready(&self.shared, &mut s);
        Ok(id)
    }
}

impl Drop for LocalPool {
    fn drop(&mut self) {
        // Stop what still runs: a pool does not leave processes behind.
        if let Ok(s) = self.shared.state.lock() {
            for flag in s.cancel.values() {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Shared {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

fn poisoned() -> Error {
    Error::invalid("local pool", "a thread panicked while holding it")
}

fn lock(shared: &Shared) -> Result<MutexGuard<'_, State>> {
    shared.state.lock().map_err(|_| poisoned())
}

/// Starts every job the core can place now.
fn start_ready(shared: &Arc<Shared>, s: &mut State) {
    let now = shared.now();
    for id in s.core.schedule(now) {
        s.events.push(Event {
            time: now,
            job: id,
            state: JobState::Running,
        });
        let Ok(spec) = s.core.spec(id).cloned() else {
            continue;
        };
        let gpus = assign_gpus(s, id, &spec);
        let flag = Arc::new(AtomicBool::new(false));
        s.cancel.insert(id, flag.clone());
        let work = match s.work.get(&id) {
            Some(Work::Command(c)) => Work::Command(c.clone()),
            Some(Work::Closure(f)) => Work::Closure(f.clone()),
            Some(Work::Hold(d)) => Work::Hold(*d),
            None => Work::Hold(None),
        };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let outcome = run_job(&shared, id, spec.tasks, &gpus, work, &flag);
            finish(&shared, id, outcome);
        });
    }
    shared.changed.notify_all();
}

/// Hands each task whole devices (or, for fractions, the fullest device that still fits).
fn assign_gpus(s: &mut State, id: JobId, spec: &JobSpec) -> Vec<Vec<usize>> {
    let need = spec.per_task.gpu_milli;
    let mut per_task = Vec::new();
    let mut held = Vec::new();
    for _ in 0..spec.tasks {
        let mut mine = Vec::new();
        if need >= 1000 {
            for _ in 0..need / 1000 {
                if let Some(d) = s.devices.iter().position(|&f| f == 1000) {
                    s.devices[d] = 0;
                    held.push((d, 1000));
                    mine.push(d);
                }
            }
        } else if need > 0
            && let Some(d) = (0..s.devices.len())
                .filter(|&d| s.devices[d] >= need)
                .min_by_key(|&d| s.devices[d])
        {
            s.devices[d] -= need;
            held.push((d, need));
            mine.push(d);
        }
        per_task.push(mine);
    }
    s.held_devices.insert(id, held);
    per_task
}

enum Outcome {
    Done,
    Failed(String),
    Cancelled,
}

fn run_job(
    shared: &Shared,
    id: JobId,
    tasks: u32,
    gpus: &[Vec<usize>],
    work: Work,
    cancel: &Arc<AtomicBool>,
) -> Outcome {
    let tick = Duration::from_millis(10);
    match work {
        Work::Hold(duration) => {
            let end = duration.map(|d| Instant::now() + Duration::from_secs_f64(d));
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Outcome::Cancelled;
                }
                if end.is_some_and(|e| Instant::now() >= e) {
                    return Outcome::Done;
                }
                std::thread::sleep(tick);
            }
        }
        Work::Closure(f) => {
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let ctx = TaskContext {
                        job: id,
                        task,
                        tasks,
                        gpus: gpus.get(task as usize).cloned().unwrap_or_default(),
                        cancel: cancel.clone(),
                    };
                    let f = f.clone();
                    std::thread::spawn(move || f(&ctx))
                })
                .collect();
            let mut failure = None;
            for (task, h) in handles.into_iter().enumerate() {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the task panicked".to_string()));
                if let Err(e) = r
                    && failure.is_none()
                {
                    failure = Some(format!("task {task}: {e}"));
                }
            }
            if cancel.load(Ordering::Relaxed) {
                Outcome::Cancelled
            } else if let Some(e) = failure {
                Outcome::Failed(e)
            } else {
                Outcome::Done
            }
        }
        Work::Command(argv) => {
            let mut children: Vec<Child> = Vec::new();
            for task in 0..tasks {
                match spawn(shared, id, task, tasks, gpus, &argv) {
                    Ok(c) => children.push(c),
                    Err(e) => {
                        for c in &mut children {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        return Outcome::Failed(e);
                    }
                }
            }
            let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
            loop {
                if cancel.load(Ordering::Relaxed) {
                    for c in &mut children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Outcome::Cancelled;
                }
                for (c, st) in children.iter_mut().zip(status.iter_mut()) {
                    if st.is_none() {
                        match c.try_wait() {
                            Ok(Some(s)) => *st = Some(s),
                            Ok(None) => {}
                            Err(e) => return Outcome::Failed(format!("waiting for a task: {e}")),
                        }
                    }
                }
                if let Some((task, s)) = status
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| s.filter(|s| !s.success()).map(|s| (i, s)))
                {
                    // One task failed: the gang fails; stop the others.
                    for c in &mut children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Outcome::Failed(format!("task {task}: {:?} {s}", argv[0]));
                }
                if status.iter().all(Option::is_some) {
                    return Outcome::Done;
                }
                std::thread::sleep(tick);
            }
        }
    }
}

fn spawn(
    shared: &Shared,
    id: JobId,
    task: u32,
    tasks: u32,
    gpus: &[Vec<usize>],
    argv: &[String],
) -> std::result::Result<Child, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .env("AISTD_JOB_ID", id.to_string())
        .env("AISTD_TASK_INDEX", task.to_string())
        .env("AISTD_TASKS", tasks.to_string());
    if let Some(devs) = gpus.get(task as usize)
        && !devs.is_empty()
    {
        let list: Vec<String> = devs.iter().map(usize::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
    }
    match &shared.log_dir {
        Some(dir) => {
            let suffix = if tasks > 1 {
                format!(".{task}")
            } else {
                String::new()
            };
            let open = |ext: &str| {
                File::create(dir.join(format!("{id}{suffix}.{ext}")))
                    .map_err(|e| format!("cannot write its {ext} file in {}: {e}", dir.display()))
            };
            cmd.stdout(open("out")?).stderr(open("err")?);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", argv[0]))
}

fn finish(shared: &Arc<Shared>, id: JobId, outcome: Outcome) {
    let Ok(mut s) = shared.state.lock() else {
        return;
    };
    let state = match outcome {
        Outcome::Cancelled => return, // `cancel` already ended it.
        Outcome::Done => JobState::Completed,
        Outcome::Failed(why) => {
            s.failures.insert(id, why);
            JobState::Failed
        }
    };
    if s.core.status(id).map(|st| st.state) != Ok(JobState::Running) {
        return;
    }
    end(shared, &mut s, id, state);
    start_ready(shared, &mut s);
}

fn end(shared: &Shared, s: &mut State, id: JobId, state: JobState) {
    let now = shared.now();
    if s.core.end(id, state, now).is_err() {
        return;
    }
    for (d, milli) in s.held_devices.remove(&id).unwrap_or_default() {
        s.devices[d] += milli;
    }
    s.work.remove(&id);
    s.cancel.remove(&id);
    s.events.push(Event {
        time: now,
        job: id,
        state,
    });
}

impl ResourcePool for LocalPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        Ok(lock(&self.shared)?.core.nodes())
    }

    fn submit(&self, job: JobSpec) -> Result<JobId> {
        self.enqueue(job, None)
    }

    fn status(&self, id: JobId) -> Result<JobStatus> {
        lock(&self.shared)?.core.status(id)
    }

    fn cancel(&self, id: JobId) -> Result<()> {
        let mut s = lock(&self.shared)?;
        let st = s.core.status(id)?;
        if st.state.is_final() {
            return Ok(());
        }
        if let Some(flag) = s.cancel.get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
        end(&self.shared, &mut s, id, JobState::Cancelled);
        start_ready(&self.shared, &mut s);
        Ok(())
    }

    fn estimated_start(&self, id: JobId) -> Result<Option<f64>> {
        let s = lock(&self.shared)?;
        s.core.estimate_start(id, self.shared.now())
    }

    fn events(&self, since: usize) -> Result<Vec<Event>> {
        Ok(lock(&self.shared)?
            .events
            .get(since..)
            .unwrap_or_default()
            .to_vec())
    }
}

/// This machine: cores (`available_parallelism`), memory (`MemTotal` of `/proc/meminfo`, else
/// 1 GiB per core) and NVIDIA GPUs (`/dev/nvidia0`, `/dev/nvidia1`, …).
pub fn detect_capacity() -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(cpus * 1024, |kb| kb / 1024);
    let gpus = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("nvidia"))
                        .is_some_and(|rest| {
                            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                        })
                })
                .count() as u64
        })
        .unwrap_or(0);
    Resources::new(cpus, mem, gpus)
}
