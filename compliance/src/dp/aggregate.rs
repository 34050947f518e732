//! Differentially private aggregates over Arrow columns: count, sum, mean, histograms and
//! quantiles, with clamping bounds the caller states (bounds, categories, bin edges and
//! candidates are public parameters: they must not be read off the data).
//!
//! Neighbouring datasets differ by adding or removing one row. Sums are computed exactly in
//! integers on the grid `ℤ·2^k`, `k = ⌊log₂ max(|lower|, |upper|)⌋ − 60`: each clamped value is
//! rounded to the grid (monotone, so rounded values stay within the rounded bounds, which fix
//! the sensitivity), summed without any float error, and discrete Laplace noise is added in
//! grid units. All noise is sampled exactly (see [`super::mechanism`]).
//!
//! Nulls: `count` counts non-null values; sums and quantiles skip nulls (and NaN); histograms
//! put them in a `null` bin, so no row is silently dropped from a released table.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::DataType;
use num_bigint::{BigInt, BigUint};
use num_traits::Signed;
use serde::{Deserialize, Serialize};

use super::exact::{Ratio, discrete_laplace, from_grid, to_grid};
use super::mechanism::{exponential_int, laplace_units};
use super::rng::RandomSource;
use crate::error::{Error, Result};

/// A released value and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Release<T> {
    /// The noisy value.
    pub value: T,
    /// ε spent.
    pub epsilon: f64,
    /// δ spent (0 for the pure-DP aggregates here).
    pub delta: f64,
    /// The mechanism, for the record.
    pub mechanism: String,
}

impl<T> Release<T> {
    fn laplace(value: T, epsilon: f64, what: &str) -> Self {
        Self {
            value,
            epsilon,
            delta: 0.0,
            mechanism: format!("{what} + discrete Laplace"),
        }
    }
}

fn check_epsilon(epsilon: f64) -> Result<()> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(Error::range(
            "epsilon",
            epsilon,
            "must be a finite number > 0",
        ));
    }
    Ok(())
}

fn check_bounds(lower: f64, upper: f64) -> Result<()> {
    if !(lower.is_finite() && upper.is_finite() && lower <= upper) {
        return Err(Error::InvalidInput {
            what: "clamping bounds".into(),
            reason: format!("[{lower}, {upper}] must be finite with lower ≤ upper"),
        });
    }
    Ok(())
}

fn prim<T: ArrowPrimitiveType>(a: &dyn Array, f: impl Fn(T::Native) -> f64, out: &mut Vec<f64>)
where
    T::Native: Copy,
{
    if let Some(p) = a.as_primitive_opt::<T>() {
        out.extend(p.iter().flatten().map(f).filter(|x| !x.is_nan()));
    }
}

/// The non-null, non-NaN values of a numeric column as f64.
fn numeric(a: &dyn Array, what: &str) -> Result<Vec<f64>> {
    let mut v = Vec::with_capacity(a.len() - a.null_count());
    match a.data_type() {
        DataType::Int8 => prim::<Int8Type>(a, f64::from, &mut v),
        DataType::Int16 => prim::<Int16Type>(a, f64::from, &mut v),
        DataType::Int32 => prim::<Int32Type>(a, f64::from, &mut v),
        DataType::Int64 => prim::<Int64Type>(a, |x| x as f64, &mut v),
        DataType::UInt8 => prim::<UInt8Type>(a, f64::from, &mut v),
        DataType::UInt16 => prim::<UInt16Type>(a, f64::from, &mut v),
        DataType::UInt32 => prim::<UInt32Type>(a, f64::from, &mut v),
        DataType::UInt64 => prim::<UInt64Type>(a, |x| x as f64, &mut v),
        DataType::Float32 => prim::<Float32Type>(a, f64::from, &mut v),
        DataType::Float64 => prim::<Float64Type>(a, |x| x, &mut v),
        other => {
            return Err(Error::InvalidInput {
                what: what.into(),
                reason: format!("needs a numeric column, got {other}"),
            });
        }
    }
    Ok(v)
}

/// Noisy count of non-null values (sensitivity 1).
pub fn count(column: &dyn Array, epsilon: f64, rng: &mut dyn RandomSource) -> Result<Release<i64>> {
    check_epsilon(epsilon)?;
    let n = (column.len() - column.null_count()) as i64;
    let scale = laplace_units(&BigUint::from(1u32), epsilon)?;
    let noisy = BigInt::from(n) + discrete_laplace(rng, &scale);
    let value = i64::try_from(noisy).unwrap_or(i64::MAX);
    Ok(Release::laplace(value, epsilon, "count"))
}

