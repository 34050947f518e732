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
    for c in ["demographic_parity", "equalized_odds"] {
        let v = json(aistd(&[
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
            c,
            "--json",
        ]));
        assert_eq!(v["probabilities"].as_array().expect("p").len(), 60, "{v}");
        assert!(v["accuracy"].as_f64().expect("acc") > 0.5, "{v}");
        assert!(v["rules"]["a"]["p0"].is_number(), "{v}");
    }
    let out = aistd(&[
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
        "parity",
    ]);
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
