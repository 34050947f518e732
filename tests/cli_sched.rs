//! `aistd sched`: the DRF paper's example, a trace replay, and bad traces.

mod common;

use std::process::Command;

use common::{aistd, ok};

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
        "round-robin",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--policy must be") && err.contains("round-robin"),
        "{err}"
    );
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

#[test]
fn the_local_pool_queues_explains_estimates_runs_and_cancels() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-local-pool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_str().expect("utf-8");
    let base = [
        "--state",
        state,
        "--idle-exit",
        "3",
        "--capacity",
        "cpu=2,mem=1024",
    ];
    let submit = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["sched", "submit", "--json"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&aistd(&args))).expect("json")
    };
    // A 2-CPU job estimated at 30 s holds the pool; a 1-CPU job waits behind it.
    let hog = submit(&[
        "--name",
        "hog",
        "--per-task",
        "cpu=2,mem=64",
        "--estimate",
        "30",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(hog["state"], "running");
    let waiter = submit(&[
        "--name",
        "waiter",
        "--per-task",
        "cpu=1,mem=64",
        "--",
        "sh",
        "-c",
        "echo done",
    ]);
    assert_eq!(waiter["state"], "pending");
    let (h, w) = (
        hog["id"].as_u64().expect("id").to_string(),
        waiter["id"].as_u64().expect("id").to_string(),
    );
    let why: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
        "sched", "why", "--state", state, &w, "--json",
    ])))
    .expect("json");
    assert_eq!(why["reason"]["reason"], "insufficient");
    assert_eq!(why["reason"]["resource"], "cpu_milli");
    // Its estimated start is the hog's start plus its estimate.
    let eta = why["estimated_start"].as_f64().expect("an estimate");
    let hog_start = hog["started"].as_f64().expect("started");
    assert!(
        (eta - (hog_start + 30.0)).abs() < 1.0,
        "{eta} vs {hog_start} + 30"
    );
    let text = ok(&aistd(&["sched", "why", "--state", state, &w]));
    assert!(
        text.contains("insufficient cpu_milli") && text.contains("estimated start: in"),
        "{text}"
    );
    // Cancelling the hog lets the waiter run.
    let out = ok(&aistd(&["sched", "cancel", "--state", state, &h]));
    assert!(out.contains("cancelled"), "{out}");
    let t = std::time::Instant::now();
    let done = loop {
        let st: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
            "sched", "status", "--state", state, &w, "--json",
        ])))
        .expect("json");
        if st["state"] == "completed" {
            break st;
        }
        assert!(t.elapsed().as_secs() < 20, "waiter never ran: {st}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let output = done["output"].as_str().expect("output path");
    assert_eq!(
        std::fs::read_to_string(output).expect("output").trim(),
        "done"
    );
    // --wait returns the final state; a failing command exits 1 and says why.
    let mut args = vec!["sched", "submit", "--wait"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--", "sh", "-c", "exit 4"]);
    let out = aistd(&args);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed") && text.contains("exit status: 4"),
        "{text}"
    );
    // Bad requests are refused with the reason.
    let mut args = vec!["sched", "submit"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--per-task", "cpu=3", "--", "true"]);
    let out = aistd(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can never run"), "{err}");
    let out = aistd(&["sched", "status", "--state", state, "999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 999"));
}

#[test]
fn the_slurm_pool_from_the_cli() {
    let Ok(conf) = std::env::var("AISTD_SLURM_CONF") else {
        eprintln!("skipped: AISTD_SLURM_CONF is not set (./scripts/test.sh sets it)");
        return;
    };
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-slurm");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aistd"))
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run aistd");
        ok(&out)
    };
    let base = ["--pool", "slurm", "--slurm-conf", &conf];
    let mut args = vec![
        "sched",
        "submit",
        "--wait",
        "--json",
        "--per-task",
        "cpu=1,mem=64",
    ];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--", "sh", "-c", "echo from slurm"]);
    let v: serde_json::Value = serde_json::from_str(&run(&args)).expect("json");
    assert_eq!(v["state"], "completed");
    let output = v["output"].as_str().expect("output");
    assert_eq!(
        std::fs::read_to_string(output).expect("out").trim(),
        "from slurm"
    );
    let mut args = vec![
        "sched",
        "submit",
        "--json",
        "--per-task",
        "cpu=1,mem=64",
        "--duration",
        "60",
    ];
    args.extend_from_slice(&base);
    let v: serde_json::Value = serde_json::from_str(&run(&args)).expect("json");
    let id = v["id"].as_u64().expect("id").to_string();
    let mut args = vec!["sched", "status", &id];
    args.extend_from_slice(&base);
    assert!(run(&args).contains("running"));
    let mut args = vec!["sched", "cancel", &id];
    args.extend_from_slice(&base);
    assert!(run(&args).contains("cancelled"));
}

