//! Masking and redaction of detected spans.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::{Entity, PiiScanner};
use crate::error::{Error, Result};

/// What to put in place of a detected span (Presidio's anonymizer operators of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaskOperator {
    /// Replace the span with a fixed string, or with `<ENTITY_TYPE>` when `None`.
    Replace(Option<String>),
    /// Remove the span.
    Redact,
    /// Overwrite `chars` characters of the span (all when `None`) with `with`, from the end when
    /// `from_end`.
    Mask {
        /// The masking character.
        with: char,
        /// How many characters to mask.
        chars: Option<usize>,
        /// Mask the last characters rather than the first.
        from_end: bool,
    },
}

/// `text` with every entity's span (character offsets, non-overlapping, as
/// [`PiiScanner::analyze`] returns them) rewritten by `op`.
pub fn anonymize(text: &str, entities: &[Entity], op: &MaskOperator) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut sorted: Vec<&Entity> = entities.iter().collect();
    sorted.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in sorted {
        if e.start < at || e.end > chars.len() || e.start > e.end {
            continue;
        }
        out.extend(&chars[at..e.start]);
        let span = &chars[e.start..e.end];
        match op {
            MaskOperator::Replace(None) => {
                out.push('<');
                out.push_str(e.entity_type.as_str());
                out.push('>');
            }
            MaskOperator::Replace(Some(s)) => out.push_str(s),
            MaskOperator::Redact => {}
            MaskOperator::Mask {
                with,
                chars: n,
                from_end,
            } => {
                let n = n.unwrap_or(span.len()).min(span.len());
                let (lo, hi) = if *from_end {
                    (span.len() - n, span.len())
                } else {
                    (0, n)
                };
                for (i, c) in span.iter().enumerate() {
                    out.push(if (lo..hi).contains(&i) { *with } else { *c });
                }
            }
        }
        at = e.end;
    }
    out.extend(&chars[at..]);
    out
}

/// Returns `batch` with the PII found in a string column rewritten by `op`.
pub fn mask_column(
    batch: &RecordBatch,
    column: &str,
    scanner: &PiiScanner,
    op: &MaskOperator,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let idx = schema
        .index_of(column)
        .map_err(|_| Error::column_not_found(column, "masking", &schema))?;
    let array = batch.column(idx);
    if array.data_type() != &DataType::Utf8 {
        return Err(Error::invalid(
            format!("masking column `{column}`"),
            format!("is {}, not a string column", array.data_type()),
        ));
    }
    let s = array.as_string::<i32>();
    let masked: StringArray = (0..s.len())
        .map(|i| {
            (!s.is_null(i)).then(|| {
                let v = s.value(i);
                anonymize(v, &scanner.analyze(v), op)
            })
        })
        .collect();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut md = fields[idx].metadata().clone();
    md.insert("aistd.masked".to_string(), format!("{op:?}"));
    fields[idx] = fields[idx].clone().with_metadata(md);
    let mut cols = batch.columns().to_vec();
    cols[idx] = Arc::new(masked);
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        cols,
    )
    .map_err(|e| Error::arrow("masking", e))
}
