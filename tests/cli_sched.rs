//! `aistd sched`: the DRF paper's example, a trace replay, and bad traces.

use std::process::{Command, Output};

fn aistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(args)
        .output()
        .expect("run aistd")
}

#[test]
fn allocate_reproduces_the_drf_paper() {
    let out = aistd(&[
        "sched",
        "allocate",
        "--capacity",
        "cpu=9,mem=18",
        "--demand",
        "A:cpu=1,mem=4",
        "--demand",
        "B:cpu=3,mem=1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v[0]["tasks"].as_u64(), v[1]["tasks"].as_u64()),
        (Some(3), Some(2))
    );
    for u in 0..2 {
        assert!((v[u]["dominant_share"].as_f64().expect("share") - 2.0 / 3.0).abs() < 1e-12);
    }
    let out = aistd(&[
        "sched",
        "allocate",
        "--capacity",
        "cpu=9",
        "--demand",
        "A-cpu=1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER:"));
}

#[test]
fn simulate_replays_a_trace_and_names_bad_lines() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let trace = format!("{dir}/scheduler/tests/data/tiresias_60_job.csv");
    let cluster = format!("{dir}/scheduler/tests/data/tiresias_n32g4.csv");
    let out = aistd(&[
        "sched",
        "simulate",
        "--trace",
        &trace,
        "--cluster",
        &cluster,
        "--policy",
        "fifo",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["completed"], 60);
    assert!(v["avg_jct"].as_f64().expect("jct") > 0.0);
    let tmp = tempfile::tempdir().expect("dir");
    let bad = tmp.path().join("bad.csv");
    std::fs::write(
        &bad,
        "job_id,num_gpu,submit_time,duration\n1,2,0,10\n2,200,5,10\n",
    )
    .expect("write");
    let out = aistd(&[
        "sched",
        "simulate",
        "--trace",
        bad.to_str().expect("utf-8"),
        "--cluster",
        &cluster,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:3") && err.contains("can never run"),
        "{err}"
    );
    let out = aistd(&[
        "sched",
        "simulate",
        "--trace",
        &trace,
        "--cluster",
        &cluster,
        "--policy",
        "las",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not built yet"));
}
