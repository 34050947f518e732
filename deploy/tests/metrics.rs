//! Serving metrics: counts, histograms (cumulative, +Inf = count), the batcher's queue times and
//! batch sizes, in-flight and recommended replicas, Triton's names; a well-formed exposition.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aistd_deploy::batch::{BatchConfig, Batcher};
use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::metrics::{Histogram, Metrics, MetricsConfig};
use aistd_deploy::{
    DataType, Endpoint, InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec,
};

/// `y = x` on `x: FP32 [-1, 1]`; each call first waits for a token when gated.
#[derive(Debug, Default)]
struct Echo {
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Endpoint for Echo {
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: "echo".into(),
            versions: vec!["7".into()],
            platform: "test".into(),
            inputs: vec![TensorSpec::new("x", DataType::Fp32, &[-1, 1]).expect("spec")],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, &[-1, 1]).expect("spec")],
        }
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, r: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            let m = self.metadata();
            r.validate(&m.inputs, &m.outputs)?;
            if let Some(rx) = self.gate.lock().expect("gate").as_ref() {
                rx.recv().expect("token");
            }
            let x = r.inputs[0].clone();
            Ok(InferResponse {
                model_name: m.name,
                model_version: Some("7".into()),
                id: r.id,
                outputs: vec![Tensor::fp32(
                    "y",
                    &x.shape,
                    x.as_fp32().expect("fp32").to_vec(),
                )?],
            })
        })
    }
}

fn rows(n: usize) -> InferRequest {
    InferRequest::new().with_input(Tensor::fp32("x", &[n, 1], vec![1.0; n]).expect("tensor"))
}

/// Samples by name and label set (`name{labels}` → value); asserts the exposition's shape:
/// HELP and TYPE once per family, before its samples.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("name").to_string();
            assert!(!typed.contains(&name), "TYPE {name} twice");
            typed.push(name);
        } else if !line.starts_with('#') {
            let (key, value) = line.rsplit_once(' ').expect("sample");
            let family = typed.last().expect("a sample before any TYPE");
            assert!(
                key.starts_with(family.as_str()),
                "{key} outside its family {family}"
            );
            samples.insert(key.to_string(), value.parse().expect("number"));
        }
    }
    samples
}

#[test]
fn histograms_are_cumulative_and_end_at_their_count() {
    let mut h = Histogram::new(&[1.0, 5.0, 2.0]);
    for v in [0.5, 1.0, 1.5, 3.0, 9.0] {
        h.observe(v);
    }
    let mut out = String::new();
    h.render("t", "m=\"a\"", &mut out);
    assert_eq!(
        out,
        "t_bucket{m=\"a\",le=\"1\"} 2\n\
         t_bucket{m=\"a\",le=\"2\"} 3\n\
         t_bucket{m=\"a\",le=\"5\"} 4\n\
         t_bucket{m=\"a\",le=\"+Inf\"} 5\n\
         t_sum{m=\"a\"} 15\n\
         t_count{m=\"a\"} 5\n"
    );
}

