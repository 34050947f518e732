//! Checks any [`BundleStore`] or [`Endpoint`] implementation can run (feature
//! `conformance`): each function names the clause of the trait's Contract it checks, and panics
//! with the reason when the implementation breaks it.

use crate::Error;
use crate::endpoint::{Endpoint, block_on};
use crate::infer::{InferRequest, InferResponse, TensorData};
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

/// Runs every endpoint check on `endpoint`, with `sample` a valid request for it.
pub fn run_endpoint(endpoint: &dyn Endpoint, sample: &InferRequest) {
    metadata_names_are_unique(endpoint);
    answers_conform_to_the_metadata(endpoint, sample);
    requested_outputs_only(endpoint, sample);
    bad_requests_name_the_tensor(endpoint, sample);
    answers_are_deterministic_under_concurrency(endpoint, sample);
}

fn infer(endpoint: &dyn Endpoint, request: &InferRequest) -> crate::Result<InferResponse> {
    block_on(endpoint.infer(request.clone()))
}

/// Contract 1: input and output names are unique and the endpoint is ready.
pub fn metadata_names_are_unique(endpoint: &dyn Endpoint) {
    let m = endpoint.metadata();
    assert!(endpoint.ready(), "a constructed endpoint should be ready");
    assert!(!m.name.is_empty(), "the model needs a name");
    for specs in [&m.inputs, &m.outputs] {
        for (i, s) in specs.iter().enumerate() {
            assert!(
                !specs[..i].iter().any(|t| t.name == s.name),
                "tensor name {} appears twice in the metadata",
                s.name
            );
        }
    }
}

/// Contract 4: the response holds every output in metadata order, each conforming, and
/// echoes the id.
pub fn answers_conform_to_the_metadata(endpoint: &dyn Endpoint, sample: &InferRequest) {
    let m = endpoint.metadata();
    let mut request = sample.clone().with_id("conformance-1");
    request.outputs.clear();
    let r = infer(endpoint, &request).expect("the sample request should succeed");
    assert_eq!(r.model_name, m.name, "response model name");
    assert_eq!(r.id.as_deref(), Some("conformance-1"), "the id is echoed");
    let names: Vec<&str> = r.outputs.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<&str> = m.outputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, want, "all outputs, in metadata order");
    for (t, spec) in r.outputs.iter().zip(&m.outputs) {
        if let Err(e) = t.conforms_to(spec) {
            panic!("output breaks the metadata: {e}");
        }
    }
}

/// Contract 4: asking for one output returns exactly that one.
pub fn requested_outputs_only(endpoint: &dyn Endpoint, sample: &InferRequest) {
    let m = endpoint.metadata();
    let last = &m.outputs[m.outputs.len() - 1].name;
    let mut request = sample.clone();
    request.outputs = vec![last.clone()];
    let r = infer(endpoint, &request).expect("a request for one output");
    let names: Vec<&str> = r.outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, [last.as_str()], "only the requested output");
}

fn expect_invalid_tensor(
    endpoint: &dyn Endpoint,
    request: &InferRequest,
    tensor: &str,
    case: &str,
) {
    match infer(endpoint, request) {
        Err(Error::InvalidTensor { tensor: t, .. }) if t == tensor => {}
        other => panic!("{case}: expected InvalidTensor naming {tensor}, got {other:?}"),
    }
}

/// Contract 3: a missing, unknown, duplicated, mistyped or misshapen input, or an unknown
/// output, is `InvalidTensor` naming it.
pub fn bad_requests_name_the_tensor(endpoint: &dyn Endpoint, sample: &InferRequest) {
    let first = sample.inputs[0].clone();
    let mut missing = sample.clone();
    missing.inputs.remove(0);
    expect_invalid_tensor(endpoint, &missing, &first.name, "a missing input");

    let mut unknown = sample.clone();
    let mut extra = first.clone();
    extra.name = "conformance-no-such-input".into();
    unknown.inputs.push(extra);
    expect_invalid_tensor(
        endpoint,
        &unknown,
        "conformance-no-such-input",
        "an unknown input",
    );

    let mut twice = sample.clone();
    twice.inputs.push(first.clone());
    expect_invalid_tensor(endpoint, &twice, &first.name, "an input given twice");

    let mut mistyped = sample.clone();
    let n = first.data.len();
    mistyped.inputs[0].data = match first.data {
        TensorData::Bytes(_) => TensorData::Int64(vec![0; n]),
        _ => TensorData::Bytes(vec![Vec::new(); n]),
    };
    expect_invalid_tensor(endpoint, &mistyped, &first.name, "a mistyped input");

    let mut misshapen = sample.clone();
    misshapen.inputs[0].shape.push(1);
    expect_invalid_tensor(
        endpoint,
        &misshapen,
        &first.name,
        "an input of the wrong rank",
    );

    let mut miscounted = sample.clone();
    miscounted.inputs[0].shape = vec![first.data.len() + 1; first.shape.len()];
    assert!(
        matches!(
            infer(endpoint, &miscounted),
            Err(Error::InvalidTensor { .. })
        ),
        "an element count that the shape does not give"
    );

    let mut no_output = sample.clone();
    no_output.outputs = vec!["conformance-no-such-output".into()];
    expect_invalid_tensor(
        endpoint,
        &no_output,
        "conformance-no-such-output",
        "an unknown output",
    );
    // The endpoint still answers after bad requests.
    infer(endpoint, sample).expect("the sample after bad requests");
}

/// Contract 5: the same request gives the same outputs, from 8 threads at once.
pub fn answers_are_deterministic_under_concurrency(endpoint: &dyn Endpoint, sample: &InferRequest) {
    let want = infer(endpoint, sample).expect("sample").outputs;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..16)
                        .map(|_| infer(endpoint, sample).expect("sample").outputs)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for got in h.join().expect("thread") {
                assert_eq!(got, want, "answers must not depend on concurrent requests");
            }
        }
    });
}
