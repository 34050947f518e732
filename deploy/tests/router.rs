//! The router: exact weighted splits, sticky keys, shadow traffic compared with the primary,
//! promotion and rollback under load with no failed request, incompatible routes refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::router::Router;
use aistd_deploy::{
    DataType, Endpoint, InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec,
};

/// `y = factor·x`, answering as version `version`; counts its calls.
#[derive(Debug)]
struct Scale {
    version: &'static str,
    factor: f32,
    calls: AtomicU64,
    input: &'static str,
}

fn scale(version: &'static str, factor: f32) -> Arc<Scale> {
    Arc::new(Scale {
        version,
        factor,
        calls: AtomicU64::new(0),
        input: "x",
    })
}

impl Endpoint for Scale {
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: "ranker".into(),
            versions: vec![self.version.into()],
            platform: "test".into(),
            inputs: vec![TensorSpec::new(self.input, DataType::Fp32, &[-1]).expect("spec")],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, &[-1]).expect("spec")],
        }
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, r: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            let m = self.metadata();
            r.validate(&m.inputs, &m.outputs)?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let x = r.inputs[0].as_fp32().expect("fp32");
            Ok(InferResponse {
                model_name: m.name,
                model_version: Some(self.version.into()),
                id: r.id,
                outputs: vec![Tensor::fp32(
                    "y",
                    &[x.len()],
                    x.iter().map(|v| v * self.factor).collect(),
                )?],
            })
        })
    }
}

fn req(key: Option<&str>) -> InferRequest {
    let mut r = InferRequest::new().with_input(Tensor::fp32("x", &[2], vec![1.0, 2.0]).expect("t"));
    if let Some(k) = key {
        r.parameters.insert("user".into(), serde_json::json!(k));
    }
    r
}

fn version(r: &InferResponse) -> String {
    r.model_version.clone().expect("version")
}

#[test]
fn weights_split_exactly_and_sticky_keys_stay_put() {
    let router = Router::new("v1", scale("1", 1.0), "user");
    aistd_deploy::conformance::run_endpoint(&router, &req(None));
    router
        .set_routes(vec![
            ("v1".into(), scale("1", 1.0) as Arc<dyn Endpoint>, 9),
            ("v2".into(), scale("2", 1.0), 1),
        ])
        .expect("routes");
    let before = router.served();
    for _ in 0..1000 {
        block_on(router.infer(req(None))).expect("infer");
    }
    let after = router.served();
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(
        (delta("v1"), delta("v2")),
        (900, 100),
        "a 9:1 split, exactly"
    );
    assert_eq!(router.metadata().versions, ["1", "2"]);
    // The same key always lands on the same route; keys spread by the weights.
    let mut on_v2 = 0;
    for k in 0..1000 {
        let key = format!("user-{k}");
        let first = version(&block_on(router.infer(req(Some(&key)))).expect("infer"));
        for _ in 0..3 {
            assert_eq!(
                version(&block_on(router.infer(req(Some(&key)))).expect("infer")),
                first
            );
        }
        on_v2 += usize::from(first == "2");
    }
    assert!(
        (50..=150).contains(&on_v2),
        "{on_v2} of 1000 keys on the 10% route"
    );
}

#[test]
fn promotion_and_rollback_under_load_fail_no_request() {
    let v1 = scale("1", 1.0);
    let v2 = scale("2", 2.0);
    let router = Arc::new(Router::new("v1", v1.clone(), "user"));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (router, stop, failures, answered) = (
                router.clone(),
                stop.clone(),
                failures.clone(),
                answered.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match block_on(router.infer(req(None))) {
                        Ok(r) => {
                            let y = r.outputs[0].as_fp32().expect("fp32").to_vec();
                            let f = if version(&r) == "2" { 2.0 } else { 1.0 };
                            assert_eq!(y, [f, 2.0 * f], "an answer from the version it names");
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let wait_for = |n: u64| {
        let target = answered.load(Ordering::Relaxed) + n;
        while answered.load(Ordering::Relaxed) < target {
            std::thread::yield_now();
        }
    };
    wait_for(200);
    router
        .set_routes(vec![
            ("v1".into(), v1.clone() as Arc<dyn Endpoint>, 90),
            ("v2".into(), v2.clone(), 10),
        ])
        .expect("canary");
    wait_for(200);
    router.promote("v2").expect("promote");
    // Each of the 8 clients may have had one request routed to v1 before the promotion and not
    // yet run; nothing after that reaches v1.
    let v1_calls = v1.calls.load(Ordering::Relaxed);
    wait_for(2000);
    let late = v1.calls.load(Ordering::Relaxed) - v1_calls;
    assert!(
        late <= 8,
        "{late} requests reached v1 after its promotion away"
    );
    assert!(router.rollback(), "back to the canary split");
    assert_eq!(
        router.weights(),
        [("v1".to_string(), 90), ("v2".to_string(), 10)]
    );
    wait_for(200);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert!(router.promote("v9").is_err());
}

#[test]
fn shadow_traffic_is_compared_and_never_answers() {
    let router = Router::new("v1", scale("1", 1.0), "user");
    let same = scale("1b", 1.0);
    router.set_shadow(Some(same.clone()), 1024).expect("shadow");
    for _ in 0..50 {
        let r = block_on(router.infer(req(None))).expect("infer");
        assert_eq!(version(&r), "1", "the primary answers");
    }
    let different = scale("2", 3.0);
    router
        .set_shadow(Some(different.clone()), 1024)
        .expect("shadow");
    for _ in 0..30 {
        block_on(router.infer(req(None))).expect("infer");
    }
    router.set_shadow(None, 1).expect("stop");
    let s = router.shadow_stats();
    assert_eq!(s.mirrored + s.dropped, 80);
    assert_eq!((s.matched, s.differed, s.failed), (50, 30, 0), "{s:?}");
    assert_eq!(same.calls.load(Ordering::Relaxed), 50);
    assert_eq!(different.calls.load(Ordering::Relaxed), 30);
}

#[test]
fn routes_with_another_signature_are_refused() {
    let router = Router::new("v1", scale("1", 1.0), "user");
    let other = Arc::new(Scale {
        version: "2",
        factor: 1.0,
        calls: AtomicU64::new(0),
        input: "features",
    });
    let err = router
        .set_routes(vec![("v2".into(), other as Arc<dyn Endpoint>, 1)])
        .expect_err("different input name");
    assert!(err.to_string().contains("signature differs"), "{err}");
    assert!(
        router
            .set_routes(vec![("v1".into(), scale("1", 1.0) as Arc<dyn Endpoint>, 0)])
            .is_err()
    );
    assert!(!router.rollback(), "nothing changed, nothing to roll back");
}
