//! Preprocessing inferred from an Arrow schema, fitted on training data and saved with the
//! model, as a user of a tabular tool expects:
//!
//! - numeric and boolean columns: missing values (null, NaN) imputed with the training mean,
//!   then standardized (or min-max scaled into [0, 1], or left as they are: [`Scaling`]);
//!   infinities are an error naming the column and row;
//! - string and dictionary columns: one-hot encoded; categories seen in fewer than
//!   `min_frequency` of the training rows (and any beyond the `max_categories` most frequent)
//!   are folded into one `__other__` column, as are categories first seen at prediction time;
//!   missing values take the most frequent category; columns named in
//!   [`PrepOptions::ordinal`] become one integer each instead (the category's position in a given
//!   order, as scikit-learn's `OrdinalEncoder`), and a category outside that order is an error;
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

/// How numeric and boolean columns are scaled after imputation, with statistics of the
/// training rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scaling {
    /// `(x − mean) / sd` (population sd; scikit-learn's `StandardScaler`). The default.
    #[default]
    Standard,
    /// `(x − min) / (max − min)`: the training rows into [0, 1] (`MinMaxScaler`); a constant
    /// column becomes 0.
    MinMax,
    /// Unchanged (missing values still take the training mean).
    None,
}

impl Scaling {
    /// `standard`, `minmax` (or `min_max`) or `none`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "standard" => Ok(Self::Standard),
            "minmax" | "min_max" => Ok(Self::MinMax),
            "none" => Ok(Self::None),
            other => Err(Error::invalid(
                "scaling",
                format!("{other:?} is not standard, minmax or none"),
            )),
        }
    }
}

