//! Drift: quantile profiles, the statistics on known inputs (Kolmogorov's distribution against
//! scipy.special.kolmogorov), and the monitor counting what an endpoint serves.
//! (`scripts/peers/check_drift.py` recomputes everything with numpy and scipy.)

use std::sync::Arc;

use aistd_deploy::drift::{DriftMonitor, DriftTracker, ReferenceProfile, kolmogorov_sf};
use aistd_deploy::endpoint::block_on;
use aistd_deploy::{
    Bundle, DataType, Endpoint, InferRequest, Manifest, Runtimes, Tensor, TensorSpec,
};

#[test]
fn kolmogorov_matches_scipy() {
    for (x, want) in [
        (0.3, 0.9999906941986655),
        (0.5, 0.9639452436648751),
        (1.0, 0.26999967167735456),
        (2.0, 0.0006709252557796953),
    ] {
        assert!(
            (kolmogorov_sf(x) - want).abs() < 1e-12,
            "Q({x}) = {} not {want}",
            kolmogorov_sf(x)
        );
    }
    assert_eq!(kolmogorov_sf(0.0), 1.0);
}

#[test]
fn identical_data_shows_no_drift_and_a_shift_does() {
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let p = ReferenceProfile::from_columns(&["x".into()], std::slice::from_ref(&values), 4)
        .expect("profile");
    assert_eq!(p.features[0].edges, [0.0, 24.75, 49.5, 74.25, 99.0]);
    assert_eq!(p.features[0].counts, [25, 25, 25, 25]);

    let same = DriftTracker::new(p.clone());
    same.observe_rows(values.iter().copied());
    let r = &same.report()[0];
    assert_eq!(
        (r.psi, r.ks_statistic, r.jensen_shannon, r.wasserstein),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(r.ks_p_value, 1.0);
    assert!(!r.psi_drift && !r.ks_drift);

    let shifted = DriftTracker::new(p);
    shifted.observe_rows(values.iter().map(|v| v + 50.0).chain([f64::NAN]));
    let r = &shifted.report()[0];
    assert_eq!(r.current_count, 100);
    assert_eq!(r.current_nans, 1);
    // Current counts [0, 0, 25, 75]: D = 0.5 after the second bin.
    assert!((r.ks_statistic - 0.5).abs() < 1e-12, "{r:?}");
    let psi = 2.0 * (0.0001f64 - 0.25) * (0.0001f64 / 0.25).ln()
        + 0.0
        + (0.75f64 - 0.25) * (0.75f64 / 0.25).ln();
    assert!((r.psi - psi).abs() < 1e-12, "{} vs {psi}", r.psi);
    assert!(r.psi_drift && r.ks_drift);
    shifted.reset();
    assert_eq!(shifted.report()[0].current_count, 0);
}

#[test]
fn the_monitor_counts_what_the_endpoint_serves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("f"), b"x").expect("write");
    let m = Manifest::new("echo", "1", "identity")
        .expect("manifest")
        .with_input(TensorSpec::new("x", DataType::Fp32, &[-1, 2]).expect("spec"))
        .with_output(TensorSpec::new("y", DataType::Fp32, &[-1, 2]).expect("spec"));
    let b = Bundle::create(&tmp.path().join("b"), m, &src).expect("bundle");
    let ep: Arc<dyn Endpoint> = Arc::new(Runtimes::builtin().load(&b).expect("load"));
    let reference = ReferenceProfile::from_columns(
        &["a".into(), "b".into()],
        &[
            (0..10).map(f64::from).collect(),
            (0..10).map(|v| f64::from(v) * 10.0).collect(),
        ],
        2,
    )
    .expect("profile");
    let tracker = Arc::new(DriftTracker::new(reference));
    let monitor = DriftMonitor::new(ep.clone(), "x", tracker.clone()).expect("monitor");
    let req = InferRequest::new()
        .with_input(Tensor::fp32("x", &[3, 2], vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]).expect("t"));
    block_on(monitor.infer(req)).expect("infer");
    let report = tracker.report();
    assert_eq!(report[0].current_count, 3);
    assert_eq!(report[1].current_count, 3);
    // A refused request is not counted.
    let bad = InferRequest::new().with_input(Tensor::fp32("x", &[1, 3], vec![0.0; 3]).expect("t"));
    assert!(block_on(monitor.infer(bad)).is_err());
    assert_eq!(tracker.report()[0].current_count, 3);
    assert!(DriftMonitor::new(ep, "nope", tracker).is_err());
}
