//! The governance [`Pipeline`]: a builder that composes cleaning, labeling and expectations over
//! any [`DataSource`], streaming, and produces the clean Arrow IPC file, the quarantine and a
//! quality [`Report`] (JSON and Markdown).
//!
//! **Conservation:** every input row ends up either in the output or in the quarantine, with the
//! reason of the first step that removed it: `rows_in == rows_out + rows_quarantined`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_ipc::writer::FileWriter;
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditLog};
use crate::clean::{Imputation, NullAction, OutlierAction, OutlierMethod, normalize_key};
use crate::column::{Col, Val, map_values, normal_type};
use crate::expect::{Check, Expectation, ExpectationResult, ExpectationSuite, SuiteRun};
use crate::keys::KeyCounter;
use crate::label::{LABELER_METADATA_KEY, Labeler};
use crate::lineage::{Lineage, LineageDataset};
use crate::pii::{Classification, ClassificationRules, PiiScanner, classify};
use crate::profile::{Profile, Profiler};
use crate::protect::{ProtectedColumn, Protection, ProtectionPlan};
use crate::source::{DataSource, Descriptor, ScanOptions, parse_date, parse_timestamp_micros};
use crate::{Error, Result};

/// Name of the clean output file in the output directory.
pub const DATA_FILE: &str = "data.arrow";
/// Name of the quarantine file.
pub const QUARANTINE_FILE: &str = "quarantine.arrow";
/// Name of the JSON report; written last, so its presence marks a complete output.
pub const REPORT_JSON: &str = "report.json";
/// Name of the Markdown report.
pub const REPORT_MD: &str = "report.md";
/// Name of the HTML report (inline SVG charts).
pub const REPORT_HTML: &str = "report.html";

/// Columns the quarantine adds to the input schema.
pub const QUARANTINE_COLUMNS: [&str; 3] = ["_row", "_reason", "_detail"];

#[derive(Debug, Clone)]
enum Step {
    Coerce {
        column: String,
        to: DataType,
    },
    Nulls {
        column: String,
        action: NullAction,
    },
    DedupExact {
        keys: Option<Vec<String>>,
    },
    NearDup {
        keys: Vec<String>,
    },
    Outliers {
        column: String,
        method: OutlierMethod,
        action: OutlierAction,
    },
    Reject(Expectation),
    Label {
        labeler: Arc<dyn Labeler>,
        column: String,
    },
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Coerce { column, to } => format!("coerce {column} to {to}"),
            Step::Nulls { column, action } => format!("nulls in {column}: {action:?}"),
            Step::DedupExact { keys: None } => "exact dedup on all columns".into(),
            Step::DedupExact { keys: Some(k) } => format!("exact dedup on {}", k.join(", ")),
            Step::NearDup { keys } => {
                format!("near-duplicate removal on normalised {}", keys.join(", "))
            }
            Step::Outliers {
                column,
                method,
                action,
            } => format!("outliers in {column}: {method:?}, {action:?}"),
            Step::Reject(e) => format!(
                "reject rows failing {} on {}",
                e.rule.kind(),
                e.rule.column().unwrap_or("-")
            ),
            Step::Label { labeler, column } => {
                format!("label into {column} by {}", labeler.identity())
            }
        }
    }

    fn needs_fit(&self) -> bool {
        matches!(
            self,
            Step::Outliers { .. }
                | Step::Nulls {
                    action: NullAction::Impute(
                        Imputation::Mean | Imputation::Median | Imputation::Mode
                    ),
                    ..
                }
        )
    }
}

/// Builder and runner of a governance pipeline.
#[derive(Debug)]
pub struct Pipeline {
    source: Box<dyn DataSource>,
    steps: Vec<Step>,
    suite: ExpectationSuite,
    suite_origin: String,
    progress: bool,
    batch_size: Option<usize>,
    profile_input: bool,
    identify: bool,
    governance: Governance,
}

/// The classify / protect / audit / lineage stages, run around the streaming core by
/// [`Pipeline::run`].
#[derive(Debug, Default)]
struct Governance {
    classify: Option<ClassificationRules>,
    protection: Option<Protection>,
    audit: Option<(Arc<Mutex<AuditLog>>, String)>,
    lineage: Option<Lineage>,
}

/// Label counts produced by a labeling step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LabelSummary {
    /// Output column holding the labels.
    pub column: String,
    /// `name@version` of the labeler.
    pub labeler: String,
    /// Rows per label (`null` for unlabeled) among output rows.
    pub counts: BTreeMap<String, u64>,
}

/// What a pipeline run did. `rows_in == rows_out + rows_quarantined` always holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The input's identity (fingerprint empty when identification was turned off).
    pub source: Descriptor,
    /// The steps, in order, in words.
    pub steps: Vec<String>,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written to the clean output.
    pub rows_out: u64,
    /// Rows written to the quarantine.
    pub rows_quarantined: u64,
    /// Quarantined rows per reason (`duplicate`, `near_duplicate`, `null:<col>`, `nan:<col>`,
    /// `coerce:<col>`, `outlier:<col>`, `expectation:<rule>:<col>`).
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Rows removed as exact duplicates.
    pub duplicates_removed: u64,
    /// Rows removed as near duplicates.
    pub near_duplicates_removed: u64,
    /// Values imputed per column.
    pub values_imputed: BTreeMap<String, u64>,
    /// Values clipped per column.
    pub values_clipped: BTreeMap<String, u64>,
    /// Labels attached, per labeling step.
    pub labels: Vec<LabelSummary>,
    /// Results of the expectations, evaluated on the clean output.
    pub expectations: Vec<ExpectationResult>,
    /// Whether every expectation held.
    pub expectations_passed: bool,
    /// Output columns and their types.
    pub output_schema: Vec<(String, String)>,
    /// Profile of the input, when computed.
    pub input_profile: Option<Profile>,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// Sensitivity of each input column, when the pipeline classified its input.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// Columns encrypted, tokenized or masked in the outputs.
    #[serde(default)]
    pub protection: Vec<ProtectedColumn>,
    /// The audit log's tree head after the run's events (`size:root-hex`), when audited.
    #[serde(default)]
    pub audit_head: Option<String>,
    /// The OpenLineage run id, when lineage was emitted.
    #[serde(default)]
    pub lineage_run_id: Option<String>,
}

