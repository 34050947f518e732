//! Middleware: concurrency and rate limits, size limits, timeouts, bearer authentication with
//! a policy; composed, they still pass the endpoint conformance kit.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::middleware::{
    AllowAll, Authenticated, Authorize, ConcurrencyLimit, RateLimit, SizeLimit, Timeout,
};
use aistd_deploy::{
    Bearer, DataType, Endpoint, Error, InferRequest, InferResponse, ModelMetadata, Tensor,
    TensorData, TensorSpec,
};

/// `y = x` on `x: FP32 [-1, -1]`; asserts no bearer token reaches it; each call can wait for a
/// token from the gate; `hang` never answers.
#[derive(Debug, Default)]
struct Echo {
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    hang: bool,
}

impl Endpoint for Echo {
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: "echo".into(),
            versions: vec!["1".into()],
            platform: "test".into(),
            inputs: vec![TensorSpec::new("x", DataType::Fp32, &[-1, -1]).expect("spec")],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, &[-1, -1]).expect("spec")],
        }
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, r: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        if self.hang {
            return Box::pin(std::future::pending());
        }
        Box::pin(async move {
            assert!(r.bearer.is_none(), "the token must not reach the model");
            let m = self.metadata();
            r.validate(&m.inputs, &m.outputs)?;
            if let Some(rx) = self.gate.lock().expect("gate").as_ref() {
                rx.recv().expect("token");
            }
            let x = &r.inputs[0];
            Ok(InferResponse {
                model_name: m.name,
                model_version: Some("1".into()),
                id: r.id,
                outputs: vec![Tensor::new("y", &x.shape, x.data.clone())?],
            })
        })
    }
}

fn req(n: usize) -> InferRequest {
    InferRequest::new().with_input(Tensor::fp32("x", &[1, n], vec![0.5; n]).expect("tensor"))
}

#[test]
fn composed_middleware_passes_the_conformance_kit() {
    let echo: Arc<dyn Endpoint> = Arc::new(Echo::default());
    let stack: Arc<dyn Endpoint> = Arc::new(SizeLimit::new(echo, 1 << 20));
    let stack: Arc<dyn Endpoint> = Arc::new(Timeout::new(stack, Duration::from_secs(60)));
    let stack: Arc<dyn Endpoint> = Arc::new(RateLimit::new(stack, 1e9, 1_000_000));
    let stack = ConcurrencyLimit::new(stack, 1000);
    aistd_deploy::conformance::run_endpoint(&stack, &req(3));
}

#[test]
fn the_concurrency_limit_refuses_the_request_over_it() {
    let (tx, rx) = mpsc::channel();
    let echo = Arc::new(Echo {
        gate: Mutex::new(Some(rx)),
        hang: false,
    });
    let limited = ConcurrencyLimit::new(echo, 2);
    std::thread::scope(|s| {
        // The first holds the gate's lock while it waits; the second waits for the lock: both
        // are inside.
        let a = s.spawn(|| block_on(limited.infer(req(1))));
        let b = s.spawn(|| block_on(limited.infer(req(1))));
        while limited.in_flight() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        match block_on(limited.infer(req(1))) {
            Err(Error::Overloaded { reason, .. }) => {
                assert_eq!(reason, "2 requests in flight (the limit)");
            }
            other => panic!("the third request should be refused, got {other:?}"),
        }
        tx.send(()).expect("token");
        tx.send(()).expect("token");
        a.join().expect("thread").expect("first");
        b.join().expect("thread").expect("second");
    });
    drop(tx);
}

#[test]
fn the_rate_limit_allows_its_burst_then_refuses() {
    let limited = RateLimit::new(Arc::new(Echo::default()), 0.0, 3);
    for _ in 0..3 {
        block_on(limited.infer(req(1))).expect("within the burst");
    }
    match block_on(limited.infer(req(1))) {
        Err(Error::Overloaded { reason, .. }) => assert!(reason.contains("rate limit"), "{reason}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
}

#[test]
fn the_size_limit_counts_tensor_bytes() {
    let limited = SizeLimit::new(Arc::new(Echo::default()), 100);
    block_on(limited.infer(req(25))).expect("100 bytes");
    match block_on(limited.infer(req(26))) {
        Err(Error::TooLarge { bytes, limit, .. }) => assert_eq!((bytes, limit), (104, 100)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let strings = InferRequest::new().with_input(
        Tensor::new("s", &[2], TensorData::Bytes(vec![vec![0; 10], vec![0; 20]])).expect("t"),
    );
    assert_eq!(aistd_deploy::middleware::request_bytes(&strings), 38);
}

#[test]
fn a_timeout_answers_for_a_model_that_does_not() {
    let hung = Timeout::new(
        Arc::new(Echo {
            gate: Mutex::new(None),
            hang: true,
        }),
        Duration::from_millis(20),
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(block_on(hung.infer(req(1)))).expect("send"));
    // A liveness guard, not a timing assertion: without the timer this never returns.
    match rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the timeout fired")
    {
        Err(Error::Timeout { model, millis }) => assert_eq!((model.as_str(), millis), ("echo", 20)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let fast = Timeout::new(Arc::new(Echo::default()), Duration::from_secs(60));
    block_on(fast.infer(req(2))).expect("answered in time");
}

/// Lets only principals named in it use the model.
#[derive(Debug)]
struct Only(&'static str);

impl Authorize for Only {
    fn authorize(&self, principal: &str, model: &str, _: &str) -> Result<(), String> {
        if principal == self.0 {
            Ok(())
        } else {
            Err(format!("only {} may use {model}", self.0))
        }
    }
}

#[test]
fn bearer_tokens_authenticate_and_the_policy_authorizes() {
    let alice = Bearer::new("alice-secret-token");
    let bob = Bearer::new("bob-secret-token");
    let guarded = Authenticated::new(Arc::new(Echo::default()), Arc::new(Only("alice")))
        .with_token(&alice, "alice")
        .with_token(&bob, "bob");
    let with = |t: Option<&Bearer>| {
        let mut r = req(1);
        r.bearer = t.cloned();
        block_on(guarded.infer(r))
    };
    assert!(
        matches!(with(None), Err(Error::Unauthenticated { reason, .. }) if reason == "no bearer token")
    );
    assert!(matches!(
        with(Some(&Bearer::new("guess"))),
        Err(Error::Unauthenticated { .. })
    ));
    match with(Some(&bob)) {
        Err(Error::Forbidden {
            principal, reason, ..
        }) => {
            assert_eq!(principal, "bob");
            assert_eq!(reason, "only alice may use echo");
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    with(Some(&alice)).expect("alice is allowed");
    // Secrets stay out of Debug output, of the request and of the middleware.
    let mut r = req(1);
    r.bearer = Some(alice.clone());
    assert!(!format!("{r:?}").contains("alice-secret"));
    assert!(!format!("{guarded:?}").contains("alice-secret"));
    let open =
        Authenticated::new(Arc::new(Echo::default()), Arc::new(AllowAll)).with_token(&bob, "bob");
    let mut r = req(1);
    r.bearer = Some(bob);
    block_on(open.infer(r)).expect("AllowAll");
}
