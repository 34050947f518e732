//! The dynamic batcher: conformance, batches never over the limit and split back exactly,
//! priorities, preferred sizes, refusals, and a panicking model.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aistd_deploy::batch::{BatchConfig, Batcher};
use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::{
    DataType, Endpoint, Error, InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec,
};

/// `y = 10·x` on `x: FP32 [-1, 2]`; records each call's `x`; the first call can be held at a
/// gate; a NaN makes it panic.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<Vec<f32>>>,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Recorder {
    fn gated() -> (Arc<Recorder>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        let r = Recorder::default();
        *r.gate.lock().expect("gate") = Some(rx);
        (Arc::new(r), tx)
    }

    fn calls(&self) -> Vec<Vec<f32>> {
        self.calls.lock().expect("calls").clone()
    }

    fn wait_for_calls(&self, n: usize) {
        while self.calls.lock().expect("calls").len() < n {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Endpoint for Recorder {
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: "times10".into(),
            versions: vec!["1".into()],
            platform: "test".into(),
            inputs: vec![TensorSpec::new("x", DataType::Fp32, &[-1, 2]).expect("spec")],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, &[-1, 2]).expect("spec")],
        }
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, request: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            let m = self.metadata();
            request.validate(&m.inputs, &m.outputs)?;
            let x = request.inputs[0].as_fp32().expect("fp32").to_vec();
            self.calls.lock().expect("calls").push(x.clone());
            let gate = self.gate.lock().expect("gate").take();
            if let Some(rx) = gate {
                rx.recv().expect("released");
            }
            assert!(!x.iter().any(|v| v.is_nan()), "NaN input");
            let y = x.iter().map(|v| v * 10.0).collect();
            Ok(InferResponse {
                model_name: m.name,
                model_version: Some("1".into()),
                id: request.id,
                outputs: vec![Tensor::fp32("y", &request.inputs[0].shape, y)?],
            })
        })
    }
}

fn rows(first: f32, n: usize) -> InferRequest {
    let x: Vec<f32> = (0..2 * n).map(|i| first + i as f32).collect();
    InferRequest::new().with_input(Tensor::fp32("x", &[n, 2], x).expect("tensor"))
}

fn config(max: usize) -> BatchConfig {
    BatchConfig {
        max_batch_size: max,
        max_queue_delay: Duration::from_millis(1),
        ..BatchConfig::default()
    }
}

#[test]
fn the_batcher_passes_the_endpoint_conformance_kit() {
    let b = Batcher::new(Arc::new(Recorder::default()), config(4)).expect("batcher");
    aistd_deploy::conformance::run_endpoint(&b, &rows(1.0, 3));
}

#[test]
fn batches_never_exceed_the_limit_and_each_request_gets_its_own_rows() {
    let (inner, release) = Recorder::gated();
    let b = Arc::new(Batcher::new(inner.clone(), config(4)).expect("batcher"));
    std::thread::scope(|s| {
        let held = s.spawn(|| block_on(b.infer(rows(-100.0, 1))));
        inner.wait_for_calls(1);
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let b = b.clone();
                s.spawn(move || {
                    let n = 1 + i % 3;
                    let r = block_on(b.infer(rows(i as f32 * 100.0, n).with_id(format!("r{i}"))))
                        .expect("infer");
                    (i, n, r)
                })
            })
            .collect();
        while b.queued() < 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).expect("release");
        held.join().expect("thread").expect("held request");
        for h in handles {
            let (i, n, r) = h.join().expect("thread");
            assert_eq!(r.id, Some(format!("r{i}")));
            let want: Vec<f32> = (0..2 * n)
                .map(|k| (i as f32 * 100.0 + k as f32) * 10.0)
                .collect();
            let y = r.output("y").expect("y");
            assert_eq!(y.shape, [n, 2]);
            assert_eq!(y.as_fp32().expect("fp32"), want.as_slice(), "request {i}");
        }
    });
    let calls = inner.calls();
    assert!(
        calls.iter().all(|x| x.len() / 2 <= 4),
        "a batch over 4 rows: {calls:?}"
    );
    let stats = b.stats();
    assert_eq!(stats.requests, 11);
    assert_eq!(stats.batch_rows.values().sum::<u64>(), calls.len() as u64);
    // Ten queued requests of 1–3 rows (20 rows) cannot take more than 7 batches of ≤ 4 rows
    // unless they were not batched at all.
    assert!(calls.len() <= 1 + 7, "{} batches: {calls:?}", calls.len());
    assert_eq!(stats.queue_waits_us.len(), 11);
}