/// A compiled step with its running state.
enum Runner {
    Coerce {
        idx: usize,
        column: String,
        to: DataType,
    },
    Nulls {
        idx: usize,
        column: String,
        fill: Option<Fill>,
    },
    Dedup {
        idxs: Vec<usize>,
        converter: RowConverter,
        seen: KeyCounter,
    },
    NearDup {
        idxs: Vec<usize>,
        seen: KeyCounter,
    },
    Outliers {
        idx: usize,
        column: String,
        lo: f64,
        hi: f64,
        clip: bool,
    },
    Reject {
        check: Check,
        reason: String,
    },
    Label {
        labeler: Arc<dyn Labeler>,
        field: Arc<Field>,
    },
}

/// An imputation value of the column's normal type.
#[derive(Debug, Clone)]
enum Fill {
    Bool(bool),
    Int(i64),
    Float(f64),
    Date(i32),
    Ts(i64),
    Str(String),
}

impl Fill {
    fn val(&self) -> Val<'_> {
        match self {
            Fill::Bool(b) => Val::Bool(*b),
            Fill::Int(x) => Val::Int(*x),
            Fill::Float(x) => Val::Float(*x),
            Fill::Date(x) => Val::Date(*x),
            Fill::Ts(x) => Val::Ts(*x),
            Fill::Str(s) => Val::Str(s),
        }
    }

    fn from_json(v: &serde_json::Value, t: &DataType, context: &str) -> Result<Self> {
        let bad = || Error::invalid(context, format!("value {v} does not fit a {t} column"));
        Ok(match (normal_type(t), v) {
            (DataType::Boolean, serde_json::Value::Bool(b)) => Fill::Bool(*b),
            (DataType::Int64, serde_json::Value::Number(n)) => {
                // Integers above 2^53 must not pass through f64.
                Fill::Int(
                    n.as_i64()
                        .or_else(|| n.as_f64().map(|x| x.round() as i64))
                        .ok_or_else(bad)?,
                )
            }
            (DataType::Float64, serde_json::Value::Number(n)) => {
                Fill::Float(n.as_f64().ok_or_else(bad)?)
            }
            (DataType::Date32, serde_json::Value::String(s)) => {
                Fill::Date(parse_date(s).ok_or_else(bad)?)
            }
            (DataType::Timestamp(..), serde_json::Value::String(s)) => {
                Fill::Ts(parse_timestamp_micros(s).ok_or_else(bad)?)
            }
            (DataType::Utf8, serde_json::Value::String(s)) => Fill::Str(s.clone()),
            _ => return Err(bad()),
        })
    }

    fn from_number(x: f64, t: &DataType, context: &str) -> Result<Self> {
        Ok(match normal_type(t) {
            DataType::Int64 => Fill::Int(x.round() as i64),
            DataType::Float64 => Fill::Float(x),
            DataType::Date32 => Fill::Date(x.round() as i32),
            DataType::Timestamp(..) => Fill::Ts(x.round() as i64),
            other => {
                return Err(Error::invalid(
                    context,
                    format!("a statistic cannot be imputed into a {other} column"),
                ));
            }
        })
    }
}

type Rejects = Vec<(usize, String, String)>;

/// Counters a run accumulates.
#[derive(Default)]
struct Tally {
    by_reason: BTreeMap<String, u64>,
    imputed: BTreeMap<String, u64>,
    clipped: BTreeMap<String, u64>,
    labels: Vec<LabelSummary>,
}

fn context(i: usize, s: &Step) -> String {
    format!("pipeline step #{} ({})", i + 1, s.describe())
}

fn index(schema: &Schema, column: &str, ctx: &str) -> Result<usize> {
    schema
        .index_of(column)
        .map_err(|_| Error::column_not_found(column, ctx, schema))
}

