//! Envelope encryption: keyrings, streaming file encryption, column encryption, tokenization.

use std::io::Read;
use std::sync::Arc;

use aistd_governance::crypto::{
    ColumnEncryptor, DecryptReader, EncryptedSource, KeyProvider, Keyring, LocalKeyProvider,
    SecretKey, Tokenizer, decrypt_columns, decrypt_file, encrypt_file, encrypt_stream,
    encrypted_columns,
};
use aistd_governance::{
    DataSource, DataSourceExt, Error, MemorySource, conformance, write_ipc_file,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;

const MASTER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn provider() -> Box<dyn KeyProvider> {
    Box::new(LocalKeyProvider::from_hex("test", MASTER).expect("master"))
}

fn keyring() -> Keyring {
    Keyring::generate(provider()).expect("keyring")
}

fn seal(data: &[u8], k: &Keyring, chunk: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt_stream(data, &mut out, k, chunk).expect("encrypt");
    out
}

fn unseal(data: &[u8], k: &Keyring) -> Result<Vec<u8>, Error> {
    let mut r = DecryptReader::new(data, k, "test")?;
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => match e.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(e)) => Err(*e),
            other => panic!("unexpected io error {other:?}"),
        },
    }
}

fn crypto_offset(r: Result<Vec<u8>, Error>) -> Option<u64> {
    match r {
        Err(Error::Crypto { byte_offset, .. }) => byte_offset,
        other => panic!("expected a crypto error, got {other:?}"),
    }
}

#[test]
fn streams_round_trip_at_every_boundary() {
    let k = keyring();
    for len in [0usize, 1, 63, 64, 65, 128, 3 * 64 + 5, 10_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = seal(&data, &k, 64);
        // Header + one tag per chunk, the last chunk always partial.
        let header = 31 + k.primary().0.len();
        assert_eq!(
            sealed.len(),
            header + len + 16 * (len / 64 + 1),
            "len {len}"
        );
        assert_eq!(unseal(&sealed, &k).expect("decrypt"), data, "len {len}");
    }
}

#[test]
fn truncation_and_reordering_are_detected_with_offsets() {
    let k = keyring();
    let data = vec![42u8; 64 * 4 + 10];
    let sealed = seal(&data, &k, 64);
    let header = 31 + k.primary().0.len();
    let chunk = 64 + 16;
    // Cut at a chunk boundary: the final chunk is missing.
    let cut = &sealed[..header + 2 * chunk];
    assert_eq!(
        crypto_offset(unseal(cut, &k)),
        Some((header + 2 * chunk) as u64)
    );
    // Cut inside a chunk.
    let cut = &sealed[..header + 2 * chunk + 30];
    assert_eq!(
        crypto_offset(unseal(cut, &k)),
        Some((header + 2 * chunk) as u64)
    );
    // Two chunks swapped.
    let mut swapped = sealed.clone();
    let (a, b) = (header + chunk, header + 2 * chunk);
    let first = swapped[a..b].to_vec();
    swapped.copy_within(b..b + chunk, a);
    swapped[b..b + chunk].copy_from_slice(&first);
    assert_eq!(crypto_offset(unseal(&swapped, &k)), Some(a as u64));
    // The final chunk dropped and the one before it passed off as final: not authenticated.
    let mut no_last = sealed[..header + 4 * chunk].to_vec();
    no_last.truncate(no_last.len() - 1);
    assert!(unseal(&no_last, &k).is_err());
    // Not an encrypted file at all.
    assert_eq!(crypto_offset(unseal(b"PAR1 not ours", &k)), Some(0));
}

