//! Every `DataSource` runs the conformance kit; CSV options and bad input get typed errors.

mod common;

use std::io::Write;
use std::sync::Arc;

use aistd_governance::conformance::run_all;
use aistd_governance::source::{FileKind, detect_kind};
use aistd_governance::{
    CsvOptions, CsvSource, DataSource, DataSourceExt, Error, IpcFileSource, IpcStreamSource,
    ParquetSource, ScanOptions, open_path,
};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type};
use arrow_schema::{DataType, Field, Schema};
use common::{concat, loans, write_ipc_file, write_ipc_stream, write_parquet};

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write");
    p
}

#[test]
fn every_source_passes_the_conformance_kit_and_reads_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mem, truth) = loans(2500, 3);
    run_all(&mem).expect("memory");
    let csv = dir.path().join("loans.csv");
    let g = aistd_governance::generate::LoanGenerator::new(
        aistd_governance::generate::GeneratorConfig::default()
            .with_rows(2500)
            .with_seed(3),
    );
    assert_eq!(g.write_csv(&csv).expect("csv"), truth);
    let (ipc, stream, pq) = (
        dir.path().join("l.arrow"),
        dir.path().join("l.arrows"),
        dir.path().join("l.parquet"),
    );
    write_ipc_file(&ipc, &mem);
    write_ipc_stream(&stream, &mem);
    write_parquet(&pq, &mem);
    let want = concat(&mem.collect().expect("collect"));
    let sources: Vec<Box<dyn DataSource>> = vec![
        Box::new(CsvSource::open(&csv, CsvOptions::default()).expect("csv")),
        Box::new(IpcFileSource::open(&ipc).expect("ipc")),
        Box::new(IpcStreamSource::open(&stream).expect("stream")),
        Box::new(ParquetSource::open(&pq).expect("parquet")),
    ];
    for src in &sources {
        run_all(src.as_ref()).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        let got = concat(&src.collect().expect("collect"));
        assert_eq!(got.num_rows(), want.num_rows(), "{src:?}");
        assert_eq!(
            got.columns(),
            want.columns(),
            "{src:?}: values differ from the generated table"
        );
    }
    assert_eq!(detect_kind(&csv).expect("kind"), FileKind::Csv);
    assert_eq!(detect_kind(&ipc).expect("kind"), FileKind::ArrowFile);
    assert_eq!(detect_kind(&stream).expect("kind"), FileKind::ArrowStream);
    assert_eq!(detect_kind(&pq).expect("kind"), FileKind::Parquet);
    let opened = open_path(&pq, CsvOptions::default()).expect("open");
    assert_eq!(opened.count_rows().expect("count"), 2500);
}

#[test]
fn csv_infers_types_and_honours_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        &dir,
        "t.tsv",
        b"id;score;when;ok;name;zip\n1; 2.5 ;2024-01-31;true;\"Lee; Ann\";00123\n2;NA;2024-02-01;FALSE; Bo ;04321\n3;NaN;;true;\"say \"\"hi\"\"\";+1555\n",
    );
    let opts = CsvOptions::default()
        .with_delimiter(b';')
        .with_trim(true)
        .with_null_tokens(["", "NA"]);
    let src = CsvSource::open(&p, opts).expect("open");
    let types: Vec<DataType> = src
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Float64,
            DataType::Date32,
            DataType::Boolean,
            DataType::Utf8,
            DataType::Utf8
        ]
    );
    let b = concat(&src.collect().expect("scan"));
    let score = b.column(1).as_primitive::<Float64Type>();
    assert_eq!(score.value(0), 2.5);
    assert!(score.is_null(1));
    assert!(score.value(2).is_nan());
    assert_eq!(b.column(2).as_primitive::<Date32Type>().value(0), 19_753);
    assert!(b.column(2).is_null(2));
    let names = b.column(4).as_string::<i32>();
    assert_eq!(
        (names.value(0), names.value(1), names.value(2)),
        ("Lee; Ann", "Bo", "say \"hi\"")
    );
    assert_eq!(
        b.column(5).as_string::<i32>().value(0),
        "00123",
        "leading zeros keep a column text"
    );

    // Without trimming, " 2.5 " is not a number: the column stays text.
    let untrimmed = CsvSource::open(
        &p,
        CsvOptions::default()
            .with_delimiter(b';')
            .with_null_tokens(["", "NA"]),
    );
    assert_eq!(
        untrimmed.expect("open").schema().field(1).data_type(),
        &DataType::Utf8
    );

    // Dates and timestamps in one column: a timestamp column, dates at midnight.
    let mixed = write(&dir, "m.csv", b"t\n2024-01-01\n2024-01-02 10:00:00\n");
    let src = CsvSource::open(&mixed, CsvOptions::default()).expect("open");
    let b = concat(&src.collect().expect("scan"));
    let ts = b
        .column(0)
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(ts.values(), &[1_704_067_200_000_000, 1_704_189_600_000_000]);

    let headerless = write(&dir, "h.csv", b"1,x\n2,y\n");
    let src = CsvSource::open(&headerless, CsvOptions::default().with_header(false)).expect("open");
    assert_eq!(src.schema().field(0).name(), "column_1");
    assert_eq!(src.count_rows().expect("count"), 2);
    let b = concat(&src.collect().expect("scan"));
    assert_eq!(b.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
}

