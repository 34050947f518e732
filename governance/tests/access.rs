//! Access decisions over encrypted columns, every one audited.

use std::sync::{Arc, Mutex};

use aistd_governance::access::{
    AccessDecision, AccessPolicy, AccessRequest, ClearancePolicy, ProtectedSource, mark_level,
};
use aistd_governance::audit::{AuditLog, AuditOptions, Decision, read_records, verify};
use aistd_governance::crypto::{ColumnEncryptor, Keyring, LocalKeyProvider};
use aistd_governance::pii::Sensitivity;
use aistd_governance::{DataSource, DataSourceExt, MemorySource, ScanOptions};
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

fn setup() -> (MemorySource, Arc<Keyring>) {
    let keyring = Arc::new(
        Keyring::generate(Box::new(
            LocalKeyProvider::from_hex("t", &"5a".repeat(32)).expect("master"),
        ))
        .expect("keyring"),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("ssn", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![
                Some("a@x.org"),
                None,
                Some("c@x.org"),
            ])),
            Arc::new(StringArray::from(vec![
                "536-90-4399",
                "536-90-4400",
                "536-90-4401",
            ])),
        ],
    )
    .expect("batch");
    let sealed = ColumnEncryptor::new(&keyring)
        .expect("enc")
        .encrypt(&batch, &["email", "ssn"])
        .expect("encrypt");
    let sealed = mark_level(&sealed, "email", Sensitivity::Confidential).expect("mark");
    let sealed = mark_level(&sealed, "ssn", Sensitivity::Restricted).expect("mark");
    let src = MemorySource::try_new("people", sealed.schema(), vec![sealed]).expect("src");
    (src, keyring)
}

fn strings(b: &RecordBatch, i: usize) -> Vec<Option<String>> {
    let a = b
        .column(i)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    (0..a.len())
        .map(|r| a.is_valid(r).then(|| a.value(r).to_string()))
        .collect()
}

#[test]
fn clearance_decides_per_column_and_every_decision_is_audited() {
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("audit.jsonl");
    let audit = Arc::new(Mutex::new(
        AuditLog::open(&log_path, AuditOptions::default().fsync(false)).expect("log"),
    ));
    let policy: Arc<dyn AccessPolicy> = Arc::new(
        ClearancePolicy::new()
            .grant("alice", Sensitivity::Restricted, &["fraud-review"])
            .grant("bob", Sensitivity::Confidential, &[]),
    );
    let (src, keyring) = setup();

    // alice for fraud review: everything.
    let s = ProtectedSource::new(
        Box::new(src),
        keyring.clone(),
        policy.clone(),
        "alice",
        "fraud-review",
        Some(audit.clone()),
    )
    .expect("alice");
    assert_eq!(s.allowed(), ["email", "ssn"]);
    let b = s
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    assert_eq!(strings(&b, 2)[0].as_deref(), Some("536-90-4399"));
    assert_eq!(
        strings(&b, 1),
        [Some("a@x.org".into()), None, Some("c@x.org".into())]
    );

    // bob: email yes, ssn no (nulls of the original type).
    let (src, keyring) = setup();
    let s = ProtectedSource::new(
        Box::new(src),
        keyring.clone(),
        policy.clone(),
        "bob",
        "training",
        Some(audit.clone()),
    )
    .expect("bob");
    assert_eq!(s.denied(), ["ssn"]);
    assert_eq!(s.schema().field(2).data_type(), &DataType::Utf8);
    let b = s
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    assert_eq!(b.column(2).null_count(), 3);
    assert_eq!(strings(&b, 1)[0].as_deref(), Some("a@x.org"));
    // Projection works through the wrapper.
    assert_eq!(s.count_rows().expect("rows"), 3);

    // alice for another purpose: ssn denied.
    let (src, keyring) = setup();
    let s = ProtectedSource::new(
        Box::new(src),
        keyring,
        policy,
        "alice",
        "marketing",
        Some(audit.clone()),
    )
    .expect("alice2");
    assert_eq!(s.denied(), ["email", "ssn"]);
    drop(s);
    drop(audit);

    let records = read_records(&log_path).expect("records");
    let decisions: Vec<(String, String, Option<Decision>)> = records
        .iter()
        .filter(|r| r.event.action == "decrypt")
        .map(|r| {
            (
                r.event.who.clone(),
                r.event
                    .data
                    .rsplit('#')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                r.event.decision,
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("alice".into(), "email".into(), Some(Decision::Allow)),
            ("alice".into(), "ssn".into(), Some(Decision::Allow)),
            ("bob".into(), "email".into(), Some(Decision::Allow)),
            ("bob".into(), "ssn".into(), Some(Decision::Deny)),
            ("alice".into(), "email".into(), Some(Decision::Deny)),
            ("alice".into(), "ssn".into(), Some(Decision::Deny)),
        ]
    );
    let denied_reason = &records
        .iter()
        .find(|r| r.event.decision == Some(Decision::Deny))
        .expect("deny")
        .event
        .reason;
    assert!(
        denied_reason.contains("cleared for Confidential"),
        "{denied_reason}"
    );
    assert!(records.iter().filter(|r| r.event.action == "read").count() >= 2);
    verify(&log_path, &[]).expect("log verifies");
}

#[derive(Debug)]
struct Nobody;
impl AccessPolicy for Nobody {
    fn decide(&self, r: &AccessRequest) -> AccessDecision {
        AccessDecision::deny(format!("nobody reads {}", r.column))
    }
}

#[test]
fn an_application_policy_plugs_in() {
    let (src, keyring) = setup();
    let s = ProtectedSource::new(Box::new(src), keyring, Arc::new(Nobody), "svc", "x", None)
        .expect("src");
    assert_eq!(s.denied().len(), 2);
    let b = s
        .scan(&ScanOptions::all())
        .expect("scan")
        .next()
        .expect("batch")
        .expect("ok");
    assert_eq!(b.column(0).null_count(), 0);
    assert_eq!(b.column(1).null_count(), 3);
}