#[test]
fn rotation_keeps_old_ciphertexts_readable_and_removal_does_not() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("keys.json");
    let mut k = Keyring::create(&path, provider()).expect("create");
    let old_id = k.primary().0.to_string();
    let old = seal(b"before rotation", &k, 1024);
    let new_id = k.rotate().expect("rotate");
    assert_ne!(old_id, new_id);
    let new = seal(b"after rotation", &k, 1024);
    // Reopen from disk: both keys are there, the new one primary.
    let k = Keyring::open(&path, provider()).expect("open");
    let infos = k.keys();
    assert_eq!(infos.len(), 2);
    assert!(infos[1].primary && !infos[0].primary);
    assert_eq!(unseal(&old, &k).expect("old"), b"before rotation");
    assert_eq!(unseal(&new, &k).expect("new"), b"after rotation");
    let mut k = k;
    assert!(k.remove(&new_id).is_err(), "primary cannot be removed");
    k.remove(&old_id).expect("remove old");
    let k = Keyring::open(&path, provider()).expect("reopen");
    match unseal(&old, &k) {
        Err(Error::KeyNotFound { key_id, .. }) => assert_eq!(key_id, old_id),
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    // Another keyring with its own keys cannot read it either.
    assert!(unseal(&new, &keyring()).is_err());
}

#[test]
fn wrong_master_key_and_malformed_keyrings_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("keys.json");
    Keyring::create(&path, provider()).expect("create");
    let other = LocalKeyProvider::from_hex("other", &"ab".repeat(32)).expect("master");
    let err = Keyring::open(&path, Box::new(other)).expect_err("wrong master");
    assert!(matches!(err, Error::Crypto { .. }), "{err}");
    assert!(err.to_string().contains("keys.json"), "{err}");
    assert!(
        Keyring::create(&path, provider()).is_err(),
        "refuses to overwrite"
    );

    std::fs::write(
        &path,
        "{\n  \"format\": \"aistd-keyring\",\n  \"version\": 1,\n  oops\n}",
    )
    .expect("write");
    let err = Keyring::open(&path, provider()).expect_err("malformed");
    let text = err.to_string();
    assert!(
        text.contains("keys.json") && text.contains("line 4"),
        "{text}"
    );
    assert!(LocalKeyProvider::from_hex("short", "abcd").is_err());
}

#[test]
fn key_material_never_reaches_debug_output() {
    let k = keyring();
    let (_, key) = k.primary();
    let secret_hex = hex::encode(key.expose());
    let provider = LocalKeyProvider::from_hex("p", MASTER).expect("master");
    let outputs = [
        format!("{k:?}"),
        format!("{key:?}"),
        format!("{provider:?}"),
        format!("{:?}", Tokenizer::new(&k, "email")),
        format!("{:?}", SecretKey::from_bytes([7; 32])),
    ];
    for o in outputs {
        assert!(!o.contains(&secret_hex) && !o.contains(MASTER), "{o}");
        assert!(!o.contains("[7, 7"), "{o}");
    }
}

#[test]
fn master_key_files_and_environment_variables_load() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("master.key");
    let a = LocalKeyProvider::create_file(&path).expect("create");
    assert!(
        LocalKeyProvider::create_file(&path).is_err(),
        "never overwrites a master key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "master key file is private: {mode:o}");
    }
    let b = LocalKeyProvider::from_file(&path).expect("load");
    let key = SecretKey::generate().expect("key");
    let wrapped = a.wrap("k-1", &key).expect("wrap");
    assert_eq!(
        b.unwrap("k-1", &wrapped).expect("unwrap").expose(),
        key.expose()
    );
    assert!(
        b.unwrap("k-2", &wrapped).is_err(),
        "key id is authenticated"
    );
    let missing = LocalKeyProvider::from_env("AISTD_TEST_SURELY_UNSET_MASTER");
    assert!(matches!(missing, Err(Error::Crypto { .. })));
}

