//! Property tests: the CSV reader round-trips arbitrary text tables; cleaning conserves rows and
//! dedup is idempotent.

use std::sync::Arc;

use aistd_governance::{CsvOptions, CsvSource, DataSourceExt, MemorySource, NullAction, Pipeline};
use arrow_array::cast::AsArray;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn csv_round_trips_quoted_text(rows in prop::collection::vec(prop::collection::vec("[a-z,\"\n ;]{1,8}", 3), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.csv");
        let mut text = String::from("a,b,c\n");
        for r in &rows {
            // Prefix keeps every value text (never a number, never empty).
            let fields: Vec<String> = r.iter().map(|v| quote(&format!("v{v}"))).collect();
            text += &fields.join(",");
            text += "\r\n";
        }
        std::fs::write(&p, text).expect("write");
        let src = CsvSource::open(&p, CsvOptions::default()).expect("open");
        let batches = src.collect().expect("scan");
        let mut got = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                got.push((0..3).map(|c| b.column(c).as_string::<i32>().value(i).to_string()).collect::<Vec<_>>());
            }
        }
        let want: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|v| format!("v{v}")).collect()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cleaning_conserves_rows_and_dedup_is_idempotent(
        values in prop::collection::vec((prop::option::of(0i64..5), prop::option::of("[ab]{0,2}")), 0..300),
        batch in 1usize..50,
    ) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]));
        let xs = Int64Array::from(values.iter().map(|v| v.0).collect::<Vec<_>>());
        let ss = StringArray::from(values.iter().map(|v| v.1.clone()).collect::<Vec<_>>());
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(xs), Arc::new(ss)]).expect("batch");
        let src = MemorySource::try_new("p", schema.clone(), vec![b]).expect("mem");
        let (data, _, r) = Pipeline::new(src)
            .on_null("x", NullAction::Drop)
            .dedup_exact(None)
            .near_duplicates(&["s"])
            .batch_size(batch)
            .progress(false)
            .run_in_memory()
            .expect("run");
        prop_assert_eq!(r.rows_in, values.len() as u64);
        prop_assert_eq!(r.rows_in, r.rows_out + r.rows_quarantined);
        let again = MemorySource::try_new("again", schema, data).expect("mem");
        let (_, _, r2) = Pipeline::new(again).dedup_exact(None).progress(false).run_in_memory().expect("run");
        prop_assert_eq!(r2.duplicates_removed, 0);
        prop_assert_eq!(r2.rows_out, r.rows_out);
    }
}
