//! Preprocessing inferred from an Arrow schema, fitted on training data and saved with the
//! model, as a user of a tabular tool expects:
//!
//! - numeric and boolean columns: missing values (null, NaN) imputed with the training mean,
//!   then standardized; infinities are an error naming the column and row;
//! - string and dictionary columns: one-hot encoded; categories seen in fewer than
//!   `min_frequency` of the training rows (and any beyond the `max_categories` most frequent)
//!   are folded into one `__other__` column, as are categories first seen at prediction time;
//!   missing values take the most frequent category;
//! - the target: strings and booleans become classes (names sorted; predictions map back to
//!   them), integers with at most 20 distinct values too, other numbers are values; a missing
//!   label is an error naming the row.
//!
//! Other types (dates, lists, binary, …) are refused with the column and its type.

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Target};
use crate::error::{Error, Result};

const OTHER: &str = "__other__";

/// How categoricals are folded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrepOptions {
    /// Categories in fewer than this share of training rows go to `__other__` (default 0.01).
    pub min_frequency: f64,
    /// At most this many categories per column get their own column (default 50).
    pub max_categories: usize,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            min_frequency: 0.01,
            max_categories: 50,
        }
    }
}

/// What is done to one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnPlan {
    /// Imputed with `mean`, then `(x − mean) / scale`.
    Numeric {
        /// The column.
        name: String,
        /// Training mean.
        mean: f64,
        /// Training standard deviation (1 if constant).
        scale: f64,
    },
    /// One column per category, then `__other__` if any category was folded.
    Categorical {
        /// The column.
        name: String,
        /// Categories with their own column, in order.
        categories: Vec<String>,
        /// Whether there is an `__other__` column.
        other: bool,
        /// What missing values become.
        fill: String,
    },
}

/// What the target becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TargetPlan {
    /// Classes, by name (index → name).
    Classes {
        /// The names.
        names: Vec<String>,
    },
    /// Values.
    Values,
}

/// A fitted preprocessing plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// Per input column, in order.
    pub columns: Vec<ColumnPlan>,
    /// The target column's name.
    pub target: String,
    /// The target's plan.
    pub target_plan: TargetPlan,
}

/// Column `name` cast to `to` as the concrete array type `A`.
fn cast_as<A: Array + Clone + 'static>(name: &str, a: &ArrayRef, to: &DataType) -> Result<A> {
    let c = arrow_cast::cast(a, to)
        .map_err(|e| Error::invalid(format!("column {name:?}"), e.to_string()))?;
    c.as_any()
        .downcast_ref::<A>()
        .cloned()
        .ok_or_else(|| Error::invalid(format!("column {name:?}"), format!("not castable to {to}")))
}

fn as_f64(name: &str, a: &ArrayRef) -> Result<Float64Array> {
    cast_as(name, a, &DataType::Float64)
}

fn as_str(name: &str, a: &ArrayRef) -> Result<StringArray> {
    cast_as(name, a, &DataType::Utf8)
}

