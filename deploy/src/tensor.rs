//! Tensor datatypes and signatures, as the KServe Open Inference Protocol v2 names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A tensor element type: the v2 protocol's datatypes (`BF16` is Triton's extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum DataType {
    /// `BOOL`, one byte per element (0 or 1).
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16`, IEEE 754 half precision.
    Fp16,
    /// `BF16`, bfloat16.
    Bf16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES`: each element a byte string (length-prefixed in the binary extension).
    Bytes,
}

impl DataType {
    /// Every datatype, in the protocol's order.
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name (`"FP32"`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the binary tensor data extension; `None` for `BYTES`, whose elements
    /// vary in length.
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        DataType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "datatype",
                    format!(
                        "`{s}` is not a v2 datatype (one of {})",
                        DataType::ALL.map(DataType::name).join(", ")
                    ),
                )
            })
    }
}

impl TryFrom<String> for DataType {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DataType> for String {
    fn from(d: DataType) -> String {
        d.name().to_string()
    }
}

/// A named input or output of a model: its datatype and shape, `-1` marking a dimension of any
/// size (the v2 protocol's metadata convention).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// The tensor's name.
    pub name: String,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape; `-1` for a variable dimension.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// A spec, checked: a non-empty name, dimensions ≥ -1.
    pub fn new(name: impl Into<String>, datatype: DataType, shape: &[i64]) -> Result<Self> {
        let spec = TensorSpec {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the name and dimensions.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("tensor", "has an empty name"));
        }
        if let Some(d) = self.shape.iter().find(|d| **d < -1) {
            return Err(Error::invalid(
                format!("tensor {}", self.name),
                format!("dimension {d} (dimensions are ≥ 0, or -1 for any size)"),
            ));
        }
        Ok(())
    }

    /// Whether a concrete `shape` fits this spec (same rank, equal where the spec is fixed).
    pub fn accepts(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(want, got)| *want == -1 || *want as u64 == *got as u64)
    }
}

/// `name:DATATYPE:d1,d2,…` (as the CLI takes it), e.g. `input:FP32:-1,64`.
impl FromStr for TensorSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(datatype), Some(dims)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::invalid(
                "tensor spec",
                format!("`{s}` is not NAME:DATATYPE:DIMS (e.g. input:FP32:-1,64)"),
            ));
        };
        let shape = if dims.is_empty() {
            Vec::new()
        } else {
            dims.split(',')
                .map(|d| {
                    d.trim().parse::<i64>().map_err(|_| {
                        Error::invalid(
                            format!("tensor spec `{s}`"),
                            format!("dimension `{d}` is not an integer"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        TensorSpec::new(name, datatype.parse()?, &shape)
    }
}
