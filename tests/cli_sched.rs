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
        "drf",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not built yet"));
}

#[test]
fn generate_simulate_generic_and_bench() {
    let tmp = tempfile::tempdir().expect("dir");
    let trace = tmp.path().join("syn.csv");
    let t = trace.to_str().expect("utf-8");
    let out = aistd(&[
        "sched",
        "generate",
        "--jobs",
        "300",
        "--interarrival",
        "5",
        "--seed",
        "3",
        "--out",
        t,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |policy: &str| {
        let out = aistd(&[
            "sched",
            "simulate",
            "--trace",
            t,
            "--trace-format",
            "generic",
            "--nodes",
            "4",
            "--policy",
            policy,
            "--skip",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let (fifo, sjf) = (run("fifo"), run("sjf"));
    assert_eq!(
        (fifo["completed"].as_u64(), sjf["completed"].as_u64()),
        (Some(300), Some(300))
    );
    // On 4 nodes the queue builds up, and shortest-first shortens the mean JCT.
    assert!(fifo["avg_wait"].as_f64().expect("wait") > 0.0, "{fifo}");
    assert!(
        sjf["avg_jct"].as_f64() < fifo["avg_jct"].as_f64(),
        "{sjf} vs {fifo}"
    );
    let out = aistd(&["sched", "bench", "--nodes", "50", "--jobs", "500", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["placed"], 400);
    let out = aistd(&[
        "sched",
        "simulate",
        "--trace",
        t,
        "--trace-format",
        "generic",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster and --nodes"));
}
