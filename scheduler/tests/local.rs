//! `LocalPool`: real processes and closures on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aistd_scheduler::{
    Blocking, JobSpec, JobState, LocalPool, PendingReason, QueuePolicy, ResourcePool, Resources,
    conformance,
};

const LONG: Duration = Duration::from_secs(30);

fn pool(cpus: u64, gpus: u64) -> LocalPool {
    LocalPool::new(
        "local",
        Resources::new(cpus, 4096, gpus),
        QueuePolicy::Fifo,
        Blocking::Strict,
    )
    .expect("pool")
}

fn logs(test: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("local-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_conformance_kit_passes_locally() {
    conformance::run_all(&pool(4, 2));
    conformance::run_all(&LocalPool::detect("this-machine").expect("detect"));
}

#[test]
fn a_gang_of_processes_runs_every_task_with_its_environment() {
    let dir = logs("gang");
    let p = pool(4, 2).log_dir(&dir).expect("logs");
    let id = p
        .submit(JobSpec::new("gang", 2, Resources::new(1, 64, 1)).command([
            "sh",
            "-c",
            "echo $AISTD_JOB_ID $AISTD_TASK_INDEX/$AISTD_TASKS gpu=$CUDA_VISIBLE_DEVICES",
        ]))
        .expect("submit");
    let st = p.wait(id, LONG).expect("wait");
    assert_eq!(st.state, JobState::Completed, "{:?}", p.failure(id));
    let out = |t: u32| std::fs::read_to_string(dir.join(format!("{id}.{t}.out"))).expect("out");
    let (a, b) = (out(0), out(1));
    assert!(a.starts_with(&format!("{id} 0/2 gpu=")), "{a}");
    assert!(b.starts_with(&format!("{id} 1/2 gpu=")), "{b}");
    // Each task got its own GPU.
    let gpu = |s: &str| s.trim().rsplit('=').next().map(str::to_string);
    assert_ne!(gpu(&a), gpu(&b));
    assert_eq!(
        p.nodes().expect("nodes")[0].free,
        Resources::new(4, 4096, 2)
    );
}

#[test]
fn failures_are_reported_with_why() {
    let p = pool(2, 0);
    let bad = p
        .submit(JobSpec::new("exit3", 1, Resources::new(1, 64, 0)).command(["sh", "-c", "exit 3"]))
        .expect("submit");
    assert_eq!(p.wait(bad, LONG).expect("wait").state, JobState::Failed);
    let why = p.failure(bad).expect("failure").expect("a reason");
    assert!(why.contains("exit status: 3"), "{why}");
    let missing = p
        .submit(
            JobSpec::new("missing", 1, Resources::new(1, 64, 0)).command(["/nonexistent/program"]),
        )
        .expect("submit");
    assert_eq!(p.wait(missing, LONG).expect("wait").state, JobState::Failed);
    let why = p.failure(missing).expect("failure").expect("a reason");
    assert!(why.contains("cannot run"), "{why}");
    // A gang fails when one task fails.
    let gang = p
        .submit(JobSpec::new("half", 2, Resources::new(1, 64, 0)).command([
            "sh",
            "-c",
            "[ $AISTD_TASK_INDEX = 0 ] || exit 1; sleep 30",
        ]))
        .expect("submit");
    let t = Instant::now();
    assert_eq!(p.wait(gang, LONG).expect("wait").state, JobState::Failed);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the healthy task was stopped"
    );
}

#[test]
fn jobs_queue_for_busy_cores_and_start_when_they_free() {
    let p = pool(2, 0);
    let a = p
        .submit(JobSpec::new("a", 1, Resources::new(2, 64, 0)).duration(0.3))
        .expect("a");
    let b = p
        .submit(JobSpec::new("b", 1, Resources::new(1, 64, 0)).duration(0.1))
        .expect("b");
    let st = p.status(b).expect("status");
    assert_eq!(st.state, JobState::Pending);
    assert!(
        matches!(st.reason, Some(PendingReason::Insufficient { ref resource, .. }) if resource == "cpu_milli"),
        "{st:?}"
    );
    let sa = p.wait(a, LONG).expect("a");
    let sb = p.wait(b, LONG).expect("b");
    assert_eq!(
        (sa.state, sb.state),
        (JobState::Completed, JobState::Completed)
    );
    let (a_end, b_start) = (sa.finished.expect("end"), sb.started.expect("start"));
    assert!(
        b_start >= a_end,
        "b started at {b_start}, before a ended at {a_end}"
    );
    assert!(a_end >= 0.3, "a held its cores for its duration: {a_end}");
    let states: Vec<(u64, JobState)> = p
        .events(0)
        .expect("events")
        .into_iter()
        .map(|e| (e.job, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (a, JobState::Pending),
            (a, JobState::Running),
            (b, JobState::Pending),
            (a, JobState::Completed),
            (b, JobState::Running),
            (b, JobState::Completed),
        ]
    );
}

#[test]
fn closures_run_once_per_task_and_see_cancellation() {
    let p = pool(4, 0);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let id = p
        .submit_fn(
            JobSpec::new("sum", 3, Resources::new(1, 64, 0)),
            move |ctx| {
                let s: u64 = (0..1_000_000u64)
                    .map(|i| i % (u64::from(ctx.task) + 2))
                    .sum();
                if s == 0 {
                    return Err("no work done".into());
                }
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .expect("submit");
    assert_eq!(p.wait(id, LONG).expect("wait").state, JobState::Completed);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let err = p
        .submit_fn(JobSpec::new("err", 1, Resources::new(1, 64, 0)), |_| {
            Err("bad batch".into())
        })
        .expect("submit");
    assert_eq!(p.wait(err, LONG).expect("wait").state, JobState::Failed);
    assert_eq!(
        p.failure(err).expect("f").as_deref(),
        Some("task 0: bad batch")
    );
    let stopped = Arc::new(AtomicUsize::new(0));
    let s2 = stopped.clone();
    let spin = p
        .submit_fn(
            JobSpec::new("spin", 1, Resources::new(1, 64, 0)),
            move |ctx| {
                while !ctx.cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                s2.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .expect("submit");
    p.cancel(spin).expect("cancel");
    assert_eq!(p.status(spin).expect("s").state, JobState::Cancelled);
    let t = Instant::now();
    while stopped.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < LONG, "the closure never saw the cancellation");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cancel_kills_the_process() {
    let dir = logs("cancel");
    let p = pool(2, 0).log_dir(&dir).expect("logs");
    let id = p
        .submit(
            JobSpec::new("sleeper", 1, Resources::new(1, 64, 0)).command([
                "sh",
                "-c",
                "echo $$; exec sleep 30",
            ]),
        )
        .expect("submit");
    let out = dir.join(format!("{id}.out"));
    let t = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&out)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(t.elapsed() < LONG, "the process never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    p.cancel(id).expect("cancel");
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let t = Instant::now();
    while proc.exists()
        && !std::fs::read_to_string(proc.join("stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "process {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.status(id).expect("s").state, JobState::Cancelled);
}
