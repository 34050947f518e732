//! Group confusion counts over Arrow batches, one pass, bounded memory.
//!
//! Labels and predictions are Boolean, integer (1 is positive) or float (1.0 is positive)
//! columns without nulls. Sensitive features are string (`Utf8`, `LargeUtf8`, `Utf8View`),
//! integer, Boolean or dictionary-encoded columns; a null is the group `"null"`. Weights are a
//! numeric column of finite values ≥ 0.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{ArrayRef, BooleanArray, StringArray};
//! use aistd_compliance::fairness::{Method, stream::GroupCounter};
//!
//! let y_true: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true, true]));
//! let y_pred: ArrayRef = Arc::new(BooleanArray::from(vec![true, true, false, true]));
//! let sex: ArrayRef = Arc::new(StringArray::from(vec!["f", "m", "f", "m"]));
//! let mut counter = GroupCounter::new(1)?;
//! counter.update(&y_true, &y_pred, &[&sex], None)?;
//! let frame = counter.finish()?;
//! assert_eq!(frame.demographic_parity_difference(Method::BetweenGroups), 0.5);
//! # Ok::<(), aistd_compliance::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::DataType;

use super::{Confusion, MetricFrame};
use crate::error::{Error, Result};

fn invalid(what: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Values of one sensitive feature, interned to dense codes.
#[derive(Debug, Default)]
struct Interner {
    codes: HashMap<String, u32>,
    labels: Vec<String>,
    ints: HashMap<i64, u32>,
}

impl Interner {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(c) = self.codes.get(s) {
            return *c;
        }
        let c = self.labels.len() as u32;
        self.codes.insert(s.to_string(), c);
        self.labels.push(s.to_string());
        c
    }

    fn int(&mut self, v: i64) -> u32 {
        if let Some(c) = self.ints.get(&v) {
            return *c;
        }
        let c = self.code(&v.to_string());
        self.ints.insert(v, c);
        c
    }

    fn strings<'a>(&mut self, it: impl Iterator<Item = Option<&'a str>>, out: &mut Vec<u32>) {
        // Sensitive features have few values: look the first few up by a linear scan of the
        // values seen in this batch (no hashing), and only then fall back to the hash map.
        const SMALL: usize = 16;
        let mut seen: Vec<(&str, u32)> = Vec::with_capacity(SMALL);
        for v in it {
            let s = v.unwrap_or("null");
            let c = match seen.iter().find(|(l, _)| l.len() == s.len() && *l == s) {
                Some((_, c)) => *c,
                None => {
                    let c = self.code(s);
                    if seen.len() < SMALL {
                        seen.push((s, c));
                    }
                    c
                }
            };
            out.push(c);
        }
    }

    fn ints<T: ArrowPrimitiveType>(&mut self, a: &dyn Array, out: &mut Vec<u32>)
    where
        T::Native: TryInto<i64> + Copy,
    {
        let p = a.as_primitive::<T>();
        let null = self.code("null");
        let mut last: Option<(T::Native, u32)> = None;
        for i in 0..p.len() {
            if p.is_null(i) {
                out.push(null);
                continue;
            }
            let v = p.value(i);
            let c = match last {
                Some((l, c)) if l.try_into().ok() == v.try_into().ok() => c,
                _ => self.int(v.try_into().unwrap_or(i64::MAX)),
            };
            last = Some((v, c));
            out.push(c);
        }
    }

    /// Codes of every row of `a`.
    fn column(&mut self, a: &dyn Array, what: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(a.len());
        match a.data_type() {
            DataType::Utf8 => self.strings(a.as_string::<i32>().iter(), &mut out),
            DataType::LargeUtf8 => self.strings(a.as_string::<i64>().iter(), &mut out),
            DataType::Utf8View => self.strings(a.as_string_view().iter(), &mut out),
            DataType::Boolean => {
                let b = a.as_boolean();
                let (t, f, n) = (self.code("true"), self.code("false"), self.code("null"));
                out.extend(b.iter().map(|v| match v {
                    Some(true) => t,
                    Some(false) => f,
                    None => n,
                }));
            }
            DataType::Int8 => self.ints::<Int8Type>(a, &mut out),
            DataType::Int16 => self.ints::<Int16Type>(a, &mut out),
            DataType::Int32 => self.ints::<Int32Type>(a, &mut out),
            DataType::Int64 => self.ints::<Int64Type>(a, &mut out),
            DataType::UInt8 => self.ints::<UInt8Type>(a, &mut out),
            DataType::UInt16 => self.ints::<UInt16Type>(a, &mut out),
            DataType::UInt32 => self.ints::<UInt32Type>(a, &mut out),
            DataType::UInt64 => self.ints::<UInt64Type>(a, &mut out),
            DataType::Dictionary(_, _) => {
                let d = a
                    .as_any_dictionary_opt()
                    .ok_or_else(|| invalid(what, "unreadable dictionary column"))?;
                let values = self.column(d.values().as_ref(), what)?;
                let keys = d.normalized_keys();
                if a.null_count() == 0 {
                    out.extend(keys.iter().map(|k| values[*k]));
                } else {
                    let null = self.code("null");
                    out.extend(
                        keys.iter()
                            .enumerate()
                            .map(|(i, k)| if a.is_null(i) { null } else { values[*k] }),
                    );
                }
            }
            other => {
                return Err(invalid(
                    what,
                    format!(
                        "a sensitive feature must be a string, integer, Boolean or dictionary column, got {other}"
                    ),
                ));
            }
        }
        Ok(out)
    }
}

