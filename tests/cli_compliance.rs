//! `aistd privacy` and `aistd fairness` end to end.

use std::process::{Command, Output};

fn aistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(args)
        .output()
        .expect("run aistd")
}

fn json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn privacy_epsilon_and_calibration() {
    let v = json(aistd(&[
        "privacy",
        "epsilon",
        "--sampling-rate",
        "0.04",
        "--noise-multiplier",
        "1.5",
        "--steps",
        "2250",
        "--delta",
        "1e-5",
        "--json",
    ]));
    assert!(
        (v["epsilon"].as_f64().expect("eps") - 7.32911117143).abs() < 1e-9,
        "{v}"
    );
    let ints = json(aistd(&[
        "privacy",
        "epsilon",
        "--sampling-rate",
        "0.04",
        "--noise-multiplier",
        "1.5",
        "--steps",
        "2250",
        "--delta",
        "1e-5",
        "--orders",
        "2..64",
        "--json",
    ]));
    assert_eq!(ints["order"].as_f64().expect("order").fract(), 0.0);
    let v = json(aistd(&[
        "privacy",
        "noise-multiplier",
        "--sampling-rate",
        "0.01",
        "--steps",
        "1000",
        "--epsilon",
        "2",
        "--delta",
        "1e-5",
        "--json",
    ]));
    assert!(v["epsilon"].as_f64().expect("eps") <= 2.0);
    for bad in [["--sampling-rate", "1.5"], ["--sampling-rate", "0"]] {
        let out = aistd(&[
            "privacy",
            "epsilon",
            bad[0],
            bad[1],
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--delta",
            "1e-5",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("sampling rate"));
    }
    let out = aistd(&[
        "privacy",
        "epsilon",
        "--sampling-rate",
        "0.1",
        "--noise-multiplier",
        "1",
        "--steps",
        "10",
        "--delta",
        "1e-5",
        "--orders",
        "1..x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn fairness_reproduces_the_fairlearn_user_guide() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("p.csv");
    let y_true = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    let y_pred = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
    let groups: Vec<&str> = "b b a b b c c c a a c a b c c b c c".split(' ').collect();
    let mut text = String::from("y_true,y_pred,group\n");
    for i in 0..18 {
        text.push_str(&format!("{},{},{}\n", y_true[i], y_pred[i], groups[i]));
    }
    std::fs::write(&csv, text).expect("write");
    let path = csv.to_str().expect("utf-8");
    let v = json(aistd(&[
        "fairness",
        "--input",
        path,
        "--y-true",
        "y_true",
        "--y-pred",
        "y_pred",
        "--sensitive",
        "group",
        "--json",
    ]));
    let close = |k: &str, want: f64| (v[k].as_f64().expect(k) - want).abs() < 1e-12;
    assert!(
        close("demographic_parity_difference", 0.25)
            && close("demographic_parity_ratio", 2.0 / 3.0),
        "{v}"
    );
    assert!(
        close("equalized_odds_difference", 1.0) && close("equalized_odds_ratio", 0.0),
        "{v}"
    );
    assert_eq!(v["by_group"][0]["group"][0], "a");
    assert_eq!(v["by_group"][0]["metrics"]["selection_rate"], 0.75);
    let out = aistd(&[
        "fairness",
        "--input",
        path,
        "--y-true",
        "nope",
        "--y-pred",
        "y_pred",
        "--sensitive",
        "group",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nope`"));
}

#[test]
fn mitigate_reweighs_and_optimizes_thresholds() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("s.csv");
    let mut text = String::from("y,score,group\n");
    for i in 0..60u64 {
        let g = ["a", "b"][(i % 2) as usize];
        let y = ((i * 7) % 5 < 2 + (i % 2)) as u8;
        let score =
            y as f64 * 0.5 + ((i * 37) % 11) as f64 / 11.0 + if g == "a" { 0.2 } else { 0.0 };
        text.push_str(&format!("{y},{score},{g}\n"));
    }
    std::fs::write(&csv, text).expect("write");
    let path = csv.to_str().expect("utf-8");
    let v = json(aistd(&[
        "mitigate",
        "reweigh",
        "--input",
        path,
        "--y-true",
        "y",
        "--sensitive",
        "group",
        "--json",
    ]));
    let w: Vec<f64> = v["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|x| x.as_f64().expect("f"))
        .collect();
    assert_eq!(w.len(), 60);
    assert!((w.iter().sum::<f64>() - 60.0).abs() < 1e-9);
    let thresholds = |constraint: &str, json: bool| {
        let mut a = vec![
            "mitigate",
            "thresholds",
            "--input",
            path,
            "--y-true",
            "y",
            "--score",
            "score",
            "--sensitive",
            "group",
            "--constraint",
            constraint,
        ];
        if json {
            a.push("--json");
        }
        aistd(&a)
    };
    for c in ["demographic_parity", "equalized_odds"] {
        let v = json(thresholds(c, true));
        assert_eq!(v["probabilities"].as_array().expect("p").len(), 60, "{v}");
        assert!(v["accuracy"].as_f64().expect("acc") > 0.5, "{v}");
        assert!(v["rules"]["a"]["p0"].is_number(), "{v}");
    }
    let out = thresholds("parity", false);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--constraint"));
}

#[test]
fn policy_eval_with_a_builtin_pack() {
    let dir = tempfile::tempdir().expect("dir");
    let entities = dir.path().join("e.json");
    std::fs::write(
        &entities,
        r#"[{"uid": {"type": "User", "id": "bob"}, "attrs": {"clearance": 2, "purposes": ["training"]}, "parents": []},
            {"uid": {"type": "Column", "id": "loans#email"}, "attrs": {}, "parents": []}]"#,
    )
    .expect("write");
    let e = entities.to_str().expect("utf-8");
    let base = [
        "policy",
        "eval",
        "--policies",
        "builtin:data_access",
        "--schema",
        "builtin",
        "--entities",
        e,
        "--principal",
        "User::\"bob\"",
        "--action",
        "Action::\"read\"",
        "--resource",
        "Column::\"loans#email\"",
    ];
    let mut allow = base.to_vec();
    allow.extend([
        "--context",
        r#"{"purpose": "training", "level_rank": 2}"#,
        "--json",
    ]);
    let v = json(aistd(&allow));
    assert_eq!(v["effect"], "allow");
    assert_eq!(v["determining"][0], "cleared-for-purpose");
    let mut deny = base.to_vec();
    deny.extend(["--context", r#"{"purpose": "training", "level_rank": 3}"#]);
    let out = aistd(&deny);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DENY by default"));
    let bad = dir.path().join("bad.cedar");
    std::fs::write(&bad, "permit(principal, action, resource)\nwhen { 1 + };").expect("write");
    let out = aistd(&[
        "policy",
        "eval",
        "--policies",
        bad.to_str().expect("utf-8"),
        "--principal",
        "User::\"a\"",
        "--action",
        "Action::\"a\"",
        "--resource",
        "R::\"r\"",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn report_from_a_governed_run_with_a_deployment_gate() {
    let dir = tempfile::tempdir().expect("dir");
    let p = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    // A small dataset, governed with an audit log.
    let mut data = String::from("id,email,income,group\n");
    for i in 0..40 {
        data.push_str(&format!(
            "{i},user{i}@example.com,{},{}\n",
            1000 + i * 10,
            ["a", "b", "c"][i % 3]
        ));
    }
    std::fs::write(p("data.csv"), data).expect("write");
    let out = aistd(&[
        "data",
        "govern",
        &p("data.csv"),
        "--out",
        &p("gov"),
        "--audit",
        &p("audit.jsonl"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Predictions: fairlearn's user-guide example (demographic parity difference 0.25).
    let y_true = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    let y_pred = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
    let groups: Vec<&str> = "b b a b b c c c a a c a b c c b c c".split(' ').collect();
    let mut preds = String::from("y_true,y_pred,group\n");
    for i in 0..18 {
        preds.push_str(&format!("{},{},{}\n", y_true[i], y_pred[i], groups[i]));
    }
    std::fs::write(p("preds.csv"), preds).expect("write");
    std::fs::write(
        p("card.yaml"),
        "name: loans\nversion: '1'\nmodel_type: logistic regression\nowners: [risk-team]\nintended_use: credit pre-screening\napproved: true\nregions: [eu]\n",
    )
    .expect("write");
    // Perfect predictions with equal base rates: every difference is 0.
    let mut fair = String::from("y_true,y_pred,group\n");
    for i in 0..12 {
        fair.push_str(&format!("{},{},{}\n", i % 2, i % 2, ["a", "b", "c"][i / 4]));
    }
    std::fs::write(p("fair.csv"), fair).expect("write");
    let args = |preds: &str, out_dir: &str| {
        vec![
            "report".to_string(),
            "--out".into(),
            p(out_dir),
            "--run".into(),
            p("gov"),
            "--card".into(),
            p("card.yaml"),
            "--predictions".into(),
            p(preds),
            "--sensitive".into(),
            "group".into(),
            "--audit".into(),
            p("audit.jsonl"),
            "--dp-sgd".into(),
            "0.04,1.5,2250,1e-5".into(),
            "--deploy-gate".into(),
            "loans-1".into(),
            "--max-dp-difference".into(),
            "0.1".into(),
            "--max-eo-difference".into(),
            "0.1".into(),
        ]
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        aistd(&refs)
    };
    // Differences of 0.25 and 1.0: outside the pack's 10%, the gate denies (exit 1).
    let out = run(args("preds.csv", "r1"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment gate: deny"));
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("r1/compliance.json")).expect("json"),
    )
    .expect("parse");
    let sections: Vec<&str> = r["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e["section"].as_str().expect("s"))
        .collect();
    assert_eq!(
        sections,
        [
            "model_card",
            "datasheet",
            "fairness",
            "privacy",
            "decisions",
            "audit_log"
        ]
    );
    assert!(
        r["gaps"].as_array().expect("gaps").is_empty(),
        "{}",
        r["gaps"]
    );
    assert!((r["privacy"][0]["epsilon"].as_f64().expect("eps") - 7.32911117143).abs() < 1e-9);
    assert_eq!(r["dataset"]["rows_in"], 40);
    assert!(
        r["dataset"]["columns"]
            .as_array()
            .expect("cols")
            .iter()
            .any(|c| c["name"] == "email" && c["sensitivity"] == "Confidential"),
        "{}",
        r["dataset"]["columns"]
    );
    assert_eq!(
        r["decisions"].as_array().expect("d").last().expect("gate")["effect"],
        "deny"
    );
    assert_eq!(r["audit"]["verified"], true);
    let md = std::fs::read_to_string(dir.path().join("r1/compliance.md")).expect("md");
    assert!(
        md.contains("Art. 10(2)(f)") && md.contains("| a | 4 | 0.7500"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.path().join("r1/compliance.html")).expect("html");
    assert!(html.contains("<svg") && html.ends_with("</html>\n"));
    // Fair predictions, an approved model, an allowed region: the gate allows.
    let out = run(args("fair.csv", "r2"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Bad input: a card with an unknown field is a clear error.
    std::fs::write(p("bad.yaml"), "nmae: x\n").expect("write");
    let out = aistd(&["report", "--out", &p("r3"), "--card", &p("bad.yaml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nmae"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn privacy_sample_and_release() {
    let seed = "07".repeat(32);
    let a = aistd(&[
        "privacy",
        "sample",
        "--mechanism",
        "discrete-gaussian",
        "--scale",
        "2",
        "--count",
        "50",
        "--seed",
        &seed,
    ]);
    let b = aistd(&[
        "privacy",
        "sample",
        "--mechanism",
        "discrete-gaussian",
        "--scale",
        "2",
        "--count",
        "50",
        "--seed",
        &seed,
    ]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "the same seed gives the same samples");
    let xs: Vec<i64> = String::from_utf8_lossy(&a.stdout)
        .lines()
        .map(|l| l.parse().expect("int"))
        .collect();
    assert_eq!(xs.len(), 50);
    assert!(xs.iter().any(|x| *x != 0));
    let bad = aistd(&["privacy", "sample", "--mechanism", "cauchy", "--scale", "1"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = aistd(&[
        "privacy",
        "sample",
        "--mechanism",
        "laplace",
        "--scale",
        "-1",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("scale"));

    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("x.csv");
    let mut text = String::from("income,band\n");
    for i in 0..1000 {
        text.push_str(&format!("{},{}\n", i * 10, ["a", "b"][i % 2]));
    }
    std::fs::write(&csv, text).expect("write");
    let path = csv.to_str().expect("utf-8");
    // ε = 50: noise of scale 0.02 (count) or 200 (sum of values up to 10^4).
    let v = json(aistd(&[
        "privacy",
        "release",
        "--input",
        path,
        "--column",
        "income",
        "--aggregate",
        "count",
        "--epsilon",
        "50",
        "--json",
    ]));
    assert!(
        (v["value"].as_i64().expect("count") - 1000).abs() <= 1,
        "{v}"
    );
    let v = json(aistd(&[
        "privacy",
        "release",
        "--input",
        path,
        "--column",
        "income",
        "--aggregate",
        "mean",
        "--bounds",
        "0,10000",
        "--epsilon",
        "50",
        "--json",
    ]));
    assert!(
        (v["value"].as_f64().expect("mean") - 4995.0).abs() < 50.0,
        "{v}"
    );
    let v = json(aistd(&[
        "privacy",
        "release",
        "--input",
        path,
        "--column",
        "band",
        "--aggregate",
        "histogram",
        "--bins",
        "a,b",
        "--epsilon",
        "50",
        "--json",
    ]));
    assert_eq!(v["value"][0]["label"], "a");
    assert!(
        (v["value"][0]["count"].as_i64().expect("n") - 500).abs() <= 1,
        "{v}"
    );
    let out = aistd(&[
        "privacy",
        "release",
        "--input",
        path,
        "--column",
        "income",
        "--aggregate",
        "sum",
        "--epsilon",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bounds"));
    let out = aistd(&[
        "privacy",
        "release",
        "--input",
        path,
        "--column",
        "nope",
        "--aggregate",
        "count",
        "--epsilon",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nope`"));
}