impl Runner {
    /// Compile `step` against the schema it will see; returns the schema it produces.
    fn compile(
        i: usize,
        step: &Step,
        schema: &SchemaRef,
        fit: Option<&Profile>,
    ) -> Result<(Self, SchemaRef)> {
        let ctx = context(i, step);
        let same = schema.clone();
        Ok(match step {
            Step::Coerce { column, to } => {
                let idx = index(schema, column, &ctx)?;
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields[idx] = Field::new(column, to.clone(), true);
                let out = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
                (
                    Runner::Coerce {
                        idx,
                        column: column.clone(),
                        to: to.clone(),
                    },
                    out,
                )
            }
            Step::Nulls { column, action } => {
                let idx = index(schema, column, &ctx)?;
                let t = schema.field(idx).data_type();
                let fill = match action {
                    NullAction::Drop => None,
                    NullAction::Impute(Imputation::Constant(v)) => {
                        Some(Fill::from_json(v, t, &ctx)?)
                    }
                    NullAction::Impute(how) => {
                        let p = fit.and_then(|p| p.column(column)).ok_or_else(|| {
                            Error::invalid(
                                &ctx,
                                "no input profile of this column to fit the imputation on",
                            )
                        })?;
                        Some(match how {
                            Imputation::Mean => Fill::from_number(
                                p.mean
                                    .ok_or_else(|| Error::invalid(&ctx, "column has no mean"))?,
                                t,
                                &ctx,
                            )?,
                            Imputation::Median => {
                                let m =
                                    p.quantiles.iter().find(|(q, _)| *q == 0.5).map(|(_, v)| *v);
                                Fill::from_number(
                                    m.ok_or_else(|| Error::invalid(&ctx, "column has no median"))?,
                                    t,
                                    &ctx,
                                )?
                            }
                            _ => {
                                let v = p.top_values.first().map(|(v, _)| v.clone());
                                Fill::from_json(
                                    &v.ok_or_else(|| Error::invalid(&ctx, "column has no values"))?,
                                    t,
                                    &ctx,
                                )?
                            }
                        })
                    }
                };
                (
                    Runner::Nulls {
                        idx,
                        column: column.clone(),
                        fill,
                    },
                    same,
                )
            }
            Step::DedupExact { keys } => {
                let idxs: Vec<usize> = match keys {
                    None => (0..schema.fields().len()).collect(),
                    Some(k) => k
                        .iter()
                        .map(|c| index(schema, c, &ctx))
                        .collect::<Result<_>>()?,
                };
                let fields = idxs
                    .iter()
                    .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                    .collect();
                let converter = RowConverter::new(fields).map_err(|e| Error::arrow(&ctx, e))?;
                (
                    Runner::Dedup {
                        idxs,
                        converter,
                        seen: KeyCounter::default(),
                    },
                    same,
                )
            }
            Step::NearDup { keys } => {
                let idxs = keys
                    .iter()
                    .map(|c| index(schema, c, &ctx))
                    .collect::<Result<_>>()?;
                (
                    Runner::NearDup {
                        idxs,
                        seen: KeyCounter::default(),
                    },
                    same,
                )
            }
            Step::Outliers {
                column,
                method,
                action,
            } => {
                let idx = index(schema, column, &ctx)?;
                let p = fit.and_then(|p| p.column(column)).ok_or_else(|| {
                    Error::invalid(&ctx, "no input profile of this column to fit the bounds on")
                })?;
                let q = |x: f64| p.quantiles.iter().find(|(k, _)| *k == x).map(|(_, v)| *v);
                let (lo, hi) = match method {
                    OutlierMethod::Iqr { k } => {
                        let (q1, q3) = q(0.25)
                            .zip(q(0.75))
                            .ok_or_else(|| Error::invalid(&ctx, "column is not numeric"))?;
                        (q1 - k * (q3 - q1), q3 + k * (q3 - q1))
                    }
                    OutlierMethod::ZScore { threshold } => {
                        let (m, s) = p
                            .mean
                            .zip(p.std)
                            .ok_or_else(|| Error::invalid(&ctx, "column is not numeric"))?;
                        (m - threshold * s, m + threshold * s)
                    }
                };
                (
                    Runner::Outliers {
                        idx,
                        column: column.clone(),
                        lo,
                        hi,
                        clip: *action == OutlierAction::Clip,
                    },
                    same,
                )
            }
            Step::Reject(e) => {
                let suite = ExpectationSuite::new(vec![e.clone()]);
                if !e.is_row_level() {
                    return Err(Error::invalid(
                        &ctx,
                        format!("{} is not a row-level expectation", e.rule.kind()),
                    ));
                }
                let check = Check::new(&suite, 0, schema, &ctx)?;
                let reason = format!(
                    "expectation:{}:{}",
                    e.rule.kind(),
                    e.rule.column().unwrap_or("-")
                );
                (Runner::Reject { check, reason }, same)
            }
            Step::Label { labeler, column } => {
                if schema.index_of(column).is_ok() {
                    return Err(Error::invalid(
                        &ctx,
                        format!("column `{column}` already exists"),
                    ));
                }
                let meta = HashMap::from([(
                    LABELER_METADATA_KEY.to_string(),
                    labeler.identity().to_string(),
                )]);
                let field = Arc::new(Field::new(column, DataType::Utf8, true).with_metadata(meta));
                let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
                fields.push(field.clone());
                let out = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
                (
                    Runner::Label {
                        labeler: labeler.clone(),
                        field,
                    },
                    out,
                )
            }
        })
    }

