//! Mitigation: reweighing before training, threshold optimization after it.
//!
//! - [`reweighing`] (Kamiran & Calders 2012): weights `W(s, y) = n_y·n_s / (n·n_{s,y})` that make
//!   the label statistically independent of the group in the weighted training data.
//! - [`ThresholdOptimizer`] (Hardt, Price & Srebro 2016), computed as fairlearn's
//!   `ThresholdOptimizer` does with `objective="accuracy_score"`, `flip=False` and
//!   `grid_size=1000`: per group, the upper convex hull of the points reachable by thresholding
//!   the score (selection rate vs accuracy for demographic parity; FPR vs TPR for equalized
//!   odds), interpolated on a grid of 1001 x-values; the x with the best overall accuracy that
//!   all groups can reach is chosen, and each group gets a randomized mix of two thresholds (and,
//!   for equalized odds, of a constant predictor) that hits it. [`ThresholdOptimizer::probability`]
//!   is fairlearn's `_pmf_predict` for the positive class.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn invalid(what: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

fn check_lengths(n: usize, parts: &[(&str, usize)]) -> Result<()> {
    if n == 0 {
        return Err(invalid("y_true", "no rows"));
    }
    for (what, len) in parts {
        if *len != n {
            return Err(invalid(what, format!("has {len} values, y_true has {n}")));
        }
    }
    Ok(())
}

/// Kamiran & Calders reweighing: one weight per row, `n_y·n_s / (n·n_{s,y})` for its label
/// `y` (1 is positive) and group `s`.
pub fn reweighing<S: AsRef<str>>(y_true: &[i64], groups: &[S]) -> Result<Vec<f64>> {
    let n = y_true.len();
    check_lengths(n, &[("groups", groups.len())])?;
    let mut n_y = [0u64; 2];
    let mut n_s: HashMap<&str, u64> = HashMap::new();
    let mut n_sy: HashMap<(&str, usize), u64> = HashMap::new();
    for (y, s) in y_true.iter().zip(groups) {
        let y = (*y == 1) as usize;
        n_y[y] += 1;
        *n_s.entry(s.as_ref()).or_default() += 1;
        *n_sy.entry((s.as_ref(), y)).or_default() += 1;
    }
    Ok(y_true
        .iter()
        .zip(groups)
        .map(|(y, s)| {
            let y = (*y == 1) as usize;
            (n_y[y] * n_s[s.as_ref()]) as f64 / (n as f64 * n_sy[&(s.as_ref(), y)] as f64)
        })
        .collect())
}

/// The fairness constraint of a [`ThresholdOptimizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// Equal selection rates across groups.
    DemographicParity,
    /// Equal true- and false-positive rates across groups.
    EqualizedOdds,
}

/// Predict positive when the score is above `threshold` (`+inf`: never, `-inf`: always).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The cut.
    pub threshold: f64,
}

impl Threshold {
    fn positive(&self, score: f64) -> bool {
        score > self.threshold
    }
}

/// The randomized rule for one group: with probability `p_ignore` predict positive with
/// probability `constant`; otherwise apply `first` with probability `p0` and `second` with
/// probability `p1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupRule {
    /// Weight of the first threshold.
    pub p0: f64,
    /// The first threshold.
    pub first: Threshold,
    /// Weight of the second threshold.
    pub p1: f64,
    /// The second threshold.
    pub second: Threshold,
    /// Share of rows answered by the constant predictor (equalized odds only).
    pub p_ignore: f64,
    /// The constant predictor's positive rate.
    pub constant: f64,
}

impl GroupRule {
    fn probability(&self, score: f64) -> f64 {
        let t = self.p0 * f64::from(u8::from(self.first.positive(score)))
            + self.p1 * f64::from(u8::from(self.second.positive(score)));
        (1.0 - self.p_ignore) * t + self.p_ignore * self.constant
    }
}