fn kind(name: &str, t: &DataType) -> Result<bool> {
    // true: numeric (booleans count as 0/1); false: categorical.
    match t {
        t if t.is_numeric() => Ok(true),
        DataType::Boolean => Ok(true),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(false),
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
            Ok(false)
        }
        other => Err(Error::invalid(
            format!("column {name:?}"),
            format!("its type {other} cannot be encoded (numbers, booleans and strings can)"),
        )),
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        Error::invalid(
            format!("column {name:?}"),
            format!(
                "not in the data (columns: {})",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

impl Preprocessor {
    /// Fits on training `batches` (all with one schema): every column except `target` and
    /// `drop` is a feature.
    pub fn fit(
        batches: &[RecordBatch],
        target: &str,
        drop: &[String],
        options: &PrepOptions,
    ) -> Result<Self> {
        let schema = batches
            .first()
            .ok_or_else(|| Error::invalid("training data", "has no rows"))?
            .schema();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Err(Error::invalid("training data", "has no rows"));
        }
        if schema.field_with_name(target).is_err() {
            return Err(Error::invalid(
                format!("target {target:?}"),
                "is not a column of the data",
            ));
        }
        if let Some(d) = drop.iter().find(|d| schema.field_with_name(d).is_err()) {
            return Err(Error::invalid(
                format!("drop {d:?}"),
                "is not a column of the data",
            ));
        }
        let mut columns = Vec::new();
        for f in schema.fields() {
            let name = f.name();
            if name == target || drop.contains(name) {
                continue;
            }
            if kind(name, f.data_type())? {
                let (mut n, mut sum, mut sq) = (0u64, 0.0f64, 0.0f64);
                for b in batches {
                    let a = as_f64(name, column(b, name)?)?;
                    for (i, v) in a.iter().enumerate() {
                        match v {
                            Some(v) if v.is_infinite() => {
                                return Err(Error::invalid(
                                    format!("column {name:?}"),
                                    format!("is {v} in row {i}"),
                                ));
                            }
                            Some(v) if !v.is_nan() => {
                                n += 1;
                                sum += v;
                                sq += v * v;
                            }
                            _ => {}
                        }
                    }
                }
                let mean = if n > 0 { sum / n as f64 } else { 0.0 };
                let var = if n > 0 {
                    (sq / n as f64 - mean * mean).max(0.0)
                } else {
                    0.0
                };
                let sd = var.sqrt();
                columns.push(ColumnPlan::Numeric {
                    name: name.clone(),
                    mean,
                    scale: if sd > 1e-12 { sd } else { 1.0 },
                });
            } else {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for b in batches {
                    for v in as_str(name, column(b, name)?)?.iter().flatten() {
                        *counts.entry(v.to_string()).or_default() += 1;
                    }
                }
                let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let fill = by_count.first().map(|c| c.0.clone()).unwrap_or_default();
                let min = (options.min_frequency * rows as f64).ceil() as usize;
                let mut kept: Vec<String> = by_count
                    .iter()
                    .filter(|(_, c)| *c >= min.max(1))
                    .take(options.max_categories)
                    .map(|(v, _)| v.clone())
                    .collect();
                let other = kept.len() < by_count.len();
                kept.sort();
                columns.push(ColumnPlan::Categorical {
                    name: name.clone(),
                    categories: kept,
                    other,
                    fill,
                });
            }
        }
        if columns.is_empty() {
            return Err(Error::invalid("training data", "has no feature columns"));
        }
        // The target.
        let t = schema
            .field_with_name(target)
            .map_err(|e| Error::invalid("target", e.to_string()))?;
        let classes = match t.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
            DataType::Dictionary(_, _) => true,
            d if d.is_integer() => {
                let mut seen = std::collections::BTreeSet::new();
                for b in batches {
                    for v in as_f64(target, column(b, target)?)?.iter().flatten() {
                        seen.insert(v as i64);
                    }
                }
                seen.len() <= 20
            }
            d if d.is_numeric() => false,
            other => {
                return Err(Error::invalid(
                    format!("target {target:?}"),
                    format!("its type {other} is neither classes nor values"),
                ));
            }
        };
        let target_plan = if classes {
            let mut names = std::collections::BTreeSet::new();
            let numeric = t.data_type().is_integer();
            for b in batches {
                for (i, v) in as_str(target, column(b, target)?)?.iter().enumerate() {
                    match v {
                        Some(v) => {
                            names.insert(v.to_string());
                        }
                        None => {
                            return Err(Error::invalid(
                                format!("target {target:?}"),
                                format!("is missing in row {i}"),
                            ));
                        }
                    }
                }
            }
            let mut names: Vec<String> = names.into_iter().collect();
            if numeric {
                names.sort_by_key(|n| n.parse::<i64>().unwrap_or(i64::MAX));
            }
            if names.len() < 2 {
                return Err(Error::invalid(
                    format!("target {target:?}"),
                    format!("has a single class ({names:?}): nothing to learn"),
                ));
            }
            TargetPlan::Classes { names }
        } else {
            TargetPlan::Values
        };
        Ok(Self {
            columns,
            target: target.to_string(),
            target_plan,
        })
    }

    /// Names of the encoded features, in order (`col`, `col=category`, `col=__other__`).
    pub fn feature_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnPlan::Numeric { name, .. } => out.push(name.clone()),
                ColumnPlan::Categorical {
                    name,
                    categories,
                    other,
                    ..
                } => {
                    out.extend(categories.iter().map(|v| format!("{name}={v}")));
                    if *other {
                        out.push(format!("{name}={OTHER}"));
                    }
                }
            }
        }
        out
    }

    /// The encoded features of `batches` (the target column may be absent).
    pub fn features(&self, batches: &[RecordBatch]) -> Result<Array2<f32>> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let width = self.feature_names().len();
        let mut x = Array2::<f32>::zeros((rows, width));
        let mut col = 0;
        for plan in &self.columns {
            let mut r0 = 0;
            match plan {
                ColumnPlan::Numeric { name, mean, scale } => {
                    for b in batches {
                        let a = as_f64(name, column(b, name)?)?;
                        for (i, v) in a.iter().enumerate() {
                            let v = match v {
                                Some(v) if v.is_infinite() => {
                                    return Err(Error::invalid(
                                        format!("column {name:?}"),
                                        format!("is {v} in row {}", r0 + i),
                                    ));
                                }
                                Some(v) if !v.is_nan() => v,
                                _ => *mean,
                            };
                            x[[r0 + i, col]] = ((v - mean) / scale) as f32;
                        }
                        r0 += b.num_rows();
                    }
                    col += 1;
                }
                ColumnPlan::Categorical {
                    name,
                    categories,
                    other,
                    fill,
                } => {
                    for b in batches {
                        let a = as_str(name, column(b, name)?)?;
                        for (i, v) in a.iter().enumerate() {
                            let v = v.unwrap_or(fill.as_str());
                            match categories.binary_search_by(|c| c.as_str().cmp(v)) {
                                Ok(k) => x[[r0 + i, col + k]] = 1.0,
                                Err(_) if *other => x[[r0 + i, col + categories.len()]] = 1.0,
                                Err(_) => {}
                            }
                        }
                        r0 += b.num_rows();
                    }
                    col += categories.len() + usize::from(*other);
                }
            }
        }
        Ok(x)
    }

    /// Features and target of `batches` as a dataset.
    pub fn dataset(&self, batches: &[RecordBatch]) -> Result<Dataset> {
        let x = self.features(batches)?;
        let y = match &self.target_plan {
            TargetPlan::Classes { names } => {
                let mut labels = Vec::with_capacity(x.nrows());
                let mut r0 = 0;
                for b in batches {
                    for (i, v) in as_str(&self.target, column(b, &self.target)?)?
                        .iter()
                        .enumerate()
                    {
                        let v = v.ok_or_else(|| {
                            Error::invalid(
                                format!("target {:?}", self.target),
                                format!("is missing in row {}", r0 + i),
                            )
                        })?;
                        let k = names.iter().position(|n| n == v).ok_or_else(|| {
                            Error::invalid(
                                format!("target {:?}", self.target),
                                format!(
                                    "class {v:?} in row {} was not in the training data",
                                    r0 + i
                                ),
                            )
                        })?;
                        labels.push(k as u32);
                    }
                    r0 += b.num_rows();
                }
                Target::Classes {
                    labels,
                    names: names.clone(),
                }
            }
            TargetPlan::Values => {
                let mut v = Vec::with_capacity(x.nrows());
                let mut r0 = 0;
                for b in batches {
                    for (i, y) in as_f64(&self.target, column(b, &self.target)?)?
                        .iter()
                        .enumerate()
                    {
                        match y {
                            Some(y) if y.is_finite() => v.push(y as f32),
                            _ => {
                                return Err(Error::invalid(
                                    format!("target {:?}", self.target),
                                    format!("is missing or not finite in row {}", r0 + i),
                                ));
                            }
                        }
                    }
                    r0 += b.num_rows();
                }
                Target::Values(v)
            }
        };
        Dataset::new(x, y, self.feature_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Int64Array};
    use arrow_schema::{Field, Schema};

    fn batch() -> RecordBatch {
        let n = 200;
        let income: Vec<Option<f64>> = (0..n)
            .map(|i| if i % 10 == 0 { None } else { Some(i as f64) })
            .collect();
        let region: Vec<Option<&str>> = (0..n)
            .map(|i| match i {
                0 => Some("rare"),
                i if i % 7 == 0 => None,
                i if i % 2 == 0 => Some("north"),
                _ => Some("south"),
            })
            .collect();
        let owner: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let label: Vec<&str> = (0..n).map(|i| if i < 100 { "no" } else { "yes" }).collect();
        let age: Vec<i64> = (0..n).map(|i| 20 + i as i64 % 50).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("income", DataType::Float64, true),
                Field::new("region", DataType::Utf8, true),
                Field::new("owner", DataType::Boolean, false),
                Field::new("age", DataType::Int64, false),
                Field::new("label", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Float64Array::from(income)),
                Arc::new(StringArray::from(region)),
                Arc::new(BooleanArray::from(owner)),
                Arc::new(Int64Array::from(age)),
                Arc::new(StringArray::from(label)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn inferred_from_the_schema_fitted_and_applied() {
        let b = batch();
        let p = Preprocessor::fit(
            std::slice::from_ref(&b),
            "label",
            &["age".into()],
            &PrepOptions::default(),
        )
        .expect("fit");
        assert_eq!(
            p.feature_names(),
            vec![
                "income",
                "region=north",
                "region=south",
                "region=__other__",
                "owner"
            ]
        );
        assert_eq!(
            p.target_plan,
            TargetPlan::Classes {
                names: vec!["no".into(), "yes".into()]
            }
        );
        let d = p.dataset(std::slice::from_ref(&b)).expect("dataset");
        // Row 0: income missing → the mean → 0 after standardizing; region "rare" (1 of 200 <
        // 1%... = 2 rows) → __other__.
        assert_eq!(d.x[[0, 0]], 0.0);
        assert_eq!(d.x.row(0).to_vec()[1..4], [0.0, 0.0, 1.0]);
        // Row 7: region missing → the most frequent ("north" or "south").
        assert_eq!(d.x.row(7).to_vec()[1..3].iter().sum::<f32>(), 1.0);
        let col: Vec<f32> = d.x.column(0).to_vec();
        let mean = col.iter().sum::<f32>() / col.len() as f32;
        assert!(mean.abs() < 1e-5, "standardized: mean {mean}");
        assert_eq!(d.labels().expect("classes")[150], 1);
        // An unseen category at prediction time goes to __other__; the target may be absent.
        let unseen = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("income", DataType::Float64, true),
                Field::new("region", DataType::Utf8, true),
                Field::new("owner", DataType::Boolean, false),
            ])),
            vec![
                Arc::new(Float64Array::from(vec![Some(10.0)])),
                Arc::new(StringArray::from(vec![Some("east")])),
                Arc::new(BooleanArray::from(vec![true])),
            ],
        )
        .expect("batch");
        let x = p.features(&[unseen]).expect("features");
        assert_eq!(x.row(0).to_vec()[1..4], [0.0, 0.0, 1.0]);
        // The plan round-trips through JSON (it is saved with the model).
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(
            serde_json::from_str::<Preprocessor>(&json).expect("back"),
            p
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_place() {
        let b = batch();
        let opts = PrepOptions::default();
        let e =
            Preprocessor::fit(std::slice::from_ref(&b), "nope", &[], &opts).expect_err("target");
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = Preprocessor::fit(std::slice::from_ref(&b), "label", &["zz".into()], &opts)
            .expect_err("drop");
        assert!(e.to_string().contains("zz"), "{e}");
        let inf = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Float64, false),
                Field::new("y", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Float64Array::from(vec![1.0, f64::INFINITY])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .expect("batch");
        let e = Preprocessor::fit(&[inf], "y", &[], &opts).expect_err("inf");
        assert!(e.to_string().contains("row 1"), "{e}");
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Float64, false),
                Field::new("y", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Float64Array::from(vec![1.0, 2.0])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch");
        let e = Preprocessor::fit(&[one], "y", &[], &opts).expect_err("missing label");
        assert!(e.to_string().contains("missing in row 1"), "{e}");
        let dates = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("d", DataType::Date32, false),
                Field::new("y", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(arrow_array::Date32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .expect("batch");
        let e = Preprocessor::fit(&[dates], "y", &[], &opts).expect_err("date");
        assert!(e.to_string().contains("cannot be encoded"), "{e}");
    }
}
