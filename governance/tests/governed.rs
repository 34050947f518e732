//! The pipeline's classify, protect, audit and lineage stages together.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use aistd_governance::access::{ClearancePolicy, ProtectedSource};
use aistd_governance::audit::{AuditLog, AuditOptions, read_records, verify};
use aistd_governance::crypto::{Keyring, LocalKeyProvider, encrypted_columns};
use aistd_governance::generate::{GeneratorConfig, LoanGenerator};
use aistd_governance::lineage::Lineage;
use aistd_governance::pii::{ClassificationRules, Sensitivity};
use aistd_governance::protect::Protection;
use aistd_governance::{DataSource, Expectation, IpcFileSource, NullAction, Pipeline, ScanOptions};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};

/// A one-shot-per-connection HTTP server that records request bodies and answers 200 (or 500
/// for the path `/fail`).
fn lineage_server() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("line");
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).expect("header");
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).expect("body");
            let fail = request_line.contains(" /fail ");
            if !fail {
                sink.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).expect("json"));
            }
            let status = if fail {
                "500 Internal Server Error"
            } else {
                "201 Created"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
            );
        }
    });
    (format!("http://{addr}/api/v1/lineage"), got)
}

fn keyring() -> Arc<Keyring> {
    Arc::new(
        Keyring::generate(Box::new(
            LocalKeyProvider::from_hex("test", &"77".repeat(32)).expect("master"),
        ))
        .expect("keyring"),
    )
}

#[test]
fn a_governed_run_classifies_protects_audits_and_emits_lineage() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, posted) = lineage_server();
    let (source, truth) =
        LoanGenerator::new(GeneratorConfig::default().with_rows(3_000).with_seed(3))
            .into_source()
            .expect("generate");
    let keyring = keyring();
    let log_path = dir.path().join("audit.jsonl");
    let log = Arc::new(Mutex::new(
        AuditLog::open(&log_path, AuditOptions::default().batch(64)).expect("log"),
    ));
    let lineage_file = dir.path().join("lineage.jsonl");
    let lineage = Lineage::new("tests", "govern.loans")
        .to_jsonl(&lineage_file)
        .to_http(&url);
    let run_id = lineage.run_id().to_string();
    let out = dir.path().join("out");
    let report = Pipeline::new(source)
        .dedup_exact(None)
        .on_null("income", NullAction::Drop)
        .expect(Expectation::not_null("email").mostly(0.9))
        .classify(ClassificationRules::default())
        .protect(Protection::new(keyring.clone()))
        .audit(log.clone(), "ci")
        .lineage(lineage)
        .progress(false)
        .run(&out)
        .expect("run");
    assert_eq!(report.duplicates_removed, truth.exact_duplicates);

    // Classification: in the report and the report's descriptor.
    let c = report.classification.as_ref().expect("classified");
    assert_eq!(c.level("national_id"), Some(Sensitivity::Restricted));
    assert_eq!(c.level("credit_card"), Some(Sensitivity::Restricted));
    assert_eq!(c.level("email"), Some(Sensitivity::Confidential));
    assert_eq!(
        report
            .source
            .classification
            .get("credit_card")
            .map(String::as_str),
        Some("Restricted")
    );

    // Protection: Restricted columns encrypted, identifiers tokenized, in data and quarantine.
    let actions: Vec<(&str, &str)> = report
        .protection
        .iter()
        .map(|p| (p.column.as_str(), p.action.as_str()))
        .collect();
    assert!(
        actions.contains(&("national_id", "encrypt")) && actions.contains(&("email", "tokenize")),
        "{actions:?}"
    );
    let data = IpcFileSource::open(out.join("data.arrow")).expect("data");
    let mut enc = encrypted_columns(&data.schema());
    enc.sort();
    assert_eq!(enc, ["credit_card", "national_id"]);
    let batch: RecordBatch = data
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    let email = batch
        .column(batch.schema().index_of("email").expect("email"))
        .as_string::<i32>();
    assert!(email.value(0).starts_with("tok_"), "{}", email.value(0));
    let q = IpcFileSource::open(out.join("quarantine.arrow")).expect("quarantine");
    assert_eq!(encrypted_columns(&q.schema()).len(), 2);
    // The expectation ran on plaintext and still holds.
    assert!(report.expectations_passed);

    // Readers with clearance get plaintext back; the decisions are audited.
    let reader = ProtectedSource::new(
        Box::new(data),
        keyring,
        Arc::new(ClearancePolicy::new().grant("analyst", Sensitivity::Restricted, &["audit"])),
        "analyst",
        "audit",
        Some(log.clone()),
    )
    .expect("reader");
    let plain = reader
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    let ssn = plain
        .column(plain.schema().index_of("national_id").expect("ssn"))
        .as_string::<i32>();
    let first = (0..ssn.len()).find(|&i| ssn.is_valid(i)).expect("a value");
    assert_eq!(ssn.value(first).len(), 11, "{}", ssn.value(first));
    drop(reader);
    drop(log);

    // Audit: govern, classify, one event per protected column, write, then the reader's.
    let records = read_records(&log_path).expect("audit");
    let actions: Vec<&str> = records.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(actions[..2], ["govern", "classify"]);
    assert!(
        actions.contains(&"encrypt")
            && actions.contains(&"tokenize")
            && actions.contains(&"write")
            && actions.contains(&"decrypt")
    );
    let head = report.audit_head.as_ref().expect("head");
    verify(&log_path, &[]).expect("verifies");
    assert!(head.starts_with(
        &format!("{}:", records.iter().position(|r| r.event.action == "write").expect("write") + 1)
    ));

    // Lineage: START and COMPLETE, in the file and at the endpoint, with the facets.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&lineage_file)
        .expect("lineage")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["START", "COMPLETE"]);
    assert_eq!(*posted.lock().expect("lock"), events);
    let complete = &events[1];
    assert_eq!(complete["run"]["runId"], run_id.as_str());
    assert_eq!(report.lineage_run_id.as_deref(), Some(run_id.as_str()));
    let input = &complete["inputs"][0];
    assert!(
        input["facets"]["schema"]["fields"]
            .as_array()
            .expect("fields")
            .len()
            == 16
    );
    assert!(
        input["inputFacets"]["dataQualityMetrics"]["rowCount"].as_u64() == Some(report.rows_in)
    );
    let output = &complete["outputs"][0];
    assert!(
        output["name"]
            .as_str()
            .expect("name")
            .ends_with("data.arrow")
    );
    assert_eq!(
        output["facets"]["dataQualityAssertions"]["assertions"][0]["success"],
        true
    );
    let descs: Vec<&str> = output["facets"]["schema"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["description"].as_str())
        .collect();
    assert!(descs.contains(&"sensitivity: Restricted"), "{descs:?}");
}

