//! Adversarial examples, robustness evaluation and adversarial training.
//!
//! - FGSM (Goodfellow, Shlens & Szegedy 2015): one step x + ε·sign(∇ₓL).
//! - PGD (Madry et al. 2018): from a random start in the ε-ball around x, `steps` steps of size
//!   α along sign(∇ₓL) (L∞) or ∇ₓL / ‖∇ₓL‖₂ (L2), each projected back onto the ball (and into
//!   the features' valid range, when given), as torchattacks and ART run them. [`Attack::pgd`]
//!   takes Madry et al.'s 10 steps of α = 2.5·ε / steps.
//!
//! Attacks work in the model's input space, the features [`crate::Model::predict`] takes, so ε
//! means the same before and after the model's standardization; the gradient is followed
//! through it. ∇ₓL is each example's own loss gradient (targets: the true labels).
//!
//! Adversarial training ([`AdversarialConfig`], [`crate::TrainConfig::adversarial`]) replaces a
//! fraction of every batch by adversarial examples made against the current weights:
//! Goodfellow et al.'s even mix at 0.5, Madry et al.'s min–max at 1.

use ndarray::{Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::metrics;
use crate::nn::Targets;
use crate::privacy::gaussian;
use crate::rng::Rng;
use crate::trainer::MlpModel;

/// The norm bounding a perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Norm {
    /// Largest absolute change of any feature.
    Linf,
    /// Euclidean length of the change.
    L2,
}

impl Norm {
    /// `linf` (or `inf`) or `l2`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l_inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            other => Err(Error::invalid(
                "attack norm",
                format!("`{other}` is not linf or l2"),
            )),
        }
    }
}

/// An evasion attack on a differentiable model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attack {
    /// Fast gradient sign method (L∞).
    Fgsm {
        /// ε: the largest change of a feature.
        epsilon: f32,
    },
    /// Projected gradient descent on the loss (ascent, to be precise).
    Pgd {
        /// The ball's norm.
        norm: Norm,
        /// Its radius ε.
        epsilon: f32,
        /// α: the length of one step (in `norm`).
        step_size: f32,
        /// Steps.
        steps: usize,
        /// Start from a uniformly random point of the ball instead of x.
        random_start: bool,
    },
}

impl Attack {
    /// FGSM with radius `epsilon`.
    pub fn fgsm(epsilon: f32) -> Self {
        Attack::Fgsm { epsilon }
    }

    /// PGD in `norm` with radius `epsilon`: 10 steps of 2.5·ε / 10 from a random start
    /// (Madry et al. 2018).
    pub fn pgd(norm: Norm, epsilon: f32) -> Self {
        Attack::Pgd {
            norm,
            epsilon,
            step_size: 2.5 * epsilon / 10.0,
            steps: 10,
            random_start: true,
        }
    }

