//! Per-column profiles computed in one streaming pass ([`Profiler`]) over any [`DataSource`].

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::column::{Col, Val};
use crate::format::Format;
use crate::keys::{self, Added, KeyCounter};
use crate::source::{DataSource, ScanOptions};
use crate::{Error, Result};

/// Distinct values counted exactly per column before the exact count gives up (the sketch goes on).
pub const EXACT_DISTINCT_CAP: usize = 1_000_000;
/// Size of the uniform sample quantiles are computed from; below it quantiles are exact.
pub const QUANTILE_SAMPLE: usize = 65_536;
/// Quantiles reported for numeric columns.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// The profile of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Arrow data type, as Arrow prints it.
    pub data_type: String,
    /// Inferred semantic type: a [`Format`] name (`email`, `phone`, …), `categorical`, `text`,
    /// `identifier`, `integer`, `numeric`, `boolean`, `date`, `timestamp` or `empty`.
    pub semantic_type: String,
    /// Rows.
    pub count: u64,
    /// Null values.
    pub nulls: u64,
    /// NaN values (float columns only; not counted as nulls).
    pub nans: u64,
    /// Exact number of distinct non-null values; `None` past [`EXACT_DISTINCT_CAP`].
    pub distinct: Option<u64>,
    /// HyperLogLog estimate of distinct non-null values (2^14 registers, ~0.8% standard error).
    pub distinct_approx: u64,
    /// Smallest non-null, non-NaN value.
    pub min: serde_json::Value,
    /// Largest non-null, non-NaN value.
    pub max: serde_json::Value,
    /// Mean of numeric values (NaN excluded).
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1) of numeric values.
    pub std: Option<f64>,
    /// `(q, value)` for each of [`QUANTILES`], linearly interpolated; exact up to
    /// [`QUANTILE_SAMPLE`] values, from a uniform sample beyond.
    pub quantiles: Vec<(f64, f64)>,
    /// The ten most frequent values with their counts (most frequent first).
    pub top_values: Vec<(serde_json::Value, u64)>,
    /// Shortest and longest string value, in characters.
    pub length: Option<(u64, u64)>,
}

impl ColumnProfile {
    /// Share of non-null values (NaN counts as present).
    pub fn completeness(&self) -> f64 {
        if self.count == 0 {
            1.0
        } else {
            (self.count - self.nulls) as f64 / self.count as f64
        }
    }
}

/// Profiles of every column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// Rows.
    pub rows: u64,
    /// One profile per column, in schema order.
    pub columns: Vec<ColumnProfile>,
}

impl Profile {
    /// Profile a whole source in one pass.
    pub fn of(source: &dyn DataSource) -> Result<Self> {
        let mut p = Profiler::new(source.schema());
        for batch in source.scan(&ScanOptions::all())? {
            p.update(&batch?)?;
        }
        Ok(p.finish())
    }

    /// The profile of the column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "{} rows\n\n| column | type | semantic | nulls | NaNs | distinct | min | max | mean | std |\n|---|---|---|---:|---:|---:|---|---|---:|---:|\n",
            self.rows
        );
        let num = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
        for c in &self.columns {
            let distinct = c
                .distinct
                .map_or_else(|| format!("~{}", c.distinct_approx), |d| d.to_string());
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.data_type,
                c.semantic_type,
                c.nulls,
                c.nans,
                distinct,
                short(&c.min),
                short(&c.max),
                num(c.mean),
                num(c.std)
            );
        }
        s
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        v => v.to_string(),
    };
    if s.chars().count() > 24 {
        format!("{}…", s.chars().take(23).collect::<String>())
    } else {
        s
    }
}

/// HyperLogLog with 2^14 registers (Flajolet et al. 2007, with the small-range correction).
#[derive(Debug, Clone)]
pub(crate) struct Hll {
    registers: Vec<u8>,
}

const HLL_P: u32 = 14;

impl Hll {
    pub(crate) fn new() -> Self {
        Self {
            registers: vec![0; 1 << HLL_P],
        }
    }

