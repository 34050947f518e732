//! Federated averaging on digits with 10 clients holding label-skewed shards: FedAvg reaches
//! within 2 points of centralised training; secure aggregation gives the same model as plain
//! aggregation, also when a client drops out mid-round; FedProx and client-level DP run; bad
//! settings are named.

mod common;

use aistd_training::data::Dataset;
use aistd_training::federated::{
    Algorithm, Client, ClientDp, DatasetClient, FederatedConfig, split_iid, split_label_skew,
    train_federated,
};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{MlpModel, NdarrayTrainer, Silent, TrainConfig, metrics};

use common::{Basic, digits_unit as digits};
use std::sync::atomic::{AtomicUsize, Ordering};

fn local() -> TrainConfig {
    let mut c = TrainConfig::default();
    c.hidden = vec![64];
    c.epochs = 1;
    c.batch_size = 10;
    c.standardize = false;
    c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.3);
    c
}

fn accuracy(m: &MlpModel, d: &Dataset) -> f64 {
    let pred = m.predict_labels(d.x.view()).expect("predict");
    metrics::accuracy(d.labels().expect("labels"), &pred).expect("accuracy")
}

fn clients(shards: &[Dataset]) -> Vec<DatasetClient> {
    shards
        .iter()
        .enumerate()
        .map(|(i, d)| DatasetClient::new(format!("c{i}"), d.clone()).expect("client"))
        .collect()
}

#[test]
fn fedavg_on_label_skewed_digits_reaches_centralised_accuracy() {
    let (train, test) = digits();
    let mut central = local();
    central.epochs = 30;
    let (c_model, _) = NdarrayTrainer
        .fit_mlp(&train, None, &central, &mut Silent)
        .expect("central");
    let central_acc = accuracy(&c_model, &test);
    let owned = clients(&split_label_skew(&train, 10, 2, 3).expect("split"));
    let cs: Vec<&dyn Client> = owned.iter().map(|c| c as &dyn Client).collect();
    let mut config = FederatedConfig::default();
    config.local = local();
    config.rounds = 80;
    let (model, history) =
        train_federated(&cs, Some(&test), &config, None, &mut Silent).expect("fedavg");
    let fed_acc = accuracy(&model, &test);
    let needed = history
        .rounds
        .iter()
        .find(|r| r.accuracy.expect("measured") >= central_acc - 0.02)
        .map(|r| r.round);
    eprintln!(
        "centralised {central_acc:.4}; FedAvg (10 label-skewed clients, 2 shards each, E = 1, B = 10, SGD 0.3) {fed_acc:.4} after {} rounds; within 2 points from round {needed:?}",
        history.rounds.len()
    );
    assert!(central_acc > 0.95, "{central_acc}");
    assert!(fed_acc >= central_acc - 0.02, "{fed_acc} vs {central_acc}");
    assert!(needed.is_some());
    // With that accuracy as the target, training stops at the round that reached it.
    config.target_accuracy = Some(central_acc - 0.02);
    let (_, early) = train_federated(&cs, Some(&test), &config, None, &mut Silent).expect("fedavg");
    assert_eq!(early.reached_target, needed);
    assert_eq!(Some(early.rounds.len()), needed);
}

#[test]
fn secure_aggregation_fedprox_and_client_dp() {
    let (train, valid) = digits();
    let owned = clients(&split_iid(&train, 5, 1).expect("split"));
    let cs: Vec<&dyn Client> = owned.iter().map(|c| c as &dyn Client).collect();
    let mut config = FederatedConfig::default();
    config.local = local();
    config.local.epochs = 1;
    config.rounds = 3;
    config.fraction = 0.6;
    let run = |c: &FederatedConfig| {
        train_federated(&cs, Some(&valid), c, Some(&Basic), &mut Silent).expect("federated")
    };
    let (masked, h1) = run(&config);
    config.secure_aggregation = false;
    let (plain, h2) = run(&config);
    // The masks cancel: the same model, to the fixed-point encoding.
    let worst = masked
        .network()
        .parameters()
        .iter()
        .zip(plain.network().parameters())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-5,
        "secure vs plain aggregation differ by {worst}"
    );
    assert_eq!(h1.rounds.len(), 3);
    assert!(
        h1.rounds.iter().all(|r| r.clients == 3),
        "⌈0.6 · 5⌉ clients a round"
    );
    // FedProx keeps local models near the global one: smaller updates.
    config.algorithm = Algorithm::FedProx { mu: 1.0 };
    let (_, prox) = run(&config);
    assert!(
        prox.rounds[0].update_norm < h2.rounds[0].update_norm,
        "FedProx {} vs FedAvg {}",
        prox.rounds[0].update_norm,
        h2.rounds[0].update_norm
    );
    // Client-level DP: clipped updates, noise, and the rounds accounted.
    config.algorithm = Algorithm::FedAvg;
    config.client_dp = Some(ClientDp::new(0.5, 1.0));
    let (_, dp) = run(&config);
    let p = dp.privacy.expect("privacy record");
    assert_eq!((p.steps, p.sampling_rate, p.clip_norm), (3, 0.6, 0.5));
    let want = 3.0 * (2.0 * (1.25f64 / 1e-5).ln()).sqrt();
    assert!((p.epsilon.expect("ε") - want).abs() < 1e-9);
}

