//! Datasets: a feature matrix and a target (class labels with their names, or values), seeded
//! and stratified splits, standardization fitted on the training split, CSV reading, and the
//! bundled scikit-learn datasets.

use std::io::Read;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// What is predicted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Target {
    /// Class index per row, and the classes' names (index → name).
    Classes {
        /// Per row.
        labels: Vec<u32>,
        /// Per class.
        names: Vec<String>,
    },
    /// One value per row.
    Values(Vec<f32>),
}

impl Target {
    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn subset(&self, idx: &[usize]) -> Target {
        match self {
            Target::Classes { labels, names } => Target::Classes {
                labels: idx.iter().map(|i| labels[*i]).collect(),
                names: names.clone(),
            },
            Target::Values(v) => Target::Values(idx.iter().map(|i| v[*i]).collect()),
        }
    }
}

/// Features and target.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Rows × features.
    pub x: Array2<f32>,
    /// The target.
    pub y: Target,
    /// Feature names.
    pub features: Vec<String>,
}

impl Dataset {
    /// Checks shapes agree, every feature is finite, and classes are in range.
    pub fn new(x: Array2<f32>, y: Target, features: Vec<String>) -> Result<Self> {
        if x.nrows() != y.len() {
            return Err(Error::invalid(
                "dataset",
                format!("{} rows of features, {} targets", x.nrows(), y.len()),
            ));
        }
        if features.len() != x.ncols() {
            return Err(Error::invalid(
                "dataset",
                format!("{} feature names for {} columns", features.len(), x.ncols()),
            ));
        }
        if let Some(((r, c), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                "dataset",
                format!("feature {:?} is {v} in row {r}", features[c]),
            ));
        }
        match &y {
            Target::Classes { labels, names } => {
                if let Some(l) = labels.iter().find(|l| **l as usize >= names.len()) {
                    return Err(Error::invalid(
                        "dataset",
                        format!("label {l} but only {} classes", names.len()),
                    ));
                }
            }
            Target::Values(v) => {
                if let Some((r, v)) = v.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(Error::invalid(
                        "dataset",
                        format!("target is {v} in row {r}"),
                    ));
                }
            }
        }
        Ok(Self { x, y, features })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels (classification), or `None`.
    pub fn labels(&self) -> Option<&[u32]> {
        match &self.y {
            Target::Classes { labels, .. } => Some(labels),
            Target::Values(_) => None,
        }
    }

    /// Number of classes (0 for regression).
    pub fn classes(&self) -> usize {
        match &self.y {
            Target::Classes { names, .. } => names.len(),
            Target::Values(_) => 0,
        }
    }

    /// The rows at `idx`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), idx),
            y: self.y.subset(idx),
            features: self.features.clone(),
        }
    }

    /// SHA-256 (hex) of the feature names, the features (f32, row-major) and the target (class
    /// names and labels, or values), each part length-prefixed: equal for equal datasets, and
    /// different when one value, name, label or the row order changes. Saved in a model's
    /// manifest ([`crate::TrainingRecord`]) to name the data it was trained on.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let text = |h: &mut sha2::Sha256, s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        text(&mut h, "aistd-dataset-v1");
        h.update((self.x.nrows() as u64).to_le_bytes());
        h.update((self.features.len() as u64).to_le_bytes());
        for f in &self.features {
            text(&mut h, f);
        }
        for v in self.x.iter() {
            h.update(v.to_le_bytes());
        }
        match &self.y {
            Target::Classes { labels, names } => {
                text(&mut h, "classes");
                h.update((names.len() as u64).to_le_bytes());
                for n in names {
                    text(&mut h, n);
                }
                for l in labels {
                    h.update(l.to_le_bytes());
                }
            }
            Target::Values(v) => {
                text(&mut h, "values");
                for v in v {
                    h.update(v.to_le_bytes());
                }
            }
        }
        hex::encode(h.finalize())
    }

    /// Data augmentation for images stored one per row (`height × width` pixels, row-major): the
    /// rows once per shift `(dy, dx)`, in the order of `shifts`, each image moved `dy` pixels down
    /// and `dx` right (negative: up, left) with the uncovered pixels set to `fill`; `(0, 0)` keeps
    /// the originals. Targets repeat with their images. Shifting by one pixel in four directions
    /// is the usual augmentation for small digit images (Simard et al. 2003 use elastic ones).
    pub fn shifted_images(
        &self,
        height: usize,
        width: usize,
        shifts: &[(i32, i32)],
        fill: f32,
    ) -> Result<Dataset> {
        if height.checked_mul(width) != Some(self.x.ncols()) {
            return Err(Error::invalid(
                "image shifts",
                format!(
                    "{height} × {width} pixels, but the rows have {} features",
                    self.x.ncols()
                ),
            ));
        }
        if shifts.is_empty() {
            return Err(Error::invalid("image shifts", "no shifts given"));
        }
        if let Some((dy, dx)) = shifts.iter().find(|(dy, dx)| {
            dy.unsigned_abs() as usize >= height || dx.unsigned_abs() as usize >= width
        }) {
            return Err(Error::invalid(
                "image shifts",
                format!("shift ({dy}, {dx}) moves a {height} × {width} image out of view"),
            ));
        }
        if !fill.is_finite() {
            return Err(Error::invalid("image shifts", format!("fill value {fill}")));
        }
        let n = self.len();
        let mut x = Array2::from_elem((n * shifts.len(), self.x.ncols()), fill);
        for (k, &(dy, dx)) in shifts.iter().enumerate() {
            // Destination rows and columns that have a source pixel.
            let span = |d: i32, len: usize| {
                let d = d.unsigned_abs() as usize;
                if d == 0 { 0..len } else { 0..len - d }
            };
            for (r, src) in self.x.outer_iter().enumerate() {
                let mut dst = x.row_mut(k * n + r);
                for i in span(dy, height) {
                    let (si, di) = if dy >= 0 {
                        (i, i + dy as usize)
                    } else {
                        (i + dy.unsigned_abs() as usize, i)
                    };
                    for j in span(dx, width) {
                        let (sj, dj) = if dx >= 0 {
                            (j, j + dx as usize)
                        } else {
                            (j + dx.unsigned_abs() as usize, j)
                        };
                        dst[di * width + dj] = src[si * width + sj];
                    }
                }
            }
        }
        let rows: Vec<usize> = (0..shifts.len()).flat_map(|_| 0..n).collect();
        Ok(Dataset {
            x,
            y: self.y.subset(&rows),
            features: self.features.clone(),
        })
    }

    /// Splits into parts of the given fractions (summing to 1), shuffled by `seed`; stratified
    /// by class for classification (each part keeps the class proportions, as scikit-learn's
    /// `train_test_split(stratify=y)`). Every part must get rows.
    pub fn split(&self, fractions: &[f64], seed: u64) -> Result<Vec<Dataset>> {
        Ok(self
            .split_indices(fractions, seed)?
            .iter()
            .map(|p| self.subset(p))
            .collect())
    }

    /// The row indices of each part of [`Dataset::split`].
    pub fn split_indices(&self, fractions: &[f64], seed: u64) -> Result<Vec<Vec<usize>>> {
        let total: f64 = fractions.iter().sum();
        if fractions.iter().any(|f| f.is_nan() || *f <= 0.0) || (total - 1.0).abs() > 1e-9 {
            return Err(Error::invalid(
                "split",
                format!("fractions {fractions:?} must be > 0 and sum to 1"),
            ));
        }
        let mut rng = Rng::new(seed);
        let groups: Vec<Vec<usize>> = match &self.y {
            Target::Classes { labels, names } => (0..names.len())
                .map(|c| {
                    (0..labels.len())
                        .filter(|i| labels[*i] as usize == c)
                        .collect()
                })
                .collect(),
            Target::Values(v) => vec![(0..v.len()).collect()],
        };
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); fractions.len()];
        for mut g in groups {
            rng.shuffle(&mut g);
            let n = g.len();
            let mut start = 0;
            let mut acc = 0.0;
            for (k, f) in fractions.iter().enumerate() {
                acc += f;
                let end = if k + 1 == fractions.len() {
                    n
                } else {
                    ((acc * n as f64).round() as usize).min(n)
                };
                parts[k].extend_from_slice(&g[start..end.max(start)]);
                start = end.max(start);
            }
        }
        let mut out = Vec::new();
        for (k, mut p) in parts.into_iter().enumerate() {
            if p.is_empty() {
                return Err(Error::invalid(
                    "split",
                    format!("part {k} ({}) gets no rows of {}", fractions[k], self.len()),
                ));
            }
            rng.shuffle(&mut p);
            out.push(p);
        }
        Ok(out)
    }

    /// Reads a CSV with a header: every column but `target` must be numeric; the target is
    /// classes if any value is not a number (names sorted), or if `classify` is set, else
    /// values.
    pub fn read_csv(file: &str, text: &str, target: &str, classify: bool) -> Result<Dataset> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| Error::Data {
            file: file.into(),
            line: 1,
            reason: "empty file".into(),
        })?;
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let t = cols
            .iter()
            .position(|c| *c == target)
            .ok_or_else(|| Error::Data {
                file: file.into(),
                line: 1,
                reason: format!("no target column `{target}` (columns: {})", cols.join(",")),
            })?;
        let features: Vec<String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != t)
            .map(|(_, c)| c.to_string())
            .collect();
        let mut x = Vec::new();
        let mut raw_y = Vec::new();
        for (i, line) in lines {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != cols.len() {
                return Err(Error::Data {
                    file: file.into(),
                    line: i + 1,
                    reason: format!("{} fields, the header has {}", f.len(), cols.len()),
                });
            }
            for (k, v) in f.iter().enumerate() {
                if k == t {
                    raw_y.push(v.to_string());
                } else {
                    let n: f32 = v.parse().map_err(|_| Error::Data {
                        file: file.into(),
                        line: i + 1,
                        reason: format!("`{}` = {v:?} is not a number", cols[k]),
                    })?;
                    if !n.is_finite() {
                        return Err(Error::Data {
                            file: file.into(),
                            line: i + 1,
                            reason: format!("`{}` is {n}", cols[k]),
                        });
                    }
                    x.push(n);
                }
            }
        }
        let rows = raw_y.len();
        let x = Array2::from_shape_vec((rows, features.len()), x)
            .map_err(|e| Error::invalid("dataset", e.to_string()))?;
        let numeric: Option<Vec<f32>> = raw_y.iter().map(|v| v.parse().ok()).collect();
        let y = match numeric {
            Some(v) if !classify => Target::Values(v),
            _ => {
                let mut names: Vec<String> = raw_y.clone();
                names.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.total_cmp(&y),
                    _ => a.cmp(b),
                });
                names.dedup();
                let labels = raw_y
                    .iter()
                    .map(|v| names.iter().position(|n| n == v).unwrap_or(0) as u32)
                    .collect();
                Target::Classes { labels, names }
            }
        };
        Dataset::new(x, y, features)
    }
}