/// `1` (positive) or `0` for each row of a label column.
fn labels(a: &dyn Array, what: &str) -> Result<Vec<u8>> {
    if a.null_count() > 0 {
        let row = (0..a.len()).find(|i| a.is_null(*i)).unwrap_or(0);
        return Err(invalid(
            what,
            format!("row {row} is null; labels must not be null"),
        ));
    }
    fn ones<T: ArrowPrimitiveType>(a: &dyn Array, one: T::Native) -> Vec<u8>
    where
        T::Native: PartialEq,
    {
        a.as_primitive::<T>()
            .values()
            .iter()
            .map(|v| (*v == one) as u8)
            .collect()
    }
    Ok(match a.data_type() {
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..b.len()).map(|i| b.value(i) as u8).collect()
        }
        DataType::Int8 => ones::<Int8Type>(a, 1),
        DataType::Int16 => ones::<Int16Type>(a, 1),
        DataType::Int32 => ones::<Int32Type>(a, 1),
        DataType::Int64 => ones::<Int64Type>(a, 1),
        DataType::UInt8 => ones::<UInt8Type>(a, 1),
        DataType::UInt16 => ones::<UInt16Type>(a, 1),
        DataType::UInt32 => ones::<UInt32Type>(a, 1),
        DataType::UInt64 => ones::<UInt64Type>(a, 1),
        DataType::Float32 => ones::<Float32Type>(a, 1.0),
        DataType::Float64 => ones::<Float64Type>(a, 1.0),
        other => {
            return Err(invalid(
                what,
                format!("labels must be a Boolean, integer or float column, got {other}"),
            ));
        }
    })
}

fn weights(a: &dyn Array) -> Result<Vec<f64>> {
    let w: Vec<Option<f64>> = match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Int64 => a
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|x| x as f64))
            .collect(),
        DataType::Int32 => a
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        other => {
            return Err(invalid(
                "sample weights",
                format!("need a numeric column, got {other}"),
            ));
        }
    };
    w.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(invalid(
                "sample weights",
                format!("row {i} has weight {v:?}; weights must be finite and ≥ 0"),
            )),
        })
        .collect()
}

/// Streaming confusion counts by group.
#[derive(Debug)]
pub struct GroupCounter {
    interners: Vec<Interner>,
    /// For two or more features: (previous combined id, code) → combined id, per level.
    pairs: Vec<HashMap<(u32, u32), u32>>,
    /// The (previous id, code) of each combined id, per level.
    pair_keys: Vec<Vec<(u32, u32)>>,
    counts: Vec<[u64; 4]>,
    weighted: Vec<[f64; 4]>,
    any_weights: bool,
    rows: u64,
}

