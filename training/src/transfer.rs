//! Transfer learning and fine-tuning: start from another model's layers, replace its head,
//! freeze layers, unfreeze them gradually, and give each layer its own learning rate.
//!
//! - Initial weights ([`FineTune::init`]) come from a model directory written by
//!   [`crate::Model::save`] or from any safetensors file with `layers.{l}.weight` ([out, in], as
//!   PyTorch's `nn.Linear`) and `layers.{l}.bias` tensors. Layers are copied bottom up while
//!   their shapes match the new architecture, or exactly [`FineTune::copy_layers`] of them; the
//!   rest (typically a new head for other classes) start from the usual initialization.
//! - Layers are named by index (`0`, `1`, …), as `layers.0`, …, or `head` (the output layer).
//!   A frozen layer does not move; with [`FineTune::unfreeze_every`] the top-most frozen layer
//!   starts training every that many epochs (ULMFiT's gradual unfreezing).
//! - [`FineTune::layer_lr`] multiplies each layer's learning rate (discriminative fine-tuning;
//!   [`FineTune::discriminative`] divides it by a factor per layer down from the head, as ULMFiT
//!   does with 2.6). Every optimizer here moves parameters by an amount proportional to the
//!   learning rate, so the trainer scales each layer's step after the optimizer took it; a
//!   frozen layer's step is scaled by 0. A frozen layer's optimizer state still sees its
//!   gradients (its moments are warm when it is unfrozen).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{Architecture, Mlp};

/// How to start from a trained model and which layers train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct FineTune {
    /// A model directory or a safetensors file whose layers initialize the network.
    pub init: Option<PathBuf>,
    /// How many layers to copy, bottom up (`None`: every layer whose shape matches, up to the
    /// first that does not).
    pub copy_layers: Option<usize>,
    /// Layers that do not train (indices, `layers.N` or `head`).
    pub freeze: Vec<String>,
    /// Unfreeze the top-most frozen layer every this many epochs.
    pub unfreeze_every: Option<usize>,
    /// Learning-rate multiplier per layer, bottom up (missing layers: 1).
    pub layer_lr: Vec<f32>,
}

