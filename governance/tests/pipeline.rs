//! The pipeline against the generator's ground truth: exact counts, conservation, outputs.

mod common;

use aistd_governance::expect::suggest;
use aistd_governance::generate::{DirtConfig, GeneratorConfig, LoanGenerator};
use aistd_governance::label::{Condition, LABELER_METADATA_KEY, Op};
use aistd_governance::pipeline::{DATA_FILE, QUARANTINE_FILE, REPORT_HTML, REPORT_JSON, REPORT_MD};
use aistd_governance::{
    CsvOptions, CsvSource, DataSource, DataSourceExt, Error, Expectation, ExpectationSuite, Format,
    Imputation, IpcFileSource, MemorySource, NullAction, OutlierAction, OutlierMethod, Pipeline,
    Profile, RuleLabeler,
};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use common::{concat, loans};

#[test]
fn profile_counts_match_ground_truth() {
    let (src, truth) = loans(20_000, 11);
    let p = Profile::of(&src).expect("profile");
    assert_eq!(p.rows, truth.rows);
    for c in &p.columns {
        assert_eq!(
            c.nulls,
            truth.nulls.get(&c.name).copied().unwrap_or(0),
            "nulls in {}",
            c.name
        );
        assert_eq!(
            c.nans,
            truth.nans.get(&c.name).copied().unwrap_or(0),
            "NaNs in {}",
            c.name
        );
        let err = (c.distinct_approx as f64 - c.distinct.expect("exact") as f64).abs()
            / c.distinct.expect("exact") as f64;
        assert!(
            err < 0.03,
            "{}: sketch {} vs exact {:?}",
            c.name,
            c.distinct_approx,
            c.distinct
        );
    }
    let semantic = |n: &str| p.column(n).expect(n).semantic_type.clone();
    assert_eq!(semantic("email"), "email");
    assert_eq!(semantic("national_id"), "us_ssn");
    assert_eq!(semantic("credit_card"), "credit_card");
    assert_eq!(semantic("phone"), "phone");
    assert_eq!(semantic("gender"), "categorical");
    assert_eq!(semantic("birth_date"), "date");
    let score = p.column("credit_score").expect("score");
    assert!(score.mean.expect("mean") > 600.0 && score.std.expect("std") > 10.0);
    assert_eq!(score.quantiles.len(), 7);
}

#[test]
fn expectations_count_exactly_the_injected_dirt() {
    let (src, truth) = loans(20_000, 12);
    let suite = ExpectationSuite::new(vec![
        Expectation::not_null("email"),
        Expectation::match_format("email", Format::Email),
        Expectation::between("credit_score", Some(300.0), Some(850.0)),
        Expectation::between("age", Some(18.0), Some(100.0)).mostly(0.98),
        Expectation::in_set("gender", ["female", "male", "nonbinary"]),
        Expectation::row_count_between(Some(20_000), Some(20_000)),
        Expectation::mean_between("credit_score", Some(500.0), Some(800.0)),
        Expectation::column_type("income", "float64"),
        Expectation::unique("application_id"),
    ]);
    let r = suite.evaluate(&src).expect("evaluate");
    let unexpected: Vec<u64> = r.iter().map(|r| r.unexpected_count).collect();
    let range = |c: &str| truth.out_of_range[c];
    assert_eq!(unexpected[0], truth.nulls["email"]);
    assert_eq!(unexpected[1], truth.malformed_emails);
    assert_eq!(unexpected[2], range("credit_score"));
    assert_eq!(unexpected[3], range("age"));
    assert_eq!(unexpected[4], 0);
    // Every occurrence of a repeated id is unexpected, counted here independently.
    let mut counts = std::collections::HashMap::new();
    for b in src.collect().expect("collect") {
        let ids = b
            .column_by_name("application_id")
            .expect("id")
            .as_primitive::<arrow_array::types::Int64Type>();
        for id in ids.values() {
            *counts.entry(*id).or_insert(0u64) += 1;
        }
    }
    let repeated: u64 = counts.values().filter(|n| **n > 1).sum();
    assert_eq!(unexpected[8], repeated);
    assert!(repeated > truth.exact_duplicates);
    let success: Vec<bool> = r.iter().map(|r| r.success).collect();
    assert_eq!(
        success,
        [false, false, false, true, true, true, true, true, false]
    );
    assert_eq!(r[5].observed, Some(20_000.into()));
    assert!(
        r[1].samples
            .iter()
            .all(|s| !Format::Email.matches(s.value.as_str().expect("text")))
    );
    assert_eq!(r[1].samples.len(), 5);
}

