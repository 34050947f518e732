//! Evaluation metrics, as scikit-learn defines them.

use crate::error::{Error, Result};

fn same_len(a: usize, b: usize) -> Result<()> {
    if a != b || a == 0 {
        return Err(Error::invalid(
            "metric",
            format!("needs equally long, non-empty inputs ({a} and {b})"),
        ));
    }
    Ok(())
}

/// Fraction of equal labels.
pub fn accuracy(y_true: &[u32], y_pred: &[u32]) -> Result<f64> {
    same_len(y_true.len(), y_pred.len())?;
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// Precision, recall and F1 of class `positive` (0 where undefined, as scikit-learn's
/// `zero_division=0`).
pub fn precision_recall_f1(
    y_true: &[u32],
    y_pred: &[u32],
    positive: u32,
) -> Result<(f64, f64, f64)> {
    same_len(y_true.len(), y_pred.len())?;
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (t, p) in y_true.iter().zip(y_pred) {
        match (*t == positive, *p == positive) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => {}
        }
    }
    let div = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (div(tp, tp + fp), div(tp, tp + fn_));
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    Ok((p, r, f1))
}

/// Macro-averaged F1 over `classes` classes.
pub fn macro_f1(y_true: &[u32], y_pred: &[u32], classes: u32) -> Result<f64> {
    let mut sum = 0.0;
    for c in 0..classes {
        sum += precision_recall_f1(y_true, y_pred, c)?.2;
    }
    Ok(sum / f64::from(classes.max(1)))
}

/// Area under the ROC curve of scores for the positive class (label 1), with ties counted
/// half (the Mann–Whitney statistic).
pub fn roc_auc(y_true: &[u32], scores: &[f32]) -> Result<f64> {
    same_len(y_true.len(), scores.len())?;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    // Average ranks over ties.
    let mut ranks = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            ranks[*k] = r;
        }
        i = j + 1;
    }
    let pos = y_true.iter().filter(|y| **y == 1).count() as f64;
    let neg = y_true.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Err(Error::invalid("ROC AUC", "needs both classes in y_true"));
    }
    let rank_sum: f64 = y_true
        .iter()
        .zip(&ranks)
        .filter(|(y, _)| **y == 1)
        .map(|(_, r)| r)
        .sum();
    Ok((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Mean negative log-likelihood of the true class under `probs` (rows of class probabilities),
/// clipped at 1e-15 as scikit-learn.
pub fn log_loss(y_true: &[u32], probs: &[Vec<f32>]) -> Result<f64> {
    same_len(y_true.len(), probs.len())?;
    let mut s = 0.0;
    for (y, p) in y_true.iter().zip(probs) {
        let v = *p
            .get(*y as usize)
            .ok_or_else(|| Error::invalid("log loss", format!("class {y} has no probability")))?;
        s -= f64::from(v).clamp(1e-15, 1.0).ln();
    }
    Ok(s / y_true.len() as f64)
}

/// Mean squared error.
pub fn mse(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    same_len(y_true.len(), y_pred.len())?;
    Ok(y_true
        .iter()
        .zip(y_pred)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / y_true.len() as f64)
}

/// Mean absolute error.
pub fn mae(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    same_len(y_true.len(), y_pred.len())?;
    Ok(y_true
        .iter()
        .zip(y_pred)
        .map(|(a, b)| f64::from(a - b).abs())
        .sum::<f64>()
        / y_true.len() as f64)
}

/// Coefficient of determination R².
pub fn r2(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    same_len(y_true.len(), y_pred.len())?;
    let mean = y_true.iter().map(|v| f64::from(*v)).sum::<f64>() / y_true.len() as f64;
    let ss_tot: f64 = y_true.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum();
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    Ok(if ss_tot == 0.0 {
        0.0
    } else {
        1.0 - ss_res / ss_tot
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with scikit-learn 1.9 on the same inputs.
    #[test]
    fn agree_with_scikit_learn_on_hand_inputs() {
        let t = [0, 1, 1, 0, 1, 2, 2, 0];
        let p = [0, 1, 0, 0, 1, 2, 1, 2];
        assert_eq!(accuracy(&t, &p).expect("acc"), 0.625);
        let (pr, re, f1) = precision_recall_f1(&t, &p, 1).expect("prf");
        assert!((pr - 2.0 / 3.0).abs() < 1e-12 && (re - 2.0 / 3.0).abs() < 1e-12);
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        // sklearn.metrics.f1_score(t, p, average="macro") = (2/3 + 2/3 + 1/2) / 3
        assert!((macro_f1(&t, &p, 3).expect("f1") - 0.6111111111111112).abs() < 1e-12);
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75; with a tie, 0.875.
        assert_eq!(
            roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).expect("auc"),
            0.75
        );
        assert_eq!(
            roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.4, 0.8]).expect("auc"),
            0.875
        );
        // log_loss([0, 1], [[0.9, 0.1], [0.2, 0.8]]) = 0.164252033486018
        let ll = log_loss(&[0, 1], &[vec![0.9, 0.1], vec![0.2, 0.8]]).expect("ll");
        assert!((ll - 0.164252033486018).abs() < 1e-7, "{ll}");
        // r2_score([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) = 0.9486081370449679 (its docs' example)
        let r = r2(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).expect("r2");
        assert!((r - 0.9486081370449679).abs() < 1e-9, "{r}");
        assert_eq!(
            mse(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).expect("mse"),
            0.375
        );
        assert_eq!(
            mae(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).expect("mae"),
            0.5
        );
        assert!(accuracy(&[], &[]).is_err());
        assert!(roc_auc(&[1, 1], &[0.1, 0.2]).is_err());
    }
}