#[test]
fn files_encrypt_atomically_and_failed_decryption_writes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let k = keyring();
    let plain = dir.path().join("p.bin");
    let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&plain, &data).expect("write");
    let enc = dir.path().join("p.bin.enc");
    assert_eq!(
        encrypt_file(&plain, &enc, &k, 16 * 1024).expect("enc"),
        data.len() as u64
    );
    let out = dir.path().join("p.out");
    decrypt_file(&enc, &out, &k).expect("dec");
    assert_eq!(std::fs::read(&out).expect("read"), data);
    // Corrupt one byte in the middle: decryption fails and leaves no output behind.
    let mut bytes = std::fs::read(&enc).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&enc, &bytes).expect("write");
    let out2 = dir.path().join("p2.out");
    let err = decrypt_file(&enc, &out2, &k).expect_err("corrupt");
    assert!(
        matches!(
            err,
            Error::Crypto {
                byte_offset: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(!out2.exists());
}

fn table() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("n", DataType::Int32, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![
            Some("Ada"),
            None,
            Some("Grace ✓"),
            Some(""),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(36),
            Some(i64::MIN),
            None,
            Some(i64::MAX),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(1.5),
            Some(f64::NAN),
            Some(-0.0),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(0),
            Some(19_000),
            None,
            Some(-1),
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1),
            None,
            Some(-5),
            Some(1 << 50),
        ])),
        Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
    ];
    RecordBatch::try_new(schema, cols).expect("batch")
}

#[test]
fn columns_round_trip_with_their_types_and_nulls() {
    let k = keyring();
    let batch = table();
    let names: Vec<&str> = ["name", "age", "score", "ok", "day", "at", "n"].to_vec();
    let enc = ColumnEncryptor::new(&k)
        .expect("enc")
        .encrypt(&batch, &names)
        .expect("encrypt");
    assert_eq!(encrypted_columns(&enc.schema()).len(), 7);
    for c in enc.columns() {
        assert_eq!(c.data_type(), &DataType::Binary);
    }
    // Nulls stay null; values are unreadable.
    assert!(enc.column(0).is_null(1));
    let dec = decrypt_columns(&enc, &k, None).expect("decrypt");
    assert_eq!(dec.schema(), batch.schema());
    for i in 0..batch.num_columns() {
        assert_eq!(
            dec.column(i).to_data(),
            batch.column(i).to_data(),
            "column {i}"
        );
    }
    // Only some columns.
    let partial = decrypt_columns(&enc, &k, Some(&["age"])).expect("partial");
    assert_eq!(partial.column(1).data_type(), &DataType::Int64);
    assert_eq!(partial.column(0).data_type(), &DataType::Binary);
    // Sliced input works too.
    let sliced = batch.slice(1, 3);
    let enc2 = ColumnEncryptor::new(&k)
        .expect("enc")
        .encrypt(&sliced, &["age", "ok"])
        .expect("encrypt");
    let dec2 = decrypt_columns(&enc2, &k, None).expect("decrypt");
    assert_eq!(dec2.column(1).to_data(), sliced.column(1).to_data());
    assert_eq!(dec2.column(3).to_data(), sliced.column(3).to_data());
}

#[test]
fn a_changed_or_moved_encrypted_value_is_detected() {
    let k = keyring();
    let batch = table();
    let enc = ColumnEncryptor::new(&k)
        .expect("enc")
        .encrypt(&batch, &["name", "age"])
        .expect("encrypt");
    // Move the ciphertexts of `age` into `name`: the AAD binds each value to its column.
    let mut cols = enc.columns().to_vec();
    cols[0] = cols[1].clone();
    let moved = RecordBatch::try_new(enc.schema(), cols).expect("batch");
    let err = decrypt_columns(&moved, &k, Some(&["name"])).expect_err("moved");
    assert!(err.to_string().contains("row 0"), "{err}");
    // Flip one byte of one value.
    let bin = enc
        .column(1)
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .expect("bin");
    let mut values: Vec<Option<Vec<u8>>> = (0..bin.len())
        .map(|i| (!bin.is_null(i)).then(|| bin.value(i).to_vec()))
        .collect();
    if let Some(v) = values[3].as_mut() {
        v[30] ^= 4;
    }
    let mut cols = enc.columns().to_vec();
    cols[1] = Arc::new(arrow_array::BinaryArray::from_iter(values));
    let flipped = RecordBatch::try_new(enc.schema(), cols).expect("batch");
    let err = decrypt_columns(&flipped, &k, None).expect_err("flipped");
    assert!(err.to_string().contains("`age`, row 3"), "{err}");
}

