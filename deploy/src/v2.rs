//! The KServe Open Inference Protocol v2 on the wire: inference requests and responses as JSON,
//! with the binary tensor data extension (`binary_data_size`, `binary_data_output`,
//! `Inference-Header-Content-Length`) that `tritonclient` uses by default.
//!
//! This module is transport-free: [`decode_request`] takes the body bytes (and the header length
//! when the client sent one), [`encode_response`] gives the body bytes (and the header length to
//! send when some output is binary). The HTTP server (feature `http`) wires it to hyper.

use serde_json::{Map, Value, json};

use crate::endpoint::ModelMetadata;
use crate::infer::{InferRequest, InferResponse, Tensor, TensorData};
use crate::tensor::DataType;
use crate::{Error, Result};

/// A decoded request, and how each output is to be returned.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRequest {
    /// The request.
    pub request: InferRequest,
    /// Outputs asked for in binary (by name).
    pub binary_outputs: Vec<String>,
    /// `binary_data_output`: every output not named otherwise in binary.
    pub binary_by_default: bool,
}

fn bad(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Decodes a request body: JSON, or with `header_len` (the `Inference-Header-Content-Length`
/// header) a JSON header of that many bytes followed by the binary tensor data.
pub fn decode_request(body: &[u8], header_len: Option<usize>) -> Result<WireRequest> {
    let (header, mut binary) = match header_len {
        None => (body, &[][..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(bad(
                "Inference-Header-Content-Length",
                format!("{n} is larger than the body ({} bytes)", body.len()),
            ));
        }
    };
    let root: Value = serde_json::from_slice(header)
        .map_err(|e| bad("request body", format!("not valid JSON: {e}")))?;
    let obj = root
        .as_object()
        .ok_or_else(|| bad("request body", "not a JSON object"))?;
    let mut request = InferRequest::new();
    if let Some(id) = obj.get("id") {
        request.id = Some(
            id.as_str()
                .ok_or_else(|| bad("id", "not a string"))?
                .to_string(),
        );
    }
    let mut binary_by_default = false;
    if let Some(p) = obj.get("parameters") {
        let p = p
            .as_object()
            .ok_or_else(|| bad("parameters", "not a JSON object"))?;
        for (k, v) in p {
            if k == "binary_data_output" {
                binary_by_default = v
                    .as_bool()
                    .ok_or_else(|| bad("parameters.binary_data_output", "not a boolean"))?;
            } else {
                request.parameters.insert(k.clone(), v.clone());
            }
        }
    }
    let inputs = obj
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("inputs", "missing, or not an array"))?;
    for (i, input) in inputs.iter().enumerate() {
        request.inputs.push(decode_input(i, input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(bad(
            "binary tensor data",
            format!(
                "{} bytes left over after the inputs' binary_data_size",
                binary.len()
            ),
        ));
    }
    let mut binary_outputs = Vec::new();
    if let Some(outputs) = obj.get("outputs") {
        let outputs = outputs
            .as_array()
            .ok_or_else(|| bad("outputs", "not an array"))?;
        for (j, o) in outputs.iter().enumerate() {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("outputs[{j}].name"), "missing, or not a string"))?;
            if let Some(p) = o.get("parameters").and_then(Value::as_object) {
                let binary = p.get("binary_data").map(|b| {
                    b.as_bool().ok_or_else(|| {
                        bad(
                            format!("outputs[{j}].parameters.binary_data"),
                            "not a boolean",
                        )
                    })
                });
                if binary.transpose()? == Some(true) {
                    binary_outputs.push(name.to_string());
                }
                if p.contains_key("classification") {
                    return Err(bad(
                        format!("outputs[{j}].parameters.classification"),
                        "the classification extension is not supported",
                    ));
                }
            }
            request.outputs.push(name.to_string());
        }
    }
    Ok(WireRequest {
        request,
        binary_outputs,
        binary_by_default,
    })
}

fn decode_input(i: usize, input: &Value, binary: &mut &[u8]) -> Result<Tensor> {
    let at = |field: &str| format!("inputs[{i}].{field}");
    let name = input
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(at("name"), "missing, or not a string"))?;
    let named = |field: &str| format!("input {name}: {field}");
    let datatype: DataType = input
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(named("datatype"), "missing, or not a string"))?
        .parse()
        .map_err(|e: Error| bad(named("datatype"), e.to_string()))?;
    let shape: Vec<usize> = input
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(named("shape"), "missing, or not an array"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| bad(named("shape"), format!("{d} is not a dimension ≥ 0")))
        })
        .collect::<Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or_else(|| bad(named("shape"), format!("{shape:?} overflows")))?;
    let binary_size = input
        .get("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .map(|s| {
            s.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| bad(named("parameters.binary_data_size"), "not a size"))
        })
        .transpose()?;
    let data = match (binary_size, input.get("data")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                named("data"),
                "given both as JSON and as binary_data_size",
            ));
        }
        (Some(size), None) => {
            if size > binary.len() {
                return Err(bad(
                    named("parameters.binary_data_size"),
                    format!(
                        "{size} bytes, but only {} are left in the body",
                        binary.len()
                    ),
                ));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            from_binary(datatype, mine, n).map_err(|r| bad(named("binary data"), r))?
        }
        (None, Some(data)) => {
            let mut flat = Vec::with_capacity(n);
            flatten(data, &mut flat);
            from_json(datatype, &flat).map_err(|r| bad(named("data"), r))?
        }
        (None, None) => return Err(bad(named("data"), "missing (and no binary_data_size)")),
    };
    if data.len() != n {
        return Err(Error::InvalidTensor {
            tensor: name.to_string(),
            reason: format!(
                "shape {shape:?} holds {n} elements but {} were given",
                data.len()
            ),
        });
    }
    Tensor::new(name, &shape, data)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

