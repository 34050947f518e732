//! Checks any [`BundleStore`] implementation can run (feature `conformance`): each function
//! names the clause of the trait's Contract it checks, and panics with the reason when the
//! store breaks it.

use crate::registry::BundleStore;

/// Runs every check on `store`, which must be empty.
pub fn run_all(store: &dyn BundleStore) {
    get_of_an_unwritten_key_is_none(store);
    put_replaces_whole_objects(store);
    put_if_absent_writes_once(store);
    list_returns_every_key_under_a_prefix_sorted(store);
}

/// Contract 3: `get` of a key never written is `Ok(None)`.
pub fn get_of_an_unwritten_key_is_none(store: &dyn BundleStore) {
    assert_eq!(
        store.get("conformance/never/written").expect("get"),
        None,
        "get of an unwritten key"
    );
}

/// Contract 1: `put` replaces an object whole.
pub fn put_replaces_whole_objects(store: &dyn BundleStore) {
    store
        .put("conformance/put/a", b"first, longer")
        .expect("put");
    store.put("conformance/put/a", b"second").expect("put");
    assert_eq!(
        store.get("conformance/put/a").expect("get").as_deref(),
        Some(&b"second"[..]),
        "put must replace the whole object"
    );
}

/// Contract 2: `put_if_absent` writes only when no object has the key, and says so.
pub fn put_if_absent_writes_once(store: &dyn BundleStore) {
    assert!(store.put_if_absent("conformance/once", b"1").expect("put"));
    assert!(!store.put_if_absent("conformance/once", b"2").expect("put"));
    assert_eq!(
        store.get("conformance/once").expect("get").as_deref(),
        Some(&b"1"[..]),
        "put_if_absent must not replace"
    );
    // Concurrent writers: exactly one wins.
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    store
                        .put_if_absent("conformance/race", format!("{i}").as_bytes())
                        .expect("put")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().expect("thread")))
            .sum()
    });
    assert_eq!(wins, 1, "exactly one concurrent put_if_absent must win");
}

/// Contract 3: `list` returns every key under a prefix, sorted.
pub fn list_returns_every_key_under_a_prefix_sorted(store: &dyn BundleStore) {
    for k in [
        "conformance/list/b",
        "conformance/list/a/x",
        "conformance/listing",
    ] {
        store.put(k, b".").expect("put");
    }
    assert_eq!(
        store.list("conformance/list/").expect("list"),
        ["conformance/list/a/x", "conformance/list/b"],
        "list under a prefix"
    );
}