    /// Apply to `batch`; rows to quarantine are returned, not removed.
    fn apply(
        &mut self,
        batch: RecordBatch,
        alive: &[bool],
        schema: &SchemaRef,
        tally: &mut Tally,
    ) -> Result<(RecordBatch, Rejects)> {
        let mut rejects = Rejects::new();
        let replace = |batch: &RecordBatch, idx: usize, array: ArrayRef| -> Result<RecordBatch> {
            // Values were computed in the column's normal type; store them in its own type.
            let want = schema.field(idx).data_type();
            let array = if array.data_type() == want {
                array
            } else {
                arrow_cast::cast(&array, want)
                    .map_err(|e| Error::arrow("restoring a column's type", e))?
            };
            let mut cols = batch.columns().to_vec();
            cols[idx] = array;
            RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::arrow("replacing a column", e))
        };
        let batch = match self {
            Runner::Coerce { idx, column, to } => {
                let before = batch.column(*idx);
                let opts = arrow_cast::CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let after = arrow_cast::cast_with_options(before, to, &opts)
                    .map_err(|e| Error::arrow(format!("coercing {column} to {to}"), e))?;
                let original = Col::new(before)?;
                for i in (0..after.len()).filter(|&i| alive[i]) {
                    if after.is_null(i) && before.is_valid(i) {
                        let detail = format!("`{}` is not a valid {to}", original.get(i).to_text());
                        rejects.push((i, format!("coerce:{column}"), detail));
                    }
                }
                replace(&batch, *idx, after)?
            }
            Runner::Nulls { idx, column, fill } => {
                let col = Col::new(batch.column(*idx))?;
                match fill {
                    None => {
                        for i in (0..col.len()).filter(|&i| alive[i]) {
                            if col.is_null(i) {
                                rejects.push((i, format!("null:{column}"), String::new()));
                            } else if col.is_nan(i) {
                                rejects.push((i, format!("nan:{column}"), String::new()));
                            }
                        }
                        batch
                    }
                    Some(fill) => {
                        let mut n = 0u64;
                        let array = map_values(&col, |i, v| {
                            if alive[i] && (matches!(v, Val::Null) || col.is_nan(i)) {
                                n += 1;
                                fill.val()
                            } else {
                                v
                            }
                        });
                        *tally.imputed.entry(column.clone()).or_default() += n;
                        replace(&batch, *idx, array)?
                    }
                }
            }
            Runner::Dedup {
                idxs,
                converter,
                seen,
            } => {
                let cols: Vec<ArrayRef> = idxs.iter().map(|&i| batch.column(i).clone()).collect();
                let rows = converter
                    .convert_columns(&cols)
                    .map_err(|e| Error::arrow("encoding dedup keys", e))?;
                for (i, row) in rows.iter().enumerate().filter(|(i, _)| alive[*i]) {
                    if !seen.insert(row.as_ref()) {
                        rejects.push((i, "duplicate".into(), String::new()));
                    }
                }
                batch
            }
            Runner::NearDup { idxs, seen } => {
                let cols: Vec<Col> = idxs
                    .iter()
                    .map(|&i| Col::new(batch.column(i)))
                    .collect::<Result<_>>()?;
                'rows: for i in (0..batch.num_rows()).filter(|&i| alive[i]) {
                    let mut key = String::new();
                    for c in &cols {
                        let v = c.get(i);
                        if matches!(v, Val::Null) {
                            continue 'rows;
                        }
                        key.push_str(&normalize_key(&v.to_text()));
                        key.push('\u{1f}');
                    }
                    if !seen.insert(key.as_bytes()) {
                        rejects.push((
                            i,
                            "near_duplicate".into(),
                            key.trim_end_matches('\u{1f}').replace('\u{1f}', " | "),
                        ));
                    }
                }
                batch
            }
            Runner::Outliers {
                idx,
                column,
                lo,
                hi,
                clip,
            } => {
                let col = Col::new(batch.column(*idx))?;
                let (lo, hi) = (*lo, *hi);
                if *clip {
                    let mut n = 0u64;
                    let array = map_values(&col, |i, v| {
                        if !alive[i] {
                            return v;
                        }
                        let Some(x) = v.as_f64().filter(|x| !x.is_nan() && (*x < lo || *x > hi))
                        else {
                            return v;
                        };
                        n += 1;
                        let b = if x < lo { lo } else { hi };
                        match v {
                            Val::Int(_) => {
                                Val::Int(if x < lo { b.ceil() } else { b.floor() } as i64)
                            }
                            Val::Date(_) => {
                                Val::Date(if x < lo { b.ceil() } else { b.floor() } as i32)
                            }
                            Val::Ts(_) => Val::Ts(if x < lo { b.ceil() } else { b.floor() } as i64),
                            _ => Val::Float(b),
                        }
                    });
                    *tally.clipped.entry(column.clone()).or_default() += n;
                    replace(&batch, *idx, array)?
                } else {
                    for i in (0..col.len()).filter(|&i| alive[i]) {
                        if let Some(x) = col.get(i).as_f64().filter(|x| *x < lo || *x > hi) {
                            rejects.push((
                                i,
                                format!("outlier:{column}"),
                                format!("{x} outside [{lo}, {hi}]"),
                            ));
                        }
                    }
                    batch
                }
            }
            Runner::Reject { check, reason } => {
                let c = check.column.unwrap_or(0);
                let col = Col::new(batch.column(c))?;
                for i in (0..col.len()).filter(|&i| alive[i]) {
                    if check.row(&col, i) == Some(false) {
                        rejects.push((i, reason.clone(), col.get(i).to_text()));
                    }
                }
                batch
            }
            Runner::Label { labeler, .. } => {
                let labels = labeler.label(&batch)?;
                if labels.len() != batch.num_rows() || labels.data_type() != &DataType::Utf8 {
                    return Err(Error::invalid(
                        format!("labeler {}", labeler.identity()),
                        format!(
                            "returned {} {} labels for {} rows",
                            labels.len(),
                            labels.data_type(),
                            batch.num_rows()
                        ),
                    ));
                }
                let mut cols = batch.columns().to_vec();
                cols.push(labels);
                RecordBatch::try_new(schema.clone(), cols)
                    .map_err(|e| Error::arrow("adding labels", e))?
            }
        };
        Ok((batch, rejects))
    }
}

/// Schema of the quarantine: the input schema plus `_row`, `_reason`, `_detail`.
pub fn quarantine_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        QUARANTINE_COLUMNS[0],
        DataType::UInt64,
        false,
    )));
    fields.push(Arc::new(Field::new(
        QUARANTINE_COLUMNS[1],
        DataType::Utf8,
        false,
    )));
    fields.push(Arc::new(Field::new(
        QUARANTINE_COLUMNS[2],
        DataType::Utf8,
        false,
    )));
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

impl Pipeline {
    /// A pipeline over `source` with no steps.
    pub fn new(source: impl DataSource) -> Self {
        Self::from_boxed(Box::new(source))
    }

    /// A pipeline over a boxed source.
    pub fn from_boxed(source: Box<dyn DataSource>) -> Self {
        Self {
            source,
            steps: Vec::new(),
            suite: ExpectationSuite::default(),
            suite_origin: "pipeline".into(),
            progress: true,
            batch_size: None,
            profile_input: true,
            identify: true,
            governance: Governance::default(),
        }
    }

    /// Convert a (text) column to `to`; rows whose value does not convert are quarantined as
    /// `coerce:<column>` with the value in `_detail`.
    #[must_use]
    pub fn coerce(mut self, column: &str, to: DataType) -> Self {
        self.steps.push(Step::Coerce {
            column: column.into(),
            to,
        });
        self
    }