/// How columns are encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrepOptions {
    /// Categories in fewer than this share of training rows go to `__other__` (default 0.01).
    pub min_frequency: f64,
    /// At most this many categories per column get their own column (default 50).
    pub max_categories: usize,
    /// Numeric and boolean columns (default: standardized).
    pub scaling: Scaling,
    /// String columns encoded as one integer each (0, 1, … in the given order of categories;
    /// an empty order takes the training categories sorted) instead of one-hot.
    pub ordinal: Vec<(String, Vec<String>)>,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            min_frequency: 0.01,
            max_categories: 50,
            scaling: Scaling::Standard,
            ordinal: Vec::new(),
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
    /// Imputed with `fill`, then `(x − min) / (max − min)` (0 where `max == min`).
    MinMax {
        /// The column.
        name: String,
        /// Training mean, for missing values.
        fill: f64,
        /// Training minimum.
        min: f64,
        /// Training maximum.
        max: f64,
    },
    /// Imputed with `fill`, otherwise unchanged.
    Raw {
        /// The column.
        name: String,
        /// Training mean, for missing values.
        fill: f64,
    },
    /// One feature: the category's position in `categories`; missing values take `fill`.
    Ordinal {
        /// The column.
        name: String,
        /// The categories in order.
        categories: Vec<String>,
        /// What missing values become (the most frequent training category).
        fill: String,
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

impl ColumnPlan {
    /// The input column.
    pub fn name(&self) -> &str {
        match self {
            Self::Numeric { name, .. }
            | Self::MinMax { name, .. }
            | Self::Raw { name, .. }
            | Self::Ordinal { name, .. }
            | Self::Categorical { name, .. } => name,
        }
    }

    /// Whether the input column is read as numbers (else as text).
    pub fn takes_numbers(&self) -> bool {
        matches!(
            self,
            Self::Numeric { .. } | Self::MinMax { .. } | Self::Raw { .. }
        )
    }
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
        for (k, (o, order)) in options.ordinal.iter().enumerate() {
            let what = || format!("ordinal column {o:?}");
            let f = schema
                .field_with_name(o)
                .map_err(|_| Error::invalid(what(), "is not a column of the data"))?;
            if o == target || drop.contains(o) {
                return Err(Error::invalid(what(), "is the target or dropped"));
            }
            if kind(o, f.data_type())? {
                return Err(Error::invalid(
                    what(),
                    format!("is {} (ordinal encoding takes strings)", f.data_type()),
                ));
            }
            if options.ordinal[..k].iter().any(|(p, _)| p == o) {
                return Err(Error::invalid(what(), "is named twice"));
            }
            if let Some((i, c)) = order
                .iter()
                .enumerate()
                .find(|(i, c)| order[..*i].contains(c))
            {
                return Err(Error::invalid(
                    what(),
                    format!("category {c:?} is listed twice (at {i})"),
                ));
            }
        }
        let mut columns = Vec::new();
        for f in schema.fields() {
            let name = f.name();
            if name == target || drop.contains(name) {
                continue;
            }
            if let Some((_, order)) = options.ordinal.iter().find(|(o, _)| o == name) {
                columns.push(Self::fit_ordinal(batches, name, order)?);
            } else if kind(name, f.data_type())? {
                let (mut n, mut sum, mut sq) = (0u64, 0.0f64, 0.0f64);
                let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                let mut r0 = 0;
                for b in batches {
                    let a = as_f64(name, column(b, name)?)?;
                    for (i, v) in a.iter().enumerate() {
                        match v {
                            Some(v) if v.is_infinite() => {
                                return Err(Error::invalid(
                                    format!("column {name:?}"),
                                    format!("is {v} in row {}", r0 + i),
                                ));
                            }
                            Some(v) if !v.is_nan() => {
                                n += 1;
                                sum += v;
                                sq += v * v;
                                lo = lo.min(v);
                                hi = hi.max(v);
                            }
                            _ => {}
                        }
                    }
                    r0 += b.num_rows();
                }
                let mean = if n > 0 { sum / n as f64 } else { 0.0 };
                let var = if n > 0 {
                    (sq / n as f64 - mean * mean).max(0.0)
                } else {
                    0.0
                };
                let sd = var.sqrt();
                let name = name.clone();
                columns.push(match options.scaling {
                    Scaling::Standard => ColumnPlan::Numeric {
                        name,
                        mean,
                        scale: if sd > 1e-12 { sd } else { 1.0 },
                    },
                    Scaling::MinMax if n == 0 => ColumnPlan::MinMax {
                        name,
                        fill: 0.0,
                        min: 0.0,
                        max: 0.0,
                    },
                    Scaling::MinMax => ColumnPlan::MinMax {
                        name,
                        fill: mean,
                        min: lo,
                        max: hi,
                    },
                    Scaling::None => ColumnPlan::Raw { name, fill: mean },
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

    /// The ordinal plan of column `name`: `order`, or the training categories sorted.
    fn fit_ordinal(batches: &[RecordBatch], name: &str, order: &[String]) -> Result<ColumnPlan> {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let mut r0 = 0;
        for b in batches {
            for (i, v) in as_str(name, column(b, name)?)?.iter().enumerate() {
                let Some(v) = v else { continue };
                if !order.is_empty() && !order.iter().any(|c| c == v) {
                    return Err(Error::invalid(
                        format!("ordinal column {name:?}"),
                        format!(
                            "category {v:?} in row {} is not in the order given ({})",
                            r0 + i,
                            order.join(", ")
                        ),
                    ));
                }
                *counts.entry(v.to_string()).or_default() += 1;
            }
            r0 += b.num_rows();
        }
        let categories: Vec<String> = if order.is_empty() {
            counts.keys().cloned().collect()
        } else {
            order.to_vec()
        };
        if categories.is_empty() {
            return Err(Error::invalid(
                format!("ordinal column {name:?}"),
                "has no values and no order was given",
            ));
        }
        // The most frequent category (the first of the order on ties).
        let fill = categories
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (counts.get(*c).copied().unwrap_or(0), std::cmp::Reverse(*i)))
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        Ok(ColumnPlan::Ordinal {
            name: name.to_string(),
            categories,
            fill,
        })
    }

    /// Names of the encoded features, in order (`col`, `col=category`, `col=__other__`).
    pub fn feature_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnPlan::Numeric { name, .. }
                | ColumnPlan::MinMax { name, .. }
                | ColumnPlan::Raw { name, .. }
                | ColumnPlan::Ordinal { name, .. } => out.push(name.clone()),
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
            // A numeric column: missing values take `fill`, then `f`.
            let mut numeric = |name: &str, fill: f64, f: &dyn Fn(f64) -> f64| -> Result<()> {
                let mut r0 = 0;
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
                            _ => fill,
                        };
                        x[[r0 + i, col]] = f(v) as f32;
                    }
                    r0 += b.num_rows();
                }
                Ok(())
            };
            match plan {
                ColumnPlan::Numeric { name, mean, scale } => {
                    numeric(name, *mean, &|v| (v - mean) / scale)?;
                    col += 1;
                }
                ColumnPlan::MinMax {
                    name,
                    fill,
                    min,
                    max,
                } => {
                    let range = if max > min { max - min } else { 1.0 };
                    numeric(name, *fill, &|v| {
                        if max > min { (v - min) / range } else { 0.0 }
                    })?;
                    col += 1;
                }
                ColumnPlan::Raw { name, fill } => {
                    numeric(name, *fill, &|v| v)?;
                    col += 1;
                }
                ColumnPlan::Ordinal {
                    name,
                    categories,
                    fill,
                } => {
                    for b in batches {
                        let a = as_str(name, column(b, name)?)?;
                        for (i, v) in a.iter().enumerate() {
                            let v = v.unwrap_or(fill.as_str());
                            let k = categories.iter().position(|c| c == v).ok_or_else(|| {
                                Error::invalid(
                                    format!("ordinal column {name:?}"),
                                    format!(
                                        "category {v:?} in row {} is not one of {}",
                                        r0 + i,
                                        categories.join(", ")
                                    ),
                                )
                            })?;
                            x[[r0 + i, col]] = k as f32;
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
    fn min_max_scaling_raw_columns_and_ordinal_encoding() {
        let b = batch();
        let mut opts = PrepOptions {
            scaling: Scaling::MinMax,
            ordinal: vec![(
                "region".into(),
                vec!["rare".into(), "south".into(), "north".into()],
            )],
            ..PrepOptions::default()
        };
        let p = Preprocessor::fit(std::slice::from_ref(&b), "label", &[], &opts).expect("fit");
        assert_eq!(p.feature_names(), vec!["income", "region", "owner", "age"]);
        let d = p.dataset(std::slice::from_ref(&b)).expect("dataset");
        // income: 1..199 without multiples of 10 → min 1, max 199; row 0 is missing → the mean.
        let ColumnPlan::MinMax { fill, min, max, .. } = &p.columns[0] else {
            panic!("min-max: {:?}", p.columns[0])
        };
        assert_eq!((*min, *max), (1.0, 199.0));
        assert_eq!(d.x[[1, 0]], 0.0);
        assert_eq!(d.x[[199, 0]], 1.0);
        assert!((d.x[[0, 0]] as f64 - (fill - 1.0) / 198.0).abs() < 1e-6);
        // age 20..69 → [0, 1]; owner false/true → 0/1.
        assert_eq!((d.x[[0, 3]], d.x[[49, 3]]), (0.0, 1.0));
        assert_eq!((d.x[[0, 2]], d.x[[1, 2]]), (1.0, 0.0));
        // region in the given order; row 7 (missing) takes the most frequent ("south": 86 odd
        // rows that are not multiples of 7, against 85 even ones for "north").
        assert_eq!(
            [d.x[[0, 1]], d.x[[1, 1]], d.x[[2, 1]], d.x[[7, 1]]],
            [0.0, 1.0, 2.0, 1.0]
        );
        // A category outside the order at prediction time is refused with its row.
        let east = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("income", DataType::Float64, true),
                Field::new("region", DataType::Utf8, true),
                Field::new("owner", DataType::Boolean, false),
                Field::new("age", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Float64Array::from(vec![Some(5.0), Some(500.0)])),
                Arc::new(StringArray::from(vec![Some("north"), Some("east")])),
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(Int64Array::from(vec![30, 30])),
            ],
        )
        .expect("batch");
        let e = p.features(std::slice::from_ref(&east)).expect_err("east");
        assert!(e.to_string().contains("\"east\" in row 1"), "{e}");
        // Without an order the categories are sorted; `none` leaves numbers as they are.
        opts.scaling = Scaling::None;
        opts.ordinal[0].1.clear();
        let p = Preprocessor::fit(std::slice::from_ref(&b), "label", &[], &opts).expect("fit");
        let ColumnPlan::Ordinal { categories, .. } = &p.columns[1] else {
            panic!("ordinal: {:?}", p.columns[1])
        };
        assert_eq!(categories, &["north", "rare", "south"]);
        let x = p
            .features(std::slice::from_ref(&east))
            .expect_err("east still");
        assert!(x.to_string().contains("north, rare, south"), "{x}");
        let d = p.dataset(std::slice::from_ref(&b)).expect("dataset");
        assert_eq!((d.x[[5, 0]], d.x[[5, 3]], d.x[[5, 1]]), (5.0, 25.0, 2.0));
        let json = serde_json::to_string(&p).expect("json");
        assert!(json.contains("\"kind\":\"raw\"") && json.contains("\"kind\":\"ordinal\""));
        assert_eq!(
            serde_json::from_str::<Preprocessor>(&json).expect("back"),
            p
        );
        assert!(p.columns[1].name() == "region" && !p.columns[1].takes_numbers());
        assert!(p.columns[0].takes_numbers());
        // Settings that cannot work are named.
        let refused = |ordinal: Vec<(&str, Vec<&str>)>, want: &str| {
            let o = PrepOptions {
                ordinal: ordinal
                    .into_iter()
                    .map(|(c, v)| (c.to_string(), v.into_iter().map(str::to_string).collect()))
                    .collect(),
                ..PrepOptions::default()
            };
            let e = Preprocessor::fit(std::slice::from_ref(&b), "label", &["age".into()], &o)
                .expect_err(want);
            assert!(e.to_string().contains(want), "{want}: {e}");
        };
        refused(
            vec![("region", vec!["north", "south"])],
            "\"rare\" in row 0",
        );
        refused(
            vec![("income", vec![])],
            "Float64 (ordinal encoding takes strings)",
        );
        refused(vec![("zone", vec![])], "\"zone\": is not a column");
        refused(vec![("age", vec![])], "is the target or dropped");
        refused(
            vec![("region", vec!["a", "b", "a"])],
            "\"a\" is listed twice",
        );
        refused(vec![("region", vec![]), ("region", vec![])], "named twice");
        assert!(Scaling::from_name("robust").is_err());
        assert_eq!(
            Scaling::from_name("minmax").expect("minmax"),
            Scaling::MinMax
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
        let e = Preprocessor::fit(std::slice::from_ref(&inf), "y", &[], &opts).expect_err("inf");
        assert!(e.to_string().contains("row 1"), "{e}");
        // Rows count across batches: the second batch's row 1 is row 3.
        let fine = RecordBatch::try_new(
            inf.schema(),
            vec![
                Arc::new(Float64Array::from(vec![1.0, 2.0])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .expect("batch");
        let e = Preprocessor::fit(&[fine, inf], "y", &[], &opts).expect_err("inf");
        assert!(e.to_string().contains("row 3"), "{e}");
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