/// A post-processing of scores that satisfies a fairness constraint on the data it was fitted
/// on, in expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ThresholdOptimizer {
    /// The constraint.
    pub constraint: Constraint,
    /// The rule of each group.
    pub rules: BTreeMap<String, GroupRule>,
    /// The chosen x (selection rate, or false-positive rate).
    pub x_best: f64,
    /// The expected accuracy on the fitting data.
    pub accuracy: f64,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    x: f64,
    y: f64,
    op: Threshold,
}

/// The points reachable by thresholding, then their upper convex hull.
fn hull(
    scores: &[f64],
    labels: &[bool],
    constraint: Constraint,
    group: &str,
) -> Result<Vec<Point>> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let n = scores.len();
    let n_pos = labels.iter().filter(|l| **l).count();
    let n_neg = n - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(invalid(
            &format!("group {group:?}"),
            "has only one label; a threshold cannot be fitted (as fairlearn: degenerate labels)",
        ));
    }
    let metric = |fp: usize, tp: usize| -> (f64, f64) {
        let (n, np, nn) = (n as f64, n_pos as f64, n_neg as f64);
        match constraint {
            Constraint::DemographicParity => {
                let tn = nn - fp as f64;
                ((tp + fp) as f64 / n, (tp as f64 + tn) / n)
            }
            Constraint::EqualizedOdds => (fp as f64 / nn, tp as f64 / np),
        }
    };
    let mut points = Vec::new();
    let (x, y) = metric(0, 0);
    points.push(Point {
        x,
        y,
        op: Threshold {
            threshold: f64::INFINITY,
        },
    });
    let (mut i, mut fp, mut tp) = (0usize, 0usize, 0usize);
    while i < n {
        let s = scores[order[i]];
        while i < n && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        let next = if i < n {
            scores[order[i]]
        } else {
            f64::NEG_INFINITY
        };
        let (x, y) = metric(fp, tp);
        points.push(Point {
            x,
            y,
            op: Threshold {
                threshold: (s + next) / 2.0,
            },
        });
    }
    points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    let mut selected: Vec<Point> = Vec::new();
    for r2 in points {
        while selected.len() >= 2 {
            let r1 = selected[selected.len() - 1];
            let r0 = selected[selected.len() - 2];
            if (r1.y - r0.y) * (r2.x - r0.x) <= (r2.y - r0.y) * (r1.x - r0.x) {
                selected.pop();
            } else {
                break;
            }
        }
        selected.push(r2);
    }
    Ok(selected)
}

/// The hull at each grid x: (y, p0, op0, p1, op1).
fn interpolate(hull: &[Point], grid: &[f64]) -> Vec<(f64, f64, Threshold, f64, Threshold)> {
    let xs: Vec<f64> = hull.iter().map(|p| p.x).collect();
    grid.iter()
        .enumerate()
        .map(|(gi, g)| {
            // The last hull point with x ≤ g (searchsorted right − 1), moved one left when
            // equal to g (except on the first grid point), so x[i] < g ≤ x[i + 1].
            let mut i = xs.partition_point(|x| x <= g).saturating_sub(1);
            if gi > 0 && xs[i] == *g && i > 0 {
                i -= 1;
            }
            let j = (i + 1).min(hull.len() - 1);
            let (a, b) = (hull[i], hull[j]);
            let p0 = if b.x == a.x {
                1.0
            } else {
                (b.x - g) / (b.x - a.x)
            };
            let p1 = 1.0 - p0;
            (p0 * a.y + p1 * b.y, p0, a.op, p1, b.op)
        })
        .collect()
}

