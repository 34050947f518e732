//! The root package's glue: Cedar decides governance's access requests, and its decisions land in
//! governance's audit log.

use std::sync::{Arc, Mutex};

use aistd::compliance::CedarPolicy;
use aistd::compliance::cedar::packs;
use aistd::compliance::policy::Audited;
use aistd::glue::{AuditLogSink, PolicyAccess};
use aistd::governance::access::{ProtectedSource, mark_level};
use aistd::governance::audit::{AuditLog, AuditOptions, read_records, verify};
use aistd::governance::crypto::{ColumnEncryptor, Keyring, LocalKeyProvider};
use aistd::governance::pii::Sensitivity;
use aistd::governance::{DataSource, MemorySource, ScanOptions};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

#[test]
fn cedar_decides_access_to_encrypted_columns_and_the_audit_log_records_it() {
    let dir = tempfile::tempdir().expect("dir");
    let keyring = Arc::new(
        Keyring::generate(Box::new(
            LocalKeyProvider::from_hex("t", &"19".repeat(32)).expect("master"),
        ))
        .expect("keyring"),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("ssn", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a@x.org", "b@x.org"])),
            Arc::new(StringArray::from(vec!["536-90-4399", "536-90-4400"])),
        ],
    )
    .expect("batch");
    let sealed = ColumnEncryptor::new(&keyring)
        .expect("enc")
        .encrypt(&batch, &["email", "ssn"])
        .expect("encrypt");
    let sealed = mark_level(&sealed, "email", Sensitivity::Confidential).expect("mark");
    let sealed = mark_level(&sealed, "ssn", Sensitivity::Restricted).expect("mark");

    let log_path = dir.path().join("audit.jsonl");
    let log = Arc::new(Mutex::new(
        AuditLog::open(&log_path, AuditOptions::default().fsync(false)).expect("log"),
    ));
    let cedar = CedarPolicy::from_str("data-access", packs::DATA_ACCESS)
        .expect("parse")
        .with_entities_json(r#"[{"uid": {"type": "User", "id": "bob"}, "attrs": {"clearance": 2, "purposes": ["training"]}, "parents": []}]"#)
        .expect("entities");
    let policy = Audited::new(cedar, Arc::new(AuditLogSink::new(log.clone())));
    let access = Arc::new(PolicyAccess::new(Arc::new(policy)));

    let src = MemorySource::try_new("people", sealed.schema(), vec![sealed]).expect("src");
    let reader = ProtectedSource::new(
        Box::new(src),
        keyring,
        access,
        "bob",
        "training",
        Some(log.clone()),
    )
    .expect("reader");
    assert_eq!(reader.allowed(), ["email"]);
    assert_eq!(reader.denied(), ["ssn"]);
    let b = reader
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    let email = b
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    assert_eq!(email.value(0), "a@x.org");
    assert_eq!(b.column(1).null_count(), 2);
    drop(reader);
    drop(log);

    let records = read_records(&log_path).expect("records");
    let actions: Vec<&str> = records.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(
        actions,
        ["authorize", "decrypt", "authorize", "decrypt", "read"]
    );
    assert!(
        records[0].event.reason.contains("cleared-for-purpose"),
        "{}",
        records[0].event.reason
    );
    assert!(
        records[3].event.reason.contains("DENY"),
        "{}",
        records[3].event.reason
    );
    verify(&log_path, &[]).expect("the log verifies");
}

/// The privacy ledger commits each charge and refusal to the audit log; a new ledger restored
/// from the log after a "crash" has the same spending and keeps refusing.
#[test]
fn privacy_ledger_spending_survives_a_restart_through_the_audit_log() {
    use aistd::compliance::dp::ledger::{Budget, PrivacyLedger};
    use aistd::glue::{AuditSpendSink, ledger_entries};

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let budget = Budget::new(1.0, 1e-6).expect("budget");
    {
        let log = Arc::new(Mutex::new(
            AuditLog::open(&path, AuditOptions::default()).expect("log"),
        ));
        let ledger = PrivacyLedger::new().with_sink(Arc::new(AuditSpendSink::new(log)));
        ledger.set_dataset_budget("loans", budget).expect("set");
        for q in ["count", "mean income", "histogram region"] {
            ledger
                .charge("ana", "loans", q, Budget::new(0.3, 0.0).expect("b"))
                .expect("fits");
        }
        assert!(
            ledger
                .charge("ana", "loans", "median", Budget::new(0.3, 0.0).expect("b"))
                .is_err()
        );
        // The ledger is dropped without any shutdown step.
    }
    assert_eq!(verify(&path, &[]).expect("verify").events, 4);
    let entries = ledger_entries(&path).expect("entries");
    assert_eq!(entries.len(), 4);
    assert!(!entries[3].accepted && entries[3].reason.contains("loans"));
    let records = read_records(&path).expect("records");
    assert_eq!(records[0].event.action, "privacy_spend");
    let ledger = PrivacyLedger::new();
    ledger.set_dataset_budget("loans", budget).expect("set");
    assert_eq!(ledger.restore(&entries).expect("restore"), 3);
    let left = ledger.remaining("ana", "loans").expect("r").expect("some");
    assert!((left.epsilon - 0.1).abs() < 1e-9, "{left:?}");
    assert!(
        ledger
            .charge("bob", "loans", "sum", Budget::new(0.2, 0.0).expect("b"))
            .is_err()
    );
}

#[test]
fn cedar_decides_who_may_call_a_served_model_and_the_audit_log_records_it() {
    use aistd::deploy::endpoint::block_on;
    use aistd::deploy::middleware::Authenticated;
    use aistd::deploy::{
        Bearer, Endpoint, Error, InferRequest, Manifest, Runtimes, Tensor, TensorSpec,
    };
    use aistd::glue::PolicyAuthorize;

    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("f"), b"x").expect("write");
    let m = Manifest::new("ranker", "2", "identity")
        .expect("manifest")
        .with_input(TensorSpec::new("x", aistd::deploy::DataType::Fp32, &[-1]).expect("spec"))
        .with_output(TensorSpec::new("y", aistd::deploy::DataType::Fp32, &[-1]).expect("spec"));
    let bundle = aistd::deploy::Bundle::create(&dir.path().join("b"), m, &src).expect("bundle");
    let model = Arc::new(Runtimes::builtin().load(&bundle).expect("load"));

    let log_path = dir.path().join("audit.jsonl");
    let log = Arc::new(Mutex::new(
        AuditLog::open(&log_path, AuditOptions::default().fsync(false)).expect("log"),
    ));
    let cedar = CedarPolicy::from_str(
        "inference",
        r#"permit(principal == User::"alice", action == Action::"infer", resource == Model::"ranker")
           when { context.version == "2" };"#,
    )
    .expect("parse");
    let policy = Audited::new(cedar, Arc::new(AuditLogSink::new(log.clone())));
    let (alice, bob) = (Bearer::new("alice-token"), Bearer::new("bob-token"));
    let guarded = Authenticated::new(model, Arc::new(PolicyAuthorize::new(Arc::new(policy))))
        .with_token(&alice, "alice")
        .with_token(&bob, "bob");
    let call = |t: &Bearer| {
        let mut r = InferRequest::new().with_input(Tensor::fp32("x", &[1], vec![1.0]).expect("t"));
        r.bearer = Some(t.clone());
        block_on(guarded.infer(r))
    };
    call(&alice).expect("alice may call ranker version 2");
    match call(&bob) {
        Err(Error::Forbidden { principal, .. }) => assert_eq!(principal, "bob"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    drop(guarded);
    log.lock().expect("log").commit().expect("commit");
    verify(&log_path, &[]).expect("the audit log verifies");
    let decisions: Vec<(String, String)> = read_records(&log_path)
        .expect("records")
        .into_iter()
        .filter(|r| r.event.action == "authorize")
        .map(|r| (r.event.who.clone(), r.event.data.clone()))
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(
        decisions[0].0.contains("alice") && decisions[1].0.contains("bob"),
        "{decisions:?}"
    );
}