    /// Handle nulls (and NaNs) in `column`.
    #[must_use]
    pub fn on_null(mut self, column: &str, action: NullAction) -> Self {
        self.steps.push(Step::Nulls {
            column: column.into(),
            action,
        });
        self
    }

    /// Remove exact duplicates (rows equal on `keys`, or on all columns), keeping the first.
    #[must_use]
    pub fn dedup_exact(mut self, keys: Option<&[&str]>) -> Self {
        self.steps.push(Step::DedupExact {
            keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
        });
        self
    }

    /// Remove near duplicates: rows whose `keys` are equal after [`normalize_key`], keeping the
    /// first. Rows with a null key are never near duplicates.
    #[must_use]
    pub fn near_duplicates(mut self, keys: &[&str]) -> Self {
        self.steps.push(Step::NearDup {
            keys: keys.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Handle outliers of `column`.
    #[must_use]
    pub fn outliers(mut self, column: &str, method: OutlierMethod, action: OutlierAction) -> Self {
        self.steps.push(Step::Outliers {
            column: column.into(),
            method,
            action,
        });
        self
    }

    /// Quarantine rows that break a row-level expectation (`not_null`, `between`, `in_set`,
    /// `match_regex`, `match_format`).
    #[must_use]
    pub fn reject(mut self, expectation: Expectation) -> Self {
        self.steps.push(Step::Reject(expectation));
        self
    }

    /// Add a column `column` with labels from `labeler`.
    #[must_use]
    pub fn label(mut self, labeler: impl Labeler + 'static, column: &str) -> Self {
        self.steps.push(Step::Label {
            labeler: Arc::new(labeler),
            column: column.into(),
        });
        self
    }

    /// Evaluate `expectation` on the clean output.
    #[must_use]
    pub fn expect(mut self, expectation: Expectation) -> Self {
        self.suite.expectations.push(expectation);
        self
    }

    /// Evaluate a suite on the clean output; `origin` (e.g. its file) is named in errors.
    #[must_use]
    pub fn expectations(mut self, suite: ExpectationSuite, origin: &str) -> Self {
        self.suite.expectations.extend(suite.expectations);
        self.suite_origin = origin.into();
        self
    }

    /// Show a progress bar on standard error (default on; hidden when it is not a terminal).
    #[must_use]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Rows per batch read from the source.
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows);
        self
    }

    /// Profile the input into the report (default on). Steps that fit statistics profile it anyway.
    #[must_use]
    pub fn profile_input(mut self, on: bool) -> Self {
        self.profile_input = on;
        self
    }

    /// Compute the input's SHA-256 fingerprint for the report (default on; one extra read).
    #[must_use]
    pub fn identify(mut self, on: bool) -> Self {
        self.identify = on;
        self
    }

    /// Classify the input's columns (sampled) into sensitivity levels before the run; the
    /// levels go into the report, the input descriptor and the outputs' field metadata.
    #[must_use]
    pub fn classify(mut self, rules: ClassificationRules) -> Self {
        self.governance.classify = Some(rules);
        self
    }

    /// Protect the outputs: encrypt, tokenize or mask columns (by name, or by classification)
    /// in `data.arrow` and `quarantine.arrow` before they are written; PII in the quarantine's
    /// `_detail` is replaced by its entity type.
    #[must_use]
    pub fn protect(mut self, protection: Protection) -> Self {
        self.governance.protection = Some(protection);
        self
    }

    /// Record the run in an audit log as `principal`: start, classification, each protected
    /// column, the outputs written, and failure.
    #[must_use]
    pub fn audit(mut self, log: Arc<Mutex<AuditLog>>, principal: &str) -> Self {
        self.governance.audit = Some((log, principal.to_string()));
        self
    }

    /// Emit OpenLineage START, COMPLETE and FAIL events for the run.
    #[must_use]
    pub fn lineage(mut self, lineage: Lineage) -> Self {
        self.governance.lineage = Some(lineage);
        self
    }

    fn bar(&self, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg}: {human_pos} rows in {elapsed} ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        bar
    }

    fn scan_options(&self) -> ScanOptions {
        match self.batch_size {
            Some(n) => ScanOptions::all().with_batch_size(n),
            None => ScanOptions::all(),
        }
    }

