//! Group fairness metrics as fairlearn defines them.
//!
//! Per group (and overall): `count`, `selection_rate` (weighted share of positive predictions),
//! `true_positive_rate`, `false_positive_rate` and `accuracy_score`. A rate whose denominator is
//! zero (no positives, or no negatives, in a group) is 0, as fairlearn's sklearn-based rates
//! return. Differences and ratios are taken `between_groups` (max − min, min / max) or `to_overall`
//! (largest |group − overall|, smallest of group/overall and overall/group); a ratio of 0 / 0 is
//! 1.0 (no disparity), where fairlearn returns NaN.
//!
//! ```
//! use aistd_compliance::fairness::{MetricFrame, Method};
//!
//! let y_true = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
//! let y_pred = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
//! let group = "b b a b b c c c a a c a b c c b c c".split(' ').collect::<Vec<_>>();
//! let mf = MetricFrame::new(&y_true, &y_pred, &[&group], None)?;
//! assert!((mf.demographic_parity_difference(Method::BetweenGroups) - 0.25).abs() < 1e-12);
//! assert!((mf.equalized_odds_difference(Method::BetweenGroups) - 1.0).abs() < 1e-12);
//! # Ok::<(), aistd_compliance::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod mitigation;
pub mod stream;

/// How to reduce per-group values to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Largest group value against smallest.
    BetweenGroups,
    /// Each group against the overall value.
    ToOverall,
}

/// Weighted confusion counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// True positives.
    pub tp: f64,
    /// False positives.
    pub fp: f64,
    /// True negatives.
    pub tn: f64,
    /// False negatives.
    pub fn_: f64,
    /// Rows (unweighted).
    pub count: u64,
}

impl Confusion {
    fn add(&mut self, t: bool, p: bool, w: f64) {
        match (t, p) {
            (true, true) => self.tp += w,
            (false, true) => self.fp += w,
            (false, false) => self.tn += w,
            (true, false) => self.fn_ += w,
        }
        self.count += 1;
    }

    fn metrics(&self) -> GroupMetrics {
        let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        let total = self.tp + self.fp + self.tn + self.fn_;
        GroupMetrics {
            count: self.count,
            selection_rate: ratio(self.tp + self.fp, total),
            true_positive_rate: ratio(self.tp, self.tp + self.fn_),
            false_positive_rate: ratio(self.fp, self.fp + self.tn),
            accuracy_score: ratio(self.tp + self.tn, total),
        }
    }
}

/// The metrics of one group, named as in fairlearn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupMetrics {
    /// Rows in the group.
    pub count: u64,
    /// Weighted share of positive predictions.
    pub selection_rate: f64,
    /// Recall: weighted TP / (TP + FN).
    pub true_positive_rate: f64,
    /// Weighted FP / (FP + TN).
    pub false_positive_rate: f64,
    /// Weighted share of correct predictions.
    pub accuracy_score: f64,
}

/// Metrics overall and by group (a group is one value of each sensitive feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricFrame {
    /// Over all rows.
    pub overall: GroupMetrics,
    /// By group key (one value per sensitive feature).
    pub by_group: BTreeMap<Vec<String>, GroupMetrics>,
    /// The confusion counts behind them.
    pub confusion: BTreeMap<Vec<String>, Confusion>,
}

fn positive(v: i64) -> bool {
    v == 1
}

impl MetricFrame {
    /// Metrics of binary labels `y_true` and predictions `y_pred` (1 is positive, anything else
    /// negative) by the groups of one or more sensitive features, with optional sample weights.
    pub fn new<S: AsRef<str>>(
        y_true: &[i64],
        y_pred: &[i64],
        sensitive: &[&[S]],
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        let n = y_true.len();
        let bad = |what: &str, len: usize| Error::InvalidInput {
            what: what.to_string(),
            reason: format!("has {len} values, y_true has {n}"),
        };
        if y_pred.len() != n {
            return Err(bad("y_pred", y_pred.len()));
        }
        if sensitive.is_empty() {
            return Err(Error::InvalidInput {
                what: "sensitive features".into(),
                reason: "at least one is needed".into(),
            });
        }
        for (k, s) in sensitive.iter().enumerate() {
            if s.len() != n {
                return Err(bad(&format!("sensitive feature #{}", k + 1), s.len()));
            }
        }
        if let Some(w) = weights {
            if w.len() != n {
                return Err(bad("sample weights", w.len()));
            }
            if let Some(i) = w.iter().position(|x| !x.is_finite() || *x < 0.0) {
                return Err(Error::InvalidInput {
                    what: "sample weights".into(),
                    reason: format!(
                        "row {i} has weight {}, weights must be finite and ≥ 0",
                        w[i]
                    ),
                });
            }
        }
        if n == 0 {
            return Err(Error::InvalidInput {
                what: "y_true".into(),
                reason: "no rows".into(),
            });
        }
        let mut overall = Confusion::default();
        let mut groups: BTreeMap<Vec<String>, Confusion> = BTreeMap::new();
        // Group keys are interned per distinct combination of values.
        let mut key = Vec::with_capacity(sensitive.len());
        for i in 0..n {
            let (t, p) = (positive(y_true[i]), positive(y_pred[i]));
            let w = weights.map_or(1.0, |w| w[i]);
            overall.add(t, p, w);
            key.clear();
            key.extend(sensitive.iter().map(|s| s[i].as_ref()));
            match groups
                .iter_mut()
                .find(|(k, _)| k.iter().map(String::as_str).eq(key.iter().copied()))
            {
                Some((_, c)) => c.add(t, p, w),
                None => {
                    let mut c = Confusion::default();
                    c.add(t, p, w);
                    groups.insert(key.iter().map(|s| s.to_string()).collect(), c);
                }
            }
        }
        Ok(Self::from_confusion(overall, groups))
    }