    pub(crate) fn insert_hash(&mut self, h: u64) {
        let idx = (h >> (64 - HLL_P)) as usize;
        let rank = ((h << HLL_P) | (1 << (HLL_P - 1))).leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    pub(crate) fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

/// Vitter's algorithm R with a fixed-seed xorshift, so profiles are reproducible.
#[derive(Debug, Clone)]
struct Reservoir {
    items: Vec<f64>,
    seen: u64,
    state: u64,
}

impl Reservoir {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            seen: 0,
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }
    fn push(&mut self, x: f64) {
        self.seen += 1;
        if self.items.len() < QUANTILE_SAMPLE {
            self.items.push(x);
            return;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let j = self.state % self.seen;
        if (j as usize) < QUANTILE_SAMPLE {
            self.items[j as usize] = x;
        }
    }
    fn quantiles(&mut self) -> Vec<(f64, f64)> {
        if self.items.is_empty() {
            return Vec::new();
        }
        self.items.sort_unstable_by(f64::total_cmp);
        QUANTILES
            .iter()
            .map(|&q| (q, interpolate(&self.items, q)))
            .collect()
    }
}

/// Linear interpolation between closest ranks (NumPy's and pandas' default).
pub(crate) fn interpolate(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[derive(Debug)]
struct Acc {
    name: String,
    data_type: String,
    count: u64,
    nulls: u64,
    nans: u64,
    values: KeyCounter,
    overflow: bool,
    hll: Hll,
    min: Option<OwnedVal>,
    max: Option<OwnedVal>,
    n: u64,
    mean: f64,
    m2: f64,
    reservoir: Reservoir,
    lengths: Option<(u64, u64)>,
    sample: Vec<String>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Date,
    Ts,
    Str,
}

#[derive(Debug, Clone, PartialEq)]
enum OwnedVal {
    Num(f64, Kind),
    Str(String),
}

impl OwnedVal {
    fn to_json(&self) -> serde_json::Value {
        match self {
            OwnedVal::Str(s) => s.clone().into(),
            OwnedVal::Num(x, k) => num_val(*x, *k).to_json(),
        }
    }
}

fn num_val(x: f64, k: Kind) -> Val<'static> {
    match k {
        Kind::Int => Val::Int(x as i64),
        Kind::Date => Val::Date(x as i32),
        Kind::Ts => Val::Ts(x as i64),
        Kind::Bool => Val::Bool(x != 0.0),
        Kind::Float | Kind::Str => Val::Float(x),
    }
}

fn key_to_val(bits: u64, k: Kind) -> Val<'static> {
    match k {
        Kind::Float => Val::Float(f64::from_bits(bits)),
        Kind::Int => Val::Int(bits as i64),
        Kind::Date => Val::Date(bits as i64 as i32),
        Kind::Ts => Val::Ts(bits as i64),
        Kind::Bool | Kind::Str => Val::Bool(bits != 0),
    }
}

impl Acc {
    fn new(name: String, data_type: String) -> Self {
        Self {
            name,
            data_type,
            count: 0,
            nulls: 0,
            nans: 0,
            values: KeyCounter::default(),
            overflow: false,
            hll: Hll::new(),
            min: None,
            max: None,
            n: 0,
            mean: 0.0,
            m2: 0.0,
            reservoir: Reservoir::new(),
            lengths: None,
            sample: Vec::new(),
            kind: Kind::Str,
        }
    }

    fn update(&mut self, col: &Col) {
        self.kind = match col {
            Col::Bool(_) => Kind::Bool,
            Col::Int(_) => Kind::Int,
            Col::Float(_) => Kind::Float,
            Col::Date(_) => Kind::Date,
            Col::Ts(_) => Kind::Ts,
            Col::Str(_) => Kind::Str,
        };
        self.count += col.len() as u64;
        for i in 0..col.len() {
            let v = col.get(i);
            match v {
                Val::Null => self.nulls += 1,
                Val::Str(s) => {
                    self.count_value(s.as_bytes());
                    let len = s.chars().count() as u64;
                    self.lengths = Some(
                        self.lengths
                            .map_or((len, len), |(a, b)| (a.min(len), b.max(len))),
                    );
                    if self.sample.len() < 1000 {
                        self.sample.push(s.to_string());
                    }
                    if self
                        .min
                        .as_ref()
                        .is_none_or(|m| matches!(m, OwnedVal::Str(m) if s < m.as_str()))
                    {
                        self.min = Some(OwnedVal::Str(s.to_string()));
                    }
                    if self
                        .max
                        .as_ref()
                        .is_none_or(|m| matches!(m, OwnedVal::Str(m) if s > m.as_str()))
                    {
                        self.max = Some(OwnedVal::Str(s.to_string()));
                    }
                }
                _ => {
                    let x = v.as_f64().unwrap_or(f64::NAN);
                    if x.is_nan() {
                        self.nans += 1;
                    }
                    v.with_key(|k| self.count_value(k));
                    if x.is_nan() {
                        continue;
                    }
                    self.n += 1;
                    let d = x - self.mean;
                    self.mean += d / self.n as f64;
                    self.m2 += d * (x - self.mean);
                    self.reservoir.push(x);
                    if self
                        .min
                        .as_ref()
                        .is_none_or(|m| matches!(m, OwnedVal::Num(m, _) if x < *m))
                    {
                        self.min = Some(OwnedVal::Num(x, self.kind));
                    }
                    if self
                        .max
                        .as_ref()
                        .is_none_or(|m| matches!(m, OwnedVal::Num(m, _) if x > *m))
                    {
                        self.max = Some(OwnedVal::Num(x, self.kind));
                    }
                }
            }
        }
    }

    fn count_value(&mut self, key: &[u8]) {
        let h = keys::hash(key);
        self.hll.insert_hash(h);
        if self.values.add(key, h, EXACT_DISTINCT_CAP) == Added::Full {
            self.overflow = true;
        }
    }

