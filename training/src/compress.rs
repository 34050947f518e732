//! Compression by magnitude pruning (Han et al. 2015, "Learning both Weights and Connections for
//! Efficient Neural Networks"): the weights of smallest magnitude are set to zero and kept
//! there while the network is fine-tuned, in one shot or over several prune → fine-tune stages
//! (the sparsity rising as Zhu & Gupta 2017's cubic schedule).
//!
//! - Unstructured pruning zeroes single weights, ranked over the whole network
//!   ([`PruneScope::Global`]) or within each layer ([`PruneScope::PerLayer`]).
//! - Structured pruning ([`PruneStructure::Neurons`]) removes whole hidden units — the L2 norm
//!   of a unit's incoming weights ranks it; its incoming weights, bias and outgoing weights are
//!   zeroed — so a smaller dense network could replace it.
//!
//! Biases are never pruned (they are a sliver of the parameters). A saved model stores each
//! layer whose weights are at least half zeros sparsely: `layers.N.weight.indices` (U32, the
//! positions in PyTorch's [out, in] row-major layout) and `layers.N.weight.values` (F32).

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nn::Mlp;
use crate::trainer::{History, MlpModel, NdarrayTrainer, Observer, TrainConfig, Warm};

/// Where magnitudes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PruneScope {
    /// One threshold over every layer's weights.
    Global,
    /// The same sparsity in each layer.
    PerLayer,
}

/// What is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PruneStructure {
    /// Single weights.
    Unstructured,
    /// Whole hidden units (each hidden layer loses `sparsity` of its units).
    Neurons,
}

/// How much to prune, and how.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PruneConfig {
    /// The fraction of weights (or of hidden units) removed, in [0, 1).
    pub sparsity: f32,
    /// Global or per layer (unstructured pruning).
    pub scope: PruneScope,
    /// Weights or units.
    pub structure: PruneStructure,
}

impl PruneConfig {
    /// Unstructured, one threshold over the network.
    pub fn global(sparsity: f32) -> Self {
        Self {
            sparsity,
            scope: PruneScope::Global,
            structure: PruneStructure::Unstructured,
        }
    }

    /// Unstructured, the same sparsity in every layer.
    pub fn per_layer(sparsity: f32) -> Self {
        Self {
            scope: PruneScope::PerLayer,
            ..Self::global(sparsity)
        }
    }

    /// Whole hidden units.
    pub fn neurons(sparsity: f32) -> Self {
        Self {
            scope: PruneScope::PerLayer,
            structure: PruneStructure::Neurons,
            sparsity,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(Error::invalid(
                "pruning",
                format!("ratio {} must be in [0, 1)", self.sparsity),
            ));
        }
        Ok(())
    }
}

/// Which parameters survive pruning (biases always do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    keep: Vec<bool>,
}

impl Mask {
    /// Everything kept.
    pub fn dense(net: &Mlp) -> Self {
        Self {
            keep: vec![true; net.parameters().len()],
        }
    }

    /// Per parameter, whether it is kept.
    pub fn keep(&self) -> &[bool] {
        &self.keep
    }

    /// Zeroes the pruned parameters of `params`.
    pub fn apply(&self, params: &mut [f32]) {
        for (p, k) in params.iter_mut().zip(&self.keep) {
            if !k {
                *p = 0.0;
            }
        }
    }
}

/// The fraction of `net`'s weights (biases excluded) that are exactly zero.
pub fn weight_sparsity(net: &Mlp) -> f64 {
    let (mut zeros, mut total) = (0usize, 0usize);
    for (l, (i, o)) in net.architecture().layers().into_iter().enumerate() {
        let r = net.layer_range(l);
        let w = &net.parameters()[r.start..r.start + i * o];
        zeros += w.iter().filter(|v| **v == 0.0).count();
        total += w.len();
    }
    zeros as f64 / total.max(1) as f64
}