    /// `fgsm` or `pgd` (PGD's defaults of [`Attack::pgd`]) with radius `epsilon`.
    pub fn from_name(name: &str, norm: Norm, epsilon: f32) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "fgsm" if norm == Norm::Linf => Ok(Attack::fgsm(epsilon)),
            "fgsm" => Err(Error::invalid(
                "attack",
                "FGSM is an L∞ attack; use pgd for L2",
            )),
            "pgd" => Ok(Attack::pgd(norm, epsilon)),
            other => Err(Error::invalid(
                "attack",
                format!("`{other}` is not fgsm or pgd"),
            )),
        }
    }

    /// The radius ε.
    pub fn epsilon(&self) -> f32 {
        match *self {
            Attack::Fgsm { epsilon } | Attack::Pgd { epsilon, .. } => epsilon,
        }
    }

    /// The same attack with radius `epsilon` (PGD's step scaled with it).
    pub fn with_epsilon(self, epsilon: f32) -> Self {
        match self {
            Attack::Fgsm { .. } => Attack::Fgsm { epsilon },
            Attack::Pgd {
                norm,
                epsilon: old,
                step_size,
                steps,
                random_start,
            } => Attack::Pgd {
                norm,
                epsilon,
                step_size: if old > 0.0 {
                    step_size * epsilon / old
                } else {
                    2.5 * epsilon / steps.max(1) as f32
                },
                steps,
                random_start,
            },
        }
    }

    /// A short description, `pgd-linf(ε=0.1, 10×0.025)`.
    pub fn describe(&self) -> String {
        match *self {
            Attack::Fgsm { epsilon } => format!("fgsm(ε={epsilon})"),
            Attack::Pgd {
                norm,
                epsilon,
                step_size,
                steps,
                ..
            } => {
                let n = match norm {
                    Norm::Linf => "linf",
                    Norm::L2 => "l2",
                };
                format!("pgd-{n}(ε={epsilon}, {steps}×{step_size})")
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let eps = self.epsilon();
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "attack",
                format!("ε = {eps} must be ≥ 0 and finite"),
            ));
        }
        if let Attack::Pgd {
            step_size, steps, ..
        } = *self
        {
            if !(step_size > 0.0 && step_size.is_finite()) && eps > 0.0 {
                return Err(Error::invalid(
                    "attack",
                    format!("PGD step size {step_size} must be positive and finite"),
                ));
            }
            if steps == 0 {
                return Err(Error::invalid("attack", "PGD needs at least one step"));
            }
        }
        Ok(())
    }
}

/// Adversarial training's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdversarialConfig {
    /// The attack that makes the training examples.
    pub attack: Attack,
    /// The fraction of every batch replaced by adversarial examples, in (0, 1].
    pub fraction: f32,
    /// The features' valid range, kept by every adversarial example (e.g. pixels in [0, 1]).
    pub bounds: Option<(f32, f32)>,
}

impl AdversarialConfig {
    /// Half of every batch adversarial (Goodfellow et al. 2015), no bounds.
    pub fn new(attack: Attack) -> Self {
        Self {
            attack,
            fraction: 0.5,
            bounds: None,
        }
    }

    /// With `fraction` of every batch adversarial.
    pub fn with_fraction(mut self, fraction: f32) -> Self {
        self.fraction = fraction;
        self
    }

    /// With the features kept in `[lo, hi]`.
    pub fn with_bounds(mut self, lo: f32, hi: f32) -> Self {
        self.bounds = Some((lo, hi));
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.attack.validate()?;
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(Error::invalid(
                "adversarial training",
                format!("fraction {} must be in (0, 1]", self.fraction),
            ));
        }
        check_bounds(self.bounds)
    }
}

fn check_bounds(bounds: Option<(f32, f32)>) -> Result<()> {
    match bounds {
        Some((lo, hi)) if !(lo < hi && lo.is_finite() && hi.is_finite()) => Err(Error::invalid(
            "attack bounds",
            format!("[{lo}, {hi}] is not a finite range"),
        )),
        _ => Ok(()),
    }
}

