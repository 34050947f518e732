//! Compliance: a full RDP evaluation over Opacus' 151 default orders, noise calibration, and
//! fairness group counts.

use aistd::compliance::cedar::packs;
use aistd::compliance::fairness::MetricFrame;
use aistd::compliance::privacy::{epsilon, noise_multiplier, opacus_orders};
use aistd::compliance::{CedarPolicy, Policy, Request};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let orders = opacus_orders();
    let mut g = c.benchmark_group("privacy");
    g.bench_function("epsilon_opacus_orders", |b| {
        b.iter(|| epsilon(0.04, 1.5, 2250, 1e-5, &orders).expect("eps"))
    });
    g.sample_size(10);
    g.bench_function("noise_multiplier_calibration", |b| {
        b.iter(|| noise_multiplier(0.04, 2250, 7.33, 1e-5, &orders, 0.01).expect("sigma"))
    });
    g.finish();

    // 100 policies: the three packs plus 93 per-team permits, and the schema's entities.
    let mut text = [packs::DATA_ACCESS, packs::TRAINING, packs::DEPLOYMENT].join("\n");
    for t in 0..93 {
        text.push_str(&format!(
            "@id(\"team-{t}\") permit (principal is User, action == Action::\"read\", resource is Column) when {{ context.purpose == \"team-{t}\" && principal.clearance >= 1 }};\n"
        ));
    }
    let cedar = CedarPolicy::from_str("bench", &text)
        .expect("parse")
        .validated(packs::SCHEMA)
        .expect("valid")
        .with_entities_json(
            r#"[{"uid": {"type": "User", "id": "bob"}, "attrs": {"clearance": 2, "purposes": ["training"]}, "parents": []},
                {"uid": {"type": "Column", "id": "loans#email"}, "attrs": {}, "parents": []}]"#,
        )
        .expect("entities");
    assert_eq!(cedar.len(), 100);
    let request = Request::new(
        "User::\"bob\"",
        "Action::\"read\"",
        "Column::\"loans#email\"",
    )
    .with_context(serde_json::json!({ "purpose": "training", "level_rank": 2 }));
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cedar_100_policies_decision", |b| {
        b.iter(|| cedar.evaluate(&request).expect("eval").allowed())
    });
    g.finish();

    let n = 1_000_000usize;
    let y_true: Vec<i64> = (0..n).map(|i| ((i * 7) % 3 == 0) as i64).collect();
    let y_pred: Vec<i64> = (0..n).map(|i| ((i * 11) % 4 == 0) as i64).collect();
    let groups: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
    let mut g = c.benchmark_group("fairness");
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    g.bench_function("metric_frame_3_groups", |b| {
        b.iter(|| {
            MetricFrame::new(&y_true, &y_pred, &[&groups], None)
                .expect("frame")
                .overall
                .count
        })
    });
    g.finish();
}

criterion_group!(compliance, benches);
criterion_main!(compliance);