impl FineTune {
    /// Starts from the layers in `path` (a model directory or a safetensors file).
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self {
            init: Some(path.into()),
            ..Self::default()
        }
    }

    /// Copies only the first `n` layers (a new head when `n` = layers − 1).
    pub fn copy_layers(mut self, n: usize) -> Self {
        self.copy_layers = Some(n);
        self
    }

    /// Freezes these layers (indices, `layers.N` or `head`).
    pub fn freeze<S: Into<String>>(mut self, layers: impl IntoIterator<Item = S>) -> Self {
        self.freeze = layers.into_iter().map(Into::into).collect();
        self
    }

    /// Unfreezes the top-most frozen layer every `epochs` epochs.
    pub fn unfreeze_every(mut self, epochs: usize) -> Self {
        self.unfreeze_every = Some(epochs);
        self
    }

    /// Learning-rate multipliers per layer, bottom up.
    pub fn layer_lr(mut self, multipliers: Vec<f32>) -> Self {
        self.layer_lr = multipliers;
        self
    }

    /// The head at the full learning rate and each layer below at 1 / `factor` of the one
    /// above (ULMFiT: 2.6), for a network of `layers` layers.
    pub fn discriminative(self, layers: usize, factor: f32) -> Self {
        let lr = (0..layers)
            .map(|l| factor.powi(-((layers - 1 - l) as i32)))
            .collect();
        self.layer_lr(lr)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(m) = self
            .layer_lr
            .iter()
            .find(|m| !(**m >= 0.0 && m.is_finite()))
        {
            return Err(Error::invalid(
                "fine-tuning",
                format!("learning-rate multiplier {m} must be ≥ 0 and finite"),
            ));
        }
        if self.unfreeze_every == Some(0) {
            return Err(Error::invalid(
                "fine-tuning",
                "unfreeze_every must be at least 1 epoch",
            ));
        }
        Ok(())
    }

    /// The layer indices of `freeze` in a network of `layers` layers, sorted.
    pub(crate) fn frozen(&self, layers: usize) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for name in &self.freeze {
            let n = name.trim();
            let idx = if n == "head" {
                Some(layers - 1)
            } else {
                n.strip_prefix("layers.").unwrap_or(n).parse::<usize>().ok()
            };
            match idx {
                Some(i) if i < layers => out.push(i),
                _ => {
                    return Err(Error::invalid(
                        format!("freeze {name:?}"),
                        format!(
                            "no such layer: the network has layers 0..{} (`layers.N`, or `head` for {})",
                            layers - 1,
                            layers - 1
                        ),
                    ));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Each layer's learning-rate multiplier in 0-based `epoch`, or `None` when all are 1.
    pub(crate) fn multipliers(
        &self,
        layers: usize,
        frozen: &[usize],
        epoch: usize,
    ) -> Option<Vec<f32>> {
        let mut m: Vec<f32> = (0..layers)
            .map(|l| self.layer_lr.get(l).copied().unwrap_or(1.0))
            .collect();
        let thawed = self.unfreeze_every.map_or(0, |k| epoch / k);
        // The top-most frozen layers thaw first.
        for &l in frozen.iter().rev().skip(thawed) {
            m[l] = 0.0;
        }
        m.iter().any(|v| *v != 1.0).then_some(m)
    }
}

/// Layer `l`'s weights as [out, in] (row-major) and bias, read from `init`.
struct SourceLayer {
    inputs: usize,
    outputs: usize,
    /// [in, out], the network's own layout.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

fn read_layers(path: &Path) -> Result<Vec<SourceLayer>> {
    if path.is_dir() {
        let m = crate::MlpModel::load(path)?;
        let net = m.network();
        let arch = net.architecture();
        return Ok(arch
            .layers()
            .into_iter()
            .enumerate()
            .map(|(l, (i, o))| {
                let r = net.layer_range(l);
                let p = &net.parameters()[r];
                SourceLayer {
                    inputs: i,
                    outputs: o,
                    weight: p[..i * o].to_vec(),
                    bias: p[i * o..].to_vec(),
                }
            })
            .collect());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::io(path, format!("not safetensors: {e}")))?;
    let f32s = |name: &str| -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Ok(t) = st.tensor(name) else {
            return Ok(None);
        };
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(Error::io(
                path,
                format!("tensor {name} is {:?}, not F32", t.dtype()),
            ));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Some((t.shape().to_vec(), v)))
    };
    let mut layers = Vec::new();
    for l in 0.. {
        let Some((shape, w)) = f32s(&format!("layers.{l}.weight"))? else {
            break;
        };
        let [o, i] = shape[..] else {
            return Err(Error::io(
                path,
                format!("tensor layers.{l}.weight has shape {shape:?}, not [out, in]"),
            ));
        };
        let (bshape, bias) = f32s(&format!("layers.{l}.bias"))?
            .ok_or_else(|| Error::io(path, format!("tensor layers.{l}.bias is missing")))?;
        if bshape != [o] {
            return Err(Error::io(
                path,
                format!("tensor layers.{l}.bias has shape {bshape:?}, not [{o}]"),
            ));
        }
        let mut weight = Vec::with_capacity(i * o);
        for r in 0..i {
            for c in 0..o {
                weight.push(w[c * i + r]);
            }
        }
        layers.push(SourceLayer {
            inputs: i,
            outputs: o,
            weight,
            bias,
        });
    }
    if layers.is_empty() {
        return Err(Error::io(
            path,
            "no `layers.0.weight` tensor: not a model's weights",
        ));
    }
    Ok(layers)
}

/// Copies the layers of `f.init` into `net` (bottom up); returns how many were copied.
pub(crate) fn initialize(net: &mut Mlp, f: &FineTune) -> Result<usize> {
    let Some(path) = &f.init else {
        return Ok(0);
    };
    let source = read_layers(path)?;
    let arch: Architecture = net.architecture().clone();
    let ours = arch.layers();
    let matching = source
        .iter()
        .zip(&ours)
        .take_while(|(s, (i, o))| s.inputs == *i && s.outputs == *o)
        .count();
    let n = f.copy_layers.unwrap_or(matching);
    if n > matching {
        let (i, o) = ours.get(matching).copied().unwrap_or((0, 0));
        let found = source
            .get(matching)
            .map_or("no such layer".to_string(), |s| {
                format!("{} → {}", s.inputs, s.outputs)
            });
        return Err(Error::invalid(
            format!("initial weights {}", path.display()),
            format!(
                "{n} layers asked for, but layer {matching} is {found} there and {i} → {o} here"
            ),
        ));
    }
    if n == 0 {
        return Err(Error::invalid(
            format!("initial weights {}", path.display()),
            format!(
                "layer 0 is {} → {} there, {} → {} here: nothing to copy",
                source[0].inputs, source[0].outputs, ours[0].0, ours[0].1
            ),
        ));
    }
    for (l, s) in source.iter().take(n).enumerate() {
        let r = net.layer_range(l);
        let p = &mut net.parameters_mut()[r];
        let k = s.weight.len();
        p[..k].copy_from_slice(&s.weight);
        p[k..].copy_from_slice(&s.bias);
    }
    tracing::info!(layers = n, from = %path.display(), "initialized from a trained model");
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_and_schedules() {
        let f = FineTune::default().freeze(["layers.0", "1", "head"]);
        assert_eq!(f.frozen(4).expect("frozen"), vec![0, 1, 3]);
        for bad in ["layers.4", "5", "embedding", "-1"] {
            let e = FineTune::default()
                .freeze([bad])
                .frozen(4)
                .expect_err("no such layer");
            assert!(
                e.to_string().contains(bad) && e.to_string().contains("no such layer"),
                "{e}"
            );
        }
        // Frozen 0, 1 and 3; one thaws every 2 epochs, the top-most first.
        let f = f.unfreeze_every(2).layer_lr(vec![0.25, 0.5]);
        let frozen = f.frozen(4).expect("frozen");
        assert_eq!(f.multipliers(4, &frozen, 0), Some(vec![0.0, 0.0, 1.0, 0.0]));
        assert_eq!(f.multipliers(4, &frozen, 2), Some(vec![0.0, 0.0, 1.0, 1.0]));
        assert_eq!(f.multipliers(4, &frozen, 5), Some(vec![0.0, 0.5, 1.0, 1.0]));
        assert_eq!(
            f.multipliers(4, &frozen, 6),
            Some(vec![0.25, 0.5, 1.0, 1.0])
        );
        assert_eq!(FineTune::default().multipliers(3, &[], 0), None);
        let d = FineTune::default().discriminative(3, 2.0);
        assert_eq!(d.layer_lr, vec![0.25, 0.5, 1.0]);
        assert!(FineTune::default().layer_lr(vec![-1.0]).validate().is_err());
        assert!(FineTune::default().unfreeze_every(0).validate().is_err());
    }
}