#[test]
fn simulate_runs_the_tenant_policies_with_quotas_and_preemption() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tenants");
    std::fs::create_dir_all(&dir).expect("dir");
    let trace = dir.join("syn.csv");
    let t = trace.to_str().expect("utf-8");
    ok(&aistd(&[
        "sched",
        "generate",
        "--jobs",
        "120",
        "--interarrival",
        "5",
        "--seed",
        "7",
        "--out",
        t,
    ]));
    let tenants = dir.join("tenants.json");
    std::fs::write(
        &tenants,
        r#"[{"name":"tenant-0","weight":3,"guaranteed":"gpu=16"},
            {"name":"tenant-1","guaranteed":"gpu=8"},
            {"name":"tenant-2","limit":"gpu=8"}]"#,
    )
    .expect("write");
    let ten = tenants.to_str().expect("utf-8");
    let run = |policy: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
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
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&aistd(&args))).expect("json")
    };
    for policy in ["drf", "fairshare"] {
        let v = run(policy, &["--tenants", ten, "--preempt"]);
        assert_eq!(v["completed"], 120, "{policy}: {v}");
        assert!(
            v["preemptions"].as_u64().expect("count") > 0,
            "{policy}: {v}"
        );
        let plain = run(policy, &["--skip"]);
        assert_eq!(plain["completed"], 120);
        assert_eq!(plain["preemptions"], 0);
    }
    let v = run("backfill", &[]);
    assert_eq!(v["blocking"], "backfill");
    std::fs::write(&tenants, r#"[{"name":"a","parent":"missing"}]"#).expect("write");
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
        "drf",
        "--tenants",
        ten,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"missing\" is not listed"));
}