fn sign(g: f32) -> f32 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Adversarial versions of the rows of `x` under `attack`, `grad` giving each row's loss
/// gradient with respect to it, kept within `bounds`.
pub(crate) fn perturb(
    attack: &Attack,
    x: ArrayView2<f32>,
    bounds: Option<(f32, f32)>,
    rng: &mut Rng,
    grad: &dyn Fn(ArrayView2<f32>) -> Result<Array2<f32>>,
) -> Result<Array2<f32>> {
    attack.validate()?;
    check_bounds(bounds)?;
    let clamp = |a: &mut Array2<f32>| {
        if let Some((lo, hi)) = bounds {
            a.mapv_inplace(|v| v.clamp(lo, hi));
        }
    };
    let mut adv = x.to_owned();
    match *attack {
        Attack::Fgsm { epsilon } => {
            let g = grad(x)?;
            Zip::from(&mut adv)
                .and(&g)
                .for_each(|a, g| *a += epsilon * sign(*g));
            clamp(&mut adv);
        }
        Attack::Pgd {
            norm,
            epsilon,
            step_size,
            steps,
            random_start,
        } => {
            if random_start && epsilon > 0.0 {
                for mut row in adv.outer_iter_mut() {
                    match norm {
                        Norm::Linf => {
                            for v in row.iter_mut() {
                                *v += epsilon * (2.0 * rng.uniform() as f32 - 1.0);
                            }
                        }
                        Norm::L2 => {
                            // A random direction, at a radius uniform in [0, ε] (torchattacks).
                            let d: Vec<f32> = row.iter().map(|_| gaussian(rng) as f32).collect();
                            let len = d.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                            let r = epsilon * rng.uniform() as f32;
                            for (v, di) in row.iter_mut().zip(&d) {
                                *v += r * di / len;
                            }
                        }
                    }
                }
                clamp(&mut adv);
            }
            for _ in 0..steps {
                let g = grad(adv.view())?;
                for ((mut a, x0), g) in adv.outer_iter_mut().zip(x.outer_iter()).zip(g.outer_iter())
                {
                    match norm {
                        Norm::Linf => {
                            for ((a, x0), g) in a.iter_mut().zip(x0.iter()).zip(g.iter()) {
                                let moved = *a + step_size * sign(*g);
                                *a = x0 + (moved - x0).clamp(-epsilon, epsilon);
                            }
                        }
                        Norm::L2 => {
                            let len = g.iter().map(|v| v * v).sum::<f32>().sqrt();
                            if len > 0.0 {
                                for (a, g) in a.iter_mut().zip(g.iter()) {
                                    *a += step_size * g / len;
                                }
                            }
                            let dist = a
                                .iter()
                                .zip(x0.iter())
                                .map(|(a, x0)| (a - x0) * (a - x0))
                                .sum::<f32>()
                                .sqrt();
                            if dist > epsilon {
                                let s = epsilon / dist;
                                for (a, x0) in a.iter_mut().zip(x0.iter()) {
                                    *a = x0 + (*a - x0) * s;
                                }
                            }
                        }
                    }
                }
                clamp(&mut adv);
            }
        }
    }
    if adv.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "attack",
            "the model's gradient is not finite at these inputs",
        ));
    }
    Ok(adv)
}

/// Accuracy on clean and on adversarial examples, for one attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Robustness {
    /// The attack.
    pub attack: Attack,
    /// Accuracy on the unperturbed examples.
    pub clean_accuracy: f64,
    /// Accuracy on their adversarial versions.
    pub adversarial_accuracy: f64,
}

