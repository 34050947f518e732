//! A typed view of an Arrow column: every supported type is normalised to one of a few physical
//! representations so per-value code is written once.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};

use crate::source::{date_string, timestamp_string};
use crate::{Error, Result};

/// One value of a column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Date(i32),
    Ts(i64),
    Str(&'a str),
}

impl Val<'_> {
    /// The value as a number, for numeric and temporal types.
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Val::Int(x) | Val::Ts(x) => Some(x as f64),
            Val::Float(x) => Some(x),
            Val::Date(d) => Some(f64::from(d)),
            Val::Bool(b) => Some(f64::from(u8::from(b))),
            Val::Null | Val::Str(_) => None,
        }
    }

    /// Call `f` with the bytes that identify this value among values of its column (strings by
    /// their UTF-8, numbers by their 8 little-endian bytes, -0.0 and 0.0 as one value). `None` for
    /// null.
    pub(crate) fn with_key<R>(self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let bits: u64 = match self {
            Val::Null => return None,
            Val::Str(s) => return Some(f(s.as_bytes())),
            Val::Int(i) | Val::Ts(i) => i as u64,
            Val::Date(d) => i64::from(d) as u64,
            Val::Bool(b) => u64::from(b),
            // A float literal pattern compares with `==`, so it also matches -0.0.
            Val::Float(0.0) => 0,
            Val::Float(x) => x.to_bits(),
        };
        Some(f(&bits.to_le_bytes()))
    }

    /// The value as JSON (dates as ISO strings; NaN and infinities as strings).
    pub(crate) fn to_json(self) -> serde_json::Value {
        match self {
            Val::Null => serde_json::Value::Null,
            Val::Bool(b) => b.into(),
            Val::Int(x) => x.into(),
            Val::Float(x) if x.is_finite() => x.into(),
            Val::Float(x) => x.to_string().into(),
            Val::Date(d) => date_string(d).into(),
            Val::Ts(t) => timestamp_string(t).into(),
            Val::Str(s) => s.into(),
        }
    }

    /// The value as display text (what a CSV would hold).
    pub(crate) fn to_text(self) -> String {
        match self {
            Val::Null => String::new(),
            Val::Str(s) => s.to_string(),
            Val::Float(x) => x.to_string(),
            other => match other.to_json() {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            },
        }
    }
}

/// A column downcast once, read many times.
#[derive(Debug)]
pub(crate) enum Col {
    Bool(BooleanArray),
    Int(Int64Array),
    Float(Float64Array),
    Date(Date32Array),
    Ts(TimestampMicrosecondArray),
    Str(StringArray),
}

/// The physical type a logical type is normalised to.
pub(crate) fn normal_type(t: &DataType) -> DataType {
    use DataType::*;
    match t {
        Boolean => Boolean,
        // UInt64 can exceed i64: read it as float rather than lose values to null.
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Int64,
        UInt64 => Float64,
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => Float64,
        Date32 | Date64 => Date32,
        Timestamp(..) => Timestamp(TimeUnit::Microsecond, None),
        _ => Utf8,
    }
}

impl Col {
    pub(crate) fn new(array: &ArrayRef) -> Result<Self> {
        let target = normal_type(array.data_type());
        let a: ArrayRef = if array.data_type() == &target {
            Arc::clone(array)
        } else {
            arrow_cast::cast(array, &target)
                .map_err(|e| Error::arrow(format!("reading a {} column", array.data_type()), e))?
        };
        Ok(match target {
            DataType::Boolean => Col::Bool(a.as_boolean().clone()),
            DataType::Int64 => Col::Int(a.as_primitive::<Int64Type>().clone()),
            DataType::Float64 => Col::Float(a.as_primitive::<Float64Type>().clone()),
            DataType::Date32 => Col::Date(a.as_primitive::<Date32Type>().clone()),
            DataType::Timestamp(..) => {
                Col::Ts(a.as_primitive::<TimestampMicrosecondType>().clone())
            }
            _ => Col::Str(a.as_string::<i32>().clone()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Col::Bool(a) => a.len(),
            Col::Int(a) => a.len(),
            Col::Float(a) => a.len(),
            Col::Date(a) => a.len(),
            Col::Ts(a) => a.len(),
            Col::Str(a) => a.len(),
        }
    }

    pub(crate) fn is_null(&self, i: usize) -> bool {
        match self {
            Col::Bool(a) => a.is_null(i),
            Col::Int(a) => a.is_null(i),
            Col::Float(a) => a.is_null(i),
            Col::Date(a) => a.is_null(i),
            Col::Ts(a) => a.is_null(i),
            Col::Str(a) => a.is_null(i),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Val<'_> {
        if self.is_null(i) {
            return Val::Null;
        }
        match self {
            Col::Bool(a) => Val::Bool(a.value(i)),
            Col::Int(a) => Val::Int(a.value(i)),
            Col::Float(a) => Val::Float(a.value(i)),
            Col::Date(a) => Val::Date(a.value(i)),
            Col::Ts(a) => Val::Ts(a.value(i)),
            Col::Str(a) => Val::Str(a.value(i)),
        }
    }

    /// Whether the value at `i` is a NaN float.
    pub(crate) fn is_nan(&self, i: usize) -> bool {
        matches!(self, Col::Float(a) if a.is_valid(i) && a.value(i).is_nan())
    }
}

/// Rebuild `col` as an array of its normal type, mapping every value through `f`. `f` must
/// return values of the column's own kind (or `Null`).
pub(crate) fn map_values<'a>(
    col: &'a Col,
    mut f: impl FnMut(usize, Val<'a>) -> Val<'a>,
) -> ArrayRef {
    use arrow_array::builder::*;
    let n = col.len();
    macro_rules! build {
        ($builder:expr, $variant:ident) => {{
            let mut b = $builder;
            for i in 0..n {
                match f(i, col.get(i)) {
                    Val::$variant(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match col {
        Col::Bool(_) => build!(BooleanBuilder::with_capacity(n), Bool),
        Col::Int(_) => build!(Int64Builder::with_capacity(n), Int),
        Col::Float(_) => build!(Float64Builder::with_capacity(n), Float),
        Col::Date(_) => build!(Date32Builder::with_capacity(n), Date),
        Col::Ts(_) => build!(TimestampMicrosecondBuilder::with_capacity(n), Ts),
        Col::Str(_) => build!(StringBuilder::with_capacity(n, n * 16), Str),
    }
}