    /// Run, writing `data.arrow`, `quarantine.arrow`, `report.json`, `report.md` and `report.html` into
    /// `out_dir` (created if missing). Files are written into a staging directory inside
    /// `out_dir` and moved into place only on success, `report.json` last; a failed run leaves
    /// no `report.json`.
    pub fn run(mut self, out_dir: &Path) -> Result<Report> {
        let gov = std::mem::take(&mut self.governance);
        let input = self
            .source
            .descriptor()
            .unwrap_or_else(|_| Descriptor::new("input", "", ""));
        let input_ds = LineageDataset::from_descriptor(&input).with_schema(&self.source.schema());
        let audit = |event: AuditEvent| -> Result<()> {
            if let Some((log, _)) = &gov.audit {
                log.lock()
                    .map_err(|_| Error::invalid("audit log", "a writer panicked while holding it"))?
                    .append(&event)?;
            }
            Ok(())
        };
        let who = gov
            .audit
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let dataset = input.dataset_id();
        if let Some(l) = &gov.lineage {
            l.start(std::slice::from_ref(&input_ds))?;
        }
        audit(AuditEvent::new(&who, "govern", &dataset).detail(serde_json::json!({ "out_dir": out_dir, "steps": self.steps.iter().map(Step::describe).collect::<Vec<_>>() })))?;
        let outcome = (|| -> Result<Report> {
            let classification = match &gov.classify {
                Some(rules) => {
                    let c = classify(self.source.as_ref(), rules, &PiiScanner::new())?;
                    let levels: BTreeMap<&str, &str> = c
                        .columns
                        .iter()
                        .map(|c| (c.column.as_str(), c.level.as_str()))
                        .collect();
                    audit(
                        AuditEvent::new(&who, "classify", &dataset)
                            .detail(serde_json::json!(levels)),
                    )?;
                    Some(c)
                }
                None => None,
            };
            let out_schema = self.output_schema()?;
            let plan = match &gov.protection {
                Some(p) => Some(p.plan(&out_schema, classification.as_ref())?),
                None => None,
            };
            let protected = plan
                .as_ref()
                .map(ProtectionPlan::summary)
                .unwrap_or_default();
            for p in &protected {
                audit(
                    AuditEvent::new(&who, p.action.as_str(), format!("{dataset}#{}", p.column))
                        .reason(&p.detail),
                )?;
            }
            let run_id = gov.lineage.as_ref().map(|l| l.run_id().to_string());
            let audit_log = gov.audit.clone();
            let who2 = who.clone();
            let dataset2 = dataset.clone();
            self.run_files(out_dir, plan.as_ref(), &mut |report| {
                if let Some(c) = &classification {
                    c.apply(&mut report.source);
                }
                report.classification = classification.clone();
                report.protection = protected.clone();
                report.lineage_run_id = run_id.clone();
                if let Some((log, _)) = &audit_log {
                    let mut log = log
                        .lock()
                        .map_err(|_| Error::invalid("audit log", "a writer panicked while holding it"))?;
                    log.append(&AuditEvent::new(&who2, "write", format!("file://{}", out_dir.join(DATA_FILE).display())).detail(serde_json::json!({
                        "input": dataset2, "rows_out": report.rows_out, "rows_quarantined": report.rows_quarantined,
                        "expectations_passed": report.expectations_passed,
                    })))?;
                    let head = log.commit()?;
                    report.audit_head = Some(format!("{}:{}", head.size, hex::encode(head.root)));
                }
                Ok(())
            })
        })();
        match outcome {
            Err(e) => {
                let _ =
                    audit(AuditEvent::new(&who, "govern-failed", &dataset).reason(e.to_string()));
                if let Some(l) = &gov.lineage
                    && let Err(le) = l.fail(std::slice::from_ref(&input_ds))
                {
                    tracing::warn!(error = %le, "could not emit the lineage FAIL event");
                }
                Err(e)
            }
            Ok(report) => {
                if let Some(l) = &gov.lineage {
                    let mut input_ds = input_ds;
                    if let Some(p) = &report.input_profile {
                        input_ds = input_ds.with_quality_metrics(p);
                    }
                    let data_path = std::fs::canonicalize(out_dir.join(DATA_FILE))
                        .unwrap_or_else(|_| out_dir.join(DATA_FILE));
                    let out_desc =
                        Descriptor::new("data", format!("file://{}", data_path.display()), "");
                    let schema = crate::source::IpcFileSource::open(&data_path)?.schema();
                    let out_ds = LineageDataset::from_descriptor(&out_desc)
                        .with_schema(&schema)
                        .with_assertions(&report.expectations);
                    l.complete(&[input_ds], &[out_ds])?;
                }
                Ok(report)
            }
        }
    }

    fn run_files(
        self,
        out_dir: &Path,
        plan: Option<&ProtectionPlan>,
        finish: &mut dyn FnMut(&mut Report) -> Result<()>,
    ) -> Result<Report> {
        std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(out_dir)
            .map_err(|e| Error::io(out_dir, e))?;
        let (data_path, q_path) = (
            staging.path().join(DATA_FILE),
            staging.path().join(QUARANTINE_FILE),
        );
        let input_schema = self.source.schema();
        let mut out_schema = self.output_schema()?;
        let mut q_schema = quarantine_schema(&input_schema);
        if let Some(plan) = plan {
            out_schema = plan.output_schema(&out_schema)?;
            q_schema = plan.output_schema(&q_schema)?;
        }
        let mut data = IpcOut::create(&data_path, &out_schema)?;
        let mut quarantine = IpcOut::create(&q_path, &q_schema)?;
        // An earlier run's report would make this directory look complete if this run fails.
        let final_report = out_dir.join(REPORT_JSON);
        if final_report.exists() {
            std::fs::remove_file(&final_report).map_err(|e| Error::io(&final_report, e))?;
        }
        let protect = |b: &RecordBatch| -> Result<RecordBatch> {
            match plan {
                Some(p) => p.apply(b),
                None => Ok(b.clone()),
            }
        };
        let mut report = self.execute(&mut |b| data.write(&protect(b)?), &mut |b| {
            quarantine.write(&protect(b)?)
        })?;
        data.finish()?;
        quarantine.finish()?;
        finish(&mut report)?;
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        write_synced(&staging.path().join(REPORT_JSON), &json)?;
        write_synced(
            &staging.path().join(REPORT_MD),
            report.to_markdown().as_bytes(),
        )?;
        write_synced(
            &staging.path().join(REPORT_HTML),
            report.to_html().as_bytes(),
        )?;
        for name in [
            DATA_FILE,
            QUARANTINE_FILE,
            REPORT_MD,
            REPORT_HTML,
            REPORT_JSON,
        ] {
            let to = out_dir.join(name);
            std::fs::rename(staging.path().join(name), &to).map_err(|e| Error::io(to, e))?;
        }
        if let Ok(dir) = File::open(out_dir) {
            let _ = dir.sync_all();
        }
        Ok(report)
    }

