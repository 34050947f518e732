//! Inference requests and responses: named, typed, shaped tensors in every KServe v2 datatype.

use std::collections::BTreeMap;

use crate::tensor::{DataType, TensorSpec};
use crate::{Error, Result};

/// A tensor's elements, one variant per v2 datatype. `FP16` and `BF16` hold the IEEE bit
/// patterns (as the binary extension carries them).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `UINT8`.
    Uint8(Vec<u8>),
    /// `UINT16`.
    Uint16(Vec<u16>),
    /// `UINT32`.
    Uint32(Vec<u32>),
    /// `UINT64`.
    Uint64(Vec<u64>),
    /// `INT8`.
    Int8(Vec<i8>),
    /// `INT16`.
    Int16(Vec<i16>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `FP16`, as bit patterns.
    Fp16(Vec<u16>),
    /// `BF16`, as bit patterns.
    Bf16(Vec<u16>),
    /// `FP32`.
    Fp32(Vec<f32>),
    /// `FP64`.
    Fp64(Vec<f64>),
    /// `BYTES`: one byte string per element.
    Bytes(Vec<Vec<u8>>),
}

macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Bf16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    /// The datatype of these elements.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Bf16(_) => DataType::Bf16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s elements; `false` (and nothing appended) if the datatypes differ.
    pub fn append(&mut self, other: &TensorData) -> bool {
        macro_rules! same {
            ($($v:ident),*) => {
                match (self, other) {
                    $((TensorData::$v(a), TensorData::$v(b)) => { a.extend_from_slice(b); true })*
                    _ => false,
                }
            };
        }
        same!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
            Bytes
        )
    }

    /// The elements in `range` (which must lie within the data).
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        macro_rules! cut {
            ($($v:ident),*) => {
                match self {
                    $(TensorData::$v(a) => TensorData::$v(a[range].to_vec()),)*
                }
            };
        }
        cut!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
            Bytes
        )
    }

    /// `n` zero elements (empty strings for `BYTES`) of `datatype`.
    pub fn zeros(datatype: DataType, n: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(vec![false; n]),
            DataType::Uint8 => TensorData::Uint8(vec![0; n]),
            DataType::Uint16 => TensorData::Uint16(vec![0; n]),
            DataType::Uint32 => TensorData::Uint32(vec![0; n]),
            DataType::Uint64 => TensorData::Uint64(vec![0; n]),
            DataType::Int8 => TensorData::Int8(vec![0; n]),
            DataType::Int16 => TensorData::Int16(vec![0; n]),
            DataType::Int32 => TensorData::Int32(vec![0; n]),
            DataType::Int64 => TensorData::Int64(vec![0; n]),
            DataType::Fp16 => TensorData::Fp16(vec![0; n]),
            DataType::Bf16 => TensorData::Bf16(vec![0; n]),
            DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
            DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
            DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
        }
    }
}

/// A named tensor: shape and elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor, checked: a non-empty name and as many elements as the shape gives.
    pub fn new(name: impl Into<String>, shape: &[usize], data: TensorData) -> Result<Tensor> {
        let t = Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        };
        t.check()?;
        Ok(t)
    }

    /// An `FP32` tensor.
    pub fn fp32(name: impl Into<String>, shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        Tensor::new(name, shape, TensorData::Fp32(values))
    }

    /// Its datatype.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The number of elements the shape gives, or `None` if that overflows.
    pub fn shape_elements(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d))
    }

    /// Checks the name and that the element count matches the shape.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::tensor("(unnamed)", "has an empty name"));
        }
        match self.shape_elements() {
            Some(n) if n == self.data.len() => Ok(()),
            Some(n) => Err(Error::tensor(
                &self.name,
                format!(
                    "shape {:?} holds {n} elements but {} were given",
                    self.shape,
                    self.data.len()
                ),
            )),
            None => Err(Error::tensor(
                &self.name,
                format!("shape {:?} overflows", self.shape),
            )),
        }
    }

    /// The elements if the datatype is `FP32`.
    pub fn as_fp32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::Fp32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements if the datatype is `INT64`.
    pub fn as_int64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// Checks this tensor against `spec`: datatype, rank and fixed dimensions, element count.
    pub fn conforms_to(&self, spec: &TensorSpec) -> Result<()> {
        self.check()?;
        if self.datatype() != spec.datatype {
            return Err(Error::tensor(
                &self.name,
                format!(
                    "datatype {} where the model takes {}",
                    self.datatype(),
                    spec.datatype
                ),
            ));
        }
        if !spec.accepts(&self.shape) {
            return Err(Error::tensor(
                &self.name,
                format!(
                    "shape {:?} where the model takes {:?} (-1: any size)",
                    self.shape, spec.shape
                ),
            ));
        }
        Ok(())
    }
}

/// An inference request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferRequest {
    /// An identifier echoed in the response.
    pub id: Option<String>,
    /// The inputs, by name.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted, by name; empty for all of them.
    pub outputs: Vec<String>,
    /// Request parameters (the v2 `parameters` object).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The caller's bearer token, if it sent one (the HTTP server takes it from the
    /// `Authorization` header); never shown by `Debug`.
    pub bearer: Option<Bearer>,
}

/// A bearer token. `Debug` shows only its length; comparisons go through its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

impl Bearer {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Bearer(token.into())
    }

    /// The token's SHA-256 (hex): what token stores keep instead of the token.
    pub fn sha256_hex(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bearer(<{} characters, redacted>)", self.0.len())
    }
}

impl InferRequest {
    /// An empty request.
    pub fn new() -> Self {
        InferRequest::default()
    }

    /// Adds an input.
    pub fn with_input(mut self, t: Tensor) -> Self {
        self.inputs.push(t);
        self
    }

    /// Asks for one output (by default all are returned).
    pub fn with_output(mut self, name: impl Into<String>) -> Self {
        self.outputs.push(name.into());
        self
    }

    /// Sets the identifier.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The input named `name`.
    pub fn input(&self, name: &str) -> Option<&Tensor> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// Checks the request against a model's signature: every input present once, none unknown,
    /// each conforming to its spec; every requested output known and asked for once.
    pub fn validate(&self, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<()> {
        for (i, t) in self.inputs.iter().enumerate() {
            if self.inputs[..i].iter().any(|u| u.name == t.name) {
                return Err(Error::tensor(&t.name, "input given twice"));
            }
            let Some(spec) = inputs.iter().find(|s| s.name == t.name) else {
                return Err(Error::tensor(
                    &t.name,
                    format!("unknown input (the model takes {})", names(inputs)),
                ));
            };
            t.conforms_to(spec)?;
        }
        if let Some(missing) = inputs.iter().find(|s| self.input(&s.name).is_none()) {
            return Err(Error::tensor(
                &missing.name,
                "input missing from the request",
            ));
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if self.outputs[..i].contains(o) {
                return Err(Error::tensor(o, "output requested twice"));
            }
            if !outputs.iter().any(|s| &s.name == o) {
                return Err(Error::tensor(
                    o,
                    format!("unknown output (the model gives {})", names(outputs)),
                ));
            }
        }
        Ok(())
    }
}

/// The specs' names, comma-separated.
pub(crate) fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An inference response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// Its version.
    pub model_version: Option<String>,
    /// The request's identifier.
    pub id: Option<String>,
    /// The outputs.
    pub outputs: Vec<Tensor>,
}

impl InferResponse {
    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.outputs.iter().find(|t| t.name == name)
    }
}