#[test]
fn a_failed_run_emits_fail_and_an_unreachable_endpoint_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let (source, _) = LoanGenerator::new(GeneratorConfig::default().with_rows(100))
        .into_source()
        .expect("generate");
    let lineage_file = dir.path().join("lineage.jsonl");
    let err = Pipeline::new(source)
        .expect(Expectation::not_null("no_such_column"))
        .lineage(Lineage::new("tests", "bad").to_jsonl(&lineage_file))
        .progress(false)
        .run(&dir.path().join("out"))
        .expect_err("bad column");
    assert!(err.to_string().contains("no_such_column"), "{err}");
    let types: Vec<String> = std::fs::read_to_string(&lineage_file)
        .expect("lineage")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["eventType"]
                .as_str()
                .expect("t")
                .to_string()
        })
        .collect();
    assert_eq!(types, ["START", "FAIL"]);

    let (url, _) = lineage_server();
    let failing = url.replace("/api/v1/lineage", "/fail");
    let (source, _) = LoanGenerator::new(GeneratorConfig::default().with_rows(100))
        .into_source()
        .expect("generate");
    let err = Pipeline::new(source)
        .lineage(Lineage::new("tests", "x").to_http(&failing))
        .progress(false)
        .run(&dir.path().join("out2"))
        .expect_err("endpoint says 500");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    let err = Lineage::new("t", "x")
        .to_http("https://localhost/api")
        .start(&[])
        .expect_err("https");
    assert!(err.to_string().contains("http://"), "{err}");
}