#[test]
fn simulate_reads_the_alibaba_v2023_format() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-alibaba");
    std::fs::create_dir_all(&dir).expect("dir");
    let nodes = dir.join("nodes.csv");
    let pods = dir.join("pods.csv");
    // Two nodes of 2 GPUs; five pods: three share GPUs (0.5 + 0.5 on one device, 0.6 alone),
    // one wants a whole V100 (only node-b has V100s), one is CPU-only.
    std::fs::write(
        &nodes,
        "sn,cpu_milli,memory_mib,gpu,model\nnode-a,32000,131072,2,T4\nnode-b,32000,131072,2,V100M16\n",
    )
    .expect("write");
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
         p0,4000,8192,1,500,,LS,Running,0,100,0\n\
         p1,4000,8192,1,500,,BE,Running,0,100,0\n\
         p2,4000,8192,1,600,,BE,Running,0,100,0\n\
         p3,4000,8192,2,1000,V100M16|V100M32,Burstable,Succeeded,0,100,0\n\
         p4,8000,8192,0,0,,LS,Running,0,100,0\n",
    )
    .expect("write");
    let out = ok(&aistd(&[
        "sched",
        "simulate",
        "--trace",
        pods.to_str().expect("utf-8"),
        "--trace-format",
        "alibaba-v2023",
        "--cluster",
        nodes.to_str().expect("utf-8"),
        "--policy",
        "priority",
        "--skip",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["completed"], 5);
    // Everything fits at once: p3 takes node-b's two V100s, the three shares fit node-a's two
    // T4s (0.5 + 0.5 on one, 0.6 on the other), so no pod waits.
    assert_eq!(v["avg_wait"], 0.0, "{v}");
    assert_eq!(v["makespan"], 100.0, "{v}");
    // A pod asking for a model no node has can never run: a typed error naming it.
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
         bad,1000,1024,1,1000,A100,LS,Running,0,100,0\n",
    )
    .expect("write");
    let out = aistd(&[
        "sched",
        "simulate",
        "--trace",
        pods.to_str().expect("utf-8"),
        "--trace-format",
        "alibaba-v2023",
        "--cluster",
        nodes.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad") && err.contains("A100"), "{err}");
}

#[test]
fn simulate_writes_utilization_cost_and_energy() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // One 4-GPU node; tenant a holds 4 GPUs for 3600 s, then tenant b 2 GPUs for 3600 s.
    let trace = dir.join("t.csv");
    std::fs::write(
        &trace,
        "name,submit,tasks,cpu,mem_mib,gpu,duration,tenant\n\
         x,0,1,4,1024,4,3600,a\n\
         y,0,1,4,1024,2,3600,b\n",
    )
    .expect("write");
    let prices = dir.join("prices.json");
    std::fs::write(
        &prices,
        r#"{"gpu_hour": {"default": 2.0}, "cpu_hour": 0.0, "mem_gib_hour": 0.0}"#,
    )
    .expect("write");
    let out_dir = dir.join("report");
    let text = ok(&aistd(&[
        "sched",
        "simulate",
        "--trace",
        trace.to_str().expect("utf-8"),
        "--trace-format",
        "generic",
        "--nodes",
        "1",
        "--gpus-per-node",
        "4",
        "--report",
        out_dir.to_str().expect("utf-8"),
        "--prices",
        prices.to_str().expect("utf-8"),
    ]));
    assert!(
        text.contains("a: 4.0 GPU-h") && text.contains("cost 8.00"),
        "{text}"
    );
    assert!(
        text.contains("b: 2.0 GPU-h") && text.contains("cost 4.00"),
        "{text}"
    );
    let usage: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("usage.json")).expect("usage.json"),
    )
    .expect("json");
    // 6 of 8 GPU-hours held over the 2 h span.
    assert!((usage["gpu_utilization"].as_f64().expect("util") - 0.75).abs() < 1e-9);
    assert_eq!(usage["series"].as_array().expect("series").len(), 100);
    let prom = std::fs::read_to_string(out_dir.join("metrics.prom")).expect("prom");
    assert!(
        prom.contains("aistd_sched_tenant_cost{tenant=\"a\"} 8"),
        "{prom}"
    );
    let svg = std::fs::read_to_string(out_dir.join("utilization.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("<title>a:"));
}

#[test]
fn simulate_replays_node_failures_from_a_file_or_seeded_at_random() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-failures");
    std::fs::create_dir_all(&dir).expect("dir");
    let trace = dir.join("t.csv");
    std::fs::write(
        &trace,
        "name,submit,tasks,cpu,mem_mib,gpu,duration\nx,0,1,4,1024,8,1000\n",
    )
    .expect("write");
    let failures = dir.join("f.csv");
    std::fs::write(&failures, "node,at,repair\nn0,100,50\n").expect("write");
    let t = trace.to_str().expect("utf-8");
    let base = [
        "sched",
        "simulate",
        "--trace",
        t,
        "--trace-format",
        "generic",
        "--nodes",
        "1",
        "--json",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--failures", failures.to_str().expect("utf-8")]);
    let v: serde_json::Value = serde_json::from_str(&ok(&aistd(&args))).expect("json");
    assert_eq!(
        (v["node_failures"].as_u64(), v["failure_requeues"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["makespan"], 1050.0);
    let mut args = base.to_vec();
    args.extend_from_slice(&["--mtbf", "300", "--repair", "60", "--seed", "5"]);
    let run = |args: &[&str]| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(&ok(&aistd(args))).expect("json");
        v["wall_ms"] = serde_json::Value::Null;
        v
    };
    let v = run(&args);
    assert_eq!(v, run(&args), "the same seed, the same replay");
    assert!(v["node_failures"].as_u64().expect("n") > 0);
    assert_eq!(v["completed"], 1);
    std::fs::write(&failures, "node,at,repair\nn0,soon,50\n").expect("write");
    let mut args = base.to_vec();
    args.extend_from_slice(&["--failures", failures.to_str().expect("utf-8")]);
    let out = aistd(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}