    /// Run, keeping the clean batches and the quarantine in memory.
    pub fn run_in_memory(self) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>, Report)> {
        let (mut data, mut quarantine) = (Vec::new(), Vec::new());
        let report = self.execute(
            &mut |b| {
                data.push(b.clone());
                Ok(())
            },
            &mut |b| {
                quarantine.push(b.clone());
                Ok(())
            },
        )?;
        Ok((data, quarantine, report))
    }

    /// The schema of the clean output (validating every step against the input schema).
    pub fn output_schema(&self) -> Result<SchemaRef> {
        let mut schema = self.source.schema();
        for (i, step) in self.steps.iter().enumerate() {
            // Fitting needs data; schema evolution does not, so fit-dependent steps are checked
            // for their column only.
            let ctx = context(i, step);
            schema = match step {
                Step::Outliers { column, .. } | Step::Nulls { column, .. } if step.needs_fit() => {
                    // Statistics are fitted on the input profile: the column must be the input's.
                    let now = schema.field(index(&schema, column, &ctx)?).data_type();
                    let input = self.source.schema();
                    if input.field_with_name(column).ok().map(|f| f.data_type()) != Some(now) {
                        return Err(Error::invalid(
                            ctx,
                            format!(
                                "statistics are fitted on the input, but `{column}` is {now} only after an earlier step; impute a constant instead"
                            ),
                        ));
                    }
                    schema
                }
                _ => Runner::compile(i, step, &schema, None)?.1,
            };
        }
        ExpectationSuite::validate(&self.suite, &schema, &self.suite_origin)?;
        Ok(schema)
    }

    /// Steps run on the calling thread; expectations and `on_data` (the output writer) on a
    /// second thread fed through a bounded channel, so the two overlap.
    fn execute(
        self,
        on_data: &mut (dyn FnMut(&RecordBatch) -> Result<()> + Send),
        on_quarantine: &mut dyn FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<Report> {
        let started = Instant::now();
        let out_schema = self.output_schema()?;
        let input_schema = self.source.schema();
        let q_schema = quarantine_schema(&input_schema);
        let needs_fit = self.steps.iter().any(Step::needs_fit);
        tracing::info!(
            steps = self.steps.len(),
            fit = needs_fit,
            "governance pipeline starting"
        );
        let fitted = if needs_fit {
            let bar = self.bar("profiling input");
            let mut p = Profiler::new(input_schema.clone());
            for b in self.source.scan(&self.scan_options())? {
                let b = b?;
                bar.inc(b.num_rows() as u64);
                p.update(&b)?;
            }
            bar.finish_and_clear();
            Some(p.finish())
        } else {
            None
        };
        let mut runners = Vec::with_capacity(self.steps.len());
        let mut schemas = Vec::with_capacity(self.steps.len());
        let mut schema = input_schema.clone();
        for (i, step) in self.steps.iter().enumerate() {
            let (r, s) = Runner::compile(i, step, &schema, fitted.as_ref())?;
            runners.push(r);
            schemas.push(s.clone());
            schema = s;
        }
        let mut profiler =
            (self.profile_input && fitted.is_none()).then(|| Profiler::new(input_schema.clone()));
        let suite = SuiteRun::new(&self.suite, out_schema.clone(), &self.suite_origin)?;
        let mut tally = Tally::default();
        let mut label_counts: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); runners.len()];
        let (mut rows_in, mut rows_out, mut rows_q) = (0u64, 0u64, 0u64);
        let bar = self.bar("governing");
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
        let (produced, consumed) = std::thread::scope(|scope| {
            let consumer = scope.spawn(move || -> Result<SuiteRun> {
                let mut suite = suite;
                for b in rx {
                    suite.update(&b)?;
                    on_data(&b)?;
                }
                Ok(suite)
            });
            let produced = (|| -> Result<()> {
                for batch in self.source.scan(&self.scan_options())? {
                    let orig = batch?;
                    if let Some(p) = profiler.as_mut() {
                        p.update(&orig)?;
                    }
                    let n = orig.num_rows();
                    let mut current = orig.clone();
                    // Rows stay in place until the end of the batch; steps skip quarantined rows.
                    let mut alive = vec![true; n];
                    let mut dead = 0usize;
                    for (k, runner) in runners.iter_mut().enumerate() {
                        let (b, rejects) =
                            runner.apply(current, &alive, &schemas[k], &mut tally)?;
                        current = b;
                        if !rejects.is_empty() {
                            let q = quarantine_batch(&orig, &rejects, rows_in, &q_schema)?;
                            for (i, reason, _) in &rejects {
                                alive[*i] = false;
                                *tally.by_reason.entry(reason.clone()).or_default() += 1;
                            }
                            dead += rejects.len();
                            rows_q += q.num_rows() as u64;
                            on_quarantine(&q)?;
                        }
                    }
                    if dead > 0 {
                        let mask = arrow_array::BooleanArray::from(alive);
                        current = arrow_select::filter::filter_record_batch(&current, &mask)
                            .map_err(|e| Error::arrow("filtering rows", e))?;
                    }
                    for (k, runner) in runners.iter().enumerate() {
                        if let Runner::Label { field, .. } = runner {
                            count_labels(&current, field.name(), &mut label_counts[k]);
                        }
                    }
                    rows_in += n as u64;
                    rows_out += current.num_rows() as u64;
                    bar.inc(n as u64);
                    if current.num_rows() > 0 && tx.send(current).is_err() {
                        // The writer stopped; its error is reported below.
                        break;
                    }
                }
                Ok(())
            })();
            drop(tx);
            let consumed = consumer.join().unwrap_or_else(|_| {
                Err(Error::invalid(
                    "pipeline output thread",
                    "panicked while writing the output",
                ))
            });
            (produced, consumed)
        });
        produced?;
        let suite = consumed?;
        bar.finish_and_clear();
        for (k, runner) in runners.iter().enumerate() {
            if let Runner::Label { labeler, field } = runner {
                tally.labels.push(LabelSummary {
                    column: field.name().clone(),
                    labeler: labeler.identity().to_string(),
                    counts: std::mem::take(&mut label_counts[k]),
                });
            }
        }
        let expectations = suite.finish();
        let source = if self.identify {
            self.source.descriptor()?
        } else {
            Descriptor::new("input", "", "")
        };
        let report = Report {
            source,
            steps: self.steps.iter().map(Step::describe).collect(),
            rows_in,
            rows_out,
            rows_quarantined: rows_q,
            duplicates_removed: tally.by_reason.get("duplicate").copied().unwrap_or(0),
            near_duplicates_removed: tally.by_reason.get("near_duplicate").copied().unwrap_or(0),
            quarantined_by_reason: tally.by_reason,
            values_imputed: tally.imputed,
            values_clipped: tally.clipped,
            labels: tally.labels,
            expectations_passed: expectations.iter().all(|r| r.success),
            expectations,
            output_schema: out_schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect(),
            input_profile: fitted.or_else(|| profiler.map(Profiler::finish)),
            elapsed_ms: started.elapsed().as_millis() as u64,
            classification: None,
            protection: Vec::new(),
            audit_head: None,
            lineage_run_id: None,
        };
        tracing::info!(
            rows_in = report.rows_in,
            rows_out = report.rows_out,
            quarantined = report.rows_quarantined,
            "governance pipeline finished"
        );
        Ok(report)
    }
}