fn csv_error(bytes: &[u8], options: CsvOptions) -> Error {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "bad.csv", bytes);
    match CsvSource::open(&p, options) {
        Err(e) => e,
        Ok(src) => match src
            .scan(&ScanOptions::all().with_batch_size(2))
            .expect("scan")
            .find_map(Result::err)
        {
            Some(e) => e,
            None => panic!("no error for {:?}", String::from_utf8_lossy(bytes)),
        },
    }
}

#[test]
fn bad_csv_gets_typed_errors_with_positions() {
    let infer_two = CsvOptions::default().with_infer_rows(2);
    /// (input, options, record, line, column, the reason contains)
    type Case<'a> = (&'a [u8], CsvOptions, u64, u64, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        // (input, options, record, line, column, reason contains)
        (
            b"a,b\n1,2\n3\n",
            CsvOptions::default(),
            2,
            3,
            None,
            "expected 2 fields, found 1",
        ),
        (
            b"a,b\n1,2\n3,4,5\n",
            CsvOptions::default(),
            2,
            3,
            None,
            "expected 2 fields, found 3",
        ),
        (
            b"a,b\n1,\"x\n2,3\n",
            CsvOptions::default(),
            1,
            2,
            None,
            "unterminated quoted field",
        ),
        (
            b"a,b\n1,x\n2,y\n3,\xff\xfe\n",
            infer_two.clone(),
            3,
            4,
            Some("b"),
            "invalid UTF-8",
        ),
        (
            b"a,b\n1,x\n2,y\nthree,z\n",
            infer_two,
            3,
            4,
            Some("a"),
            "`three` is not a valid int64",
        ),
    ];
    for (input, opts, record, line, column, reason) in cases {
        match csv_error(input, opts) {
            Error::Csv {
                record: r,
                line: l,
                column: c,
                reason: why,
                path,
                ..
            } => {
                assert!(path.ends_with("bad.csv"));
                assert_eq!((r, l, c.as_deref()), (record, line, column), "{why}");
                assert!(why.contains(reason), "{why:?} should contain {reason:?}");
            }
            other => panic!("expected Error::Csv, got {other:?}"),
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("c", DataType::Utf8, true),
    ]));
    let e = csv_error(b"a,b\n1,2\n", CsvOptions::default().with_schema(schema));
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("bad.csv"), "{e}");
}

#[test]
fn truncated_arrow_and_parquet_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mem, _) = loans(3000, 5);
    for (name, write) in [
        (
            "t.arrow",
            write_ipc_file as fn(&std::path::Path, &aistd_governance::MemorySource),
        ),
        ("t.parquet", write_parquet),
        ("t.arrows", write_ipc_stream),
    ] {
        let p = dir.path().join(name);
        write(&p, &mem);
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).expect("truncate");
        let err = match open_path(&p, CsvOptions::default()) {
            Err(e) => e,
            Ok(src) => src
                .scan(&ScanOptions::all())
                .err()
                .or_else(|| {
                    src.scan(&ScanOptions::all())
                        .expect("scan")
                        .find_map(Result::err)
                })
                .unwrap_or_else(|| panic!("{name}: truncation not detected")),
        };
        assert!(matches!(err, Error::Format { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}
