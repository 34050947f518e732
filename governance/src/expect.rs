//! Declarative data expectations (YAML or JSON), evaluated in one streaming pass, with every
//! failure collected; and expectations suggested from a [`Profile`] by deequ's rules.
//!
//! ```yaml
//! expectations:
//!   - expect: not_null
//!     column: email
//!     mostly: 0.98
//!   - expect: between
//!     column: credit_score
//!     min: 300
//!     max: 850
//!   - expect: match_format
//!     column: email
//!     format: email
//!   - expect: row_count_between
//!     min: 1000
//! ```
//!
//! Semantics follow Great Expectations: column-value expectations skip missing values (null, and
//! NaN in float columns) except `not_null`, which counts them as unexpected; a result succeeds when
//! the unexpected share of the non-missing values is at most `1 − mostly`; `unique` marks every
//! occurrence of a repeated value as unexpected.

use std::collections::{HashMap, HashSet};

use crate::keys::{self, Added, KeyCounter};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema, SchemaRef};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::column::{Col, Val, normal_type};
use crate::format::Format;
use crate::profile::Profile;
use crate::source::{DataSource, ScanOptions, parse_date, parse_timestamp_micros};
use crate::{Error, Result};

/// Unexpected rows kept as samples per expectation.
pub const SAMPLE_ROWS: usize = 5;

/// What is expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rule {
    /// No nulls (nor NaNs).
    NotNull {
        /// Column.
        column: String,
    },
    /// No value occurs twice.
    Unique {
        /// Column.
        column: String,
    },
    /// Values within `[min, max]` (either bound optional; dates as `YYYY-MM-DD`).
    Between {
        /// Column.
        column: String,
        /// Lower bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<serde_json::Value>,
        /// Upper bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<serde_json::Value>,
    },
    /// Values from a fixed set.
    InSet {
        /// Column.
        column: String,
        /// Allowed values.
        values: Vec<serde_json::Value>,
    },
    /// String values matching a regular expression (Rust `regex` syntax, unanchored unless `^…$`).
    MatchRegex {
        /// Column.
        column: String,
        /// The pattern.
        regex: String,
    },
    /// String values in a well-known [`Format`].
    MatchFormat {
        /// Column.
        column: String,
        /// The format.
        format: Format,
    },
    /// Number of rows within `[min, max]`.
    RowCountBetween {
        /// Lower bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        /// Upper bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    /// Mean of the non-missing values within `[min, max]`.
    MeanBetween {
        /// Column.
        column: String,
        /// Lower bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Upper bound, inclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// The column has this type: `boolean`, `int64`, `float64`, `utf8` (or `string`), `date32`
    /// (or `date`), `timestamp`, or any Arrow type name.
    ColumnType {
        /// Column.
        column: String,
        /// Type name.
        #[serde(rename = "type")]
        data_type: String,
    },
}

impl Rule {
    /// The column the rule is about, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            Rule::NotNull { column }
            | Rule::Unique { column }
            | Rule::Between { column, .. }
            | Rule::InSet { column, .. }
            | Rule::MatchRegex { column, .. }
            | Rule::MatchFormat { column, .. }
            | Rule::MeanBetween { column, .. }
            | Rule::ColumnType { column, .. } => Some(column),
            Rule::RowCountBetween { .. } => None,
        }
    }

    /// The rule's name as written in files (`not_null`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::NotNull { .. } => "not_null",
            Rule::Unique { .. } => "unique",
            Rule::Between { .. } => "between",
            Rule::InSet { .. } => "in_set",
            Rule::MatchRegex { .. } => "match_regex",
            Rule::MatchFormat { .. } => "match_format",
            Rule::RowCountBetween { .. } => "row_count_between",
            Rule::MeanBetween { .. } => "mean_between",
            Rule::ColumnType { .. } => "column_type",
        }
    }
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// A rule with the share of values that must satisfy it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Expectation {
    /// What is expected.
    #[serde(flatten)]
    pub rule: Rule,
    /// Minimum share of non-missing values that must satisfy the rule (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub mostly: f64,
}