#[test]
fn dedup_and_near_duplicates_remove_exactly_the_injected_copies() {
    let (src, truth) = loans(20_000, 13);
    let (data, quarantine, report) = Pipeline::new(src)
        .dedup_exact(None)
        .near_duplicates(&["name", "email"])
        .progress(false)
        .run_in_memory()
        .expect("run");
    assert_eq!(report.duplicates_removed, truth.exact_duplicates);
    assert_eq!(report.near_duplicates_removed, truth.near_duplicates);
    assert_eq!(report.rows_in, report.rows_out + report.rows_quarantined);
    let q = concat(&quarantine);
    assert_eq!(q.num_rows() as u64, report.rows_quarantined);
    let reasons = q
        .column_by_name("_reason")
        .expect("reason")
        .as_string::<i32>();
    assert_eq!(
        reasons.iter().filter(|r| *r == Some("duplicate")).count() as u64,
        truth.exact_duplicates
    );
    let out: usize = data.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(out as u64, report.rows_out);
    // Dedup is idempotent: the output has no duplicates left.
    let again = MemorySource::try_new("again", data[0].schema(), data).expect("mem");
    let (_, _, r2) = Pipeline::new(again)
        .dedup_exact(None)
        .progress(false)
        .run_in_memory()
        .expect("run");
    assert_eq!(r2.duplicates_removed, 0);
}

#[test]
fn run_writes_outputs_that_read_back_with_the_reported_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("loans.csv");
    let truth = LoanGenerator::new(GeneratorConfig::default().with_rows(5000).with_seed(14))
        .write_csv(&csv)
        .expect("csv");
    let src = CsvSource::open(&csv, CsvOptions::default()).expect("open");
    let out = dir.path().join("out");
    let labeler = RuleLabeler::new("risk-rules", "1")
        .rule("high", vec![Condition::new("credit_score", Op::Lt, 580)])
        .rule("low", vec![Condition::new("credit_score", Op::Ge, 740)])
        .default_label("medium");
    let report = Pipeline::new(src)
        .dedup_exact(None)
        .on_null("income", NullAction::Drop)
        .reject(Expectation::between(
            "credit_score",
            Some(300.0),
            Some(850.0),
        ))
        .label(labeler, "risk")
        .expect(Expectation::not_null("income"))
        .expect(Expectation::in_set("risk", ["high", "medium", "low"]))
        .progress(false)
        .run(&out)
        .expect("run");
    for f in [
        DATA_FILE,
        QUARANTINE_FILE,
        REPORT_JSON,
        REPORT_MD,
        REPORT_HTML,
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert_eq!(report.rows_in, truth.rows);
    assert_eq!(report.rows_in, report.rows_out + report.rows_quarantined);
    assert_eq!(report.duplicates_removed, truth.exact_duplicates);
    assert!(report.expectations_passed, "{:?}", report.expectations);
    let data = IpcFileSource::open(out.join(DATA_FILE)).expect("data");
    assert_eq!(data.count_rows().expect("rows"), report.rows_out);
    let risk = data.schema().field_with_name("risk").expect("risk").clone();
    assert_eq!(
        risk.metadata()
            .get(LABELER_METADATA_KEY)
            .map(String::as_str),
        Some("risk-rules@1")
    );
    let labels: u64 = report.labels[0].counts.values().sum();
    assert_eq!(labels, report.rows_out);
    let q = IpcFileSource::open(out.join(QUARANTINE_FILE)).expect("quarantine");
    assert_eq!(q.count_rows().expect("rows"), report.rows_quarantined);
    let by_reason: u64 = report.quarantined_by_reason.values().sum();
    assert_eq!(by_reason, report.rows_quarantined);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(REPORT_JSON)).expect("read")).expect("json");
    assert_eq!(json["rows_out"], report.rows_out);
    let md = std::fs::read_to_string(out.join(REPORT_MD)).expect("md");
    assert!(
        md.contains("| duplicate |") && md.contains("risk-rules@1"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join(REPORT_HTML)).expect("html");
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "a chart of quarantine reasons and one of missing values"
    );
    assert!(html.contains(">duplicate</text>") && html.contains(">income</text>"));
    // No staging directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_failed_run_leaves_no_complete_looking_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bad.csv");
    let mut text = String::from("id,score\n");
    for i in 0..20_000 {
        text += &format!("{i},{}\n", i % 100);
    }
    text += "oops,1\n";
    std::fs::write(&csv, text).expect("write");
    let src = CsvSource::open(&csv, CsvOptions::default()).expect("open");
    let out = dir.path().join("out");
    let err = Pipeline::new(src)
        .dedup_exact(None)
        .progress(false)
        .run(&out)
        .expect_err("must fail");
    assert!(matches!(err, Error::Csv { record: 20_001, .. }), "{err}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn imputation_outliers_and_coercion() {
    let (src, truth) = loans(10_000, 15);
    let missing = truth.nulls["income"] + truth.nans["income"];
    let (data, quarantine, report) = Pipeline::new(src)
        .on_null("income", NullAction::Impute(Imputation::Median))
        .on_null(
            "email",
            NullAction::Impute(Imputation::Constant("unknown@example.com".into())),
        )
        .outliers(
            "credit_score",
            OutlierMethod::Iqr { k: 1.5 },
            OutlierAction::Clip,
        )
        .outliers(
            "age",
            OutlierMethod::ZScore { threshold: 4.0 },
            OutlierAction::Drop,
        )
        .progress(false)
        .run_in_memory()
        .expect("run");
    assert_eq!(report.values_imputed["income"], missing);
    assert_eq!(report.values_imputed["email"], truth.nulls["email"]);
    assert!(report.values_clipped["credit_score"] >= truth.out_of_range["credit_score"]);
    assert_eq!(report.rows_in, report.rows_out + report.rows_quarantined);
    let b = concat(&data);
    let income = b
        .column_by_name("income")
        .expect("income")
        .as_primitive::<Float64Type>();
    assert_eq!(income.null_count(), 0);
    assert!(income.values().iter().all(|x| !x.is_nan()));
    let q: usize = quarantine.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(
        q as u64,
        report
            .quarantined_by_reason
            .get("outlier:age")
            .copied()
            .unwrap_or(0)
    );
    assert!(q > 0);

    // Coercion: a text column with bad values quarantines exactly those rows, with the value.
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "n",
        DataType::Utf8,
        true,
    )]));
    let values = StringArray::from(vec![Some("1"), Some("x"), None, Some("4"), Some("5.5")]);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(values)]).expect("batch");
    let mem = MemorySource::try_new("t", schema, vec![batch]).expect("mem");
    let (data, quarantine, report) = Pipeline::new(mem)
        .coerce("n", DataType::Int64)
        .progress(false)
        .run_in_memory()
        .expect("run");
    assert_eq!(report.quarantined_by_reason["coerce:n"], 2);
    assert_eq!(concat(&data).column(0).data_type(), &DataType::Int64);
    let q = concat(&quarantine);
    let details = q
        .column_by_name("_detail")
        .expect("detail")
        .as_string::<i32>();
    assert_eq!(details.value(0), "`x` is not a valid Int64");
    let rows: Vec<u64> = q
        .column_by_name("_row")
        .expect("row")
        .as_primitive::<arrow_array::types::UInt64Type>()
        .values()
        .to_vec();
    assert_eq!(rows, [1, 4]);
}