    fn finish(mut self) -> ColumnProfile {
        let distinct_exact = self.values.len() as u64;
        let kind = self.kind;
        let mut top: Vec<(serde_json::Value, u64)> = self
            .values
            .top(10)
            .into_iter()
            .map(|(k, c)| {
                let v = if kind == Kind::Str {
                    serde_json::Value::from(String::from_utf8_lossy(k).into_owned())
                } else {
                    let bits = u64::from_le_bytes(k.try_into().unwrap_or([0; 8]));
                    key_to_val(bits, kind).to_json()
                };
                (v, c)
            })
            .collect();
        top.retain(|(_, c)| *c > 0);
        let numeric = self.kind != Kind::Str && self.kind != Kind::Bool;
        let non_null = self.count - self.nulls;
        let semantic = self.semantic(distinct_exact, non_null);
        ColumnProfile {
            semantic_type: semantic,
            name: self.name,
            data_type: self.data_type,
            count: self.count,
            nulls: self.nulls,
            nans: self.nans,
            distinct: (!self.overflow).then_some(distinct_exact),
            distinct_approx: self.hll.estimate(),
            min: self
                .min
                .as_ref()
                .map_or(serde_json::Value::Null, OwnedVal::to_json),
            max: self
                .max
                .as_ref()
                .map_or(serde_json::Value::Null, OwnedVal::to_json),
            mean: (numeric && self.n > 0).then_some(self.mean),
            std: (numeric && self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt()),
            quantiles: if numeric {
                self.reservoir.quantiles()
            } else {
                Vec::new()
            },
            top_values: top,
            length: self.lengths,
        }
    }

    fn semantic(&self, distinct: u64, non_null: u64) -> String {
        if non_null == 0 {
            return "empty".into();
        }
        match self.kind {
            Kind::Bool => "boolean".into(),
            Kind::Date => "date".into(),
            Kind::Ts => "timestamp".into(),
            Kind::Float => "numeric".into(),
            Kind::Int if !self.overflow && distinct == non_null && non_null > 1 => {
                "identifier".into()
            }
            Kind::Int => "integer".into(),
            Kind::Str => {
                let n = self.sample.len().max(1) as f64;
                for f in Format::ALL {
                    let hits = self.sample.iter().filter(|s| f.matches(s)).count() as f64;
                    if hits / n >= 0.9 {
                        return f.name().into();
                    }
                }
                if !self.overflow && distinct <= 50 && (distinct as f64) <= 0.05 * non_null as f64 {
                    "categorical".into()
                } else {
                    "text".into()
                }
            }
        }
    }
}

/// Streaming profiler: feed batches with [`update`](Profiler::update), then [`finish`](Profiler::finish).
#[derive(Debug)]
pub struct Profiler {
    accs: Vec<Acc>,
}

impl Profiler {
    /// A profiler for tables with `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let accs = schema
            .fields()
            .iter()
            .map(|f| Acc::new(f.name().clone(), f.data_type().to_string()))
            .collect();
        Self { accs }
    }

    /// Add a batch, which must have the profiler's schema.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != self.accs.len() {
            return Err(Error::SchemaMismatch {
                context: "profiling".into(),
                reason: format!(
                    "expected {} columns, batch has {}",
                    self.accs.len(),
                    batch.num_columns()
                ),
            });
        }
        // Columns are independent: spread them over the cores, round-robin so wide tables balance.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(self.accs.len())
            .max(1);
        let mut groups: Vec<Vec<(&mut Acc, &ArrayRef)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (i, pair) in self.accs.iter_mut().zip(batch.columns()).enumerate() {
            groups[i % threads].push(pair);
        }
        let work = |group: Vec<(&mut Acc, &ArrayRef)>| -> Result<()> {
            for (acc, array) in group {
                acc.update(&Col::new(array)?);
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let mut groups = groups.into_iter();
            let first = groups.next();
            let handles: Vec<_> = groups.map(|g| scope.spawn(move || work(g))).collect();
            let mut result = first.map_or(Ok(()), work);
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::invalid("profiler", "a worker thread panicked"))
                });
                result = result.and(r);
            }
            result
        })
    }

    /// The profile of everything seen.
    pub fn finish(self) -> Profile {
        let rows = self.accs.first().map_or(0, |a| a.count);
        Profile {
            rows,
            columns: self.accs.into_iter().map(Acc::finish).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_is_within_three_percent() {
        for n in [100u64, 10_000, 200_000] {
            let mut hll = Hll::new();
            for i in 0..n {
                hll.insert_hash(keys::hash(&i.to_le_bytes()));
            }
            let err = (hll.estimate() as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.03, "n={n} estimate={} err={err}", hll.estimate());
        }
    }

    #[test]
    fn interpolation_matches_numpy() {
        // numpy.quantile([1, 2, 3, 4], [0.25, 0.5, 0.9]) == [1.75, 2.5, 3.7]
        let xs = [1.0, 2.0, 3.0, 4.0];
        for (q, want) in [(0.25, 1.75), (0.5, 2.5), (0.9, 3.7)] {
            assert!((interpolate(&xs, q) - want).abs() < 1e-12);
        }
    }
}
