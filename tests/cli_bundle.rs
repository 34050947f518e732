//! `aistd bundle`: keygen, create (signed), verify, inspect, pack, unpack, and the failures.

mod common;

use std::path::Path;

use common::{aistd, ok};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn bundles_are_created_signed_verified_packed_and_refused_when_damaged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("model");
    std::fs::create_dir_all(src.join("assets")).expect("dirs");
    std::fs::write(src.join("model.onnx"), b"onnx bytes").expect("model");
    std::fs::write(src.join("assets/labels.txt"), b"cat\ndog\n").expect("labels");
    let key = tmp.path().join("signing.key");
    let public = ok(&aistd(&["bundle", "keygen", "--out", s(&key)]))
        .trim()
        .to_string();
    assert_eq!(public.len(), 64, "{public}");
    let other = tmp.path().join("other.key");
    let other_public = ok(&aistd(&["bundle", "keygen", "--out", s(&other)]))
        .trim()
        .to_string();

    let dir = tmp.path().join("bundle");
    let created: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&dir),
        "--name",
        "pets",
        "--version",
        "2",
        "--platform",
        "onnx",
        "--input",
        "image:UINT8:-1,32,32,3",
        "--output",
        "label:BYTES:-1",
        "--metadata",
        "owner=ml-team",
        "--sign",
        s(&key),
        "--json",
    ])))
    .expect("json");
    assert_eq!(created["signer"], public.as_str());
    assert_eq!(created["manifest"]["inputs"][0]["datatype"], "UINT8");
    assert_eq!(created["manifest"]["metadata"]["owner"], "ml-team");
    assert_eq!(
        created["manifest"]["files"]
            .as_object()
            .expect("files")
            .len(),
        2
    );

    let verified = ok(&aistd(&[
        "bundle",
        "verify",
        s(&dir),
        "--trusted-key",
        &public,
    ]));
    assert!(
        verified.starts_with("OK ") && verified.contains(&public),
        "{verified}"
    );
    let shown = ok(&aistd(&["bundle", "inspect", s(&dir)]));
    assert!(
        shown.contains("pets:2 (onnx)") && shown.contains("assets/labels.txt"),
        "{shown}"
    );

    let archive = tmp.path().join("pets.tar");
    ok(&aistd(&["bundle", "pack", s(&dir), "--out", s(&archive)]));
    let from_archive: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
        "bundle",
        "verify",
        s(&archive),
        "--require-signature",
        "--json",
    ])))
    .expect("json");
    assert_eq!(from_archive["verified"], true);
    assert_eq!(from_archive["manifest"], created["manifest"]);
    let unpacked = tmp.path().join("unpacked");
    ok(&aistd(&[
        "bundle",
        "unpack",
        s(&archive),
        "--out",
        s(&unpacked),
        "--trusted-key",
        &public,
    ]));
    assert!(unpacked.join("assets/labels.txt").exists());

    // Failures exit 1 and name what is wrong.
    let untrusted = aistd(&["bundle", "verify", s(&dir), "--trusted-key", &other_public]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("not trusted"));
    std::fs::write(dir.join("assets/labels.txt"), b"cat\ncow\n").expect("tamper");
    let tampered = aistd(&["bundle", "verify", s(&dir)]);
    assert_eq!(tampered.status.code(), Some(1));
    let err = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        err.contains("FAILED") && err.contains("assets/labels.txt"),
        "{err}"
    );
    // A second create into the same directory, and a bad tensor spec, are errors (exit 2).
    let again = aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&dir),
        "--name",
        "pets",
        "--version",
        "3",
        "--platform",
        "python",
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad_spec = aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&tmp.path().join("b2")),
        "--name",
        "pets",
        "--version",
        "3",
        "--platform",
        "onnx",
        "--input",
        "x:FLOAT32:1",
    ]);
    assert_eq!(bad_spec.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_spec.stderr).contains("FLOAT32"));
    assert!(!tmp.path().join("b2").exists());
}

#[test]
fn onnx_bundles_take_their_signature_from_the_model_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("model");
    std::fs::create_dir_all(&src).expect("dir");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tests/data/digits_logreg.onnx");
    std::fs::copy(&fixture, src.join("digits.onnx")).expect("copy");
    let dir = tmp.path().join("bundle");
    let created: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&dir),
        "--name",
        "digits",
        "--version",
        "1",
        "--platform",
        "onnx",
        "--json",
    ])))
    .expect("json");
    let m = &created["manifest"];
    assert_eq!(m["inputs"][0]["name"], "X");
    assert_eq!(m["inputs"][0]["datatype"], "FP32");
    assert_eq!(m["inputs"][0]["shape"], serde_json::json!([-1, 64]));
    assert_eq!(m["outputs"][0]["name"], "label");
    assert_eq!(m["outputs"][0]["datatype"], "INT64");
    assert_eq!(m["outputs"][1]["name"], "probabilities");
    assert_eq!(m["outputs"][1]["shape"], serde_json::json!([-1, 10]));
    // Without a model file there is nothing to read the signature from.
    std::fs::remove_file(src.join("digits.onnx")).expect("rm");
    std::fs::write(src.join("README"), b"no model").expect("write");
    let out = aistd(&[
        "bundle",
        "create",
        "--from",
        s(&src),
        "--out",
        s(&tmp.path().join("other")),
        "--name",
        "digits",
        "--version",
        "1",
        "--platform",
        "onnx",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no .onnx file"), "{err}");
}