/// Clean and adversarial accuracy of `model` on `data` (classes) under each attack, features
/// kept within `bounds`; the attacks' random starts drawn from `seed`.
pub fn evaluate_robustness(
    model: &MlpModel,
    data: &Dataset,
    attacks: &[Attack],
    bounds: Option<(f32, f32)>,
    seed: u64,
) -> Result<Vec<Robustness>> {
    let labels = data.labels().ok_or_else(|| {
        Error::invalid(
            "robustness evaluation",
            "needs class labels (accuracy is not defined for values)",
        )
    })?;
    let clean = metrics::accuracy(labels, &model.predict_labels(data.x.view())?)?;
    let root = Rng::new(seed);
    attacks
        .iter()
        .enumerate()
        .map(|(i, attack)| {
            let adv = model.adversarial(
                data.x.view(),
                Targets::Classes(labels),
                attack,
                bounds,
                &mut root.fork(i as u64 + 1),
            )?;
            Ok(Robustness {
                attack: *attack,
                clean_accuracy: clean,
                adversarial_accuracy: metrics::accuracy(
                    labels,
                    &model.predict_labels(adv.view())?,
                )?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A linear loss L = w · x per row: its gradient is w everywhere, so every attack's answer
    /// is known in closed form.
    fn linear(w: Vec<f32>) -> impl Fn(ArrayView2<f32>) -> Result<Array2<f32>> {
        move |x: ArrayView2<f32>| Ok(Array2::from_shape_fn(x.dim(), |(_, j)| w[j]))
    }

    #[test]
    fn fgsm_and_pgd_follow_the_gradient_within_the_ball() {
        let x = array![[0.5f32, 0.5, 0.5], [0.0, 1.0, 0.2]];
        let g = linear(vec![2.0, -0.5, 0.0]);
        let mut rng = Rng::new(1);
        let fgsm = perturb(&Attack::fgsm(0.1), x.view(), None, &mut rng, &g).expect("fgsm");
        assert_eq!(fgsm, array![[0.6f32, 0.4, 0.5], [0.1, 0.9, 0.2]]);
        // Bounds [0, 1] clip what leaves the range.
        let clipped =
            perturb(&Attack::fgsm(0.1), x.view(), Some((0.0, 1.0)), &mut rng, &g).expect("fgsm");
        assert_eq!(clipped.row(1).to_vec(), vec![0.1f32, 0.9, 0.2]);
        // PGD L∞ from a random start ends at the corner the gradient points to (ε = 0.1 is
        // reached in 10 steps of 0.025), except where the gradient is 0.
        let pgd =
            perturb(&Attack::pgd(Norm::Linf, 0.1), x.view(), None, &mut rng, &g).expect("pgd");
        for (a, x0) in pgd.outer_iter().zip(x.outer_iter()) {
            assert!((a[0] - (x0[0] + 0.1)).abs() < 1e-6, "{a}");
            assert!((a[1] - (x0[1] - 0.1)).abs() < 1e-6, "{a}");
            assert!(
                (a[2] - x0[2]).abs() <= 0.1 + 1e-6,
                "random start stays in the ball"
            );
        }
        // PGD L2 ends on the sphere of radius ε, in the gradient's direction from x itself,
        // and close to it from a random start (the projection shrinks the rest each step).
        let dir = [2.0f32, -0.5, 0.0];
        let len = (4.25f32).sqrt();
        for (random_start, min_cos) in [(false, 0.9999), (true, 0.9)] {
            let attack = Attack::Pgd {
                norm: Norm::L2,
                epsilon: 0.5,
                step_size: 0.125,
                steps: 10,
                random_start,
            };
            let pgd2 = perturb(&attack, x.view(), None, &mut rng, &g).expect("pgd");
            for (a, x0) in pgd2.outer_iter().zip(x.outer_iter()) {
                let d: Vec<f32> = a.iter().zip(x0.iter()).map(|(a, b)| a - b).collect();
                let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
                assert!(norm <= 0.5 + 1e-5, "inside the ball: {norm}");
                let cos = d.iter().zip(dir).map(|(a, b)| a * b).sum::<f32>() / (norm * len);
                assert!(norm > 0.499 && cos > min_cos, "norm {norm}, cosine {cos}");
            }
        }
    }

    #[test]
    fn bad_attacks_are_refused() {
        let g = linear(vec![1.0]);
        let x = array![[0.0f32]];
        let mut rng = Rng::new(1);
        for bad in [
            Attack::fgsm(-0.1),
            Attack::fgsm(f32::NAN),
            Attack::Pgd {
                norm: Norm::Linf,
                epsilon: 0.1,
                step_size: 0.0,
                steps: 10,
                random_start: true,
            },
            Attack::Pgd {
                norm: Norm::L2,
                epsilon: 0.1,
                step_size: 0.01,
                steps: 0,
                random_start: false,
            },
        ] {
            let e = perturb(&bad, x.view(), None, &mut rng, &g).expect_err("bad attack");
            assert!(e.to_string().contains("attack"), "{e}");
        }
        let e = perturb(&Attack::fgsm(0.1), x.view(), Some((1.0, 0.0)), &mut rng, &g)
            .expect_err("bad bounds");
        assert!(e.to_string().contains("bounds"), "{e}");
        assert!(Attack::from_name("fgsm", Norm::L2, 0.1).is_err());
        assert!(Attack::from_name("cw", Norm::Linf, 0.1).is_err());
        assert!(Norm::from_name("l1").is_err());
        for bad in [0.0f32, 1.5, f32::NAN] {
            let c = AdversarialConfig::new(Attack::fgsm(0.1)).with_fraction(bad);
            assert!(c.validate().is_err(), "fraction {bad}");
        }
    }
}
