//! Cleaning policies: what to do with nulls and NaNs, duplicates, outliers and values of the wrong
//! type. The [`Pipeline`](crate::Pipeline) applies them batch by batch; every removed row goes to
//! the quarantine with its reason.

use serde::{Deserialize, Serialize};

/// What to do with a null (or NaN) in a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NullAction {
    /// Quarantine the row (reason `null:<column>` or `nan:<column>`).
    Drop,
    /// Replace the value.
    Impute(Imputation),
}

/// How an imputed value is chosen. Statistics are fitted on the pipeline's input profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Imputation {
    /// Mean of the non-missing values (rounded for integer columns).
    Mean,
    /// Median of the non-missing values (rounded for integer columns).
    Median,
    /// Most frequent value.
    Mode,
    /// A fixed value.
    Constant(serde_json::Value),
}

/// How outliers are recognised. Bounds are fitted on the pipeline's input profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutlierMethod {
    /// Outside `[Q1 − k·IQR, Q3 + k·IQR]` (Tukey's fences; `k` = 1.5 is customary).
    Iqr {
        /// Fence multiplier.
        k: f64,
    },
    /// More than `threshold` standard deviations from the mean.
    ZScore {
        /// Threshold in standard deviations.
        threshold: f64,
    },
}

/// What to do with an outlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutlierAction {
    /// Replace it with the nearest bound (counted in the report's `values_clipped`).
    Clip,
    /// Quarantine the row (reason `outlier:<column>`).
    Drop,
}

/// Normalise a value for near-duplicate matching: Unicode lower case, whitespace runs collapsed
/// to one space, surrounding whitespace removed.
pub fn normalize_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_key;

    #[test]
    fn normalization_table() {
        for (a, b) in [
            (" JAMES  Smith ", "james smith"),
            ("Ann\tLee", "ann lee"),
            ("ÉLODIE", "élodie"),
            ("", ""),
        ] {
            assert_eq!(normalize_key(a), b);
        }
    }
}