#[test]
fn higher_priority_requests_go_first() {
    let (inner, release) = Recorder::gated();
    let cfg = BatchConfig {
        priority_levels: 2,
        default_priority: 2,
        ..config(1)
    };
    let b = Arc::new(Batcher::new(inner.clone(), cfg).expect("batcher"));
    std::thread::scope(|s| {
        let held = s.spawn(|| block_on(b.infer(rows(0.0, 1))));
        inner.wait_for_calls(1);
        let low = s.spawn(|| block_on(b.infer(rows(20.0, 1))));
        while b.queued() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut urgent = rows(10.0, 1);
        urgent
            .parameters
            .insert("priority".into(), serde_json::json!(1));
        let high = s.spawn(|| block_on(b.infer(urgent)));
        while b.queued() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).expect("release");
        for h in [held, low, high] {
            h.join().expect("thread").expect("infer");
        }
    });
    let firsts: Vec<f32> = inner.calls().iter().map(|x| x[0]).collect();
    assert_eq!(
        firsts,
        [0.0, 10.0, 20.0],
        "the priority-1 request runs before the earlier one"
    );
    let mut bad = rows(0.0, 1);
    bad.parameters
        .insert("priority".into(), serde_json::json!(3));
    assert!(matches!(
        block_on(b.infer(bad)),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn a_preferred_size_dispatches_without_waiting_for_the_delay() {
    let (inner, release) = Recorder::gated();
    let cfg = BatchConfig {
        max_batch_size: 8,
        preferred_sizes: vec![2],
        max_queue_delay: Duration::from_secs(3600),
        ..BatchConfig::default()
    };
    let b = Arc::new(Batcher::new(inner.clone(), cfg).expect("batcher"));
    let (done_tx, done) = mpsc::channel();
    std::thread::scope(|s| {
        // Neither request alone reaches the preferred size of 2; together they do.
        for i in 0..2 {
            let b = b.clone();
            let done_tx = done_tx.clone();
            s.spawn(move || {
                done_tx
                    .send(block_on(b.infer(rows(i as f32, 1))).map(|r| r.outputs))
                    .expect("send")
            });
        }
        inner.wait_for_calls(1);
        release.send(()).expect("release");
        for _ in 0..2 {
            // A liveness guard, not a timing assertion: without preferred sizes this waits an hour.
            done.recv_timeout(Duration::from_secs(120))
                .expect("dispatched at the preferred size")
                .expect("infer");
        }
    });
    assert_eq!(b.stats().batch_rows.get(&2), Some(&1));
}

#[test]
fn oversized_requests_and_a_full_queue_are_refused() {
    let (inner, release) = Recorder::gated();
    let cfg = BatchConfig {
        queue_limit: 2,
        ..config(4)
    };
    let b = Arc::new(Batcher::new(inner.clone(), cfg).expect("batcher"));
    match block_on(b.infer(rows(0.0, 5))) {
        Err(Error::InvalidTensor { tensor, reason }) => {
            assert_eq!(tensor, "x");
            assert!(
                reason.contains("exceeds the model's max batch size 4"),
                "{reason}"
            );
        }
        other => panic!("expected InvalidTensor, got {other:?}"),
    }
    std::thread::scope(|s| {
        let held = s.spawn(|| block_on(b.infer(rows(0.0, 4))));
        inner.wait_for_calls(1);
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let b = b.clone();
                s.spawn(move || block_on(b.infer(rows(i as f32, 4))))
            })
            .collect();
        while b.queued() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        match block_on(b.infer(rows(9.0, 1))) {
            Err(Error::Overloaded { model, reason }) => {
                assert_eq!(model, "times10");
                assert!(reason.contains("queue is full (2 requests)"), "{reason}");
            }
            other => panic!("expected Overloaded, got {other:?}"),
        }
        release.send(()).expect("release");
        held.join().expect("thread").expect("held");
        for q in queued {
            q.join().expect("thread").expect("queued request");
        }
    });
}

#[test]
fn a_panicking_model_fails_its_batch_and_the_batcher_keeps_serving() {
    let b = Batcher::new(Arc::new(Recorder::default()), config(4)).expect("batcher");
    let nan = InferRequest::new()
        .with_input(Tensor::fp32("x", &[1, 2], vec![f32::NAN, 0.0]).expect("tensor"));
    match block_on(b.infer(nan)) {
        Err(Error::Runtime { reason, .. }) => assert!(reason.contains("NaN input"), "{reason}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
    block_on(b.infer(rows(1.0, 2))).expect("still serving");
}

#[test]
fn models_without_a_batch_dimension_and_bad_configs_are_refused() {
    #[derive(Debug)]
    struct Fixed(Recorder);
    impl Endpoint for Fixed {
        fn metadata(&self) -> ModelMetadata {
            let mut m = self.0.metadata();
            m.inputs[0].shape = vec![2];
            m
        }
        fn ready(&self) -> bool {
            true
        }
        fn infer(&self, r: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
            self.0.infer(r)
        }
    }
    let err = Batcher::new(Arc::new(Fixed(Recorder::default())), config(4)).expect_err("fixed");
    assert!(err.to_string().contains("tensor x has shape [2]"), "{err}");
    let cfg = BatchConfig {
        preferred_sizes: vec![16],
        ..config(4)
    };
    let err = Batcher::new(Arc::new(Recorder::default()), cfg).expect_err("preferred");
    assert!(err.to_string().contains("preferred size 16"), "{err}");
}