/// The mask that prunes `net` to `config`, never bringing back what `previous` pruned.
pub fn magnitude_mask(net: &Mlp, config: &PruneConfig, previous: Option<&Mask>) -> Result<Mask> {
    config.validate()?;
    let params = net.parameters();
    let mut keep = previous.map_or_else(|| vec![true; params.len()], |m| m.keep.clone());
    if keep.len() != params.len() {
        return Err(Error::invalid(
            "pruning",
            "the previous mask is for another architecture",
        ));
    }
    let layers = net.architecture().layers();
    // A weight's score: its magnitude, or 0 once pruned (pruned ones go first).
    let score = |k: usize| if keep[k] { params[k].abs() } else { -1.0 };
    match config.structure {
        PruneStructure::Unstructured => {
            let groups: Vec<Vec<usize>> = match config.scope {
                PruneScope::Global => vec![
                    (0..layers.len())
                        .flat_map(|l| {
                            let r = net.layer_range(l);
                            r.start..r.start + layers[l].0 * layers[l].1
                        })
                        .collect(),
                ],
                PruneScope::PerLayer => (0..layers.len())
                    .map(|l| {
                        let r = net.layer_range(l);
                        (r.start..r.start + layers[l].0 * layers[l].1).collect()
                    })
                    .collect(),
            };
            let mut cut = Vec::new();
            for mut g in groups {
                let k = (f64::from(config.sparsity) * g.len() as f64).round() as usize;
                g.sort_by(|a, b| score(*a).total_cmp(&score(*b)).then(a.cmp(b)));
                cut.extend_from_slice(&g[..k]);
            }
            for k in cut {
                keep[k] = false;
            }
        }
        PruneStructure::Neurons => {
            for l in 0..layers.len().saturating_sub(1) {
                let (i, o) = layers[l];
                let r = net.layer_range(l);
                let next = net.layer_range(l + 1);
                let out_next = layers[l + 1].1;
                // Unit j: column j of the [in, out] weights.
                let norm = |j: usize| -> f32 {
                    if !keep[r.start + i * o + j] {
                        return -1.0;
                    }
                    (0..i)
                        .map(|row| params[r.start + row * o + j].powi(2))
                        .sum::<f32>()
                        .sqrt()
                };
                let mut units: Vec<usize> = (0..o).collect();
                units.sort_by(|a, b| norm(*a).total_cmp(&norm(*b)).then(a.cmp(b)));
                let k = (f64::from(config.sparsity) * o as f64).round() as usize;
                for &j in &units[..k] {
                    for row in 0..i {
                        keep[r.start + row * o + j] = false;
                    }
                    // Its bias (the one bias ever pruned: the unit is gone).
                    keep[r.start + i * o + j] = false;
                    for c in 0..out_next {
                        keep[next.start + j * out_next + c] = false;
                    }
                }
            }
        }
    }
    Ok(Mask { keep })
}

impl MlpModel {
    /// This model pruned to `config` (no fine-tuning), and the mask.
    pub fn pruned(&self, config: &PruneConfig) -> Result<(MlpModel, Mask)> {
        let mask = magnitude_mask(self.network(), config, None)?;
        let mut params = self.network().parameters().to_vec();
        mask.apply(&mut params);
        let net = Mlp::from_parameters(self.network().architecture().clone(), params)?;
        Ok((self.with_network(net), mask))
    }
}

/// Fine-tunes `model` with its pruned weights held at zero (`mask`), on `train` (standardized
/// as the model standardizes), as `config` says (its architecture fields are ignored).
pub fn fine_tune_pruned(
    model: &MlpModel,
    mask: &Mask,
    train: &Dataset,
    valid: Option<&Dataset>,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, History)> {
    let net = model.network();
    if mask.keep.len() != net.parameters().len() {
        return Err(Error::invalid(
            "pruning",
            "the mask is for another architecture",
        ));
    }
    let scale = |d: &Dataset| -> Result<Dataset> {
        let x = model.standardize(&d.x)?;
        Dataset::new(x, d.y.clone(), d.features.clone())
    };
    let train = scale(train)?;
    let valid = valid.map(scale).transpose()?;
    let arch = net.architecture();
    let mut c = config.clone();
    c.hidden = arch.hidden.clone();
    c.activation = arch.activation;
    c.standardize = false;
    let mut initial = net.parameters().to_vec();
    mask.apply(&mut initial);
    c.local = Some(Warm {
        initial,
        proximal_mu: 0.0,
        outputs: arch.outputs,
        mask: Some(mask.keep.clone()),
    });
    let (m, history) = NdarrayTrainer.fit_mlp(&train, valid.as_ref(), &c, observer)?;
    Ok((
        model.with_network(m.network().clone()).with_record_of(&m),
        history,
    ))
}

/// One stage of iterative pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PruneStage {
    /// 1-based.
    pub stage: usize,
    /// The weight sparsity after it.
    pub sparsity: f64,
    /// The last validation metric of its fine-tuning (with validation data).
    pub valid_metric: Option<f64>,
}