impl GroupCounter {
    /// A counter for `features` (≥ 1) sensitive features.
    pub fn new(features: usize) -> Result<Self> {
        if features == 0 {
            return Err(invalid("sensitive features", "at least one is needed"));
        }
        Ok(Self {
            interners: (0..features).map(|_| Interner::default()).collect(),
            pairs: vec![HashMap::new(); features - 1],
            pair_keys: vec![Vec::new(); features - 1],
            counts: Vec::new(),
            weighted: Vec::new(),
            any_weights: false,
            rows: 0,
        })
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds one batch of rows. Nothing is counted if any column is invalid.
    pub fn update(
        &mut self,
        y_true: &dyn Array,
        y_pred: &dyn Array,
        sensitive: &[&dyn Array],
        sample_weight: Option<&dyn Array>,
    ) -> Result<()> {
        let n = y_true.len();
        if sensitive.len() != self.interners.len() {
            return Err(invalid(
                "sensitive features",
                format!(
                    "{} given, the counter was made for {}",
                    sensitive.len(),
                    self.interners.len()
                ),
            ));
        }
        let same = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(invalid(what, format!("has {len} rows, y_true has {n}")))
            }
        };
        same("y_pred", y_pred.len())?;
        for (k, s) in sensitive.iter().enumerate() {
            same(&format!("sensitive feature #{}", k + 1), s.len())?;
        }
        let t = labels(y_true, "y_true")?;
        let p = labels(y_pred, "y_pred")?;
        let w = match sample_weight {
            Some(a) => {
                same("sample weights", a.len())?;
                Some(weights(a)?)
            }
            None => None,
        };
        let mut codes = self.interners[0].column(sensitive[0], "sensitive feature #1")?;
        for (level, s) in sensitive.iter().enumerate().skip(1) {
            let next =
                self.interners[level].column(*s, &format!("sensitive feature #{}", level + 1))?;
            let (map, keys) = (&mut self.pairs[level - 1], &mut self.pair_keys[level - 1]);
            for (c, d) in codes.iter_mut().zip(next) {
                let id = *map.entry((*c, d)).or_insert_with(|| {
                    keys.push((*c, d));
                    (keys.len() - 1) as u32
                });
                *c = id;
            }
        }
        let groups = codes.iter().copied().max().map_or(0, |m| m as usize + 1);
        if self.counts.len() < groups {
            self.counts.resize(groups, [0; 4]);
            self.weighted.resize(groups, [0.0; 4]);
        }
        // Cell: 0 TP, 1 FP, 2 TN, 3 FN from (t, p).
        const CELL: [usize; 4] = [2, 1, 3, 0]; // index t*2 + p: (0,0) TN, (0,1) FP, (1,0) FN, (1,1) TP
        match &w {
            None => {
                for ((g, t), p) in codes.iter().zip(&t).zip(&p) {
                    self.counts[*g as usize][CELL[(*t as usize) << 1 | *p as usize]] += 1;
                }
            }
            Some(w) => {
                self.any_weights = true;
                for (((g, t), p), w) in codes.iter().zip(&t).zip(&p).zip(w) {
                    let cell = CELL[(*t as usize) << 1 | *p as usize];
                    self.counts[*g as usize][cell] += 1;
                    self.weighted[*g as usize][cell] += w;
                }
            }
        }
        self.rows += n as u64;
        Ok(())
    }

    /// Adds the named columns of a batch.
    pub fn update_batch(
        &mut self,
        batch: &RecordBatch,
        y_true: &str,
        y_pred: &str,
        sensitive: &[&str],
        sample_weight: Option<&str>,
    ) -> Result<()> {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| invalid(&format!("column {name:?}"), "not in the batch"))
        };
        let s = sensitive
            .iter()
            .map(|c| col(c))
            .collect::<Result<Vec<_>>>()?;
        let s: Vec<&dyn Array> = s.iter().map(|a| a.as_ref()).collect();
        let w = sample_weight.map(col).transpose()?;
        self.update(
            col(y_true)?.as_ref(),
            col(y_pred)?.as_ref(),
            &s,
            w.map(|a| a.as_ref()),
        )
    }

    fn key(&self, mut id: u32) -> Vec<String> {
        let levels = self.interners.len();
        let mut codes = vec![0u32; levels];
        for level in (1..levels).rev() {
            let (prev, code) = self.pair_keys[level - 1][id as usize];
            codes[level] = code;
            id = prev;
        }
        codes[0] = id;
        codes
            .iter()
            .zip(&self.interners)
            .map(|(c, i)| i.labels[*c as usize].clone())
            .collect()
    }

    /// The metric frame of everything counted.
    pub fn finish(&self) -> Result<MetricFrame> {
        if self.rows == 0 {
            return Err(invalid("y_true", "no rows"));
        }
        let mut overall = Confusion::default();
        let mut groups = BTreeMap::new();
        for (g, (c, w)) in self.counts.iter().zip(&self.weighted).enumerate() {
            let rows: u64 = c.iter().sum();
            if rows == 0 {
                continue;
            }
            let v: [f64; 4] = if self.any_weights {
                *w
            } else {
                c.map(|x| x as f64)
            };
            let conf = Confusion {
                tp: v[0],
                fp: v[1],
                tn: v[2],
                fn_: v[3],
                count: rows,
            };
            overall.tp += conf.tp;
            overall.fp += conf.fp;
            overall.tn += conf.tn;
            overall.fn_ += conf.fn_;
            overall.count += rows;
            groups.insert(self.key(g as u32), conf);
        }
        Ok(MetricFrame::from_confusion(overall, groups))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::fairness::Method;

    const Y_TRUE: [i64; 18] = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    const Y_PRED: [i64; 18] = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
    const GROUPS: &str = "b b a b b c c c a a c a b c c b c c";

    #[test]
    fn matches_the_slice_frame_in_any_batching_and_encoding() {
        let g: Vec<&str> = GROUPS.split(' ').collect();
        let h: Vec<i64> = (0..18).map(|i| i % 2).collect();
        let w: Vec<f64> = (0..18).map(|i| 0.5 + (i % 5) as f64).collect();
        let h_owned: Vec<String> = h.iter().map(|v| v.to_string()).collect();
        let h_str: Vec<&str> = h_owned.iter().map(String::as_str).collect();
        let want = MetricFrame::new(&Y_TRUE, &Y_PRED, &[&g, &h_str], Some(&w)).expect("frame");

        let dict: DictionaryArray<Int32Type> = g.iter().copied().collect();
        let dict: ArrayRef = Arc::new(dict);
        let yt: ArrayRef = Arc::new(Int64Array::from(Y_TRUE.to_vec()));
        let yp: ArrayRef = Arc::new(Int64Array::from(Y_PRED.to_vec()));
        let hh: ArrayRef = Arc::new(Int64Array::from(h.clone()));
        let ww: ArrayRef = Arc::new(Float64Array::from(w.clone()));
        let mut c = GroupCounter::new(2).expect("counter");
        for (start, len) in [(0, 7), (7, 11)] {
            c.update(
                yt.slice(start, len).as_ref(),
                yp.slice(start, len).as_ref(),
                &[
                    dict.slice(start, len).as_ref(),
                    hh.slice(start, len).as_ref(),
                ],
                Some(ww.slice(start, len).as_ref()),
            )
            .expect("update");
        }
        let got = c.finish().expect("frame");
        assert_eq!(got.by_group.len(), want.by_group.len());
        for (k, m) in &want.by_group {
            let g = got.by_group[k];
            assert!((g.selection_rate - m.selection_rate).abs() < 1e-12, "{k:?}");
            assert!(
                (g.true_positive_rate - m.true_positive_rate).abs() < 1e-12,
                "{k:?}"
            );
            assert!(
                (g.false_positive_rate - m.false_positive_rate).abs() < 1e-12,
                "{k:?}"
            );
            assert_eq!(g.count, m.count);
        }
        assert!(
            (got.equalized_odds_difference(Method::ToOverall)
                - want.equalized_odds_difference(Method::ToOverall))
            .abs()
                < 1e-12
        );

        // Unweighted, strings, one feature: the user-guide numbers.
        let s: ArrayRef = Arc::new(StringArray::from(g.clone()));
        let mut c = GroupCounter::new(1).expect("counter");
        c.update(yt.as_ref(), yp.as_ref(), &[s.as_ref()], None)
            .expect("update");
        let f = c.finish().expect("frame");
        assert!((f.demographic_parity_difference(Method::BetweenGroups) - 0.25).abs() < 1e-12);
        assert_eq!(f.equalized_odds_ratio(Method::BetweenGroups), 0.0);
    }

    #[test]
    fn bad_columns_are_named() {
        let yt: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let yp: ArrayRef = Arc::new(Int64Array::from(vec![1, 0]));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let mut c = GroupCounter::new(1).expect("counter");
        let e = c
            .update(yt.as_ref(), yp.as_ref(), &[s.as_ref()], None)
            .expect_err("null");
        assert!(
            e.to_string().contains("y_true") && e.to_string().contains("row 1"),
            "{e}"
        );
        let e = c
            .update(yp.as_ref(), yp.slice(0, 1).as_ref(), &[s.as_ref()], None)
            .expect_err("len");
        assert!(e.to_string().contains("y_pred"), "{e}");
        let w: ArrayRef = Arc::new(Float64Array::from(vec![1.0, -1.0]));
        let e = c
            .update(yp.as_ref(), yp.as_ref(), &[s.as_ref()], Some(w.as_ref()))
            .expect_err("w");
        assert!(e.to_string().contains("row 1"), "{e}");
        let e = c
            .update(yp.as_ref(), s.as_ref(), &[s.as_ref()], None)
            .expect_err("type");
        assert!(e.to_string().contains("Utf8"), "{e}");
        assert_eq!(c.rows(), 0);
        assert!(c.finish().is_err());
        assert!(GroupCounter::new(0).is_err());
    }
}
