//! Compliance: a full RDP evaluation over Opacus' 151 default orders, noise calibration, and
//! fairness group counts.

use aistd::compliance::cedar::packs;
use aistd::compliance::fairness::MetricFrame;
use aistd::compliance::privacy::{epsilon, noise_multiplier, opacus_orders};
use aistd::compliance::{CedarPolicy, Policy, Request};
use std::sync::Arc;

use aistd::compliance::dp::aggregate;
use aistd::compliance::dp::mechanism::{DiscreteLaplace, Gaussian, Laplace};
use aistd::compliance::dp::rng::Csprng;
use aistd::compliance::fairness::stream::GroupCounter;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, StringArray};
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
    // Every policy evaluated by Cedar, through its own JSON context conversion: the baseline.
    g.bench_function("cedar_100_policies_unsliced", |b| {
        b.iter(|| cedar.evaluate_unsliced(&request).expect("eval").allowed())
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
    // The same counts streamed from Arrow: Int64 labels, a dictionary-encoded and a plain
    // string group column.
    let yt: ArrayRef = Arc::new(Int64Array::from(y_true.clone()));
    let yp: ArrayRef = Arc::new(Int64Array::from(y_pred.clone()));
    let dict: DictionaryArray<Int32Type> = groups.iter().copied().collect();
    let dict: ArrayRef = Arc::new(dict);
    let plain: ArrayRef = Arc::new(StringArray::from(groups.clone()));
    for (name, col) in [
        ("group_counter_arrow_dictionary", &dict),
        ("group_counter_arrow_utf8", &plain),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut c = GroupCounter::new(1).expect("counter");
                c.update(yt.as_ref(), yp.as_ref(), &[col.as_ref()], None)
                    .expect("update");
                c.finish().expect("frame").overall.count
            })
        });
    }
    g.finish();

    // Differential privacy: exact samplers and aggregates.
    let mut rng = Csprng::from_seed([3; 32]);
    let mut g = c.benchmark_group("dp");
    g.throughput(Throughput::Elements(1));
    let lap = Laplace::new(1.0).expect("laplace");
    g.bench_function("laplace_release", |b| {
        b.iter(|| lap.release(3.5, &mut rng).expect("r"))
    });
    let gauss = Gaussian::new(10.0).expect("gaussian");
    g.bench_function("gaussian_release", |b| {
        b.iter(|| gauss.release(3.5, &mut rng).expect("r"))
    });
    let dl = DiscreteLaplace::new(10.0).expect("dl");
    g.bench_function("discrete_laplace_sample", |b| {
        b.iter(|| dl.sample(&mut rng).expect("r"))
    });
    let values: ArrayRef = Arc::new(Float64Array::from(
        (0..n).map(|i| (i % 1000) as f64 * 0.37).collect::<Vec<_>>(),
    ));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("sum_1m_rows", |b| {
        b.iter(|| {
            aggregate::sum(values.as_ref(), 0.0, 400.0, 1.0, &mut rng)
                .expect("sum")
                .value
        })
    });
    g.bench_function("median_1m_rows_1001_candidates", |b| {
        b.iter(|| {
            aggregate::quantile(values.as_ref(), 0.5, 0.0, 400.0, 1001, 1.0, &mut rng)
                .expect("q")
                .value
        })
    });
    g.finish();
}

criterion_group!(compliance, benches);
criterion_main!(compliance);