/// A client that fails on some of its calls (0-based), as one whose device goes offline.
struct Flaky {
    inner: DatasetClient,
    calls: AtomicUsize,
    fail_on: Vec<usize>,
}

impl Client for Flaky {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn examples(&self) -> usize {
        self.inner.examples()
    }

    fn train(
        &self,
        global: &aistd_training::nn::Mlp,
        config: &TrainConfig,
        proximal_mu: f32,
    ) -> aistd_training::Result<Vec<f32>> {
        if self
            .fail_on
            .contains(&self.calls.fetch_add(1, Ordering::SeqCst))
        {
            return Err(aistd_training::Error::InvalidInput {
                what: "client".into(),
                reason: "connection lost".into(),
            });
        }
        self.inner.train(global, config, proximal_mu)
    }
}

#[test]
fn a_client_that_drops_out_leaves_the_round_and_its_masks_are_removed() {
    let (train, valid) = digits();
    let shards = split_iid(&train, 4, 2).expect("split");
    let mut config = FederatedConfig::default();
    config.local = local();
    config.rounds = 3;
    // `fails`: (client, call) pairs that fail.
    let run = |config: &FederatedConfig, fails: &[(usize, usize)]| {
        let owned: Vec<Flaky> = clients(&shards)
            .into_iter()
            .enumerate()
            .map(|(i, inner)| Flaky {
                inner,
                calls: AtomicUsize::new(0),
                fail_on: fails.iter().filter(|f| f.0 == i).map(|f| f.1).collect(),
            })
            .collect();
        let cs: Vec<&dyn Client> = owned.iter().map(|c| c as &dyn Client).collect();
        train_federated(&cs, Some(&valid), config, None, &mut Silent)
    };
    // Client c2 goes offline in round 2.
    let (masked, h) = run(&config, &[(2, 1)]).expect("federated");
    let r = &h.rounds[1];
    assert_eq!((r.clients, r.dropped.len()), (3, 1), "{r:?}");
    assert_eq!(r.dropped[0].0, "c2");
    assert!(r.dropped[0].1.contains("connection lost"), "{r:?}");
    assert!(h.rounds[0].dropped.is_empty() && h.rounds[2].clients == 4);
    // The survivors' revealed seeds removed c2's masks: the model plain aggregation of the same
    // three updates gives.
    config.secure_aggregation = false;
    let (plain, _) = run(&config, &[(2, 1)]).expect("federated");
    let params = |m: &MlpModel| m.network().parameters().to_vec();
    let worst = params(&masked)
        .iter()
        .zip(params(&plain))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-5,
        "secure vs plain aggregation differ by {worst}"
    );
    let (everyone, _) = run(&config, &[]).expect("federated");
    assert_ne!(
        params(&everyone),
        params(&plain),
        "the dropout changed round 2"
    );
    // Every sampled client offline: the round fails, naming one.
    let all: Vec<(usize, usize)> = (0..4).map(|c| (c, 0)).collect();
    let e = run(&config, &all).expect_err("nobody left").to_string();
    assert!(
        e.contains("every sampled client dropped out") && e.contains("connection lost"),
        "{e}"
    );
}

