//! The registry: publish, versions, aliases, promotion and rollback, all audited; both stores
//! pass the store conformance kit.

use std::path::Path;
use std::sync::Arc;

use aistd_deploy::registry::{LocalStore, MemoryAudit, MemoryStore, Registry};
use aistd_deploy::{Bundle, Error, Manifest, SigningKey, Verify};

fn bundle(root: &Path, version: &str, content: &[u8], key: Option<&SigningKey>) -> Bundle {
    let src = root.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("model.bin"), content).expect("write");
    let m = Manifest::new("ranker", version, "onnx").expect("manifest");
    let mut b = Bundle::create(&root.join(format!("b-{version}")), m, &src).expect("create");
    if let Some(k) = key {
        b.sign(k).expect("sign");
    }
    b
}

#[test]
fn stores_pass_the_conformance_kit() {
    aistd_deploy::conformance::run_all(&MemoryStore::new());
    let tmp = tempfile::tempdir().expect("tmp");
    aistd_deploy::conformance::run_all(&LocalStore::new(tmp.path()).expect("store"));
}

#[test]
fn publish_promote_and_roll_back_with_every_change_audited() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = SigningKey::from_seed(&[5; 32]);
    let audit = Arc::new(MemoryAudit::default());
    let store = Arc::new(LocalStore::new(tmp.path().join("registry")).expect("store"));
    let reg = Registry::new(store, audit.clone(), Verify::signed_by([key.public_hex()]));
    let v = |s: &str, c: &[u8]| bundle(tmp.path(), s, c, Some(&key));
    let (b1, b2, b10) = (v("1.2", b"one"), v("1.9", b"two"), v("1.10", b"ten"));
    for b in [&b10, &b1, &b2] {
        reg.publish(b, "alice").expect("publish");
    }
    // Publishing the same bundle again is a no-op; other content under that version is refused.
    reg.publish(&b1, "alice").expect("idempotent");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let mut clash = bundle(&other, "1.2", b"different", Some(&key));
    clash.sign(&key).expect("sign");
    assert!(matches!(
        reg.publish(&clash, "mallory"),
        Err(Error::AlreadyExists(_))
    ));
    // An unsigned bundle is refused by a registry that requires signatures.
    let unsigned = bundle(&tmp.path().join("u"), "2.0", b"u", None);
    assert!(matches!(
        reg.publish(&unsigned, "bob"),
        Err(Error::Unsigned { .. })
    ));
    assert_eq!(reg.models().expect("models"), ["ranker"]);
    assert_eq!(
        reg.versions("ranker").expect("versions"),
        ["1.2", "1.9", "1.10"]
    );

    assert_eq!(
        reg.promote("ranker", "production", "1.2", "alice")
            .expect("p"),
        None
    );
    assert_eq!(
        reg.promote("ranker", "production", "1.10", "alice")
            .expect("p"),
        Some("1.2".into())
    );
    reg.promote("ranker", "staging", "1.9", "bob").expect("p");
    assert_eq!(reg.resolve("ranker", "production").expect("r"), "1.10");
    let fetched = reg
        .fetch("ranker", "production", &tmp.path().join("fetched"))
        .expect("fetch");
    assert_eq!(
        std::fs::read(fetched.file("model.bin").expect("file")).expect("read"),
        b"ten"
    );
    assert_eq!(fetched.signer(), Some(key.public_hex().as_str()));
    assert_eq!(
        reg.rollback("ranker", "production", "carol").expect("rb"),
        "1.2"
    );
    assert_eq!(reg.resolve("ranker", "production").expect("r"), "1.2");
    assert!(
        reg.rollback("ranker", "production", "carol").is_err(),
        "no earlier version"
    );
    assert!(reg.promote("ranker", "production", "9.9", "carol").is_err());
    assert!(reg.resolve("ranker", "nightly").is_err());

    type Row = (String, String, Option<String>, Option<String>, String);
    let events: Vec<Row> = audit
        .events()
        .into_iter()
        .map(|e| (e.action, e.version, e.alias, e.previous, e.actor))
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        events,
        [
            ("publish".into(), "1.10".into(), None, None, "alice".into()),
            ("publish".into(), "1.2".into(), None, None, "alice".into()),
            ("publish".into(), "1.9".into(), None, None, "alice".into()),
            (
                "promote".into(),
                "1.2".into(),
                s("production"),
                None,
                "alice".into()
            ),
            (
                "promote".into(),
                "1.10".into(),
                s("production"),
                s("1.2"),
                "alice".into()
            ),
            (
                "promote".into(),
                "1.9".into(),
                s("staging"),
                None,
                "bob".into()
            ),
            (
                "rollback".into(),
                "1.2".into(),
                s("production"),
                s("1.10"),
                "carol".into()
            ),
        ]
    );
    assert!(
        audit
            .events()
            .iter()
            .all(|e| e.signer.as_deref() == Some(key.public_hex().as_str()))
    );
}

#[test]
fn a_tampered_stored_version_is_refused_when_fetched_or_promoted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(MemoryStore::new());
    let reg = Registry::new(
        store.clone(),
        Arc::new(MemoryAudit::default()),
        Verify::intact(),
    );
    reg.publish(&bundle(tmp.path(), "1", b"weights", None), "alice")
        .expect("publish");
    use aistd_deploy::registry::BundleStore;
    let key = "models/ranker/versions/1.tar";
    let mut bytes = store.get(key).expect("get").expect("stored");
    let pos = bytes
        .windows(7)
        .position(|w| w == b"weights")
        .expect("content in the archive");
    bytes[pos] ^= 0x20;
    store.put(key, &bytes).expect("put");
    match reg.fetch("ranker", "1", &tmp.path().join("out")) {
        Err(Error::AlteredFile { bundle, file, .. }) => {
            assert_eq!(file, "model.bin");
            assert_eq!(bundle, key);
        }
        other => panic!("expected AlteredFile, got {other:?}"),
    }
    assert!(matches!(
        reg.promote("ranker", "production", "1", "alice"),
        Err(Error::AlteredFile { .. })
    ));
    assert!(reg.aliases("ranker").expect("aliases").is_empty());
}