#[test]
fn expectation_files_are_validated_against_the_schema() {
    let (src, _) = loans(100, 1);
    let yaml = "expectations:\n  - expect: not_null\n    column: email\n  - expect: between\n    column: no_such_column\n    min: 0\n";
    let suite = ExpectationSuite::from_yaml(yaml, "rules.yaml").expect("parse");
    let err = Pipeline::new(src)
        .expectations(suite, "rules.yaml")
        .progress(false)
        .run_in_memory()
        .expect_err("missing column");
    let msg = err.to_string();
    assert!(matches!(err, Error::ColumnNotFound { .. }), "{msg}");
    assert!(
        msg.contains("no_such_column")
            && msg.contains("expectation #2")
            && msg.contains("rules.yaml"),
        "{msg}"
    );
    let bad = ExpectationSuite::from_yaml("- expect: not_a_rule\n  column: x\n", "bad.yaml")
        .expect_err("bad rule");
    assert!(bad.to_string().contains("bad.yaml"), "{bad}");
    let json =
        r#"[{"expect": "match_format", "column": "email", "format": "email", "mostly": 0.9}]"#;
    assert_eq!(
        ExpectationSuite::from_yaml(json, "j")
            .expect("json")
            .expectations[0]
            .mostly,
        0.9
    );
}

