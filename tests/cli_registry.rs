//! `aistd registry`: publish (directory and archive), list, promote, roll back and fetch, every
//! change in a verifiable audit log; refusals leave the log and the aliases unchanged. And
//! `aistd serve-bench batching`, `overhead` and `load`.

mod common;

use std::path::Path;

use common::{aistd, ok};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn create(tmp: &Path, version: &str, content: &[u8], key: Option<&Path>) -> std::path::PathBuf {
    let src = tmp.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("model.bin"), content).expect("model");
    let out = tmp.join(format!("bundle-{version}"));
    let mut args = vec![
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&out),
        "--name",
        "ranker",
        "--version",
        version,
        "--platform",
        "python",
    ];
    if let Some(k) = key {
        args.extend(["--sign", s(k)]);
    }
    ok(&aistd(&args));
    out
}

fn audit_actions(log: &Path) -> Vec<String> {
    aistd::glue::registry_events(log)
        .expect("registry events")
        .into_iter()
        .map(|e| format!("{} {} {}", e.action, e.version, e.actor))
        .collect()
}

#[test]
fn the_registry_publishes_promotes_rolls_back_and_audits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = tmp.path().join("signing.key");
    let public = ok(&aistd(&["bundle", "keygen", "--out", s(&key)]))
        .trim()
        .to_string();
    let root = tmp.path().join("registry");
    let log = root.join("audit.jsonl");
    let reg = |args: &[&str]| {
        let mut all = vec![];
        all.extend_from_slice(args);
        all.extend([
            "--root",
            s(&root),
            "--trusted-key",
            public.as_str(),
            "--actor",
            "ci",
        ]);
        aistd(&all)
    };

    let v1 = create(tmp.path(), "1", b"first", Some(&key));
    let v2 = create(tmp.path(), "2", b"second", Some(&key));
    let archive = tmp.path().join("ranker-2.tar");
    ok(&aistd(&["bundle", "pack", s(&v2), "--out", s(&archive)]));
    assert!(ok(&reg(&["registry", "publish", s(&v1)])).contains("published ranker:1"));
    assert!(ok(&reg(&["registry", "publish", s(&archive)])).contains("published ranker:2"));
    // The same content again is a no-op (not audited twice).
    ok(&reg(&["registry", "publish", s(&v1)]));

    // Refusals: unsigned, and other content under a published version.
    let unsigned = create(&tmp.path().join("u"), "3", b"third", None);
    let out = reg(&["registry", "publish", s(&unsigned)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not signed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clash = create(&tmp.path().join("c"), "1", b"other", Some(&key));
    let out = reg(&["registry", "publish", s(&clash)]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ranker:1 (published with other content)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    ok(&reg(&[
        "registry",
        "promote",
        "ranker",
        "1",
        "--alias",
        "production",
    ]));
    assert!(
        ok(&reg(&[
            "registry",
            "promote",
            "ranker",
            "2",
            "--alias",
            "production"
        ]))
        .contains("production: 1 -> 2")
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&reg(&["registry", "list", "--json"]))).expect("json");
    assert_eq!(listed["ranker"]["versions"], serde_json::json!(["1", "2"]));
    assert_eq!(
        listed["ranker"]["aliases"]["production"],
        serde_json::json!({"version": "2", "history": ["1"]})
    );

    assert!(
        ok(&reg(&[
            "registry",
            "rollback",
            "ranker",
            "--alias",
            "production"
        ]))
        .contains("rolled back to 1")
    );
    let fetched = tmp.path().join("fetched");
    ok(&reg(&[
        "registry",
        "fetch",
        "ranker",
        "production",
        "--out",
        s(&fetched),
    ]));
    assert_eq!(
        std::fs::read(fetched.join("model.bin")).expect("fetched model"),
        b"first"
    );
    // Nothing left to roll back to.
    assert!(
        !reg(&["registry", "rollback", "ranker", "--alias", "production"])
            .status
            .success()
    );

    let expected = [
        "publish 1 ci",
        "publish 2 ci",
        "promote 1 ci",
        "promote 2 ci",
        "rollback 1 ci",
    ];
    assert_eq!(audit_actions(&log), expected);
    ok(&aistd(&["audit", "verify", s(&log)]));

    // A stored version altered after publication is refused, and the refusal changes nothing.
    let stored = root.join("models/ranker/versions/2.tar");
    let mut bytes = std::fs::read(&stored).expect("stored");
    let at = bytes
        .windows(6)
        .position(|w| w == b"second")
        .expect("content in archive");
    bytes[at] = b'S';
    std::fs::write(&stored, &bytes).expect("tamper");
    let out = reg(&[
        "registry",
        "promote",
        "ranker",
        "2",
        "--alias",
        "production",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("model.bin was altered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_actions(&log), expected);
    let out = reg(&["registry", "versions", "ranker", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).expect("json");
    assert_eq!(v["aliases"]["production"]["version"], "1");
}

#[test]
fn serve_bench_batching_reports_both_runs() {
    let out = ok(&aistd(&[
        "serve-bench",
        "batching",
        "--clients",
        "4",
        "--a-us",
        "200",
        "--b-us",
        "10",
        "--seconds",
        "0.3",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    for run in ["no_batching", "batching"] {
        assert!(r[run]["requests"].as_u64().expect("requests") > 0, "{out}");
        assert!(r[run]["p95_us"].as_f64().expect("p95") > 0.0, "{out}");
    }
    assert!(r["throughput_ratio"].as_f64().expect("ratio") > 0.0);
    assert!(r["mean_batch_rows"].as_f64().expect("mean") >= 1.0);
}

#[test]
fn serve_bench_overhead_reports_three_paths() {
    let out = ok(&aistd(&["serve-bench", "overhead", "--requests", "200"]));
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    for path in [
        "predictor_direct",
        "endpoint_in_process",
        "http_keep_alive_json",
        "tcp_fixed_response_floor",
    ] {
        let p50 = r[path]["p50_us"].as_f64().expect("p50");
        let p99 = r[path]["p99_us"].as_f64().expect("p99");
        assert!(p50 > 0.0 && p99 >= p50, "{path}: {out}");
    }
}

#[test]
fn serve_bench_load_drives_a_v2_server_and_names_its_refusal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("model");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tests/data/digits_logreg.onnx"),
        src.join("model.onnx"),
    )
    .expect("copy");
    let bundle = tmp.path().join("bundle");
    ok(&aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&bundle),
        "--name",
        "digits",
        "--version",
        "1",
        "--platform",
        "onnx",
    ]));
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(["serve", s(&bundle), "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string);
    let body = tmp.path().join("body.json");
    let row = vec!["0.25"; 64].join(",");
    std::fs::write(
        &body,
        format!(r#"{{"inputs":[{{"name":"X","datatype":"FP32","shape":[1,64],"data":[{row}]}}]}}"#),
    )
    .expect("body");
    let run = |model: &str| {
        aistd(&[
            "serve-bench",
            "load",
            "--url",
            url.as_deref().unwrap_or("http://missing"),
            "--model",
            model,
            "--body",
            s(&body),
            "--clients",
            "2",
            "--seconds",
            "0.3",
            "--warmup-seconds",
            "0.1",
        ])
    };
    let good = run("digits");
    let bad = run("nope");
    let _ = server.kill();
    let _ = server.wait();
    assert!(url.is_some(), "no URL in {line:?}");
    let r: serde_json::Value = serde_json::from_str(&ok(&good)).expect("json");
    assert_eq!(r["clients"], 2);
    assert!(r["requests"].as_u64().expect("requests") > 0, "{r}");
    let (p50, p99) = (
        r["p50_us"].as_f64().expect("p50"),
        r["p99_us"].as_f64().expect("p99"),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("HTTP 404"), "{err}");
}

#[test]
fn serve_refuses_a_drift_reference_that_does_not_fit_the_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("README"), b"identity").expect("write");
    let bundle = tmp.path().join("bundle");
    ok(&aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&bundle),
        "--name",
        "echo",
        "--version",
        "1",
        "--platform",
        "identity",
        "--input",
        "x:FP32:-1,3",
        "--output",
        "y:FP32:-1,3",
    ]));
    let reference = tmp.path().join("ref.csv");
    std::fs::write(&reference, "a,b\n1,2\n3,4\n5,6\n").expect("csv");
    let out = aistd(&[
        "serve",
        s(&bundle),
        "--port",
        "0",
        "--drift-reference",
        s(&reference),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model echo") && err.contains("2 features"),
        "{err}"
    );
}

#[test]
fn the_registry_trust_policy_binds_every_later_caller() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = tmp.path().join("signing.key");
    let public = ok(&aistd(&["bundle", "keygen", "--out", s(&key)]))
        .trim()
        .to_string();
    let root = tmp.path().join("registry");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--root", s(&root), "--actor", "ops"]);
        aistd(&all)
    };
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&run(&["registry", "trust"]))).expect("json");
    assert_eq!(shown["require_signature"], false);
    let set: serde_json::Value =
        serde_json::from_str(&ok(&run(&["registry", "trust", "--trusted-key", &public])))
            .expect("json");
    assert_eq!(set["require_signature"], true);
    assert_eq!(set["trusted_keys"][0], public.as_str());
    // Callers who pass no trust flags are still bound by it.
    let unsigned = create(tmp.path(), "1", b"plain", None);
    let refused = run(&["registry", "publish", s(&unsigned)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not signed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let signed = create(tmp.path(), "2", b"signed", Some(&key));
    ok(&run(&["registry", "publish", s(&signed)]));
    // Changes to the policy are in the audit log, as publications are.
    let actions = audit_actions(&root.join("audit.jsonl"));
    assert_eq!(
        actions,
        [" trust  ops", "publish 2 ops"].map(|a| a.trim_start())
    );
    ok(&run(&["registry", "trust", "--clear"]));
    ok(&run(&["registry", "publish", s(&unsigned)]));
}