impl From<Rule> for Expectation {
    fn from(rule: Rule) -> Self {
        Self { rule, mostly: 1.0 }
    }
}

impl Expectation {
    /// `column` has no nulls.
    pub fn not_null(column: &str) -> Self {
        Rule::NotNull {
            column: column.into(),
        }
        .into()
    }
    /// `column` has no repeated values.
    pub fn unique(column: &str) -> Self {
        Rule::Unique {
            column: column.into(),
        }
        .into()
    }
    /// `column` values within `[min, max]`.
    pub fn between(column: &str, min: Option<f64>, max: Option<f64>) -> Self {
        Rule::Between {
            column: column.into(),
            min: min.map(Into::into),
            max: max.map(Into::into),
        }
        .into()
    }
    /// `column` values from `values`.
    pub fn in_set<V: Into<serde_json::Value>>(
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Rule::InSet {
            column: column.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
        .into()
    }
    /// `column` values match `regex`.
    pub fn match_regex(column: &str, regex: &str) -> Self {
        Rule::MatchRegex {
            column: column.into(),
            regex: regex.into(),
        }
        .into()
    }
    /// `column` values are in `format`.
    pub fn match_format(column: &str, format: Format) -> Self {
        Rule::MatchFormat {
            column: column.into(),
            format,
        }
        .into()
    }
    /// The row count is within `[min, max]`.
    pub fn row_count_between(min: Option<u64>, max: Option<u64>) -> Self {
        Rule::RowCountBetween { min, max }.into()
    }
    /// The mean of `column` is within `[min, max]`.
    pub fn mean_between(column: &str, min: Option<f64>, max: Option<f64>) -> Self {
        Rule::MeanBetween {
            column: column.into(),
            min,
            max,
        }
        .into()
    }
    /// `column` has type `data_type`.
    pub fn column_type(column: &str, data_type: &str) -> Self {
        Rule::ColumnType {
            column: column.into(),
            data_type: data_type.into(),
        }
        .into()
    }
    /// Require only this share of values to satisfy the rule.
    #[must_use]
    pub fn mostly(mut self, mostly: f64) -> Self {
        self.mostly = mostly;
        self
    }

    /// Whether the rule judges rows one by one (and so can reject rows in a pipeline).
    pub fn is_row_level(&self) -> bool {
        matches!(
            self.rule,
            Rule::NotNull { .. }
                | Rule::Between { .. }
                | Rule::InSet { .. }
                | Rule::MatchRegex { .. }
                | Rule::MatchFormat { .. }
        )
    }
}

/// A list of expectations, as read from a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpectationSuite {
    /// The expectations, in order.
    pub expectations: Vec<Expectation>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SuiteFile {
    Wrapped { expectations: Vec<Expectation> },
    List(Vec<Expectation>),
}

impl ExpectationSuite {
    /// A suite of these expectations.
    pub fn new(expectations: Vec<Expectation>) -> Self {
        Self { expectations }
    }

    /// Parse YAML (a superset of JSON): either a list, or a map with key `expectations`.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self> {
        let parsed: SuiteFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()));
            Error::invalid(
                format!("expectation file {origin}"),
                format!("{e}{}", at.unwrap_or_default()),
            )
        })?;
        Ok(Self::new(match parsed {
            SuiteFile::Wrapped { expectations } | SuiteFile::List(expectations) => expectations,
        }))
    }

    /// Read a `.yaml`, `.yml` or `.json` file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if path.extension().is_some_and(|e| e == "json") {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    format!("expectation file {}", path.display()),
                    format!("{e} (line {}, column {})", e.line(), e.column()),
                )
            })?;
            return Self::from_yaml(&v.to_string(), &path.display().to_string());
        }
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Check every expectation against `schema`: columns exist, regexes compile, bounds fit the
    /// column type. `origin` names the file in errors.
    pub fn validate(&self, schema: &Schema, origin: &str) -> Result<()> {
        for i in 0..self.expectations.len() {
            Check::new(self, i, schema, origin)?;
        }
        Ok(())
    }

    /// Evaluate against a whole source in one pass.
    pub fn evaluate(&self, source: &dyn DataSource) -> Result<Vec<ExpectationResult>> {
        let mut run = SuiteRun::new(self, source.schema(), "suite")?;
        for batch in source.scan(&ScanOptions::all())? {
            run.update(&batch?)?;
        }
        Ok(run.finish())
    }
}

