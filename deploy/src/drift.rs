//! Drift: how far the inputs a model sees have moved from a reference, per feature, in memory
//! bounded by the number of bins.
//!
//! A [`ReferenceProfile`] keeps, per feature, bin edges at the reference's quantiles (numpy's
//! default linear interpolation; repeated edges merged) and the reference's counts in those
//! bins. Current values are counted into the same bins (values outside the reference's range go
//! to the outer bins; NaNs are counted apart). From the two histograms:
//!
//! - PSI = Σ (c − r)·ln(c / r) over bin proportions, empty bins taken as 0.0001 (Evidently);
//!   drift at PSI ≥ 0.1 (Evidently's threshold).
//! - Kolmogorov–Smirnov: D = max |F_r − F_c| over the bin boundaries, and its asymptotic p-value
//!   Q_KS(√(n·m/(n+m))·D) (the Kolmogorov distribution, `scipy.special.kolmogorov`); drift at
//!   p < 0.05 / features (Bonferroni, as alibi-detect).
//! - Jensen–Shannon distance (natural log; `scipy.spatial.distance.jensenshannon`).
//! - Wasserstein-1 distance between the histograms with each bin at its centre
//!   (`scipy.stats.wasserstein_distance` with weights).
//!
//! `scripts/peers/check_drift.py` recomputes every value with numpy and scipy from the raw data.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata};
use crate::infer::{InferRequest, InferResponse, TensorData};
use crate::{Error, Result};

/// One feature of a reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// The feature's name.
    pub name: String,
    /// Bin edges, increasing (k + 1 edges for k bins).
    pub edges: Vec<f64>,
    /// The reference's count in each bin.
    pub counts: Vec<u64>,
}

impl FeatureProfile {
    /// The bin of `v` (outer bins take what falls outside the edges).
    pub fn bin(&self, v: f64) -> usize {
        let inner = &self.edges[1..self.edges.len() - 1];
        inner.partition_point(|e| *e <= v)
    }
}

/// Per-feature reference histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    /// The features, in input-column order.
    pub features: Vec<FeatureProfile>,
}

/// numpy's default quantile (linear interpolation between order statistics) of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

impl ReferenceProfile {
    /// Profiles `columns` (one slice of values per feature, NaNs ignored) with `bins` quantile
    /// bins each.
    pub fn from_columns(names: &[String], columns: &[Vec<f64>], bins: usize) -> Result<Self> {
        if names.len() != columns.len() {
            return Err(Error::invalid(
                "reference",
                format!("{} names for {} columns", names.len(), columns.len()),
            ));
        }
        if bins == 0 {
            return Err(Error::invalid("bins", "must be at least 1"));
        }
        let mut features = Vec::with_capacity(columns.len());
        for (name, col) in names.iter().zip(columns) {
            let mut sorted: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
            if sorted.is_empty() {
                return Err(Error::invalid(
                    format!("reference feature {name}"),
                    "has no values",
                ));
            }
            sorted.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = (0..=bins)
                .map(|i| quantile(&sorted, i as f64 / bins as f64))
                .collect();
            edges.dedup();
            if edges.len() == 1 {
                edges.push(edges[0]);
            }
            let mut f = FeatureProfile {
                name: name.clone(),
                counts: vec![0; edges.len() - 1],
                edges,
            };
            for v in &sorted {
                let b = f.bin(*v);
                f.counts[b] += 1;
            }
            features.push(f);
        }
        Ok(ReferenceProfile { features })
    }
}

/// The drift of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// The feature.
    pub name: String,
    /// Current values counted (NaNs excluded).
    pub current_count: u64,
    /// NaNs seen.
    pub current_nans: u64,
    /// Population stability index.
    pub psi: f64,
    /// Kolmogorov–Smirnov statistic.
    pub ks_statistic: f64,
    /// Its asymptotic p-value.
    pub ks_p_value: f64,
    /// Jensen–Shannon distance (natural log).
    pub jensen_shannon: f64,
    /// Wasserstein-1 distance on bin centres.
    pub wasserstein: f64,
    /// PSI ≥ 0.1.
    pub psi_drift: bool,
    /// KS p-value below 0.05 / number of features.
    pub ks_drift: bool,
}