    /// The frame of confusion counts already tallied (by [`stream::GroupCounter`], for instance).
    pub fn from_confusion(overall: Confusion, groups: BTreeMap<Vec<String>, Confusion>) -> Self {
        Self {
            overall: overall.metrics(),
            by_group: groups
                .iter()
                .map(|(k, c)| (k.clone(), c.metrics()))
                .collect(),
            confusion: groups,
        }
    }

    fn values(&self, f: fn(&GroupMetrics) -> f64) -> Vec<f64> {
        self.by_group.values().map(f).collect()
    }

    fn difference(&self, f: fn(&GroupMetrics) -> f64, method: Method) -> f64 {
        let v = self.values(f);
        match method {
            Method::BetweenGroups => {
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    - v.iter().copied().fold(f64::INFINITY, f64::min)
            }
            Method::ToOverall => {
                let o = f(&self.overall);
                v.iter().map(|x| (x - o).abs()).fold(0.0, f64::max)
            }
        }
    }

    fn ratio(&self, f: fn(&GroupMetrics) -> f64, method: Method) -> f64 {
        let r = |a: f64, b: f64| {
            if a == b {
                1.0
            } else if b == 0.0 {
                0.0
            } else {
                a / b
            }
        };
        let v = self.values(f);
        match method {
            Method::BetweenGroups => {
                let (lo, hi) = (
                    v.iter().copied().fold(f64::INFINITY, f64::min),
                    v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                r(lo, hi)
            }
            Method::ToOverall => {
                let o = f(&self.overall);
                v.iter()
                    .map(|&x| if x <= o { r(x, o) } else { r(o, x) })
                    .fold(1.0, f64::min)
            }
        }
    }

    /// Demographic parity difference (selection rates).
    pub fn demographic_parity_difference(&self, method: Method) -> f64 {
        self.difference(|m| m.selection_rate, method)
    }

    /// Demographic parity ratio (selection rates); the disparate impact ratio.
    pub fn demographic_parity_ratio(&self, method: Method) -> f64 {
        self.ratio(|m| m.selection_rate, method)
    }

    /// Equalized odds difference: the larger of the TPR and FPR differences.
    pub fn equalized_odds_difference(&self, method: Method) -> f64 {
        self.difference(|m| m.true_positive_rate, method)
            .max(self.difference(|m| m.false_positive_rate, method))
    }

    /// Equalized odds ratio: the smaller of the TPR and FPR ratios.
    pub fn equalized_odds_ratio(&self, method: Method) -> f64 {
        self.ratio(|m| m.true_positive_rate, method)
            .min(self.ratio(|m| m.false_positive_rate, method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // fairlearn's user guide (common_fairness_metrics.rst).
    const Y_TRUE: [i64; 18] = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    const Y_PRED: [i64; 18] = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
    const GROUPS: &str = "b b a b b c c c a a c a b c c b c c";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn fairlearn_user_guide_example() {
        let g: Vec<&str> = GROUPS.split(' ').collect();
        let mf = MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g], None).expect("frame");
        assert!(close(
            mf.demographic_parity_difference(Method::BetweenGroups),
            0.25
        ));
        assert!(close(
            mf.demographic_parity_ratio(Method::BetweenGroups),
            2.0 / 3.0
        ));
        assert!(close(
            mf.equalized_odds_difference(Method::BetweenGroups),
            1.0
        ));
        assert!(close(mf.equalized_odds_ratio(Method::BetweenGroups), 0.0));
        let want = [
            ("a", 0.75, 0.5, 1.0),
            ("b", 0.5, 0.6, 0.0),
            ("c", 0.5, 0.4, 2.0 / 3.0),
        ];
        for (k, sel, tpr, fpr) in want {
            let m = mf.by_group[&vec![k.to_string()]];
            assert!(
                close(m.selection_rate, sel)
                    && close(m.true_positive_rate, tpr)
                    && close(m.false_positive_rate, fpr),
                "{k}: {m:?}"
            );
        }
    }

    #[test]
    fn weights_intersections_and_bad_input() {
        let g: Vec<&str> = GROUPS.split(' ').collect();
        let h: Vec<&str> = (0..18)
            .map(|i| if i % 2 == 0 { "x" } else { "y" })
            .collect();
        let mf = MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g, &h], None).expect("frame");
        assert_eq!(mf.by_group.len(), 6);
        assert_eq!(mf.by_group.values().map(|m| m.count).sum::<u64>(), 18);
        // Weight 2 on every row changes no rate.
        let w = vec![2.0; 18];
        let mw = MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g], Some(&w)).expect("frame");
        let mu = MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g], None).expect("frame");
        assert_eq!(mw.by_group, mu.by_group);
        assert!(MetricFrame::new(&Y_TRUE, &Y_PRED[..5], &[&g], None).is_err());
        assert!(MetricFrame::new::<&str>(&[], &[], &[&[]], None).is_err());
        assert!(MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g], Some(&[f64::NAN; 18])).is_err());
        // A group with only one label: rates are 0, nothing is NaN.
        let one = MetricFrame::new(&[1, 1], &[1, 0], &[&["z", "z"]], None).expect("frame");
        let m = one.by_group[&vec!["z".to_string()]];
        assert_eq!(m.false_positive_rate, 0.0);
        assert!(!one.equalized_odds_ratio(Method::ToOverall).is_nan());
    }
}
