//! Deterministic tokenization: joinable pseudonyms with HMAC-SHA256.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Keyring, SecretKey};
use crate::error::{Error, Result};

/// Field metadata key marking a tokenized column; the value is `hmac-sha256:<key id>:<context>`.
pub const TOKEN_METADATA: &str = "aistd.token";

/// Replaces values with `tok_` + the first 16 bytes (32 hex digits) of
/// `HMAC-SHA256(key, "aistd-token-v1\0" ‖ context ‖ "\0" ‖ value)`.
///
/// The same key, context and value always give the same token, so tokenized columns still join
/// and group; without the key a token reveals nothing about its value beyond equality. Use one
/// context per kind of identifier (`email`, `customer_id`) so that equal strings of different
/// kinds do not collide. Tokens stay stable across keyring rotation as long as the tokenizer is
/// built with the same key id.
pub struct Tokenizer {
    key_id: String,
    key: SecretKey,
    context: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("key_id", &self.key_id)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// A tokenizer with the keyring's primary key.
    pub fn new(keyring: &Keyring, context: impl Into<String>) -> Self {
        let (id, key) = keyring.primary();
        Self {
            key_id: id.to_string(),
            key: key.clone(),
            context: context.into(),
        }
    }

    /// A tokenizer with a given key of the keyring (to keep tokens stable after rotation).
    pub fn with_key(keyring: &Keyring, key_id: &str, context: impl Into<String>) -> Result<Self> {
        Ok(Self {
            key_id: key_id.to_string(),
            key: keyring.key(key_id)?.clone(),
            context: context.into(),
        })
    }

    /// The token of one value.
    pub fn token(&self, value: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose()) else {
            return String::new();
        };
        mac.update(b"aistd-token-v1\0");
        mac.update(self.context.as_bytes());
        mac.update(b"\0");
        mac.update(value);
        let out = mac.finalize().into_bytes();
        format!("tok_{}", hex::encode(&out[..16]))
    }

    /// Returns `batch` with `column` replaced by tokens of its values (any type is tokenized by
    /// its string form). Nulls stay null.
    pub fn tokenize(&self, batch: &RecordBatch, column: &str) -> Result<RecordBatch> {
        let schema = batch.schema();
        let idx = schema
            .index_of(column)
            .map_err(|_| Error::column_not_found(column, "tokenization", &schema))?;
        let array = batch.column(idx);
        let strings: ArrayRef = if array.data_type() == &DataType::Utf8 {
            array.clone()
        } else {
            arrow_cast::cast(array, &DataType::Utf8)
                .map_err(|e| Error::arrow(format!("tokenizing `{column}`"), e))?
        };
        let s = strings.as_string::<i32>();
        let tokens: StringArray = (0..s.len())
            .map(|i| (!s.is_null(i)).then(|| self.token(s.value(i).as_bytes())))
            .collect();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut md = fields[idx].metadata().clone();
        md.insert(
            TOKEN_METADATA.to_string(),
            format!("hmac-sha256:{}:{}", self.key_id, self.context),
        );
        fields[idx] =
            Field::new(column, DataType::Utf8, fields[idx].is_nullable()).with_metadata(md);
        let mut arrays = batch.columns().to_vec();
        arrays[idx] = Arc::new(tokens);
        RecordBatch::try_new(
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            arrays,
        )
        .map_err(|e| Error::arrow("tokenization", e))
    }
}