/// The grid for values within `[lower, upper]`.
fn grid_k(lower: f64, upper: f64) -> i32 {
    let m = lower.abs().max(upper.abs());
    if m == 0.0 {
        0
    } else {
        (m.log2().floor() as i32 - 60).max(-1074)
    }
}

/// Exact sum of clamped, grid-rounded values, and the sensitivity in grid units.
fn clamped_sum(values: &[f64], lower: f64, upper: f64, k: i32) -> (BigInt, BigUint) {
    let lo = to_grid(lower, k);
    let hi = to_grid(upper, k);
    let sens = lo.abs().max(hi.abs()).magnitude().clone();
    // |units| ≤ 2^61 per value: i128 holds 2^66 values without overflow.
    let mut acc: i128 = 0;
    for v in values {
        let u = to_grid(v.clamp(lower, upper), k);
        acc += i128::try_from(u).unwrap_or(0);
    }
    (BigInt::from(acc), sens)
}

/// Noisy sum of the values clamped to `[lower, upper]` (sensitivity `max(|lower|, |upper|)`).
pub fn sum(
    column: &dyn Array,
    lower: f64,
    upper: f64,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Release<f64>> {
    check_epsilon(epsilon)?;
    check_bounds(lower, upper)?;
    let values = numeric(column, "sum")?;
    let k = grid_k(lower, upper);
    let (total, sens) = clamped_sum(&values, lower, upper, k);
    let scale = laplace_units(&sens, epsilon)?;
    let noisy = total + discrete_laplace(rng, &scale);
    Ok(Release::laplace(
        from_grid(&noisy, k),
        epsilon,
        "clamped sum",
    ))
}

/// Noisy mean: a noisy sum and a noisy count, ε/2 each, the ratio clamped to the bounds.
pub fn mean(
    column: &dyn Array,
    lower: f64,
    upper: f64,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Release<f64>> {
    check_epsilon(epsilon)?;
    check_bounds(lower, upper)?;
    let half = epsilon / 2.0;
    let s = sum(column, lower, upper, half, rng)?;
    let values = numeric(column, "mean")?;
    let scale = laplace_units(&BigUint::from(1u32), half)?;
    let n = BigInt::from(values.len()) + discrete_laplace(rng, &scale);
    let n = i64::try_from(n).unwrap_or(i64::MAX).max(1) as f64;
    let value = (s.value / n).clamp(lower, upper);
    Ok(Release {
        value,
        epsilon: s.epsilon + half,
        delta: 0.0,
        mechanism: "clamped sum / count + discrete Laplace".into(),
    })
}

/// One bin of a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bin {
    /// `"a"` for a category, `"[1, 2)"` for a numeric bin, `"other"`, `"null"`.
    pub label: String,
    /// The noisy count.
    pub count: i64,
}

fn noisy_bins(
    labels: Vec<String>,
    counts: Vec<i64>,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Vec<Bin>> {
    // Each row lands in exactly one bin, so adding or removing one changes one count by 1.
    let scale = laplace_units(&BigUint::from(1u32), epsilon)?;
    Ok(labels
        .into_iter()
        .zip(counts)
        .map(|(label, c)| Bin {
            label,
            count: i64::try_from(BigInt::from(c) + discrete_laplace(rng, &scale))
                .unwrap_or(i64::MAX),
        })
        .collect())
}

/// Noisy counts of a string column over public `categories`, plus `other` (values not listed)
/// and `null`. L1 sensitivity 1.
pub fn histogram_categorical(
    column: &dyn Array,
    categories: &[&str],
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Release<Vec<Bin>>> {
    check_epsilon(epsilon)?;
    let mut seen = std::collections::HashSet::with_capacity(categories.len());
    if let Some(dup) = categories.iter().find(|c| !seen.insert(**c)) {
        return Err(Error::InvalidInput {
            what: "categories".into(),
            reason: format!("{dup:?} is listed twice"),
        });
    }
    let index: std::collections::HashMap<&str, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i))
        .collect();
    let (other, null) = (categories.len(), categories.len() + 1);
    let mut counts = vec![0i64; categories.len() + 2];
    let mut add = |v: Option<&str>| {
        let i = match v {
            None => null,
            Some(s) => index.get(s).copied().unwrap_or(other),
        };
        counts[i] += 1;
    };
    match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().iter().for_each(&mut add),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().for_each(&mut add),
        DataType::Utf8View => column.as_string_view().iter().for_each(&mut add),
        other => {
            return Err(Error::InvalidInput {
                what: "histogram".into(),
                reason: format!("needs a string column, got {other}"),
            });
        }
    }
    let mut labels: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
    labels.push("other".into());
    labels.push("null".into());
    let bins = noisy_bins(labels, counts, epsilon, rng)?;
    Ok(Release::laplace(bins, epsilon, "histogram"))
}

