//! The conformance kit: what every [`Trainer`] must do (its `# Contract`). Each function checks
//! one clause on a trainer the caller provides and panics with the clause on failure.

use ndarray::Array2;

use crate::data::{Dataset, Target};
use crate::error::Error;
use crate::rng::Rng;
use crate::trainer::{EpochRecord, Observer, Silent, TrainConfig, Trainer};

/// Two well-separated Gaussian blobs in 4 dimensions, 200 rows.
pub fn separable(seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Array2::zeros((200, 4));
    let mut labels = Vec::new();
    for i in 0..200 {
        let c = (i % 2) as u32;
        for j in 0..4 {
            let noise = (rng.uniform() - 0.5) as f32;
            x[[i, j]] = noise + if c == 1 { 3.0 } else { -3.0 };
        }
        labels.push(c);
    }
    Dataset::new(
        x,
        Target::Classes {
            labels,
            names: vec!["a".into(), "b".into()],
        },
        (0..4).map(|j| format!("f{j}")).collect(),
    )
    .expect("a valid dataset")
}

fn config() -> TrainConfig {
    let base = TrainConfig::default();
    TrainConfig {
        hidden: vec![8],
        epochs: 5,
        batch_size: 16,
        optimizer: crate::optim::OptimizerConfig {
            lr: 0.05,
            ..base.optimizer
        },
        ..base
    }
}

fn labels(d: &Dataset) -> &[u32] {
    d.labels().unwrap_or(&[])
}

/// Clause 1: training on a separable problem lowers the loss and predicts it well.
pub fn fit_learns_a_separable_problem(trainer: &dyn Trainer) {
    let d = separable(1);
    let fitted = trainer
        .fit(&d, None, &config(), &mut Silent)
        .expect("clause 1: fit works");
    let h = &fitted.history.epochs;
    assert!(
        h.last().map(|e| e.train_loss) < h.first().map(|e| e.train_loss),
        "clause 1: the training loss falls ({h:?})"
    );
    let p = fitted.model.predict(d.x.view()).expect("predict");
    let hits = p
        .outer_iter()
        .zip(labels(&d))
        .filter(|(row, y)| (row[1] > row[0]) == (**y == 1))
        .count();
    assert!(
        hits >= 190,
        "clause 1: {hits}/200 right on a separable problem"
    );
}

/// Clause 2: save → load gives identical predictions.
pub fn save_and_load_round_trip(trainer: &dyn Trainer, dir: &std::path::Path) {
    let d = separable(2);
    let fitted = trainer.fit(&d, None, &config(), &mut Silent).expect("fit");
    fitted.model.save(dir).expect("clause 2: save works");
    let loaded = trainer.load(dir).expect("clause 2: load works");
    assert_eq!(
        fitted.model.predict(d.x.view()).expect("predict"),
        loaded.predict(d.x.view()).expect("predict"),
        "clause 2: identical predictions after a round trip"
    );
    assert_eq!(fitted.model.signature(), loaded.signature());
}

/// Clause 3: the same data, config and seed give the same model.
pub fn deterministic_for_a_seed(trainer: &dyn Trainer) {
    let d = separable(3);
    let a = trainer.fit(&d, None, &config(), &mut Silent).expect("fit");
    let b = trainer.fit(&d, None, &config(), &mut Silent).expect("fit");
    assert_eq!(
        a.model.predict(d.x.view()).expect("predict"),
        b.model.predict(d.x.view()).expect("predict"),
        "clause 3: deterministic for a seed"
    );
}

struct CancelAfter(usize, usize);

impl Observer for CancelAfter {
    fn on_epoch(&mut self, _: &EpochRecord) {
        self.1 += 1;
    }
    fn cancelled(&self) -> bool {
        self.1 >= self.0
    }
}

/// Clause 4: an observer's cancellation stops training.
pub fn cancellation_is_honoured(trainer: &dyn Trainer) {
    let d = separable(4);
    let mut obs = CancelAfter(2, 0);
    match trainer.fit(&d, None, &config(), &mut obs) {
        Err(Error::Cancelled(epoch)) => assert_eq!(epoch, 3, "clause 4: stops in epoch 3"),
        other => panic!("clause 4: expected Cancelled, got {other:?}"),
    }
}

/// Every clause (`dir`: an empty directory for the model files).
pub fn run_all(trainer: &dyn Trainer, dir: &std::path::Path) {
    fit_learns_a_separable_problem(trainer);
    save_and_load_round_trip(trainer, dir);
    deterministic_for_a_seed(trainer);
    cancellation_is_honoured(trainer);
}