impl ThresholdOptimizer {
    /// Fits on `scores` (any real numbers; higher means more likely positive), binary `y_true`
    /// (1 is positive) and one sensitive feature. Every group needs both labels.
    pub fn fit<S: AsRef<str>>(
        scores: &[f64],
        y_true: &[i64],
        groups: &[S],
        constraint: Constraint,
    ) -> Result<Self> {
        let n = y_true.len();
        check_lengths(n, &[("scores", scores.len()), ("groups", groups.len())])?;
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(invalid("scores", format!("row {i} is NaN")));
        }
        let mut by_group: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((s, y), g) in scores.iter().zip(y_true).zip(groups) {
            let e = by_group.entry(g.as_ref()).or_default();
            e.0.push(*s);
            e.1.push(*y == 1);
        }
        let grid_size = 1000;
        let grid: Vec<f64> = (0..=grid_size)
            .map(|i| i as f64 / grid_size as f64)
            .collect();
        let mut curves = BTreeMap::new();
        for (g, (s, l)) in &by_group {
            let h = hull(s, l, constraint, g)?;
            curves.insert(*g, (s.len(), interpolate(&h, &grid)));
        }
        let n_pos = y_true.iter().filter(|y| **y == 1).count() as f64;
        let nf = n as f64;
        let objective: Vec<f64> = match constraint {
            Constraint::DemographicParity => (0..grid.len())
                .map(|k| curves.values().map(|(m, c)| *m as f64 / nf * c[k].0).sum())
                .collect(),
            Constraint::EqualizedOdds => (0..grid.len())
                .map(|k| {
                    let y_min = curves
                        .values()
                        .map(|(_, c)| c[k].0)
                        .fold(f64::INFINITY, f64::min);
                    (nf - n_pos) / nf * (1.0 - grid[k]) + n_pos / nf * y_min
                })
                .collect(),
        };
        // The first maximum, as pandas' idxmax.
        let best =
            (0..objective.len()).fold(0, |b, k| if objective[k] > objective[b] { k } else { b });
        let x_best = grid[best];
        let y_min = curves
            .values()
            .map(|(_, c)| c[best].0)
            .fold(f64::INFINITY, f64::min);
        let rules = curves
            .iter()
            .map(|(g, (_, c))| {
                let (y, p0, first, p1, second) = c[best];
                let p_ignore = match constraint {
                    Constraint::DemographicParity => 0.0,
                    Constraint::EqualizedOdds if y == x_best => 0.0,
                    Constraint::EqualizedOdds => (y - y_min) / (y - x_best),
                };
                (
                    g.to_string(),
                    GroupRule {
                        p0,
                        first,
                        p1,
                        second,
                        p_ignore,
                        constant: x_best,
                    },
                )
            })
            .collect();
        Ok(Self {
            constraint,
            rules,
            x_best,
            accuracy: objective[best],
        })
    }

    /// The probability of a positive prediction for a row of `group` with `score`.
    pub fn probability(&self, score: f64, group: &str) -> Result<f64> {
        self.rules
            .get(group)
            .map(|r| r.probability(score))
            .ok_or_else(|| invalid(&format!("group {group:?}"), "was not seen when fitting"))
    }

    /// Probabilities for many rows.
    pub fn probabilities<S: AsRef<str>>(&self, scores: &[f64], groups: &[S]) -> Result<Vec<f64>> {
        check_lengths(scores.len(), &[("groups", groups.len())])?;
        scores
            .iter()
            .zip(groups)
            .map(|(s, g)| self.probability(*s, g.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream for test data.
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn data(n: usize) -> (Vec<f64>, Vec<i64>, Vec<&'static str>) {
        let mut s = 7u64;
        let (mut scores, mut y, mut g) = (vec![], vec![], vec![]);
        for i in 0..n {
            let group = ["a", "b", "c"][i % 3];
            let base = [0.6, 0.4, 0.3][i % 3];
            let label = (lcg(&mut s) < base) as i64;
            // Scores informative, with a group-dependent offset (the unfairness to remove).
            let score = label as f64 * 0.8 + lcg(&mut s) + [0.3, 0.0, -0.2][i % 3];
            scores.push(score);
            y.push(label);
            g.push(group);
        }
        (scores, y, g)
    }

    /// Expected rates of the randomized predictor by group.
    fn rates(
        t: &ThresholdOptimizer,
        s: &[f64],
        y: &[i64],
        g: &[&str],
    ) -> BTreeMap<String, (f64, f64, f64)> {
        let p = t.probabilities(s, g).expect("p");
        let mut acc: BTreeMap<String, [f64; 5]> = BTreeMap::new();
        for i in 0..s.len() {
            let a = acc.entry(g[i].to_string()).or_default();
            a[0] += 1.0;
            a[1] += p[i];
            if y[i] == 1 {
                a[2] += 1.0;
                a[3] += p[i];
            } else {
                a[4] += p[i];
            }
        }
        acc.into_iter()
            .map(|(k, a)| (k, (a[1] / a[0], a[3] / a[2], a[4] / (a[0] - a[2]))))
            .collect()
    }

    #[test]
    fn demographic_parity_equalizes_selection_rates() {
        let (s, y, g) = data(3000);
        let t = ThresholdOptimizer::fit(&s, &y, &g, Constraint::DemographicParity).expect("fit");
        let r = rates(&t, &s, &y, &g);
        for (k, (sel, _, _)) in &r {
            assert!((sel - t.x_best).abs() < 1e-9, "{k}: {sel} vs {}", t.x_best);
        }
        // The expected accuracy it reports is the one its rules achieve.
        let p = t.probabilities(&s, &g).expect("p");
        let acc: f64 = p
            .iter()
            .zip(&y)
            .map(|(p, y)| if *y == 1 { *p } else { 1.0 - p })
            .sum::<f64>()
            / s.len() as f64;
        assert!((acc - t.accuracy).abs() < 1e-9, "{acc} vs {}", t.accuracy);
        assert!(t.accuracy > 0.6);
    }

    #[test]
    fn equalized_odds_equalizes_tpr_and_fpr() {
        let (s, y, g) = data(3000);
        let t = ThresholdOptimizer::fit(&s, &y, &g, Constraint::EqualizedOdds).expect("fit");
        let r = rates(&t, &s, &y, &g);
        let tprs: Vec<f64> = r.values().map(|v| v.1).collect();
        let fprs: Vec<f64> = r.values().map(|v| v.2).collect();
        for v in &fprs {
            assert!((v - t.x_best).abs() < 1e-9, "{fprs:?}");
        }
        for v in &tprs {
            assert!((v - tprs[0]).abs() < 1e-9, "{tprs:?}");
        }
        assert!(t.probability(0.5, "zz").is_err());
    }

    #[test]
    fn reweighing_makes_labels_independent_of_groups() {
        let (_, y, g) = data(999);
        let w = reweighing(&y, &g).expect("w");
        let total: f64 = w.iter().sum();
        let base = y
            .iter()
            .zip(&w)
            .filter(|(y, _)| **y == 1)
            .map(|(_, w)| w)
            .sum::<f64>()
            / total;
        for group in ["a", "b", "c"] {
            let (mut pos, mut all) = (0.0, 0.0);
            for i in 0..y.len() {
                if g[i] == group {
                    all += w[i];
                    if y[i] == 1 {
                        pos += w[i];
                    }
                }
            }
            assert!((pos / all - base).abs() < 1e-12, "{group}");
        }
        // Weights sum to n.
        assert!((total - 999.0).abs() < 1e-9);
        // W(s, y) on a hand-computed case: n = 4, group a = {1, 0}, b = {1, 1}.
        let w = reweighing(&[1, 0, 1, 1], &["a", "a", "b", "b"]).expect("w");
        assert_eq!(
            w,
            vec![
                3.0 * 2.0 / 4.0,
                1.0 * 2.0 / 4.0,
                3.0 * 2.0 / 8.0,
                3.0 * 2.0 / 8.0
            ]
        );
        assert!(reweighing(&[1], &["a", "b"]).is_err());
    }

    #[test]
    fn degenerate_groups_are_typed_errors() {
        let e = ThresholdOptimizer::fit(
            &[0.1, 0.9, 0.3],
            &[1, 1, 0],
            &["a", "a", "b"],
            Constraint::EqualizedOdds,
        )
        .expect_err("a has only positives");
        assert!(e.to_string().contains("\"a\""), "{e}");
        assert!(
            ThresholdOptimizer::fit(&[f64::NAN], &[1], &["a"], Constraint::DemographicParity)
                .is_err()
        );
    }
}
