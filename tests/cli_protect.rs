//! `aistd keys`, `crypt`, `audit`, `pii` and a protected `data govern`, end to end.

use std::path::Path;
use std::process::{Command, Output};

const MASTER: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

fn aistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(args)
        .env("AISTD_MASTER_KEY", MASTER)
        .output()
        .expect("run aistd")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn keys_crypt_and_a_protected_audited_govern() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys.json");
    ok(aistd(&["keys", "new", "--keyring", s(&keys)]));
    let listed: serde_json::Value = serde_json::from_str(&ok(aistd(&[
        "keys",
        "list",
        "--keyring",
        s(&keys),
        "--json",
    ])))
    .expect("json");
    assert_eq!(listed.as_array().expect("keys").len(), 1);
    // The keyring file never holds the master key or a raw data key.
    let text = std::fs::read_to_string(&keys).expect("read");
    assert!(!text.contains(MASTER));

    let plain = dir.path().join("p.txt");
    std::fs::write(&plain, "secret ".repeat(10_000)).expect("write");
    let enc = dir.path().join("p.enc");
    ok(aistd(&[
        "crypt",
        "encrypt",
        "--keyring",
        s(&keys),
        s(&plain),
        s(&enc),
    ]));
    ok(aistd(&["keys", "rotate", "--keyring", s(&keys)]));
    let back = dir.path().join("p.out");
    ok(aistd(&[
        "crypt",
        "decrypt",
        "--keyring",
        s(&keys),
        s(&enc),
        s(&back),
    ]));
    assert_eq!(
        std::fs::read(&back).expect("read"),
        std::fs::read(&plain).expect("read")
    );

    // Wrong master key: a clear error, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(["crypt", "decrypt", "--keyring", s(&keys), s(&enc), s(&back)])
        .env("AISTD_MASTER_KEY", "11".repeat(32))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong master key"));
    // No master key at all.
    let out = Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(["keys", "list", "--keyring", s(&keys)])
        .env_remove("AISTD_MASTER_KEY")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AISTD_MASTER_KEY"));

    let csv = dir.path().join("loans.csv");
    ok(aistd(&[
        "data",
        "generate",
        "--rows",
        "2000",
        "--out",
        s(&csv),
    ]));
    let log = dir.path().join("audit.jsonl");
    let out_dir = dir.path().join("gov");
    let report: serde_json::Value = serde_json::from_str(&ok(aistd(&[
        "data",
        "govern",
        s(&csv),
        "--out",
        s(&out_dir),
        "--keyring",
        s(&keys),
        "--audit",
        s(&log),
        "--principal",
        "tester",
        "--json",
    ])))
    .expect("json");
    assert_eq!(
        report["classification"]["columns"][4]["column"],
        "national_id"
    );
    assert_eq!(
        report["classification"]["columns"][4]["level"],
        "Restricted"
    );
    assert!(
        report["protection"]
            .as_array()
            .expect("protection")
            .iter()
            .any(|p| p["column"] == "credit_card" && p["action"] == "encrypt")
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(written["classification"], report["classification"]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("lineage.jsonl"))
            .expect("lineage")
            .lines()
            .count(),
        2
    );

    // The audit log verifies, has a root, and proves its lines.
    assert!(ok(aistd(&["audit", "verify", s(&log)])).starts_with("ok:"));
    let root = ok(aistd(&["audit", "root", s(&log)])).trim().to_string();
    assert_eq!(root.len(), 64);
    let head = report["audit_head"].as_str().expect("head");
    assert!(head.ends_with(&root), "{head} vs {root}");
    let proof: serde_json::Value =
        serde_json::from_str(&ok(aistd(&["audit", "prove", s(&log), "--index", "1"])))
            .expect("json");
    assert_eq!(proof["root"], root.as_str());
    let pinned = head.to_string();
    assert!(ok(aistd(&["audit", "verify", s(&log), "--head", &pinned])).starts_with("ok:"));

    // Tampering: exit 1 and the line.
    let text = std::fs::read_to_string(&log).expect("log");
    std::fs::write(
        &log,
        text.replacen("\"who\":\"tester\"", "\"who\":\"nobody\"", 1),
    )
    .expect("write");
    let out = aistd(&["audit", "verify", s(&log), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["ok"].as_bool(), v["line"].as_u64()),
        (Some(false), Some(1))
    );
}

#[test]
fn pii_scan_text_and_jsonl() {
    let dir = tempfile::tempdir().expect("dir");
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, "Dr. Grace Hopper, SSN 536-90-4399, grace@navy.mil").expect("write");
    let v: serde_json::Value =
        serde_json::from_str(&ok(aistd(&["pii", "scan", s(&doc), "--json"]))).expect("json");
    let types: Vec<&str> = v["entities"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["PERSON", "US_SSN", "EMAIL_ADDRESS"]);
    let jl = dir.path().join("in.jsonl");
    std::fs::write(
        &jl,
        "{\"text\": \"call 415-555-2671\"}\n{\"text\": \"nothing here\"}\n",
    )
    .expect("write");
    let out = ok(aistd(&["pii", "scan", "--jsonl", s(&jl)]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["entities"][0]["type"], "PHONE_NUMBER");
    assert_eq!(
        (
            lines[0]["entities"][0]["start"].as_u64(),
            lines[0]["entities"][0]["end"].as_u64()
        ),
        (Some(5), Some(17))
    );
    assert_eq!(lines[1]["entities"].as_array().expect("list").len(), 0);
    std::fs::write(&jl, "{\"txt\": 1}\n").expect("write");
    let out = aistd(&["pii", "scan", "--jsonl", s(&jl)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