fn count_labels(batch: &RecordBatch, column: &str, counts: &mut BTreeMap<String, u64>) {
    let Ok(i) = batch.schema().index_of(column) else {
        return;
    };
    if let Some(a) = batch.column(i).as_any().downcast_ref::<StringArray>() {
        for v in a.iter() {
            *counts.entry(v.unwrap_or("null").to_string()).or_default() += 1;
        }
    }
}

fn quarantine_batch(
    orig: &RecordBatch,
    rejects: &Rejects,
    offset: u64,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let idx = UInt32Array::from_iter_values(rejects.iter().map(|(i, ..)| *i as u32));
    let taken = arrow_select::take::take_record_batch(orig, &idx)
        .map_err(|e| Error::arrow("quarantining rows", e))?;
    let mut cols = taken.columns().to_vec();
    cols.push(Arc::new(UInt64Array::from_iter_values(
        idx.values().iter().map(|&i| offset + u64::from(i)),
    )));
    let mut reasons = StringBuilder::new();
    let mut details = StringBuilder::new();
    for (_, r, d) in rejects {
        reasons.append_value(r);
        details.append_value(d);
    }
    cols.push(Arc::new(reasons.finish()));
    cols.push(Arc::new(details.finish()));
    RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| Error::arrow("building quarantine batch", e))
}

struct IpcOut {
    path: PathBuf,
    writer: FileWriter<File>,
}

impl IpcOut {
    fn create(path: &Path, schema: &SchemaRef) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let writer = FileWriter::try_new(file, schema)
            .map_err(|e| Error::arrow(format!("writing {}", path.display()), e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| Error::arrow(format!("writing {}", self.path.display()), e))
    }

    fn finish(mut self) -> Result<()> {
        let ctx = format!("writing {}", self.path.display());
        self.writer.finish().map_err(|e| Error::arrow(&ctx, e))?;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::arrow(&ctx, e))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

impl Report {
    /// The report as a self-contained HTML page with SVG charts.
    pub fn to_html(&self) -> String {
        crate::html::render(self)
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# Data quality report\n\n");
        s += &format!(
            "Source: `{}` ({})  \nFingerprint: `{}`\n\n",
            self.source.name, self.source.uri, self.source.fingerprint
        );
        s += "| rows in | rows out | quarantined | exact duplicates | near duplicates |\n|---:|---:|---:|---:|---:|\n";
        s += &format!(
            "| {} | {} | {} | {} | {} |\n\n",
            self.rows_in,
            self.rows_out,
            self.rows_quarantined,
            self.duplicates_removed,
            self.near_duplicates_removed
        );
        s += "## Steps\n\n";
        for (i, step) in self.steps.iter().enumerate() {
            s += &format!("{}. {step}\n", i + 1);
        }
        if !self.quarantined_by_reason.is_empty() {
            s += "\n## Quarantined by reason\n\n| reason | rows |\n|---|---:|\n";
            for (r, n) in &self.quarantined_by_reason {
                s += &format!("| {r} | {n} |\n");
            }
        }
        for (title, map) in [
            ("Values imputed", &self.values_imputed),
            ("Values clipped", &self.values_clipped),
        ] {
            if !map.is_empty() {
                s += &format!("\n## {title}\n\n| column | values |\n|---|---:|\n");
                for (c, n) in map {
                    s += &format!("| {c} | {n} |\n");
                }
            }
        }
        for l in &self.labels {
            s += &format!(
                "\n## Labels in `{}` by {}\n\n| label | rows |\n|---|---:|\n",
                l.column, l.labeler
            );
            for (k, n) in &l.counts {
                s += &format!("| {k} | {n} |\n");
            }
        }
        if !self.expectations.is_empty() {
            let verdict = if self.expectations_passed {
                "all passed"
            } else {
                "some failed"
            };
            s += &format!(
                "\n## Expectations on the output ({verdict})\n\n| | expectation | column | unexpected | % | observed |\n|---|---|---|---:|---:|---|\n"
            );
            for r in &self.expectations {
                s += &format!(
                    "| {} | {} | {} | {} | {:.3} | {} |\n",
                    if r.success { "✅" } else { "❌" },
                    r.expectation.rule.kind(),
                    r.expectation.rule.column().unwrap_or("-"),
                    r.unexpected_count,
                    r.unexpected_percent,
                    r.observed
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                );
            }
        }
        if let Some(p) = &self.input_profile {
            s += "\n## Input profile\n\n";
            s += &p.to_markdown();
        }
        s
    }
}