/// Noisy counts of a numeric column in the bins `(-inf, e₀)`, `[e₀, e₁)`, …, `[e_last, +inf)`
/// over strictly increasing public `edges`, plus `null` (nulls and NaN). L1 sensitivity 1.
pub fn histogram(
    column: &dyn Array,
    edges: &[f64],
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Release<Vec<Bin>>> {
    check_epsilon(epsilon)?;
    if edges.is_empty()
        || edges.iter().any(|e| !e.is_finite())
        || edges.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(Error::InvalidInput {
            what: "bin edges".into(),
            reason: format!("{edges:?} must be finite and strictly increasing"),
        });
    }
    let values = numeric(column, "histogram")?;
    let mut counts = vec![0i64; edges.len() + 2];
    for v in &values {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    let null = edges.len() + 1;
    counts[null] = (column.len() - values.len()) as i64;
    let mut labels = vec![format!("(-inf, {})", edges[0])];
    labels.extend(edges.windows(2).map(|w| format!("[{}, {})", w[0], w[1])));
    labels.push(format!("[{}, inf)", edges[edges.len() - 1]));
    labels.push("null".into());
    let bins = noisy_bins(labels, counts, epsilon, rng)?;
    Ok(Release::laplace(bins, epsilon, "histogram"))
}

/// A noisy α-quantile by the exponential mechanism over `candidates` evenly spaced points in
/// `[lower, upper]` (both included), with the score of candidate c
/// `−|(1 − α)·#{x < c} − α·#{x > c}|` (sensitivity `max(α, 1 − α)`), as OpenDP scores
/// quantile candidates. Values are clamped to the bounds.
pub fn quantile(
    column: &dyn Array,
    alpha: f64,
    lower: f64,
    upper: f64,
    candidates: usize,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<Release<f64>> {
    check_epsilon(epsilon)?;
    check_bounds(lower, upper)?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::range("alpha", alpha, "must be in [0, 1]"));
    }
    if candidates < 2 {
        return Err(Error::range("candidates", candidates, "must be ≥ 2"));
    }
    let mut values = numeric(column, "quantile")?;
    for v in values.iter_mut() {
        *v = v.clamp(lower, upper);
    }
    values.sort_by(f64::total_cmp);
    let step = (upper - lower) / (candidates - 1) as f64;
    let points: Vec<f64> = (0..candidates)
        .map(|i| {
            if i + 1 == candidates {
                upper
            } else {
                lower + step * i as f64
            }
        })
        .collect();
    // α = a / 2^s exactly; scores scaled by 2^s are integers.
    let a = Ratio::from_f64(alpha).unwrap_or_else(|| Ratio::int(0));
    let (an, ad) = (BigInt::from(a.num.clone()), BigInt::from(a.den.clone()));
    let scores: Vec<BigInt> = points
        .iter()
        .map(|c| {
            let below = values.partition_point(|x| x < c);
            let above = values.len() - values.partition_point(|x| x <= c);
            let s = (&ad - &an) * BigInt::from(below) - &an * BigInt::from(above);
            -s.abs()
        })
        .collect();
    // Sensitivity in scaled units: max(a, den − a); γ per unit = ε / (2·sens).
    let sens = (&an).max(&(&ad - &an)).magnitude().clone();
    let sens = if sens == BigUint::from(0u32) {
        BigUint::from(1u32)
    } else {
        sens
    };
    let eps = Ratio::from_f64(epsilon).unwrap_or_else(|| Ratio::int(1));
    let rate = eps.div(&Ratio::new(sens * 2u32, BigUint::from(1u32)));
    let i = exponential_int(&scores, &rate, rng);
    Ok(Release {
        value: points[i],
        epsilon,
        delta: 0.0,
        mechanism: format!("exponential mechanism over {candidates} candidates"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int32Array, StringArray};

    use super::*;
    use crate::dp::rng::Csprng;

    fn rng() -> Csprng {
        Csprng::from_seed([9; 32])
    }

    #[test]
    fn count_and_sum_are_centred_on_the_truth() {
        let col: ArrayRef = Arc::new(Float64Array::from(
            (0..1000)
                .map(|i| {
                    if i % 10 == 0 {
                        None
                    } else {
                        Some(i as f64 / 10.0)
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let mut r = rng();
        let true_sum: f64 = (0..1000)
            .filter(|i| i % 10 != 0)
            .map(|i| (i as f64 / 10.0).min(50.0))
            .sum();
        let runs = 400;
        let (mut c, mut s) = (0.0, 0.0);
        for _ in 0..runs {
            c += count(&col, 1.0, &mut r).expect("count").value as f64;
            s += sum(&col, 0.0, 50.0, 1.0, &mut r).expect("sum").value;
        }
        // Means of 400 draws: count noise sd ≈ 1.4/√400, sum noise sd = 50·√2/√400 ≈ 3.5.
        assert!((c / runs as f64 - 900.0).abs() < 0.4, "{}", c / runs as f64);
        assert!(
            (s / runs as f64 - true_sum).abs() < 18.0,
            "{} vs {true_sum}",
            s / runs as f64
        );
        let m = mean(&col, 0.0, 50.0, 2.0, &mut r).expect("mean");
        assert!((m.value - true_sum / 900.0).abs() < 1.0, "{}", m.value);
        assert_eq!(m.epsilon, 2.0);
    }

    #[test]
    fn clamped_sum_is_exact_on_the_grid() {
        let v = [0.1, 0.2, 0.3, 1e6, -5.0];
        let k = grid_k(-1.0, 1.0);
        let (total, sens) = clamped_sum(&v, -1.0, 1.0, k);
        // 0.1 + 0.2 + 0.3 + 1 − 1 exactly (floats would give 0.6000000000000001).
        assert_eq!(from_grid(&total, k), 0.6);
        assert_eq!(sens, BigUint::from(1u32) << 60u32);
    }

    #[test]
    fn histograms_keep_every_row() {
        let col: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            Some("a"),
            None,
            Some("zz"),
        ]));
        let h = histogram_categorical(&col, &["a", "b"], 50.0, &mut rng()).expect("h");
        let labels: Vec<&str> = h.value.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "other", "null"]);
        // ε = 50: the noise is almost always 0.
        let counts: Vec<i64> = h.value.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 1, 1]);
        let nums: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-1.0),
            Some(0.0),
            Some(0.5),
            Some(2.0),
            None,
            Some(f64::NAN),
        ]));
        let h = histogram(&nums, &[0.0, 1.0], 50.0, &mut rng()).expect("h");
        let got: Vec<(String, i64)> = h.value.into_iter().map(|b| (b.label, b.count)).collect();
        assert_eq!(
            got,
            [
                ("(-inf, 0)".to_string(), 1),
                ("[0, 1)".into(), 2),
                ("[1, inf)".into(), 1),
                ("null".into(), 2)
            ]
        );
        assert!(histogram(&nums, &[1.0, 0.0], 1.0, &mut rng()).is_err());
        assert!(histogram_categorical(&col, &["a", "a"], 1.0, &mut rng()).is_err());
        assert!(histogram_categorical(&nums, &["a"], 1.0, &mut rng()).is_err());
    }

    #[test]
    fn quantiles_land_near_the_truth() {
        let col: ArrayRef = Arc::new(Int32Array::from((0..2001).collect::<Vec<i32>>()));
        let mut r = rng();
        for (alpha, want) in [(0.5, 1000.0), (0.1, 200.0), (0.9, 1800.0)] {
            let q = quantile(&col, alpha, 0.0, 2000.0, 201, 1.0, &mut r).expect("q");
            assert!((q.value - want).abs() <= 50.0, "α={alpha}: {}", q.value);
        }
        assert!(quantile(&col, 1.5, 0.0, 1.0, 10, 1.0, &mut r).is_err());
        assert!(quantile(&col, 0.5, 1.0, 0.0, 10, 1.0, &mut r).is_err());
        assert!(sum(&col, 0.0, f64::INFINITY, 1.0, &mut r).is_err());
        assert!(count(&col, 0.0, &mut r).is_err());
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let e = sum(&strings, 0.0, 1.0, 1.0, &mut r).expect_err("strings");
        assert!(e.to_string().contains("numeric"), "{e}");
    }
}