/// One unexpected row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnexpectedRow {
    /// 0-based row number in the evaluated table.
    pub row: u64,
    /// The offending value.
    pub value: serde_json::Value,
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpectationResult {
    /// The expectation.
    pub expectation: Expectation,
    /// Whether it held.
    pub success: bool,
    /// Rows evaluated.
    pub element_count: u64,
    /// Missing values (null; NaN in float columns), skipped by all but `not_null`.
    pub missing_count: u64,
    /// Values that broke the rule.
    pub unexpected_count: u64,
    /// `unexpected_count` as a percentage of the non-missing values (of all values for `not_null`).
    pub unexpected_percent: f64,
    /// The observed aggregate for table- and aggregate-level rules (row count, mean, type).
    pub observed: Option<serde_json::Value>,
    /// Up to [`SAMPLE_ROWS`] unexpected rows.
    pub samples: Vec<UnexpectedRow>,
}

/// A compiled row-level test.
#[derive(Debug)]
enum Test {
    NotNull,
    Between(Option<f64>, Option<f64>),
    InSet {
        strs: HashSet<String>,
        nums: Vec<f64>,
        bools: Vec<bool>,
    },
    Regex(Regex),
    Format(Format),
    Unique,
    Mean(Option<f64>, Option<f64>),
    RowCount(Option<u64>, Option<u64>),
    Type(String, String),
}

/// An expectation compiled against a schema.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) column: Option<usize>,
    test: Test,
}

fn bound(v: &Option<serde_json::Value>, t: &DataType, field: &str) -> Result<Option<f64>> {
    let Some(v) = v else { return Ok(None) };
    let err = || {
        Error::invalid(
            field.to_string(),
            format!("bound {v} does not fit a {t} column"),
        )
    };
    match (v, normal_type(t)) {
        (serde_json::Value::Number(n), DataType::Int64 | DataType::Float64) => {
            n.as_f64().map(Some).ok_or_else(err)
        }
        (serde_json::Value::String(s), DataType::Date32) => {
            parse_date(s).map(|d| Some(f64::from(d))).ok_or_else(err)
        }
        (serde_json::Value::String(s), DataType::Timestamp(..)) => parse_timestamp_micros(s)
            .map(|t| Some(t as f64))
            .ok_or_else(err),
        _ => Err(err()),
    }
}

fn type_matches(expected: &str, actual: &str) -> bool {
    let e = expected.to_ascii_lowercase();
    let a = actual.to_ascii_lowercase();
    let alias = match e.as_str() {
        "string" | "str" | "text" => "utf8",
        "bool" => "boolean",
        "int" | "integer" => "int64",
        "float" | "double" => "float64",
        "date" => "date32",
        other => other,
    };
    a == alias || (alias == "timestamp" && a.starts_with("timestamp"))
}