fn from_json(dt: DataType, values: &[&Value]) -> std::result::Result<TensorData, String> {
    fn each<T>(
        values: &[&Value],
        what: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> std::result::Result<Vec<T>, String> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| f(v).ok_or_else(|| format!("element {i} ({v}) is not {what}")))
            .collect()
    }
    fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Option<T> {
        v.as_i64()
            .and_then(|x| T::try_from(x).ok())
            .or_else(|| v.as_u64().and_then(|x| T::try_from(x).ok()))
    }
    let float = |v: &Value| v.as_f64();
    Ok(match dt {
        DataType::Bool => TensorData::Bool(each(values, "a boolean", Value::as_bool)?),
        DataType::Uint8 => TensorData::Uint8(each(values, "a UINT8", int)?),
        DataType::Uint16 => TensorData::Uint16(each(values, "a UINT16", int)?),
        DataType::Uint32 => TensorData::Uint32(each(values, "a UINT32", int)?),
        DataType::Uint64 => TensorData::Uint64(each(values, "a UINT64", int)?),
        DataType::Int8 => TensorData::Int8(each(values, "an INT8", int)?),
        DataType::Int16 => TensorData::Int16(each(values, "an INT16", int)?),
        DataType::Int32 => TensorData::Int32(each(values, "an INT32", int)?),
        DataType::Int64 => TensorData::Int64(each(values, "an INT64", int)?),
        DataType::Fp16 => TensorData::Fp16(each(values, "a number", |v| {
            float(v).map(|x| half::f16::from_f64(x).to_bits())
        })?),
        DataType::Bf16 => TensorData::Bf16(each(values, "a number", |v| {
            float(v).map(|x| half::bf16::from_f64(x).to_bits())
        })?),
        DataType::Fp32 => {
            TensorData::Fp32(each(values, "a number", |v| float(v).map(|x| x as f32))?)
        }
        DataType::Fp64 => TensorData::Fp64(each(values, "a number", float)?),
        DataType::Bytes => TensorData::Bytes(each(values, "a string", |v| {
            v.as_str().map(|s| s.as_bytes().to_vec())
        })?),
    })
}

fn bytes_from_binary(b: &[u8]) -> std::result::Result<TensorData, String> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(format!(
                "element {} has a truncated 4-byte length prefix",
                out.len()
            ));
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > tail.len() {
            return Err(format!(
                "element {} claims {len} bytes but {} are left",
                out.len(),
                tail.len()
            ));
        }
        let (item, tail) = tail.split_at(len);
        out.push(item.to_vec());
        rest = tail;
    }
    Ok(TensorData::Bytes(out))
}

