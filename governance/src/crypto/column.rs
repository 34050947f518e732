//! Column-level encryption of Arrow data: each value is sealed on its own, so rows can still be
//! filtered, sliced and reordered; the column becomes `Binary` and its field metadata says how to
//! open it.
//!
//! Value layout: `nonce (24) ‖ ciphertext ‖ tag (16)`, XChaCha20-Poly1305 with AAD
//! `"aistd-col-v1\0" ‖ key id ‖ "\0" ‖ column name`. Plaintext encodings: UTF-8 bytes for strings,
//! raw bytes for binary, one byte 0/1 for booleans, little-endian fixed width for numbers, dates
//! and timestamps. Nulls stay null (null-ness is not hidden).

use std::str::FromStr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions, StringArray,
    make_array,
};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::{Keyring, fill_random, open, seal};
use crate::error::{Error, Result};

/// Field metadata key marking an encrypted column; the value is `xchacha20poly1305-v1`.
pub const ENCRYPTION_METADATA: &str = "aistd.encryption";
/// Field metadata key holding the key id.
pub const ENCRYPTED_KEY_ID: &str = "aistd.encryption.key_id";
/// Field metadata key holding the column's original Arrow type (its `Display` form).
pub const ENCRYPTED_TYPE: &str = "aistd.encryption.type";
const SCHEME: &str = "xchacha20poly1305-v1";

fn aad(key_id: &str, column: &str) -> Vec<u8> {
    [
        b"aistd-col-v1\0",
        key_id.as_bytes(),
        b"\0",
        column.as_bytes(),
    ]
    .concat()
}

fn fixed_width(dt: &DataType) -> Option<usize> {
    dt.primitive_width()
}

/// Encrypts chosen columns of record batches with a keyring's primary key.
pub struct ColumnEncryptor<'a> {
    keyring: &'a Keyring,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for ColumnEncryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnEncryptor")
            .field("keyring", self.keyring)
            .finish_non_exhaustive()
    }
}

impl<'a> ColumnEncryptor<'a> {
    /// An encryptor drawing nonces from a ChaCha20 CSPRNG seeded by the operating system.
    pub fn new(keyring: &'a Keyring) -> Result<Self> {
        let mut seed = [0u8; 32];
        fill_random(&mut seed)?;
        Ok(Self {
            keyring,
            rng: ChaCha20Rng::from_seed(seed),
        })
    }

    /// Returns `batch` with `columns` encrypted (already encrypted columns are left alone).
    pub fn encrypt(&mut self, batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
        let schema = batch.schema();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        let (key_id, key) = self.keyring.primary();
        let cipher = key.cipher();
        for name in columns {
            let idx = schema
                .index_of(name)
                .map_err(|_| Error::column_not_found(name, "column encryption", &schema))?;
            if fields[idx].metadata().contains_key(ENCRYPTION_METADATA) {
                continue;
            }
            let array = batch.column(idx);
            let dt = array.data_type().clone();
            let aad = aad(key_id, name);
            let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(array.len());
            let mut plain = Vec::new();
            for i in 0..array.len() {
                if array.is_null(i) {
                    values.push(None);
                    continue;
                }
                plain.clear();
                value_bytes(array, i, &mut plain, name)?;
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                let mut out = Vec::with_capacity(24 + plain.len() + 16);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&plain);
                let tag = seal(&cipher, &nonce, &aad, &mut out[24..])?;
                out.extend_from_slice(&tag);
                values.push(Some(out));
            }
            arrays[idx] = Arc::new(BinaryArray::from_iter(values));
            let mut md = fields[idx].metadata().clone();
            md.insert(ENCRYPTION_METADATA.to_string(), SCHEME.to_string());
            md.insert(ENCRYPTED_KEY_ID.to_string(), key_id.to_string());
            md.insert(ENCRYPTED_TYPE.to_string(), dt.to_string());
            fields[idx] = Field::new(
                name.to_string(),
                DataType::Binary,
                fields[idx].is_nullable(),
            )
            .with_metadata(md);
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        RecordBatch::try_new(schema, arrays).map_err(|e| Error::arrow("column encryption", e))
    }
}

fn value_bytes(array: &ArrayRef, i: usize, out: &mut Vec<u8>, column: &str) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => out.extend_from_slice(array.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => out.extend_from_slice(array.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => out.extend_from_slice(array.as_string_view().value(i).as_bytes()),
        DataType::Binary => out.extend_from_slice(array.as_binary::<i32>().value(i)),
        DataType::LargeBinary => out.extend_from_slice(array.as_binary::<i64>().value(i)),
        DataType::Boolean => out.push(u8::from(array.as_boolean().value(i))),
        dt => {
            let Some(w) = fixed_width(dt) else {
                return Err(Error::NotSupported {
                    operation: format!("encrypting column `{column}` of type {dt}"),
                    implementer: "ColumnEncryptor".into(),
                });
            };
            let data = array.to_data();
            let buf = &data.buffers()[0];
            let start = (data.offset() + i) * w;
            out.extend_from_slice(&buf.as_slice()[start..start + w]);
        }
    }
    Ok(())
}

/// The encrypted columns of a schema, by name.
pub fn encrypted_columns(schema: &Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| f.metadata().contains_key(ENCRYPTION_METADATA))
        .map(|f| f.name().clone())
        .collect()
}