/// Prunes to `target` in `stages` prune → fine-tune stages (sparsity sₖ = s·(1 − (1 − k/n)³)),
/// each fine-tuned as `config` says.
pub fn prune_iteratively(
    model: &MlpModel,
    train: &Dataset,
    valid: Option<&Dataset>,
    target: &PruneConfig,
    stages: usize,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, Mask, Vec<PruneStage>)> {
    target.validate()?;
    if stages == 0 {
        return Err(Error::invalid("pruning", "needs at least one stage"));
    }
    let mut current = model.clone();
    let mut mask: Option<Mask> = None;
    let mut record = Vec::new();
    for k in 1..=stages {
        let frac = k as f32 / stages as f32;
        let s = target.sparsity * (1.0 - (1.0 - frac).powi(3));
        let stage_config = PruneConfig {
            sparsity: s,
            ..*target
        };
        let m = magnitude_mask(current.network(), &stage_config, mask.as_ref())?;
        let (tuned, history) = fine_tune_pruned(&current, &m, train, valid, config, observer)?;
        record.push(PruneStage {
            stage: k,
            sparsity: weight_sparsity(tuned.network()),
            valid_metric: history.epochs.last().and_then(|e| e.valid_metric),
        });
        tracing::info!(stage = k, sparsity = s, "pruned and fine-tuned");
        current = tuned;
        mask = Some(m);
    }
    let mask = mask.unwrap_or_else(|| Mask::dense(current.network()));
    Ok((current, mask, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, Architecture};

    fn net() -> Mlp {
        Mlp::new(Architecture::new(6, vec![8, 5], 3, Activation::Relu), 1).expect("net")
    }

    #[test]
    fn masks_prune_the_smallest_weights_and_never_revive_them() {
        let n = net();
        for config in [PruneConfig::global(0.5), PruneConfig::per_layer(0.5)] {
            let m = magnitude_mask(&n, &config, None).expect("mask");
            let mut p = n.parameters().to_vec();
            m.apply(&mut p);
            let pruned = Mlp::from_parameters(n.architecture().clone(), p.clone()).expect("net");
            assert!((weight_sparsity(&pruned) - 0.5).abs() < 0.01, "{config:?}");
            // Every pruned weight is no larger than every kept one (globally, or per layer).
            let layers = n.architecture().layers();
            let groups: Vec<Vec<usize>> = match config.scope {
                PruneScope::Global => vec![
                    (0..layers.len())
                        .flat_map(|l| {
                            let r = n.layer_range(l);
                            r.start..r.start + layers[l].0 * layers[l].1
                        })
                        .collect(),
                ],
                _ => (0..layers.len())
                    .map(|l| {
                        let r = n.layer_range(l);
                        (r.start..r.start + layers[l].0 * layers[l].1).collect()
                    })
                    .collect(),
            };
            for g in groups {
                let cut = g
                    .iter()
                    .filter(|k| !m.keep()[**k])
                    .map(|k| n.parameters()[*k].abs())
                    .fold(0.0f32, f32::max);
                let kept = g
                    .iter()
                    .filter(|k| m.keep()[**k])
                    .map(|k| n.parameters()[*k].abs())
                    .fold(f32::INFINITY, f32::min);
                assert!(cut <= kept, "{config:?}: pruned {cut} > kept {kept}");
            }
            // Biases stay.
            for (l, (i, o)) in layers.iter().enumerate() {
                let r = n.layer_range(l);
                assert!(m.keep()[r.start + i * o..r.end].iter().all(|k| *k));
            }
            // A later, sparser mask contains the earlier one, even if the pruned weights grew back.
            let mut grown = n.parameters().to_vec();
            for (v, k) in grown.iter_mut().zip(m.keep()) {
                if !k {
                    *v = 100.0;
                }
            }
            let g = Mlp::from_parameters(n.architecture().clone(), grown).expect("net");
            let later = magnitude_mask(
                &g,
                &PruneConfig {
                    sparsity: 0.7,
                    ..config
                },
                Some(&m),
            )
            .expect("mask");
            assert!(m.keep().iter().zip(later.keep()).all(|(a, b)| *a || !*b));
        }
        for bad in [-0.1f32, 1.0, f32::NAN] {
            let e = magnitude_mask(&n, &PruneConfig::global(bad), None).expect_err("ratio");
            assert!(e.to_string().contains("[0, 1)"), "{e}");
        }
    }

    #[test]
    fn neuron_pruning_removes_whole_units() {
        let n = net();
        let m = magnitude_mask(&n, &PruneConfig::neurons(0.5), None).expect("mask");
        let mut p = n.parameters().to_vec();
        m.apply(&mut p);
        let pruned = Mlp::from_parameters(n.architecture().clone(), p).expect("net");
        // Half the units of each hidden layer are gone: their incoming weights, bias and
        // outgoing weights pruned, so whatever their incoming weights are, the outputs agree.
        let layers = n.architecture().layers();
        let mut gone = Vec::new();
        for l in 0..2 {
            let (i, o) = layers[l];
            let r = n.layer_range(l);
            let units: Vec<usize> = (0..o)
                .filter(|j| (0..i).all(|row| !m.keep()[r.start + row * o + j]))
                .collect();
            assert_eq!(units.len(), (o as f64 * 0.5).round() as usize, "layer {l}");
            let next = n.layer_range(l + 1);
            let width = layers[l + 1].1;
            for j in &units {
                assert!(!m.keep()[r.start + i * o + j], "bias of unit {j}");
                assert!((0..width).all(|c| !m.keep()[next.start + j * width + c]));
            }
            gone.push((l, units));
        }
        let mut noisy = pruned.parameters().to_vec();
        for (l, units) in &gone {
            let (i, o) = layers[*l];
            let r = n.layer_range(*l);
            for j in units {
                for row in 0..i {
                    noisy[r.start + row * o + j] = 3.0;
                }
            }
        }
        let noisy = Mlp::from_parameters(n.architecture().clone(), noisy).expect("net");
        let x = ndarray::Array2::from_shape_fn((4, 6), |(r, c)| (r * 6 + c) as f32 * 0.1 - 1.0);
        assert_eq!(
            pruned.forward(x.view()).expect("forward"),
            noisy.forward(x.view()).expect("forward")
        );
        // The output layer loses no unit.
        let r = n.layer_range(2);
        let out_bias = &m.keep()[r.start + layers[2].0 * layers[2].1..r.end];
        assert!(out_bias.iter().all(|k| *k));
    }
}