/// The Kolmogorov distribution's survival function Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 0.2 {
        // The alternating series converges slowly here; the value is 1 to double precision.
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=200 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-18 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Drift of `current` counts (same bins) against `reference`, with `features` features in the
/// Bonferroni correction.
pub fn compare(
    reference: &FeatureProfile,
    current: &[u64],
    nans: u64,
    features: usize,
) -> FeatureDrift {
    let n: u64 = reference.counts.iter().sum();
    let m: u64 = current.iter().sum();
    let p = |c: &[u64], total: u64| -> Vec<f64> {
        c.iter()
            .map(|x| {
                if total == 0 {
                    0.0
                } else {
                    *x as f64 / total as f64
                }
            })
            .collect()
    };
    let (r, c) = (p(&reference.counts, n), p(current, m));
    let floor = |x: f64| if x == 0.0 { 0.0001 } else { x };
    let psi = r
        .iter()
        .zip(&c)
        .map(|(r, c)| {
            let (r, c) = (floor(*r), floor(*c));
            (c - r) * (c / r).ln()
        })
        .sum();
    let (mut fr, mut fc, mut d) = (0.0, 0.0, 0.0f64);
    for (a, b) in r.iter().zip(&c) {
        fr += a;
        fc += b;
        d = d.max((fr - fc).abs());
    }
    let en = if n + m == 0 {
        0.0
    } else {
        (n as f64 * m as f64) / (n + m) as f64
    };
    let p_value = if m == 0 {
        1.0
    } else {
        kolmogorov_sf(en.sqrt() * d)
    };
    let kl = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).ln())
            .sum()
    };
    let mid: Vec<f64> = r.iter().zip(&c).map(|(a, b)| (a + b) / 2.0).collect();
    let js = ((kl(&r, &mid) + kl(&c, &mid)) / 2.0).max(0.0).sqrt();
    // W1 between histograms on bin centres: ∫|F_r − F_c| over the centres' line.
    let centres: Vec<f64> = reference
        .edges
        .windows(2)
        .map(|e| (e[0] + e[1]) / 2.0)
        .collect();
    let (mut fr, mut fc, mut w) = (0.0, 0.0, 0.0);
    for i in 0..centres.len().saturating_sub(1) {
        fr += r[i];
        fc += c[i];
        w += (fr - fc).abs() * (centres[i + 1] - centres[i]);
    }
    let wasserstein = if m == 0 { 0.0 } else { w };
    FeatureDrift {
        name: reference.name.clone(),
        current_count: m,
        current_nans: nans,
        psi: if m == 0 { 0.0 } else { psi },
        ks_statistic: if m == 0 { 0.0 } else { d },
        ks_p_value: p_value,
        jensen_shannon: if m == 0 { 0.0 } else { js },
        wasserstein,
        psi_drift: m > 0 && psi >= 0.1,
        ks_drift: m > 0 && p_value < 0.05 / features.max(1) as f64,
    }
}

#[derive(Debug)]
struct Current {
    counts: Vec<Vec<u64>>,
    nans: Vec<u64>,
}

/// Counts current values against a reference profile: feed it columns or rows directly, or
/// let [`DriftMonitor`] feed it every request's input.
#[derive(Debug)]
pub struct DriftTracker {
    reference: ReferenceProfile,
    current: Mutex<Current>,
}

impl DriftTracker {
    /// A tracker with nothing counted yet.
    pub fn new(reference: ReferenceProfile) -> Self {
        let counts = reference
            .features
            .iter()
            .map(|f| vec![0; f.counts.len()])
            .collect();
        let nans = vec![0; reference.features.len()];
        DriftTracker {
            reference,
            current: Mutex::new(Current { counts, nans }),
        }
    }

    /// Counts rows of `features` values each (row-major), as f64.
    pub fn observe_rows(&self, values: impl Iterator<Item = f64>) {
        let k = self.reference.features.len();
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, v) in values.enumerate() {
            let f = i % k;
            if v.is_nan() {
                cur.nans[f] += 1;
            } else {
                let b = self.reference.features[f].bin(v);
                cur.counts[f][b] += 1;
            }
        }
    }

    /// The drift of every feature now.
    pub fn report(&self) -> Vec<FeatureDrift> {
        let cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let k = self.reference.features.len();
        self.reference
            .features
            .iter()
            .zip(&cur.counts)
            .zip(&cur.nans)
            .map(|((f, c), nans)| compare(f, c, *nans, k))
            .collect()
    }

    /// Forgets the current counts (a new window).
    pub fn reset(&self) {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        cur.counts
            .iter_mut()
            .for_each(|c| c.iter_mut().for_each(|x| *x = 0));
        cur.nans.iter_mut().for_each(|x| *x = 0);
    }
}

/// Passes requests through and counts the features of input `input` (FP32 or FP64,
/// rows × features) into a [`DriftTracker`].
#[derive(Debug)]
pub struct DriftMonitor {
    inner: Arc<dyn Endpoint>,
    input: String,
    tracker: Arc<DriftTracker>,
}

impl DriftMonitor {
    /// Wraps `inner`; `input` must be a two-dimensional FP32 or FP64 input with as many columns
    /// as the profile has features.
    pub fn new(
        inner: Arc<dyn Endpoint>,
        input: impl Into<String>,
        tracker: Arc<DriftTracker>,
    ) -> Result<Self> {
        let input = input.into();
        let m = inner.metadata();
        let spec = m.inputs.iter().find(|s| s.name == input).ok_or_else(|| {
            Error::invalid(
                "drift monitor",
                format!("model {} has no input {input}", m.name),
            )
        })?;
        let k = tracker.reference.features.len() as i64;
        if spec.shape.len() != 2 || (spec.shape[1] != -1 && spec.shape[1] != k) {
            return Err(Error::invalid(
                "drift monitor",
                format!(
                    "input {input} has shape {:?}; the profile has {k} features",
                    spec.shape
                ),
            ));
        }
        Ok(DriftMonitor {
            inner,
            input,
            tracker,
        })
    }
}

impl Endpoint for DriftMonitor {
    fn metadata(&self) -> ModelMetadata {
        self.inner.metadata()
    }

    fn ready(&self) -> bool {
        self.inner.ready()
    }

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            let k = self.tracker.reference.features.len();
            let observed = request
                .input(&self.input)
                .filter(|t| t.shape.len() == 2 && t.shape[1] == k)
                .map(|t| t.data.clone());
            let result = self.inner.infer(request).await;
            if result.is_ok() {
                match observed {
                    Some(TensorData::Fp32(v)) => {
                        self.tracker.observe_rows(v.iter().map(|x| f64::from(*x)))
                    }
                    Some(TensorData::Fp64(v)) => self.tracker.observe_rows(v.iter().copied()),
                    _ => {}
                }
            }
            result
        })
    }
}