impl Check {
    pub(crate) fn new(
        suite: &ExpectationSuite,
        index: usize,
        schema: &Schema,
        origin: &str,
    ) -> Result<Self> {
        let e = &suite.expectations[index];
        let context = format!("expectation #{} ({}) in {origin}", index + 1, e.rule.kind());
        if !(0.0..=1.0).contains(&e.mostly) {
            return Err(Error::invalid(
                context,
                format!("mostly must be within [0, 1], found {}", e.mostly),
            ));
        }
        let column = match e.rule.column() {
            None => None,
            Some(c) => Some(
                schema
                    .index_of(c)
                    .map_err(|_| Error::column_not_found(c, &context, schema))?,
            ),
        };
        let dtype = column
            .map(|i| schema.field(i).data_type().clone())
            .unwrap_or(DataType::Null);
        let is_str = normal_type(&dtype) == DataType::Utf8;
        let need_str = |what: &str| -> Result<()> {
            if is_str {
                Ok(())
            } else {
                Err(Error::invalid(
                    &context,
                    format!("{what} needs a text column, found {dtype}"),
                ))
            }
        };
        let test = match &e.rule {
            Rule::NotNull { .. } => Test::NotNull,
            Rule::Unique { .. } => Test::Unique,
            Rule::Between { min, max, .. } => {
                Test::Between(bound(min, &dtype, &context)?, bound(max, &dtype, &context)?)
            }
            Rule::InSet { values, .. } => {
                let mut t = (HashSet::new(), Vec::new(), Vec::new());
                for v in values {
                    match v {
                        // Set values take the column's kind: dates and timestamps as ISO text,
                        // numbers listed for a text column as their text.
                        serde_json::Value::String(_) if !is_str => {
                            let v = Some(v.clone());
                            t.1.extend(bound(&v, &dtype, &context)?);
                        }
                        serde_json::Value::String(s) => drop(t.0.insert(s.clone())),
                        serde_json::Value::Number(n) if is_str => drop(t.0.insert(n.to_string())),
                        serde_json::Value::Number(n) => t.1.extend(n.as_f64()),
                        serde_json::Value::Bool(b) => t.2.push(*b),
                        other => {
                            return Err(Error::invalid(
                                &context,
                                format!("unsupported set value {other}"),
                            ));
                        }
                    }
                }
                Test::InSet {
                    strs: t.0,
                    nums: t.1,
                    bools: t.2,
                }
            }
            Rule::MatchRegex { regex, .. } => {
                need_str("match_regex")?;
                Test::Regex(
                    Regex::new(regex)
                        .map_err(|err| Error::invalid(&context, format!("bad regex: {err}")))?,
                )
            }
            Rule::MatchFormat { format, .. } => {
                need_str("match_format")?;
                Test::Format(*format)
            }
            Rule::RowCountBetween { min, max } => Test::RowCount(*min, *max),
            Rule::MeanBetween { min, max, .. } => {
                if is_str || dtype == DataType::Boolean {
                    return Err(Error::invalid(
                        &context,
                        format!("mean_between needs a numeric column, found {dtype}"),
                    ));
                }
                Test::Mean(*min, *max)
            }
            Rule::ColumnType { data_type, .. } => Test::Type(data_type.clone(), dtype.to_string()),
        };
        Ok(Self { column, test })
    }

    /// For row-level tests: `None` if the value is missing (and skipped), else whether it passes.
    pub(crate) fn row(&self, col: &Col, i: usize) -> Option<bool> {
        let v = col.get(i);
        let missing = matches!(v, Val::Null) || col.is_nan(i);
        if let Test::NotNull = self.test {
            return Some(!missing);
        }
        if missing {
            return None;
        }
        Some(match &self.test {
            Test::Between(lo, hi) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x <= hi)
            }
            Test::InSet { strs, nums, bools } => match v {
                Val::Str(s) => strs.contains(s),
                Val::Bool(b) => bools.contains(&b),
                _ => v.as_f64().is_some_and(|x| nums.contains(&x)),
            },
            Test::Regex(r) => matches!(v, Val::Str(s) if r.is_match(s)),
            Test::Format(f) => matches!(v, Val::Str(s) if f.matches(s)),
            _ => true,
        })
    }
}

/// Per-expectation running state.
#[derive(Debug)]
struct State {
    check: Check,
    missing: u64,
    unexpected: u64,
    samples: Vec<UnexpectedRow>,
    sum: f64,
    n: u64,
    seen: KeyCounter,
}

