//! Bundles: creation, verification that names the file at fault, signatures, archives.

use std::path::{Path, PathBuf};

use aistd_deploy::bundle::{MANIFEST_FILE, SIGNATURE_FILE};
use aistd_deploy::{Bundle, DataType, Error, Manifest, SigningKey, TensorSpec, Verify};
use sha2::{Digest, Sha256};

/// A source directory with a model file and a nested one.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("extra")).expect("dirs");
    std::fs::write(src.join("model.onnx"), b"\x08\x07model bytes").expect("model");
    std::fs::write(src.join("extra/vocab.txt"), b"a\nb\nc\n").expect("vocab");
    src
}

fn manifest() -> Manifest {
    Manifest::new("digits-mlp", "1.0.0", "onnx")
        .expect("manifest")
        .with_input(TensorSpec::new("x", DataType::Fp32, &[-1, 64]).expect("spec"))
        .with_output(TensorSpec::new("probabilities", DataType::Fp32, &[-1, 10]).expect("spec"))
        .with_metadata("trained_by", "aistd-training")
        .with_model_card("https://example.invalid/cards/digits")
}

fn created(root: &Path) -> Bundle {
    Bundle::create(&root.join("bundle"), manifest(), &source(root)).expect("create")
}

#[test]
fn a_bundle_lists_every_file_with_its_digest_and_opens_intact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = created(tmp.path());
    let files = &b.manifest().files;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["extra/vocab.txt", "model.onnx"]
    );
    let want = hex::encode(Sha256::digest(b"\x08\x07model bytes"));
    assert_eq!(files["model.onnx"].sha256, want);
    assert_eq!(files["model.onnx"].size, 13);
    let opened = Bundle::open(b.dir(), &Verify::intact()).expect("open");
    assert_eq!(opened.manifest(), b.manifest());
    assert_eq!(opened.signer(), None);
    // The manifest digest is the SHA-256 of the file as stored.
    let bytes = std::fs::read(b.dir().join(MANIFEST_FILE)).expect("manifest");
    assert_eq!(
        opened.manifest_sha256(),
        hex::encode(Sha256::digest(&bytes))
    );
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(json["format"], "aistd-bundle/1");
    assert_eq!(json["inputs"][0]["datatype"], "FP32");
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!([-1, 64]));
    // Nothing of the staging directory is left beside it.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn verification_names_the_missing_altered_or_unlisted_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = created(tmp.path());
    let dir = b.dir().to_path_buf();
    let vocab = dir.join("extra/vocab.txt");

    std::fs::write(&vocab, b"a\nb\nX\n").expect("alter");
    match Bundle::open(&dir, &Verify::intact()) {
        Err(Error::AlteredFile { file, .. }) => assert_eq!(file, "extra/vocab.txt"),
        other => panic!("expected AlteredFile, got {other:?}"),
    }
    // Same length, other bytes; and a truncation: both altered.
    std::fs::write(&vocab, b"a\nb\n").expect("truncate");
    assert!(matches!(
        Bundle::open(&dir, &Verify::intact()),
        Err(Error::AlteredFile { .. })
    ));
    std::fs::remove_file(&vocab).expect("remove");
    match Bundle::open(&dir, &Verify::intact()) {
        Err(e @ Error::MissingFile { .. }) => {
            assert!(e.to_string().contains("extra/vocab.txt"), "{e}")
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
    std::fs::write(&vocab, b"a\nb\nc\n").expect("restore");
    Bundle::open(&dir, &Verify::intact()).expect("restored");
    std::fs::write(dir.join("extra/unlisted.bin"), b"?").expect("extra");
    match Bundle::open(&dir, &Verify::intact()) {
        Err(Error::UnlistedFile { file, .. }) => assert_eq!(file, "extra/unlisted.bin"),
        other => panic!("expected UnlistedFile, got {other:?}"),
    }
}

#[test]
fn a_malformed_manifest_is_an_error_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = created(tmp.path());
    let path = b.dir().join(MANIFEST_FILE);
    let original = std::fs::read_to_string(&path).expect("read");
    for (edit, needle) in [
        (
            original.replace("aistd-bundle/1", "aistd-bundle/9"),
            "format",
        ),
        (original.replace("\"FP32\"", "\"FLOAT\""), "FLOAT"),
        (original.replace("digits-mlp", "../escape"), "name"),
        (
            original.replacen("\"platform\"", "\"unknown_field\": 1,\n  \"platform\"", 1),
            "unknown_field",
        ),
        ("{ not json".to_string(), "key must be a string"),
    ] {
        std::fs::write(&path, &edit).expect("write");
        match Bundle::open(b.dir(), &Verify::intact()) {
            Err(e @ Error::Malformed { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(MANIFEST_FILE) && text.contains(needle),
                    "{text}"
                )
            }
            other => panic!("expected Malformed naming {needle}, got {other:?}"),
        }
    }
    std::fs::remove_file(&path).expect("rm");
    match Bundle::open(b.dir(), &Verify::intact()) {
        Err(Error::MissingFile { file, .. }) => assert_eq!(file, MANIFEST_FILE),
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn signatures_verify_and_refuse_unsigned_untrusted_and_edited_bundles() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut b = created(tmp.path());
    let dir = b.dir().to_path_buf();
    let key = SigningKey::from_seed(&[7; 32]);
    let other = SigningKey::from_seed(&[8; 32]);

    assert!(matches!(
        Bundle::open(&dir, &Verify::signed_by([key.public_hex()])),
        Err(Error::Unsigned { .. })
    ));
    b.sign(&key).expect("sign");
    let ok = Bundle::open(&dir, &Verify::signed_by([key.public_hex()])).expect("signed");
    assert_eq!(ok.signer(), Some(key.public_hex().as_str()));
    // Any valid signature passes when no keys are pinned; a pinned other key does not.
    Bundle::open(&dir, &Verify::intact()).expect("any signer");
    match Bundle::open(&dir, &Verify::signed_by([other.public_hex()])) {
        Err(Error::UntrustedKey { key: k, .. }) => assert_eq!(k, key.public_hex()),
        other => panic!("expected UntrustedKey, got {other:?}"),
    }
    // Editing the manifest after signing (a new version number: the files are intact).
    let path = dir.join(MANIFEST_FILE);
    let original = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, original.replace("1.0.0", "1.0.1")).expect("edit");
    match Bundle::open(&dir, &Verify::signed_by([key.public_hex()])) {
        Err(e @ Error::BadSignature { .. }) => {
            assert!(e.to_string().contains("manifest changed"), "{e}")
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
    std::fs::write(&path, &original).expect("restore");
    // A signature file claiming the right digest with another key's signature bytes.
    let sig_path = dir.join(SIGNATURE_FILE);
    let mut sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig_path).expect("sig")).expect("json");
    sig["public_key"] = serde_json::Value::String(other.public_hex());
    std::fs::write(&sig_path, serde_json::to_vec(&sig).expect("json")).expect("write");
    match Bundle::open(&dir, &Verify::intact()) {
        Err(e @ Error::BadSignature { .. }) => {
            assert!(e.to_string().contains("not this key's"), "{e}")
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
    std::fs::write(&sig_path, b"not json").expect("garbage");
    assert!(matches!(
        Bundle::open(&dir, &Verify::intact()),
        Err(Error::Malformed { .. })
    ));
}

/// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
#[test]
fn ed25519_matches_rfc_8032_test_vectors() {
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, message, signature) in cases {
        let key = SigningKey::from_hex(secret).expect("key");
        assert_eq!(key.public_hex(), public);
        let message = hex::decode(message).expect("hex");
        assert_eq!(hex::encode(key.sign(&message)), signature);
        aistd_deploy::sign::verify(public, &message, &hex::decode(signature).expect("hex"))
            .expect("verifies");
        let mut wrong = message.clone();
        wrong.push(0);
        assert!(
            aistd_deploy::sign::verify(public, &wrong, &hex::decode(signature).expect("hex"))
                .is_err()
        );
    }
}

#[test]
fn keys_save_privately_load_back_and_stay_out_of_debug_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = SigningKey::from_seed(&[42; 32]);
    let path = tmp.path().join("signing.key");
    key.save(&path).expect("save");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(matches!(key.save(&path), Err(Error::AlreadyExists(_))));
    let back = SigningKey::load(&path).expect("load");
    assert_eq!(back.public_hex(), key.public_hex());
    let shown = format!("{key:?}");
    assert!(shown.contains(&key.public_hex()), "{shown}");
    assert!(!shown.contains(&hex::encode([42u8; 32])), "{shown}");
    std::fs::write(tmp.path().join("bad.key"), "xyz").expect("write");
    match SigningKey::load(&tmp.path().join("bad.key")) {
        Err(e) => assert!(e.to_string().contains("bad.key"), "{e}"),
        Ok(_) => panic!("a bad key loaded"),
    }
}