/// Per-feature standardization (z-scores), fitted on a training split and saved with the model.
/// Constant features are centred and left unscaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature mean.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation (1 where it is 0).
    pub scale: Vec<f32>,
}

impl Standardizer {
    /// Fits on `x`.
    pub fn fit(x: &Array2<f32>) -> Result<Self> {
        if x.nrows() == 0 {
            return Err(Error::invalid("standardizer", "needs at least one row"));
        }
        let mean: Array1<f32> = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let scale = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        Ok(Self {
            mean: mean.to_vec(),
            scale: scale.to_vec(),
        })
    }

    /// Applies to `x`.
    pub fn transform(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.mean.len() {
            return Err(Error::invalid(
                "standardizer",
                format!("{} features, fitted on {}", x.ncols(), self.mean.len()),
            ));
        }
        let mut out = x.clone();
        for mut row in out.outer_iter_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.mean[j]) / self.scale[j];
            }
        }
        Ok(out)
    }
}

/// Decompresses a bundled `.csv.gz`.
fn gunzip(name: &str, bytes: &[u8]) -> Result<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .map_err(|e| Error::invalid(format!("bundled dataset {name}"), e.to_string()))?;
    Ok(s)
}

/// `rows` × `features` values uniform in [−1, 1) and a target that is the sum of the first ten
/// (or all) features: a regression problem of any size, for benchmarks.
pub fn synthetic_regression(rows: usize, features: usize, seed: u64) -> Result<Dataset> {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((rows, features), |_| (rng.uniform() * 2.0 - 1.0) as f32);
    let y: Vec<f32> = x
        .outer_iter()
        .map(|r| r.iter().take(10).sum::<f32>())
        .collect();
    let names = (0..features).map(|i| format!("x{i}")).collect();
    Dataset::new(x, Target::Values(y), names)
}

