//! `SlurmPool` against a real Slurm cluster.
//!
//! These run when `AISTD_SLURM_CONF` names a `slurm.conf` (`./scripts/test.sh` starts a
//! single-node cluster with `scripts/slurm.sh up` and sets it); without it they say so and pass,
//! so that `cargo test` needs nothing but cargo. The cluster must have one node with two GPUs.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aistd_scheduler::{
    Error, JobSpec, JobState, PendingReason, ResourcePool, Resources, SlurmPool, conformance,
};

static CLUSTER: Mutex<()> = Mutex::new(());

fn pool(test: &str) -> Option<(SlurmPool, PathBuf, MutexGuard<'static, ()>)> {
    let Ok(conf) = std::env::var("AISTD_SLURM_CONF") else {
        eprintln!("{test}: skipped, AISTD_SLURM_CONF is not set (./scripts/test.sh sets it)");
        return None;
    };
    let guard = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("slurm-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    let pool = SlurmPool::new("slurm")
        .conf(conf)
        .workdir(&dir)
        .settle(Duration::from_secs(10));
    Some((pool, dir, guard))
}

fn wait_final(pool: &SlurmPool, id: u64) -> JobState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = pool.status(id).expect("status");
        if st.state.is_final() {
            return st.state;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn small() -> Resources {
    Resources::new(1, 64, 0)
}

#[test]
fn the_conformance_kit_passes_on_slurm() {
    let Some((pool, _dir, _g)) = pool("conformance") else {
        return;
    };
    conformance::run_all(&pool);
}

#[test]
fn a_command_runs_to_completion_with_its_events_and_output() {
    let Some((pool, _dir, _g)) = pool("complete") else {
        return;
    };
    let since = pool.events(0).expect("events").len();
    let id = pool
        .submit(JobSpec::new("hello", 1, small()).command([
            "sh",
            "-c",
            "echo hello from $SLURM_JOB_ID",
        ]))
        .expect("submit");
    assert_eq!(wait_final(&pool, id), JobState::Completed);
    let out = std::fs::read_to_string(pool.output_path(id)).expect("output");
    assert_eq!(out.trim(), format!("hello from {id}"));
    let st = pool.status(id).expect("status");
    assert!(st.started.is_some() && st.finished >= st.started, "{st:?}");
    let mine: Vec<JobState> = pool
        .events(since)
        .expect("events")
        .into_iter()
        .filter(|e| e.job == id)
        .map(|e| e.state)
        .collect();
    assert_eq!(
        mine,
        vec![JobState::Pending, JobState::Running, JobState::Completed]
    );
}

#[test]
fn a_failing_command_fails() {
    let Some((pool, _dir, _g)) = pool("fail") else {
        return;
    };
    let id = pool
        .submit(JobSpec::new("bad", 1, small()).command(["sh", "-c", "exit 3"]))
        .expect("submit");
    assert_eq!(wait_final(&pool, id), JobState::Failed);
}

#[test]
fn a_gang_runs_every_task_under_srun() {
    let Some((pool, _dir, _g)) = pool("gang") else {
        return;
    };
    let id = pool
        .submit(JobSpec::new("gang", 2, small()).command(["sh", "-c", "echo task $SLURM_PROCID"]))
        .expect("submit");
    assert_eq!(wait_final(&pool, id), JobState::Completed);
    let out = std::fs::read_to_string(pool.output_path(id)).expect("output");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["task 0", "task 1"]);
}

#[test]
fn gpus_are_allocated_counted_and_waited_for() {
    let Some((pool, _dir, _g)) = pool("gpu") else {
        return;
    };
    let gpus_free = |pool: &SlurmPool| -> u64 {
        pool.nodes()
            .expect("nodes")
            .iter()
            .map(|n| n.free.gpu_milli)
            .sum()
    };
    let node = &pool.nodes().expect("nodes")[0];
    assert_eq!(node.spec.capacity.gpu_milli, 2000, "two fake GPUs");
    assert_eq!(node.spec.gpu_model.as_deref(), Some("fake"));
    let before = gpus_free(&pool);
    let one = pool
        .submit(JobSpec::new("gpu", 1, Resources::new(1, 64, 1)).command([
            "sh",
            "-c",
            "echo gpu=$CUDA_VISIBLE_DEVICES; sleep 60",
        ]))
        .expect("submit");
    assert_eq!(pool.status(one).expect("status").state, JobState::Running);
    assert_eq!(gpus_free(&pool), before - 1000, "one GPU is held");
    // Two more GPUs cannot be had now: the job waits, and says for what.
    let two = pool
        .submit(JobSpec::new("two-gpus", 1, Resources::new(1, 64, 2)).duration(1.0))
        .expect("submit");
    let st = pool.status(two).expect("status");
    assert_eq!(st.state, JobState::Pending);
    match st.reason {
        Some(PendingReason::Insufficient {
            resource,
            needed,
            largest_free,
            ..
        }) => {
            assert_eq!(resource, "gpu_milli");
            assert_eq!((needed, largest_free), (2000, 1000));
        }
        other => panic!("expected insufficient GPUs, got {other:?}"),
    }
    // Three GPUs never fit on this cluster: refused at once, with the reason.
    match pool.submit(JobSpec::new("three", 1, Resources::new(1, 64, 3))) {
        Err(Error::NeverFits { reason, .. }) => assert!(reason.contains("no node"), "{reason}"),
        other => panic!("expected NeverFits, got {other:?}"),
    }
    pool.cancel(one).expect("cancel");
    assert_eq!(pool.status(one).expect("status").state, JobState::Cancelled);
    let out = std::fs::read_to_string(pool.output_path(one)).expect("output");
    assert!(out.starts_with("gpu=") && out.trim().len() > 4, "{out:?}");
    // With the GPU back, the waiting job runs.
    assert_eq!(wait_final(&pool, two), JobState::Completed);
    assert_eq!(gpus_free(&pool), before);
}

#[test]
fn a_job_array_runs_every_element() {
    let Some((pool, _dir, _g)) = pool("array") else {
        return;
    };
    let id = pool
        .submit_array(
            JobSpec::new("sweep", 1, small()).command(["sh", "-c", "echo $SLURM_ARRAY_TASK_ID"]),
            3,
        )
        .expect("submit");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = pool.array_status(id).expect("array");
        if st.len() == 3 && st.iter().all(|(_, s)| *s == JobState::Completed) {
            assert_eq!(
                st.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            break;
        }
        assert!(Instant::now() < deadline, "array did not finish: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slurm_refusals_are_typed_errors_with_its_words() {
    let Some((pool, _dir, _g)) = pool("refuse") else {
        return;
    };
    let conf = std::env::var("AISTD_SLURM_CONF").expect("set");
    let elsewhere = SlurmPool::new("x")
        .conf(&conf)
        .partition("no-such-partition");
    match elsewhere.submit(JobSpec::new("x", 1, small())) {
        Err(Error::NeverFits { reason, .. }) => assert!(reason.contains("no nodes"), "{reason}"),
        other => panic!("expected NeverFits, got {other:?}"),
    }
    // A request Slurm itself refuses: the error names the command and carries its stderr.
    match pool.submit(JobSpec::new("x", 1, small()).priority(i64::MAX)) {
        Err(Error::Backend { command, message }) => {
            assert!(command.starts_with("sbatch"), "{command}");
            assert!(message.to_lowercase().contains("nice"), "{message}");
        }
        other => panic!("expected sbatch's refusal, got {other:?}"),
    }
    assert!(matches!(pool.status(u64::MAX - 1), Err(Error::NotFound(_))));
}