/// Returns `batch` with encrypted columns decrypted back to their original types: all of them,
/// or only those named in `only`.
pub fn decrypt_columns(
    batch: &RecordBatch,
    keyring: &Keyring,
    only: Option<&[&str]>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (idx, field) in schema.fields().iter().enumerate() {
        let md = field.metadata();
        if !md.contains_key(ENCRYPTION_METADATA)
            || only.is_some_and(|o| !o.contains(&field.name().as_str()))
        {
            continue;
        }
        let name = field.name();
        let ctx = format!("encrypted column `{name}`");
        if md.get(ENCRYPTION_METADATA).map(String::as_str) != Some(SCHEME) {
            return Err(Error::crypto(
                &ctx,
                None,
                format!("unknown scheme {:?}", md.get(ENCRYPTION_METADATA)),
            ));
        }
        let key_id = md
            .get(ENCRYPTED_KEY_ID)
            .ok_or_else(|| Error::crypto(&ctx, None, format!("no {ENCRYPTED_KEY_ID} metadata")))?;
        let dt_text = md
            .get(ENCRYPTED_TYPE)
            .ok_or_else(|| Error::crypto(&ctx, None, format!("no {ENCRYPTED_TYPE} metadata")))?;
        let dt = DataType::from_str(dt_text)
            .map_err(|e| Error::crypto(&ctx, None, format!("type `{dt_text}`: {e}")))?;
        let cipher = keyring.key(key_id)?.cipher();
        let aad = aad(key_id, name);
        let array = batch.column(idx);
        let bin = array.as_binary_opt::<i32>().ok_or_else(|| {
            Error::crypto(
                &ctx,
                None,
                format!("is {} rather than Binary", array.data_type()),
            )
        })?;
        let mut plain: Vec<Option<Vec<u8>>> = Vec::with_capacity(bin.len());
        for i in 0..bin.len() {
            if bin.is_null(i) {
                plain.push(None);
                continue;
            }
            let v = bin.value(i);
            if v.len() < 40 {
                return Err(Error::crypto(
                    format!("{ctx}, row {i}"),
                    None,
                    "value shorter than nonce and tag",
                ));
            }
            let nonce: [u8; 24] = v[..24].try_into().unwrap_or_default();
            let tag: [u8; 16] = v[v.len() - 16..].try_into().unwrap_or_default();
            let mut buf = v[24..v.len() - 16].to_vec();
            if !open(&cipher, &nonce, &aad, &mut buf, &tag) {
                return Err(Error::crypto(
                    format!("{ctx}, row {i}"),
                    None,
                    "fails authentication: changed bytes, a value moved from another column, or the wrong key",
                ));
            }
            plain.push(Some(buf));
        }
        arrays[idx] = rebuild(&dt, plain, &ctx)?;
        let mut md = md.clone();
        md.remove(ENCRYPTION_METADATA);
        md.remove(ENCRYPTED_KEY_ID);
        md.remove(ENCRYPTED_TYPE);
        fields[idx] = Field::new(name.clone(), dt, field.is_nullable()).with_metadata(md);
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| Error::arrow("column decryption", e))
}

fn rebuild(dt: &DataType, values: Vec<Option<Vec<u8>>>, ctx: &str) -> Result<ArrayRef> {
    let bad = |i: usize, why: &str| Error::crypto(format!("{ctx}, row {i}"), None, why.to_string());
    Ok(match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut s: Vec<Option<String>> = Vec::with_capacity(values.len());
            for (i, v) in values.into_iter().enumerate() {
                s.push(match v {
                    None => None,
                    Some(b) => Some(String::from_utf8(b).map_err(|_| bad(i, "not UTF-8"))?),
                });
            }
            let a: ArrayRef = Arc::new(StringArray::from(s));
            if *dt == DataType::Utf8 {
                a
            } else {
                arrow_cast::cast(&a, dt).map_err(|e| Error::arrow("column decryption", e))?
            }
        }
        DataType::Binary | DataType::LargeBinary => {
            let a: ArrayRef = Arc::new(BinaryArray::from_iter(values));
            if *dt == DataType::Binary {
                a
            } else {
                arrow_cast::cast(&a, dt).map_err(|e| Error::arrow("column decryption", e))?
            }
        }
        DataType::Boolean => {
            let mut b = Vec::with_capacity(values.len());
            for (i, v) in values.into_iter().enumerate() {
                b.push(match v.as_deref() {
                    None => None,
                    Some([0]) => Some(false),
                    Some([1]) => Some(true),
                    Some(_) => return Err(bad(i, "not a boolean")),
                });
            }
            Arc::new(BooleanArray::from(b))
        }
        dt => {
            let w = fixed_width(dt).ok_or_else(|| Error::NotSupported {
                operation: format!("decrypting a column of type {dt}"),
                implementer: "decrypt_columns".into(),
            })?;
            let n = values.len();
            let mut buf = vec![0u8; n * w];
            let mut valid = Vec::with_capacity(n);
            for (i, v) in values.iter().enumerate() {
                match v {
                    None => valid.push(false),
                    Some(b) if b.len() == w => {
                        buf[i * w..(i + 1) * w].copy_from_slice(b);
                        valid.push(true);
                    }
                    Some(b) => {
                        return Err(bad(i, &format!("{} bytes where {dt} takes {w}", b.len())));
                    }
                }
            }
            let data = arrow_data_builder(dt, n, Buffer::from(buf), NullBuffer::from(valid))
                .map_err(|e| Error::arrow("column decryption", e))?;
            make_array(data)
        }
    })
}

fn arrow_data_builder(
    dt: &DataType,
    len: usize,
    values: Buffer,
    nulls: NullBuffer,
) -> std::result::Result<arrow_data::ArrayData, arrow_schema::ArrowError> {
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    arrow_data::ArrayData::builder(dt.clone())
        .len(len)
        .add_buffer(values)
        .nulls(nulls)
        .build()
}
