//! The `aistd` binary end to end: generate → profile → suggest → check → govern, and its errors.

use std::path::Path;
use std::process::{Command, Output};

fn aistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(args)
        .output()
        .expect("run aistd")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn generate_profile_suggest_check_govern() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("loans.csv");
    let truth = json(&aistd(&[
        "data",
        "generate",
        "--rows",
        "4000",
        "--seed",
        "3",
        "--out",
        s(&csv),
        "--json",
    ]));
    assert_eq!(truth["rows"], 4000);

    let profile = json(&aistd(&["data", "profile", s(&csv), "--json"]));
    assert_eq!(profile["rows"], 4000);
    let email = profile["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == "email")
        .expect("email");
    assert_eq!(email["nulls"], truth["nulls"]["email"]);

    // Suggestions from clean data hold on it; as YAML they are a valid expectation file.
    let clean = dir.path().join("clean.csv");
    json(&aistd(&[
        "data",
        "generate",
        "--rows",
        "2000",
        "--clean",
        "--out",
        s(&clean),
        "--json",
    ]));
    let suggest = aistd(&["data", "suggest", s(&clean)]);
    assert!(suggest.status.success());
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, &suggest.stdout).expect("write rules");
    let check = aistd(&["data", "check", s(&clean), "--expectations", s(&rules)]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // ... and fail on the dirty file: exit status 1.
    let check = aistd(&[
        "data",
        "check",
        s(&csv),
        "--expectations",
        s(&rules),
        "--json",
    ]);
    assert_eq!(check.status.code(), Some(1));
    let suggestions = json(&aistd(&["data", "suggest", s(&clean), "--json"]));
    assert!(suggestions.as_array().is_some_and(|a| !a.is_empty()));

    // CSV → Arrow IPC keeps every row and the inferred types.
    let arrow = dir.path().join("loans.arrow");
    let converted = json(&aistd(&[
        "data",
        "convert",
        s(&csv),
        "--out",
        s(&arrow),
        "--json",
    ]));
    assert_eq!(converted["rows"], 4000);
    let again = json(&aistd(&["data", "profile", s(&arrow), "--json"]));
    assert_eq!(again["columns"], profile["columns"]);

    let out = dir.path().join("out");
    let report = json(&aistd(&[
        "data",
        "govern",
        s(&csv),
        "--out",
        s(&out),
        "--near-dup-keys",
        "name,email",
        "--drop-null",
        "income",
        "--json",
    ]));
    assert_eq!(report["duplicates_removed"], truth["exact_duplicates"]);
    assert_eq!(report["near_duplicates_removed"], truth["near_duplicates"]);
    let (rin, rout, rq) = (
        &report["rows_in"],
        &report["rows_out"],
        &report["rows_quarantined"],
    );
    assert_eq!(
        rin.as_u64(),
        Some(rout.as_u64().unwrap_or(0) + rq.as_u64().unwrap_or(0))
    );
    for f in [
        "data.arrow",
        "quarantine.arrow",
        "report.json",
        "report.md",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
}

#[test]
fn errors_exit_2_and_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = aistd(&["data", "profile", "/no/such/file.csv"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file.csv"));

    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a,b\n1,2\n3\n").expect("write");
    let ragged = aistd(&["data", "profile", s(&csv)]);
    assert_eq!(ragged.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&ragged.stderr);
    assert!(
        msg.contains("t.csv") && msg.contains("record 2") && msg.contains("line 3"),
        "{msg}"
    );

    std::fs::write(&csv, "a,b\n1,2\n").expect("write");
    let rules = dir.path().join("r.yaml");
    std::fs::write(&rules, "- expect: not_null\n  column: zzz\n").expect("write");
    let bad = aistd(&[
        "data",
        "govern",
        s(&csv),
        "--out",
        s(&dir.path().join("o")),
        "--expectations",
        s(&rules),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("zzz") && msg.contains("r.yaml"), "{msg}");
}