#[test]
fn archives_round_trip_deterministically_and_refuse_damage() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut b = created(tmp.path());
    let key = SigningKey::from_seed(&[1; 32]);
    b.sign(&key).expect("sign");
    let archive = tmp.path().join("bundle.tar");
    b.pack(&archive).expect("pack");
    assert!(matches!(b.pack(&archive), Err(Error::AlreadyExists(_))));
    let again = tmp.path().join("again.tar");
    b.pack(&again).expect("pack again");
    assert_eq!(
        std::fs::read(&archive).expect("a"),
        std::fs::read(&again).expect("b"),
        "equal bundles give equal archives"
    );
    let out = tmp.path().join("unpacked");
    let u = Bundle::unpack(&archive, &out, &Verify::signed_by([key.public_hex()])).expect("unpack");
    assert_eq!(u.manifest(), b.manifest());
    assert_eq!(u.dir(), out);
    assert_eq!(u.signer(), Some(key.public_hex().as_str()));

    // Truncated in the middle of a file's data.
    let bytes = std::fs::read(&archive).expect("read");
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 100]).expect("write");
    let out2 = tmp.path().join("from-cut");
    assert!(Bundle::unpack(&cut, &out2, &Verify::intact()).is_err());
    assert!(!out2.exists(), "nothing is left behind");
    // A flipped byte inside the model file's data: verification names it.
    let pos = bytes
        .windows(11)
        .position(|w| w == b"model bytes")
        .expect("data in the archive");
    let mut flipped = bytes.clone();
    flipped[pos] ^= 1;
    let bad = tmp.path().join("flipped.tar");
    std::fs::write(&bad, &flipped).expect("write");
    match Bundle::unpack(&bad, &tmp.path().join("from-flipped"), &Verify::intact()) {
        Err(Error::AlteredFile { bundle, file, .. }) => {
            assert_eq!(file, "model.onnx");
            assert!(bundle.ends_with("flipped.tar"), "{bundle}");
        }
        other => panic!("expected AlteredFile, got {other:?}"),
    }
    assert!(!tmp.path().join("from-flipped").exists());
}

