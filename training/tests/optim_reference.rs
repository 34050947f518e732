//! The optimizers against PyTorch 2.13's own trajectories: every update rule (SGD, momentum,
//! Nesterov, Adam, AdamW, Adagrad, RMSprop), L2 weight decay coupled and decoupled, L1, gradient
//! clipping by global norm, and the step, cosine and warm-up schedules, 12 steps each on a
//! quadratic. The vectors (`tests/data/torch_optim.json`) were written by
//! `scripts/peers/make_optim_vectors.py`; `scripts/test.sh` writes them again with the PyTorch it
//! installs and runs this test on both.

use aistd_training::optim::{Optimizer, OptimizerConfig, OptimizerKind, Schedule};

/// The configuration of each case, as the generator builds it in PyTorch.
fn config(case: &str) -> OptimizerConfig {
    let mut c = match case {
        "sgd" | "sgd_weight_decay" | "sgd_l1" | "sgd_clip" => {
            OptimizerConfig::new(OptimizerKind::Sgd, 0.1)
        }
        "momentum" => OptimizerConfig::new(OptimizerKind::momentum(false), 0.05),
        "nesterov" => OptimizerConfig::new(OptimizerKind::momentum(true), 0.05),
        "adam" | "adam_weight_decay" | "adam_cosine" => {
            OptimizerConfig::new(OptimizerKind::adam(), 0.1)
        }
        "adamw" => OptimizerConfig::new(OptimizerKind::adamw(), 0.1),
        "adagrad" => OptimizerConfig::new(OptimizerKind::adagrad(), 0.3),
        "rmsprop" => OptimizerConfig::new(OptimizerKind::rmsprop(), 0.01),
        "sgd_step_lr" | "sgd_warmup" => OptimizerConfig::new(OptimizerKind::Sgd, 0.2),
        other => panic!("no configuration for case {other}"),
    };
    match case {
        "sgd_weight_decay" => c.weight_decay = 0.05,
        "adam_weight_decay" | "adamw" => c.weight_decay = 0.1,
        "sgd_l1" => c.l1 = 0.2,
        "sgd_clip" => c.clip_norm = Some(1.0),
        "sgd_step_lr" => {
            c.schedule = Schedule::Step {
                every: 4,
                gamma: 0.5,
            }
        }
        "adam_cosine" => {
            c.schedule = Schedule::Cosine {
                epochs: 12,
                min_lr: 0.01,
            }
        }
        "sgd_warmup" => c.warmup_steps = 5,
        _ => {}
    }
    c
}

fn check(path: &str, text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).expect("vectors");
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    };
    let a: Vec<Vec<f32>> = v["a"].as_array().expect("a").iter().map(floats).collect();
    let c = floats(&v["c"]);
    let cases = v["cases"].as_object().expect("cases");
    assert_eq!(cases.len(), 14, "{path}");
    for (name, case) in cases {
        let want: Vec<Vec<f32>> = case["params"]
            .as_array()
            .expect("params")
            .iter()
            .map(floats)
            .collect();
        let lrs = floats(&case["lr"]);
        let cfg = config(name);
        let mut opt = Optimizer::new(cfg, 4).expect("optimizer");
        let mut p = floats(&v["p0"]);
        for (step, (want, lr)) in want.iter().zip(&lrs).enumerate() {
            // One scheduler step per optimizer step: epoch = step.
            let ours = cfg.lr_at(step, opt.steps());
            assert!(
                (ours - lr).abs() <= 1e-6 * lr.abs().max(1.0),
                "{path} {name} step {step}: lr {ours} vs PyTorch's {lr}"
            );
            let d: Vec<f32> = p.iter().zip(&c).map(|(p, c)| p - c).collect();
            let mut g: Vec<f32> = a
                .iter()
                .map(|row| row.iter().zip(&d).map(|(a, d)| a * d).sum())
                .collect();
            opt.step(&mut p, &mut g, ours);
            for (k, (got, w)) in p.iter().zip(want).enumerate() {
                assert!(
                    (got - w).abs() <= 2e-5 * w.abs().max(1.0),
                    "{path} {name} step {step}, parameter {k}: {got} vs PyTorch's {w}"
                );
            }
        }
    }
}

#[test]
fn optimizers_follow_pytorchs_trajectories() {
    check(
        "tests/data/torch_optim.json",
        include_str!("data/torch_optim.json"),
    );
    // scripts/test.sh regenerates the vectors with the PyTorch it installs.
    if let Ok(path) = std::env::var("AISTD_TORCH_OPTIM_VECTORS") {
        check(
            &path,
            &std::fs::read_to_string(&path).expect("regenerated vectors"),
        );
    }
}