/// Streaming evaluation of a suite: [`update`](SuiteRun::update) per batch, then
/// [`finish`](SuiteRun::finish).
#[derive(Debug)]
pub struct SuiteRun {
    suite: ExpectationSuite,
    states: Vec<State>,
    rows: u64,
}

impl SuiteRun {
    /// Compile `suite` against `schema`; errors name `origin` (e.g. the file) and the expectation.
    pub fn new(suite: &ExpectationSuite, schema: SchemaRef, origin: &str) -> Result<Self> {
        let states = (0..suite.expectations.len())
            .map(|i| {
                Ok(State {
                    check: Check::new(suite, i, &schema, origin)?,
                    missing: 0,
                    unexpected: 0,
                    samples: Vec::new(),
                    sum: 0.0,
                    n: 0,
                    seen: KeyCounter::default(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            suite: suite.clone(),
            states,
            rows: 0,
        })
    }

    /// Add a batch.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(c) = self
            .states
            .iter()
            .filter_map(|s| s.check.column)
            .find(|&c| c >= batch.num_columns())
        {
            return Err(Error::SchemaMismatch {
                context: "evaluating expectations".into(),
                reason: format!(
                    "expectation refers to column {c}, the batch has {} columns",
                    batch.num_columns()
                ),
            });
        }
        let mut cols: HashMap<usize, Col> = HashMap::new();
        for s in &self.states {
            if let Some(c) = s.check.column
                && let std::collections::hash_map::Entry::Vacant(v) = cols.entry(c)
            {
                v.insert(Col::new(batch.column(c))?);
            }
        }
        for s in &mut self.states {
            let Some(col) = s.check.column.and_then(|c| cols.get(&c)) else {
                continue;
            };
            for i in 0..col.len() {
                let row = self.rows + i as u64;
                let mut bad = false;
                match &s.check.test {
                    Test::Unique => {
                        if col.is_null(i) || col.is_nan(i) {
                            s.missing += 1;
                            continue;
                        }
                        let seen = &mut s.seen;
                        bad = col
                            .get(i)
                            .with_key(|k| seen.add(k, keys::hash(k), usize::MAX))
                            == Some(Added::Seen);
                    }
                    Test::Mean(..) => match col.get(i).as_f64() {
                        Some(x) if !x.is_nan() => {
                            s.sum += x;
                            s.n += 1;
                        }
                        _ => s.missing += 1,
                    },
                    Test::Type(..) => {}
                    _ => match s.check.row(col, i) {
                        None => s.missing += 1,
                        Some(ok) => bad = !ok,
                    },
                }
                if bad {
                    if !matches!(s.check.test, Test::Unique) {
                        s.unexpected += 1;
                    }
                    if s.samples.len() < SAMPLE_ROWS {
                        s.samples.push(UnexpectedRow {
                            row,
                            value: col.get(i).to_json(),
                        });
                    }
                }
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The results, in suite order.
    pub fn finish(self) -> Vec<ExpectationResult> {
        let rows = self.rows;
        self.suite
            .expectations
            .into_iter()
            .zip(self.states)
            .map(|(expectation, mut s)| {
                let mut observed = None;
                let ok = match &s.check.test {
                    Test::RowCount(lo, hi) => {
                        observed = Some(rows.into());
                        lo.is_none_or(|lo| rows >= lo) && hi.is_none_or(|hi| rows <= hi)
                    }
                    Test::Mean(lo, hi) => {
                        let mean = (s.n > 0).then(|| s.sum / s.n as f64);
                        observed = Some(mean.map_or(serde_json::Value::Null, Into::into));
                        mean.is_some_and(|m| {
                            lo.is_none_or(|lo| m >= lo) && hi.is_none_or(|hi| m <= hi)
                        })
                    }
                    Test::Type(want, have) => {
                        observed = Some(have.clone().into());
                        type_matches(want, have)
                    }
                    Test::Unique => {
                        s.unexpected = s.seen.repeated();
                        true
                    }
                    _ => true,
                };
                let denominator = match s.check.test {
                    Test::NotNull => rows,
                    _ => rows - s.missing,
                };
                let percent = if denominator == 0 {
                    0.0
                } else {
                    100.0 * s.unexpected as f64 / denominator as f64
                };
                let success = ok && percent <= 100.0 * (1.0 - expectation.mostly) + 1e-9;
                let missing = if matches!(s.check.test, Test::NotNull) {
                    s.unexpected
                } else {
                    s.missing
                };
                let samples = std::mem::take(&mut s.samples);
                ExpectationResult {
                    expectation,
                    success,
                    element_count: rows,
                    missing_count: missing,
                    unexpected_count: s.unexpected,
                    unexpected_percent: percent,
                    observed,
                    samples,
                }
            })
            .collect()
    }
}

/// A suggested expectation with the rule that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Suggestion {
    /// The expectation.
    pub expectation: Expectation,
    /// The deequ rule that suggested it.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
}

/// Suggest expectations from a profile with deequ's default rules: `CompleteIfComplete`,
/// `RetainCompleteness`, `RetainType`, `CategoricalRange`, `NonNegativeNumbers`,
/// `UniqueIfApproximatelyUnique`.
pub fn suggest(profile: &Profile) -> Vec<Suggestion> {
    let mut out = Vec::new();
    let mut push = |e: Expectation, rule: &str, reason: String| {
        out.push(Suggestion {
            expectation: e,
            rule: rule.into(),
            reason,
        })
    };
    for c in &profile.columns {
        let completeness = c.completeness();
        if c.count == 0 {
            continue;
        }
        if completeness == 1.0 {
            push(
                Expectation::not_null(&c.name),
                "CompleteIfCompleteRule",
                "no nulls seen".into(),
            );
        } else if completeness > 0.2 {
            // deequ: lower bound of the 95% binomial confidence interval of the completeness.
            let n = c.count as f64;
            let lower =
                (completeness - 1.96 * (completeness * (1.0 - completeness) / n).sqrt()).max(0.0);
            let mostly = (lower * 100.0).floor() / 100.0;
            push(
                Expectation::not_null(&c.name).mostly(mostly),
                "RetainCompletenessRule",
                format!("completeness {completeness:.4}; 95% lower bound {lower:.4}"),
            );
        }
        if c.data_type != "Utf8" {
            push(
                Expectation::column_type(&c.name, &c.data_type.to_ascii_lowercase()),
                "RetainTypeRule",
                format!("column has type {}", c.data_type),
            );
        }
        let non_null = c.count - c.nulls;
        if let Some(d) = c.distinct {
            if c.data_type == "Utf8"
                && d > 0
                && d <= 50
                && (d as f64) / (non_null.max(1) as f64) < 0.1
            {
                let all_listed: u64 = c.top_values.iter().map(|(_, n)| n).sum();
                if all_listed == non_null {
                    let values: Vec<serde_json::Value> =
                        c.top_values.iter().map(|(v, _)| v.clone()).collect();
                    push(
                        Rule::InSet {
                            column: c.name.clone(),
                            values,
                        }
                        .into(),
                        "CategoricalRangeRule",
                        format!("{d} distinct values in {non_null} rows"),
                    );
                }
            }
            if d == non_null && non_null > 1 && c.nans == 0 {
                push(
                    Expectation::unique(&c.name),
                    "UniqueIfApproximatelyUniqueRule",
                    "every value distinct".into(),
                );
            }
        }
        if c.mean.is_some() && c.min.as_f64().is_some_and(|m| m >= 0.0) && c.data_type != "Date32" {
            push(
                Expectation::between(&c.name, Some(0.0), None),
                "NonNegativeNumbersRule",
                format!("minimum is {}", c.min),
            );
        }
    }
    out
}