#[test]
fn tokens_are_deterministic_per_key_and_context() {
    let k = keyring();
    let t = Tokenizer::new(&k, "email");
    assert_eq!(t.token(b"ada@example.com"), t.token(b"ada@example.com"));
    assert_ne!(t.token(b"ada@example.com"), t.token(b"grace@example.com"));
    assert_ne!(
        t.token(b"ada@example.com"),
        Tokenizer::new(&k, "name").token(b"ada@example.com")
    );
    assert_ne!(
        t.token(b"x"),
        Tokenizer::new(&keyring(), "email").token(b"x")
    );
    let tok = t.token(b"x");
    assert!(tok.starts_with("tok_") && tok.len() == 36, "{tok}");
    let out = t.tokenize(&table(), "age").expect("tokenize");
    let col = out
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    assert!(col.is_null(2));
    assert_eq!(col.value(0), t.token(b"36"));
    // Stable after rotation when built with the same key id.
    let mut k2 = Keyring::generate(provider()).expect("k");
    let first = k2.primary().0.to_string();
    let before = Tokenizer::new(&k2, "email").token(b"z");
    k2.rotate().expect("rotate");
    assert_eq!(
        Tokenizer::with_key(&k2, &first, "email")
            .expect("key")
            .token(b"z"),
        before
    );
}

#[test]
fn encrypted_arrow_files_scan_as_a_data_source() {
    let dir = tempfile::tempdir().expect("dir");
    let k = Arc::new(keyring());
    let batch = table();
    let src = MemorySource::try_new("t", batch.schema(), vec![batch.clone(), batch.slice(1, 2)])
        .expect("src");
    let plain = dir.path().join("t.arrow");
    write_ipc_file(&src, &plain).expect("write");
    let enc = dir.path().join("t.arrow.enc");
    // A tiny chunk size puts chunk boundaries inside the magic's padding and every message.
    encrypt_file(&plain, &enc, &k, 7).expect("encrypt");
    let tiny = EncryptedSource::open(&enc, k.clone()).expect("open");
    assert_eq!(tiny.count_rows().expect("rows"), 6);
    encrypt_file(&plain, &enc, &k, 1000).expect("encrypt");
    let source = EncryptedSource::open(&enc, k.clone()).expect("open");
    assert_eq!(source.schema(), batch.schema());
    assert_eq!(source.count_rows().expect("rows"), 6);
    conformance::run_all(&source).expect("conformance");
    // Plaintext that is not Arrow IPC is refused with a clear error.
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a,b\n1,2\n").expect("csv");
    encrypt_file(&csv, dir.path().join("t.csv.enc"), &k, 1000).expect("encrypt");
    let err = EncryptedSource::open(dir.path().join("t.csv.enc"), k.clone()).expect_err("csv");
    assert!(matches!(err, Error::NotSupported { .. }), "{err}");
    // A corrupted file fails the scan with a typed error, not a panic.
    let mut bytes = std::fs::read(&enc).expect("read");
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    std::fs::write(&enc, &bytes).expect("write");
    let source = EncryptedSource::open(&enc, k).expect("header still fine");
    let err = source.count_rows().expect_err("corrupt");
    assert!(err.to_string().contains("fails authentication"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_single_flipped_byte_is_detected(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1u32..200,
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let k = keyring();
        let sealed = seal(&data, &k, chunk);
        prop_assert_eq!(unseal(&sealed, &k).expect("round trip"), data);
        let mut bad = sealed.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(unseal(&bad, &k).is_err(), "flip at {} of {} undetected", i, bad.len());
    }

    #[test]
    fn encrypted_values_round_trip(values in proptest::collection::vec(proptest::option::of(".{0,40}"), 0..50)) {
        let k = keyring();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values))]).expect("batch");
        let enc = ColumnEncryptor::new(&k).expect("enc").encrypt(&batch, &["s"]).expect("encrypt");
        let dec = decrypt_columns(&enc, &k, None).expect("decrypt");
        prop_assert_eq!(dec, batch);
    }
}