/// scikit-learn's `digits` (UCI optical digits): 1,797 images of 8 × 8 pixels (0–16), 10
/// classes. BSD-3-Clause, bundled in `training/data/`.
pub fn digits() -> Result<Dataset> {
    let text = gunzip("digits", include_bytes!("../data/digits.csv.gz"))?;
    Dataset::read_csv("digits.csv", &text, "digit", true)
}

/// scikit-learn's `breast_cancer` (Wisconsin diagnostic): 569 rows, 30 features, classes
/// `benign` / `malignant`. BSD-3-Clause, bundled in `training/data/`.
pub fn breast_cancer() -> Result<Dataset> {
    let text = gunzip(
        "breast_cancer",
        include_bytes!("../data/breast_cancer.csv.gz"),
    )?;
    Dataset::read_csv("breast_cancer.csv", &text, "diagnosis", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_datasets_load_with_their_shapes() {
        let d = digits().expect("digits");
        assert_eq!((d.len(), d.x.ncols(), d.classes()), (1797, 64, 10));
        let b = breast_cancer().expect("breast cancer");
        assert_eq!((b.len(), b.x.ncols(), b.classes()), (569, 30, 2));
        match &b.y {
            Target::Classes { labels, names } => {
                assert_eq!(names, &["benign", "malignant"]);
                assert_eq!(labels.iter().filter(|l| **l == 1).count(), 212);
            }
            Target::Values(_) => panic!("classes expected"),
        }
    }

    #[test]
    fn stratified_splits_keep_class_proportions_and_are_seeded() {
        let d = digits().expect("digits");
        let parts = d.split(&[0.75, 0.25], 42).expect("split");
        assert_eq!(parts[0].len() + parts[1].len(), 1797);
        let count = |ds: &Dataset, c: u32| match &ds.y {
            Target::Classes { labels, .. } => labels.iter().filter(|l| **l == c).count(),
            Target::Values(_) => 0,
        };
        for c in 0..10 {
            let (a, b) = (count(&parts[0], c), count(&parts[1], c));
            let share = b as f64 / (a + b) as f64;
            assert!((share - 0.25).abs() < 0.02, "class {c}: {share}");
        }
        assert_eq!(parts, d.split(&[0.75, 0.25], 42).expect("again"));
        assert!(d.split(&[0.5, 0.4], 1).is_err());
        assert!(
            d.subset(&[0, 1]).split(&[0.9, 0.1], 1).is_err(),
            "an empty part"
        );
    }

    #[test]
    fn fingerprints_name_the_exact_data() {
        let d = digits()
            .expect("digits")
            .subset(&(0..50).collect::<Vec<_>>());
        let f = d.fingerprint();
        assert_eq!(f.len(), 64);
        assert_eq!(f, d.clone().fingerprint());
        let mut one = d.clone();
        one.x[[7, 3]] += 1.0;
        let mut label = d.clone();
        if let Target::Classes { labels, .. } = &mut label.y {
            labels[4] = (labels[4] + 1) % 10;
        }
        let mut name = d.clone();
        name.features[0] = "pixel".into();
        let order = d.subset(&(0..50).rev().collect::<Vec<_>>());
        for (what, other) in [
            ("value", one),
            ("label", label),
            ("name", name),
            ("order", order),
        ] {
            assert_ne!(other.fingerprint(), f, "{what}");
        }
    }

    #[test]
    fn shifted_images_move_pixels_fill_the_edge_and_repeat_targets() {
        // One 2 × 3 image 1 2 3 / 4 5 6.
        let d = Dataset::new(
            Array2::from_shape_vec((1, 6), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("shape"),
            Target::Classes {
                labels: vec![1],
                names: vec!["a".into(), "b".into()],
            },
            (0..6).map(|j| format!("p{j}")).collect(),
        )
        .expect("dataset");
        let s = d
            .shifted_images(2, 3, &[(0, 0), (1, 0), (0, -1), (-1, 2)], 0.5)
            .expect("shift");
        let rows: Vec<Vec<f32>> = s.x.outer_iter().map(|r| r.to_vec()).collect();
        assert_eq!(rows[0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(rows[1], [0.5, 0.5, 0.5, 1.0, 2.0, 3.0], "down one");
        assert_eq!(rows[2], [2.0, 3.0, 0.5, 5.0, 6.0, 0.5], "left one");
        assert_eq!(rows[3], [0.5, 0.5, 4.0, 0.5, 0.5, 0.5], "up one, right two");
        assert_eq!(s.labels(), Some(&[1, 1, 1, 1][..]));
        let e = |r: Result<Dataset>| r.expect_err("refused").to_string();
        assert!(e(d.shifted_images(3, 3, &[(0, 0)], 0.0)).contains("6 features"));
        assert!(e(d.shifted_images(2, 3, &[(2, 0)], 0.0)).contains("(2, 0)"));
        assert!(e(d.shifted_images(2, 3, &[], 0.0)).contains("no shifts"));
        assert!(e(d.shifted_images(2, 3, &[(0, 0)], f32::NAN)).contains("fill"));
    }

    #[test]
    fn bad_csv_and_bad_values_name_the_place() {
        let e =
            Dataset::read_csv("f.csv", "a,b,y\n1,2,x\n1,oops,y\n", "y", false).expect_err("bad");
        assert!(
            e.to_string().contains("f.csv, line 3") && e.to_string().contains("`b`"),
            "{e}"
        );
        let e = Dataset::read_csv("f.csv", "a,b\n1,2\n", "y", false).expect_err("no target");
        assert!(e.to_string().contains("no target column `y`"), "{e}");
        let e = Dataset::read_csv("f.csv", "a,y\ninf,1\n", "y", false).expect_err("inf");
        assert!(e.to_string().contains("`a` is inf"), "{e}");
        let r = Dataset::read_csv("f.csv", "a,y\n1,2.5\n2,3.5\n", "y", false).expect("regression");
        assert_eq!(r.y, Target::Values(vec![2.5, 3.5]));
        let s = Standardizer::fit(&r.x).expect("fit");
        let z = s.transform(&r.x).expect("z");
        assert_eq!(z.column(0).to_vec(), vec![-1.0, 1.0]);
    }
}