fn from_binary(dt: DataType, b: &[u8], n: usize) -> std::result::Result<TensorData, String> {
    let size = dt.size().unwrap_or(1);
    if dt != DataType::Bytes && b.len() != n * size {
        return Err(format!(
            "binary_data_size {} where {n} {dt} elements need {}",
            b.len(),
            n * size
        ));
    }
    macro_rules! le {
        ($t:ty, $v:ident) => {
            TensorData::$v(
                b.chunks_exact(size)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(b.iter().map(|x| *x != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(b.to_vec()),
        DataType::Uint16 => le!(u16, Uint16),
        DataType::Uint32 => le!(u32, Uint32),
        DataType::Uint64 => le!(u64, Uint64),
        DataType::Int8 => TensorData::Int8(b.iter().map(|x| *x as i8).collect()),
        DataType::Int16 => le!(i16, Int16),
        DataType::Int32 => le!(i32, Int32),
        DataType::Int64 => le!(i64, Int64),
        DataType::Fp16 => le!(u16, Fp16),
        DataType::Bf16 => le!(u16, Bf16),
        DataType::Fp32 => le!(f32, Fp32),
        DataType::Fp64 => le!(f64, Fp64),
        DataType::Bytes => bytes_from_binary(b)?,
    })
}

/// The little-endian binary form of `data` (BYTES: each element's 4-byte length, then it).
pub fn to_binary(data: &TensorData) -> Vec<u8> {
    macro_rules! le {
        ($v:expr) => {
            $v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
    }
    match data {
        TensorData::Bool(v) => v.iter().map(|x| u8::from(*x)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Uint16(v) | TensorData::Fp16(v) | TensorData::Bf16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int8(v) => v.iter().map(|x| *x as u8).collect(),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => v
            .iter()
            .flat_map(|x| {
                (x.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(x.iter().copied())
            })
            .collect(),
    }
}

fn to_json(data: &TensorData) -> Value {
    let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match data {
        TensorData::Bool(v) => json!(v),
        TensorData::Uint8(v) => json!(v),
        TensorData::Uint16(v) => json!(v),
        TensorData::Uint32(v) => json!(v),
        TensorData::Uint64(v) => json!(v),
        TensorData::Int8(v) => json!(v),
        TensorData::Int16(v) => json!(v),
        TensorData::Int32(v) => json!(v),
        TensorData::Int64(v) => json!(v),
        TensorData::Fp16(v) => v
            .iter()
            .map(|b| num(half::f16::from_bits(*b).to_f64()))
            .collect(),
        TensorData::Bf16(v) => v
            .iter()
            .map(|b| num(half::bf16::from_bits(*b).to_f64()))
            .collect(),
        TensorData::Fp32(v) => v.iter().map(|x| num(f64::from(*x))).collect(),
        TensorData::Fp64(v) => v.iter().map(|x| num(*x)).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
            .collect(),
    }
}

/// Encodes a response: the JSON header and the binary data of the outputs returned in binary;
/// the second value is the header's length when there is binary data (to send as
/// `Inference-Header-Content-Length`).
pub fn encode_response(response: &InferResponse, wire: &WireRequest) -> (Vec<u8>, Option<usize>) {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = response
        .outputs
        .iter()
        .map(|t| {
            let mut o = Map::new();
            o.insert("name".into(), json!(t.name));
            o.insert("datatype".into(), json!(t.datatype().name()));
            o.insert("shape".into(), json!(t.shape));
            let as_binary = wire.binary_outputs.contains(&t.name)
                || (wire.binary_by_default && !wire.request.outputs.contains(&t.name));
            if as_binary {
                let bytes = to_binary(&t.data);
                o.insert(
                    "parameters".into(),
                    json!({ "binary_data_size": bytes.len() }),
                );
                binary.extend_from_slice(&bytes);
            } else {
                o.insert("data".into(), to_json(&t.data));
            }
            Value::Object(o)
        })
        .collect();
    let mut root = Map::new();
    root.insert("model_name".into(), json!(response.model_name));
    if let Some(v) = &response.model_version {
        root.insert("model_version".into(), json!(v));
    }
    if let Some(id) = &response.id {
        root.insert("id".into(), json!(id));
    }
    root.insert("outputs".into(), Value::Array(outputs));
    let mut body = serde_json::to_vec(&Value::Object(root)).unwrap_or_default();
    if binary.is_empty() {
        (body, None)
    } else {
        let n = body.len();
        body.extend_from_slice(&binary);
        (body, Some(n))
    }
}

/// The model metadata response: name, versions, platform, inputs and outputs.
pub fn metadata_json(m: &ModelMetadata) -> Value {
    json!({
        "name": m.name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": m.inputs,
        "outputs": m.outputs,
    })
}

/// An error body: `{"error": "…"}`.
pub fn error_json(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": message })).unwrap_or_default()
}