#[test]
fn suggested_expectations_hold_on_the_data_they_came_from() {
    let clean = GeneratorConfig::default()
        .with_rows(5000)
        .with_seed(21)
        .with_dirt(DirtConfig::clean());
    let (src, _) = LoanGenerator::new(clean).into_source().expect("generate");
    let profile = Profile::of(&src).expect("profile");
    let suggestions = suggest(&profile);
    let rules: Vec<&str> = suggestions.iter().map(|s| s.rule.as_str()).collect();
    for r in [
        "CompleteIfCompleteRule",
        "RetainTypeRule",
        "CategoricalRangeRule",
        "NonNegativeNumbersRule",
        "UniqueIfApproximatelyUniqueRule",
    ] {
        assert!(rules.contains(&r), "{r} missing from {rules:?}");
    }
    let suite = ExpectationSuite::new(suggestions.into_iter().map(|s| s.expectation).collect());
    let results = suite.evaluate(&src).expect("evaluate");
    assert!(
        results.iter().all(|r| r.success),
        "{:?}",
        results.iter().filter(|r| !r.success).collect::<Vec<_>>()
    );
    // And they catch dirt: the dirty twin of the same data breaks some.
    let (dirty, _) = loans(5000, 21);
    assert!(
        suite
            .evaluate(&dirty)
            .expect("evaluate")
            .iter()
            .any(|r| !r.success)
    );
    let _ = dirty.schema();
}

#[test]
fn review_regressions() {
    use std::sync::Arc;

    use arrow_array::{Float32Array, Int32Array};
    use arrow_schema::{Field, Schema};

    // Imputation and clipping keep the column's own type (Int32, Float32).
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("f", DataType::Float32, true),
    ]));
    let i = Int32Array::from(vec![Some(1), None, Some(3), Some(1000)]);
    let f = Float32Array::from(vec![Some(1.5), Some(f32::NAN), None, Some(2.5)]);
    let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(i), Arc::new(f)]).expect("batch");
    let mem = MemorySource::try_new("t", schema.clone(), vec![b.clone()]).expect("mem");
    let (data, _, report) = Pipeline::new(mem)
        .on_null("i", NullAction::Impute(Imputation::Median))
        .on_null("f", NullAction::Impute(Imputation::Mean))
        .outliers("i", OutlierMethod::Iqr { k: 1.5 }, OutlierAction::Clip)
        .progress(false)
        .run_in_memory()
        .expect("run");
    assert_eq!(data[0].schema(), schema);
    assert_eq!(report.values_imputed["i"], 1);
    assert_eq!(report.values_imputed["f"], 2);

    // A statistic fitted on the input cannot be imputed into a column an earlier step retyped.
    let mem = MemorySource::try_new("t", schema.clone(), vec![b.clone()]).expect("mem");
    let err = Pipeline::new(mem)
        .coerce("i", DataType::Utf8)
        .on_null("i", NullAction::Impute(Imputation::Mode))
        .progress(false)
        .run_in_memory()
        .expect_err("retyped column");
    assert!(err.to_string().contains("fitted on the input"), "{err}");

    // A batch size of 0 means 1, never a panic.
    let mem = MemorySource::try_new("t", schema, vec![b]).expect("mem");
    let mut opts = aistd_governance::ScanOptions::all();
    opts.batch_size = Some(0);
    assert_eq!(mem.scan(&opts).expect("scan").count(), 4);

    // A failed run into a used directory removes the earlier report.json.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(REPORT_JSON), "{}").expect("old report");
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "a\n1\n2\nx\n").expect("write");
    let src = CsvSource::open(&csv, CsvOptions::default().with_infer_rows(2)).expect("open");
    Pipeline::new(src)
        .progress(false)
        .run(dir.path())
        .expect_err("bad row");
    assert!(!dir.path().join(REPORT_JSON).exists());
}

#[test]
fn in_set_takes_the_column_kind() {
    use std::sync::Arc;

    use arrow_array::Date32Array;
    use arrow_schema::{Field, Schema};

    let schema = Arc::new(Schema::new(vec![
        Field::new("d", DataType::Date32, true),
        Field::new("zip", DataType::Utf8, true),
    ]));
    let d = Date32Array::from(vec![19_723, 19_724, 0]); // 2024-01-01, 2024-01-02, 1970-01-01
    let zip = StringArray::from(vec!["12345", "54321", "00000"]);
    let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(d), Arc::new(zip)]).expect("batch");
    let mem = MemorySource::try_new("t", schema, vec![b]).expect("mem");
    let suite = ExpectationSuite::new(vec![
        Expectation::in_set("d", ["2024-01-01", "2024-01-02"]),
        Expectation::in_set("zip", [12345, 54321]),
    ]);
    let r = suite.evaluate(&mem).expect("evaluate");
    assert_eq!((r[0].unexpected_count, r[1].unexpected_count), (1, 1));
    assert_eq!(r[0].samples[0].value, serde_json::Value::from("1970-01-01"));
    let bad = ExpectationSuite::new(vec![Expectation::in_set("d", ["not a date"])]);
    assert!(bad.evaluate(&mem).is_err());
}
