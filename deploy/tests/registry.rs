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

#[test]
fn the_stored_trust_policy_holds_for_every_caller() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (k1, k2) = (
        SigningKey::from_seed(&[1; 32]),
        SigningKey::from_seed(&[2; 32]),
    );
    let audit = Arc::new(MemoryAudit::default());
    let store = Arc::new(LocalStore::new(tmp.path().join("registry")).expect("store"));
    let open = |v: Verify| Registry::new(store.clone(), audit.clone(), v);
    let admin = open(Verify::intact());
    // Before a policy: intact files are enough; an unsigned version goes in.
    assert_eq!(admin.trust().expect("trust"), Verify::intact());
    let old = bundle(&tmp.path().join("old"), "1", b"old", None);
    admin.publish(&old, "alice").expect("publish unsigned");
    // Keys are checked before anything is stored.
    let mut bad = Verify::intact();
    bad.trusted_keys = vec!["not-a-key".into()];
    assert!(matches!(
        admin.set_trust(&bad, "root"),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(admin.trust().expect("unchanged"), Verify::intact());
    // The policy: signatures by k1 only (upper-case hex is accepted and normalised).
    admin
        .set_trust(&Verify::signed_by([k1.public_hex().to_uppercase()]), "root")
        .expect("set trust");
    let stored = admin.trust().expect("trust");
    assert!(stored.require_signature);
    assert_eq!(stored.trusted_keys, [k1.public_hex()]);
    let event = audit.events().last().cloned().expect("event");
    assert_eq!(
        (event.action.as_str(), event.model.as_str()),
        ("trust", "*")
    );
    // A caller who asks for nothing more still gets the policy.
    let caller = open(Verify::intact());
    let unsigned = bundle(&tmp.path().join("u"), "2", b"u", None);
    assert!(matches!(
        caller.publish(&unsigned, "bob"),
        Err(Error::Unsigned { .. })
    ));
    let by_k2 = bundle(&tmp.path().join("k2"), "3", b"k2", Some(&k2));
    assert!(matches!(
        caller.publish(&by_k2, "bob"),
        Err(Error::UntrustedKey { .. })
    ));
    let by_k1 = bundle(&tmp.path().join("k1"), "4", b"k1", Some(&k1));
    caller.publish(&by_k1, "bob").expect("signed by k1");
    caller
        .promote("ranker", "production", "4", "bob")
        .expect("promote");
    // The version published before the policy no longer passes: not promoted, not fetched.
    assert!(caller.promote("ranker", "production", "1", "bob").is_err());
    assert!(
        caller
            .fetch("ranker", "1", &tmp.path().join("fetched-1"))
            .is_err()
    );
    caller
        .fetch("ranker", "production", &tmp.path().join("fetched-4"))
        .expect("fetch");
    // A caller trusting only another key cannot loosen the policy.
    let loose = open(Verify::signed_by([k2.public_hex()]));
    assert!(matches!(
        loose.fetch("ranker", "4", &tmp.path().join("loose")),
        Err(Error::InvalidInput { .. })
    ));
}
