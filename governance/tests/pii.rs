//! PII detection, classification and masking.

use std::sync::Arc;

use aistd_governance::pii::{
    ClassificationRules, EntityType, MaskOperator, PiiScanner, Sensitivity, anonymize, classify,
    mask_column,
};
use aistd_governance::{DataSource, MemorySource};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use EntityType::*;

fn found(text: &str) -> Vec<(EntityType, String)> {
    let chars: Vec<char> = text.chars().collect();
    PiiScanner::new()
        .analyze(text)
        .into_iter()
        .map(|e| (e.entity_type, chars[e.start..e.end].iter().collect()))
        .collect()
}

fn one(text: &str, entity: EntityType, span: &str) {
    let f = found(text);
    assert!(
        f.iter().any(|(e, s)| *e == entity && s == span),
        "{text:?}: expected {entity} {span:?}, found {f:?}"
    );
}

fn none_of(text: &str, entity: EntityType) {
    let f = found(text);
    assert!(
        f.iter().all(|(e, _)| *e != entity),
        "{text:?}: unexpected {entity} in {f:?}"
    );
}

#[test]
fn detects_each_entity_type_in_free_text() {
    one(
        "write to ada.lovelace+work@example.co.uk today",
        EmailAddress,
        "ada.lovelace+work@example.co.uk",
    );
    one("call +1 415 555 2671 now", PhoneNumber, "+1 415 555 2671");
    one("call (415) 555-2671.", PhoneNumber, "(415) 555-2671");
    one("phone: 415-555-2671", PhoneNumber, "415-555-2671");
    one("ring +44 20 7946 0958", PhoneNumber, "+44 20 7946 0958");
    one("ring 020 7946 0958", PhoneNumber, "020 7946 0958");
    one(
        "card 4111 1111 1111 1111 exp",
        CreditCard,
        "4111 1111 1111 1111",
    );
    one("amex 378282246310005", CreditCard, "378282246310005");
    one(
        "pay GB82 WEST 1234 5698 7654 32 please",
        IbanCode,
        "GB82 WEST 1234 5698 7654 32",
    );
    one(
        "iban DE89370400440532013000",
        IbanCode,
        "DE89370400440532013000",
    );
    one("ssn 536-90-4399 on file", UsSsn, "536-90-4399");
    one("from 192.168.10.254, port 22", IpAddress, "192.168.10.254");
    one(
        "v6 2001:db8:85a3::8a2e:370:7334 here",
        IpAddress,
        "2001:db8:85a3::8a2e:370:7334",
    );
    one("born 1984-02-29", DateTime, "1984-02-29");
    one(
        "at 2024-06-01T12:30:00Z sharp",
        DateTime,
        "2024-06-01T12:30:00Z",
    );
    one("on 12/31/2023 it", DateTime, "12/31/2023");
    one("on 31.12.2023 it", DateTime, "31.12.2023");
    one("since March 5, 2021 we", DateTime, "March 5, 2021");
    one("since 5 March 2021 we", DateTime, "5 March 2021");
    one("Please ask Maria Garcia about it", Person, "Maria Garcia");
    one("signed Dr. Alan Turing", Person, "Dr. Alan Turing");
    one("John F. Kennedy said", Person, "John F. Kennedy");
    one(
        "ship to 1600 Pennsylvania Avenue, Washington, DC 20500",
        Location,
        "1600 Pennsylvania Avenue, Washington, DC 20500",
    );
    one("at 221B Baker Street.", Location, "221B Baker Street");
    one(
        "see https://example.com/a?b=c.",
        Url,
        "https://example.com/a?b=c",
    );
    one("see www.example.org/docs", Url, "www.example.org/docs");
}

#[test]
fn rejects_lookalikes() {
    none_of("card 4111 1111 1111 1112", CreditCard);
    none_of("order 1234567890123", CreditCard);
    none_of("ssn 000-12-3456", UsSsn);
    none_of("ssn 666-12-3456", UsSsn);
    none_of("ssn 912-12-3456", UsSsn);
    none_of("ssn 123-00-4567", UsSsn);
    none_of("ssn 078-05-1120", UsSsn);
    none_of("ssn 536-90.4399", UsSsn);
    none_of("pay GB82 WEST 1234 5698 7654 31", IbanCode);
    none_of("version 1.2.3.4567", IpAddress);
    none_of("addr 256.1.1.1", IpAddress);
    none_of("on 2023-02-29", DateTime);
    none_of("on 13/13/2023", DateTime);
    none_of("time 10:30", IpAddress);
    none_of("May I help you", Person);
    none_of("the quick brown fox", Person);
    none_of("user@localhost", EmailAddress);
    none_of("call 555-0100", PhoneNumber);
}

#[test]
fn offsets_are_characters_not_bytes() {
    let text = "Café ☕ — mail zoe@example.com";
    let e = &PiiScanner::new().analyze(text)[0];
    assert_eq!(e.entity_type, EmailAddress);
    let span: String = text.chars().skip(e.start).take(e.end - e.start).collect();
    assert_eq!(span, "zoe@example.com");
    assert_eq!(e.start, 14);
    // Byte ranges slice the same text.
    let (_, r, _) = &PiiScanner::new().analyze_bytes(text)[0];
    assert_eq!(&text[r.clone()], span);
}