#[test]
fn bad_federated_settings_are_named() {
    let (train, valid) = digits();
    let empty = train.subset(&[]);
    let e = DatasetClient::new("lonely", empty).expect_err("empty shard");
    assert!(
        e.to_string().contains("lonely") && e.to_string().contains("empty shard"),
        "{e}"
    );
    let owned = clients(&split_iid(&train, 3, 1).expect("split"));
    let cs: Vec<&dyn Client> = owned.iter().map(|c| c as &dyn Client).collect();
    let base = || {
        let mut c = FederatedConfig::default();
        c.local = local();
        c.local.epochs = 1;
        c.rounds = 1;
        c
    };
    let mut bad = Vec::new();
    let mut c = base();
    c.fraction = 0.0;
    bad.push((c, "fraction"));
    let mut c = base();
    c.rounds = 0;
    bad.push((c, "rounds"));
    let mut c = base();
    c.target_accuracy = Some(1.5);
    bad.push((c, "target accuracy"));
    let mut c = base();
    c.algorithm = Algorithm::FedProx { mu: -1.0 };
    bad.push((c, "μ"));
    let mut c = base();
    c.client_dp = Some(ClientDp::new(0.0, 1.0));
    bad.push((c, "clip"));
    for (c, want) in bad {
        let e = train_federated(&cs, Some(&valid), &c, None, &mut Silent).expect_err("bad");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let e = train_federated(&cs, None, &base(), None, &mut Silent).expect_err("no validation");
    assert!(e.to_string().contains("validation"), "{e}");
    let e = train_federated(&[], Some(&valid), &base(), None, &mut Silent).expect_err("none");
    assert!(e.to_string().contains("at least one client"), "{e}");
}

/// A client whose local training adds a fixed vector to the global parameters, holding
/// `examples` examples.
struct Fixed {
    id: String,
    examples: usize,
    step: f32,
}

impl Client for Fixed {
    fn id(&self) -> &str {
        &self.id
    }

    fn examples(&self) -> usize {
        self.examples
    }

    fn train(
        &self,
        global: &aistd_training::nn::Mlp,
        _: &TrainConfig,
        _: f32,
    ) -> aistd_training::Result<Vec<f32>> {
        Ok(global.parameters().iter().map(|p| p + self.step).collect())
    }
}

/// FedAvg weights each update by its client's examples: one round of clients moving every
/// parameter by +1 (30 examples) and −1 (10 examples) moves it by (30 − 10) / 40 = +0.5, with
/// and without secure aggregation; a client that reports no examples is refused by name.
#[test]
fn updates_are_weighted_by_each_clients_examples() {
    let (_, valid) = digits();
    let big = Fixed {
        id: "big".into(),
        examples: 30,
        step: 1.0,
    };
    let small = Fixed {
        id: "small".into(),
        examples: 10,
        step: -1.0,
    };
    let cs: Vec<&dyn Client> = vec![&big, &small];
    let mut c = FederatedConfig::default();
    c.local = local();
    c.rounds = 1;
    c.seed = 5;
    let start = aistd_training::nn::Mlp::new(
        aistd_training::nn::Architecture::new(
            64,
            vec![64],
            10,
            aistd_training::nn::Activation::Relu,
        ),
        5,
    )
    .expect("the initial network");
    for secure in [false, true] {
        c.secure_aggregation = secure;
        let (m, _) = train_federated(&cs, Some(&valid), &c, None, &mut Silent).expect("round");
        let moved: Vec<f32> = m
            .network()
            .parameters()
            .iter()
            .zip(start.parameters())
            .map(|(a, b)| a - b)
            .collect();
        assert!(
            moved.iter().all(|d| (d - 0.5).abs() < 1e-5),
            "secure {secure}: moved by {:?}…",
            &moved[..3]
        );
    }
    let none = Fixed {
        id: "ghost".into(),
        examples: 0,
        step: 0.0,
    };
    let cs: Vec<&dyn Client> = vec![&big, &none];
    let e = train_federated(&cs, Some(&valid), &c, None, &mut Silent).expect_err("empty");
    assert!(
        e.to_string().contains("ghost") && e.to_string().contains("empty shard"),
        "{e}"
    );
}

/// With client-level DP, Poisson sampling at q = 0.1 over 3 clients picks nobody in most rounds
/// (0.9³ ≈ 73%): such a round adds noise to a zero sum instead of failing.
#[test]
fn client_dp_rounds_that_sample_nobody_still_run() {
    let (_, valid) = digits();
    let a = Fixed {
        id: "a".into(),
        examples: 10,
        step: 0.1,
    };
    let b = Fixed {
        id: "b".into(),
        examples: 10,
        step: 0.1,
    };
    let c = Fixed {
        id: "c".into(),
        examples: 10,
        step: 0.1,
    };
    let cs: Vec<&dyn Client> = vec![&a, &b, &c];
    let mut config = FederatedConfig::default();
    config.local = local();
    config.rounds = 8;
    config.fraction = 0.1;
    config.secure_aggregation = true;
    config.client_dp = Some(ClientDp::new(1.0, 1.0));
    let (_, history) =
        train_federated(&cs, Some(&valid), &config, Some(&Basic), &mut Silent).expect("rounds");
    assert_eq!(history.rounds.len(), 8);
    assert!(
        history.rounds.iter().any(|r| r.clients == 0),
        "some round sampled nobody: {:?}",
        history.rounds.iter().map(|r| r.clients).collect::<Vec<_>>()
    );
}