#[test]
fn counts_histograms_batches_and_triton_names() {
    let metrics = Metrics::new(MetricsConfig::default());
    let batcher = Arc::new(
        Batcher::new(
            Arc::new(Echo::default()),
            BatchConfig {
                max_batch_size: 4,
                max_queue_delay: Duration::from_micros(200),
                ..BatchConfig::default()
            },
        )
        .expect("batcher"),
    );
    let ep = metrics.wrap(batcher.clone()).with_batcher(batcher);
    for n in [1, 2, 3] {
        block_on(ep.infer(rows(n))).expect("infer");
    }
    block_on(ep.infer(rows(5))).expect_err("over the max batch size");
    let mut wrong = rows(1);
    wrong.inputs[0].name = "z".into();
    block_on(ep.infer(wrong)).expect_err("unknown input");
    let text = metrics.render();
    let s = parse(&text);
    let l = "model=\"echo\",version=\"7\"";
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(
        get(&format!("aistd_inference_request_success_total{{{l}}}")),
        3.0
    );
    assert_eq!(
        get(&format!(
            "aistd_inference_request_failure_total{{{l},reason=\"invalid\"}}"
        )),
        2.0
    );
    assert_eq!(get(&format!("aistd_inference_rows_total{{{l}}}")), 6.0);
    assert_eq!(
        get(&format!(
            "aistd_inference_request_duration_seconds_count{{{l}}}"
        )),
        5.0
    );
    assert_eq!(
        get(&format!(
            "aistd_inference_request_duration_seconds_bucket{{{l},le=\"+Inf\"}}"
        )),
        5.0
    );
    assert_eq!(
        get(&format!("aistd_inference_in_flight_requests{{{l}}}")),
        0.0
    );
    // Three batches of 1, 2 and 3 rows.
    assert_eq!(
        get(&format!("aistd_inference_batch_size_count{{{l}}}")),
        3.0
    );
    assert_eq!(get(&format!("aistd_inference_batch_size_sum{{{l}}}")), 6.0);
    assert_eq!(
        get(&format!(
            "aistd_inference_batch_size_bucket{{{l},le=\"1\"}}"
        )),
        1.0
    );
    assert_eq!(
        get(&format!(
            "aistd_inference_batch_size_bucket{{{l},le=\"2\"}}"
        )),
        2.0
    );
    assert_eq!(
        get(&format!(
            "aistd_inference_batch_size_bucket{{{l},le=\"4\"}}"
        )),
        3.0
    );
    assert_eq!(
        get(&format!(
            "aistd_inference_queue_duration_seconds_count{{{l}}}"
        )),
        3.0
    );
    // Buckets never decrease, in the order they are written.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|k| k.starts_with("aistd_inference_request_duration_seconds_bucket"))
        .map(|k| {
            k.rsplit_once(' ')
                .expect("sample")
                .1
                .parse()
                .expect("number")
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(get(&format!("nv_inference_request_success{{{l}}}")), 3.0);
    assert_eq!(get(&format!("nv_inference_request_failure{{{l}}}")), 2.0);
    assert_eq!(get(&format!("nv_inference_count{{{l}}}")), 6.0);
    assert_eq!(get(&format!("nv_inference_exec_count{{{l}}}")), 3.0);
    assert_eq!(get(&format!("aistd_recommended_replicas{{{l}}}")), 1.0);

    let quiet = Metrics::new(MetricsConfig {
        triton_names: false,
        ..MetricsConfig::default()
    });
    let _ep = quiet.wrap(Arc::new(Echo::default()));
    assert!(!quiet.render().contains("nv_inference"));
}

#[test]
fn in_flight_requests_raise_the_recommended_replicas() {
    let (tx, rx) = mpsc::channel();
    let echo = Arc::new(Echo {
        gate: Mutex::new(Some(rx)),
    });
    let metrics = Metrics::new(MetricsConfig {
        target_concurrency: 2.0,
        target_latency: Duration::from_secs(3600),
        ..MetricsConfig::default()
    });
    let ep = metrics.wrap(echo);
    let l = "model=\"echo\",version=\"7\"";
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| block_on(ep.infer(rows(1)))))
            .collect();
        // Wait until all five are inside (one at the gate, four waiting for its lock).
        loop {
            let text = metrics.render();
            if parse(&text)[&format!("aistd_inference_in_flight_requests{{{l}}}")] == 5.0 {
                // ⌈5 / 2⌉ = 3 replicas.
                assert_eq!(
                    parse(&text)[&format!("aistd_recommended_replicas{{{l}}}")],
                    3.0
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..5 {
            tx.send(()).expect("token");
        }
        for h in handles {
            h.join().expect("thread").expect("infer");
        }
    });
    let s = parse(&metrics.render());
    assert_eq!(
        s[&format!("aistd_inference_in_flight_requests{{{l}}}")],
        0.0
    );
    assert_eq!(s[&format!("aistd_recommended_replicas{{{l}}}")], 1.0);
}

#[test]
fn drift_of_the_served_inputs_is_exposed_per_feature() {
    use aistd_deploy::drift::{DriftMonitor, DriftTracker, ReferenceProfile};
    // Reference: x uniform on [0, 1); served: the same, then shifted by +0.5.
    let reference: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
    let profile =
        ReferenceProfile::from_columns(&["x".to_string()], &[reference], 10).expect("profile");
    let tracker = Arc::new(DriftTracker::new(profile));
    let metrics = Metrics::new(MetricsConfig::default());
    metrics.track_drift("echo", "7", tracker.clone());
    let served = metrics.wrap(Arc::new(
        DriftMonitor::new(Arc::new(Echo::default()), "x", tracker.clone()).expect("monitor"),
    ));
    let send =
        |values: Vec<f32>| {
            let n = values.len();
            block_on(served.infer(
                InferRequest::new().with_input(Tensor::fp32("x", &[n, 1], values).expect("t")),
            ))
            .expect("infer");
        };
    send((0..500).map(|i| i as f32 / 500.0).collect());
    let calm = parse(&metrics.render());
    let key = |name: &str| format!("{name}{{model=\"echo\",version=\"7\",feature=\"x\"}}");
    assert_eq!(calm[&key("aistd_drift_observations")], 500.0);
    assert!(calm[&key("aistd_drift_psi")] < 0.1, "{calm:?}");
    assert_eq!(
        calm["aistd_drift_detected{model=\"echo\",version=\"7\",feature=\"x\",test=\"psi\"}"],
        0.0
    );
    tracker.reset();
    send((0..500).map(|i| 0.5 + i as f32 / 500.0).collect());
    let text = metrics.render();
    let shifted = parse(&text);
    let report = &tracker.report()[0];
    assert!(report.psi >= 0.1, "{report:?}");
    // The exposition carries the tracker's own numbers.
    assert_eq!(shifted[&key("aistd_drift_psi")], report.psi);
    assert_eq!(shifted[&key("aistd_drift_ks_p_value")], report.ks_p_value);
    assert_eq!(shifted[&key("aistd_drift_wasserstein")], report.wasserstein);
    assert_eq!(
        shifted["aistd_drift_detected{model=\"echo\",version=\"7\",feature=\"x\",test=\"psi\"}"],
        1.0
    );
    assert_eq!(
        shifted["aistd_drift_detected{model=\"echo\",version=\"7\",feature=\"x\",test=\"ks\"}"],
        1.0
    );
}