#[test]
fn bad_names_and_sources_are_refused() {
    for bad in ["", "../up", "a/b", ".hidden", "white space"] {
        assert!(
            Manifest::new(bad, "1", "onnx").is_err(),
            "name {bad:?} accepted"
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    assert!(Bundle::create(&tmp.path().join("b"), manifest(), &empty).is_err());
    let src = source(tmp.path());
    std::fs::write(src.join(MANIFEST_FILE), b"{}").expect("reserved");
    match Bundle::create(&tmp.path().join("b"), manifest(), &src) {
        Err(e) => assert!(e.to_string().contains("reserves"), "{e}"),
        Ok(_) => panic!("a reserved name was bundled"),
    }
    assert!(!tmp.path().join("b").exists());
    std::fs::remove_file(src.join(MANIFEST_FILE)).expect("rm");
    let out = tmp.path().join("b");
    Bundle::create(&out, manifest(), &src).expect("create");
    assert!(matches!(
        Bundle::create(&out, manifest(), &src),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn tensor_specs_parse_and_check() {
    let s: TensorSpec = "input:FP32:-1,64".parse().expect("spec");
    assert_eq!(
        s,
        TensorSpec::new("input", DataType::Fp32, &[-1, 64]).expect("spec")
    );
    assert!(s.accepts(&[8, 64]));
    assert!(!s.accepts(&[8, 63]));
    assert!(!s.accepts(&[64]));
    let scalar: TensorSpec = "n:INT64:".parse().expect("scalar");
    assert!(scalar.shape.is_empty() && scalar.accepts(&[]));
    for bad in ["x:FLOAT:1", "x:FP32:a", "x:FP32:-2", "x", ":FP32:1"] {
        assert!(bad.parse::<TensorSpec>().is_err(), "{bad} accepted");
    }
    for d in DataType::ALL {
        assert_eq!(d.name().parse::<DataType>().expect("round trip"), d);
    }
    assert_eq!(DataType::Bf16.size(), Some(2));
    assert_eq!(DataType::Bytes.size(), None);
}