#[test]
fn masks_and_redacts_spans() {
    let s = PiiScanner::new();
    let text = "Mail ada@example.com, card 4111-1111-1111-1111.";
    let e = s.analyze(text);
    assert_eq!(
        anonymize(text, &e, &MaskOperator::Replace(None)),
        "Mail <EMAIL_ADDRESS>, card <CREDIT_CARD>."
    );
    assert_eq!(anonymize(text, &e, &MaskOperator::Redact), "Mail , card .");
    assert_eq!(
        anonymize(
            text,
            &e,
            &MaskOperator::Mask {
                with: '*',
                chars: Some(15),
                from_end: false
            }
        ),
        "Mail ***************, card ***************1111."
    );
}

fn people() -> MemorySource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("ssn", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("annual_income", DataType::Int64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let names = [
        "Maria Garcia",
        "James Smith",
        "Linda Johnson",
        "Robert Brown",
    ];
    let n = 200;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| Some(names[i % 4].to_string())),
            )),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 10 != 0).then(|| format!("user{i}@example.com"))),
            )),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                Some(format!("{:03}-{:02}-{:04}", 100 + i, 10 + i % 80, 1000 + i))
            }))),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                Some(if i % 20 == 0 {
                    format!("called back on 415-555-{:04}", 2000 + i)
                } else {
                    "no answer".to_string()
                })
            }))),
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| Some(30_000 + i as i64)),
            )),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| Some(["Springfield", "Riverside"][i % 2].to_string())),
            )),
        ],
    )
    .expect("batch");
    MemorySource::try_new("people", schema, vec![batch]).expect("src")
}

#[test]
fn classifies_columns_by_entities_and_names() {
    let src = people();
    let c = classify(&src, &ClassificationRules::default(), &PiiScanner::new()).expect("classify");
    assert_eq!(c.level("ssn"), Some(Sensitivity::Restricted));
    assert_eq!(c.level("email"), Some(Sensitivity::Confidential));
    assert_eq!(c.level("name"), Some(Sensitivity::Confidential));
    assert_eq!(c.level("annual_income"), Some(Sensitivity::Confidential));
    assert_eq!(c.level("city"), Some(Sensitivity::Internal));
    // 5% of notes hold a phone number: under the 10% rule.
    assert_eq!(c.level("note"), Some(Sensitivity::Internal));
    let email = c
        .columns
        .iter()
        .find(|c| c.column == "email")
        .expect("email");
    assert_eq!(email.sampled, 180);
    assert_eq!(email.entities.get(&EmailAddress), Some(&1.0));
    assert!(!email.reasons.is_empty());
    let mut d = src.descriptor().expect("descriptor");
    c.apply(&mut d);
    assert_eq!(
        d.classification.get("ssn").map(String::as_str),
        Some("Restricted")
    );
    assert!(
        c.to_markdown()
            .contains("| ssn | Restricted | US_SSN 100% |")
    );
    assert_eq!(c.at_least(Sensitivity::Restricted), ["ssn"]);
}

#[test]
fn rules_load_from_yaml_and_bad_rules_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("rules.yaml");
    std::fs::write(&p, "default: Public\nrules:\n  - { entity: PHONE_NUMBER, min_share: 0.01, level: Restricted }\n  - { name_matches: '(?i)^city$', level: Confidential }\n").expect("write");
    let rules = ClassificationRules::from_path(&p).expect("rules");
    let c = classify(&people(), &rules, &PiiScanner::new()).expect("classify");
    assert_eq!(c.level("note"), Some(Sensitivity::Restricted));
    assert_eq!(c.level("city"), Some(Sensitivity::Confidential));
    assert_eq!(c.level("annual_income"), Some(Sensitivity::Public));
    std::fs::write(
        &p,
        "rules:\n  - { name_matches: '(unclosed', level: Restricted }\n",
    )
    .expect("write");
    let err = ClassificationRules::from_path(&p).expect_err("bad regex");
    assert!(
        err.to_string().contains("rule #1") && err.to_string().contains("rules.yaml"),
        "{err}"
    );
    std::fs::write(
        &p,
        "rules:\n  - { entity: PASSPORT, min_share: 0.1, level: Restricted }\n",
    )
    .expect("write");
    assert!(ClassificationRules::from_path(&p).is_err());
}

#[test]
fn masks_a_column() {
    let src = people();
    let batch = &src.batches()[0];
    let out = mask_column(
        batch,
        "note",
        &PiiScanner::new(),
        &MaskOperator::Replace(None),
    )
    .expect("mask");
    let col = out
        .column(3)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    assert_eq!(col.value(0), "called back on <PHONE_NUMBER>");
    assert_eq!(col.value(1), "no answer");
    assert!(
        mask_column(
            batch,
            "annual_income",
            &PiiScanner::new(),
            &MaskOperator::Redact
        )
        .is_err()
    );
}
