//! Training logs that TensorBoard reads (`tensorboard --logdir DIR`): TFRecord files of `Event`
//! protocol buffers with scalar summaries, written without TensorFlow; and JSON Lines.
//!
//! A record is `length: u64 LE`, `masked_crc32c(length): u32 LE`, `data`,
//! `masked_crc32c(data): u32 LE`, with the CRC-32C masked as TensorFlow does:
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8`. The first event carries
//! `file_version = "brain.Event:2"`; each scalar is an event with `wall_time`, `step` and a
//! `Summary` holding one `Value { tag, simple_value }`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::trainer::{EpochRecord, Observer, StepRecord};

/// CRC-32C (Castagnoli), bitwise-reflected table.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for b in data {
        crc = table[((crc ^ u32::from(*b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((field << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// An `Event` protocol buffer: wall time, step, and either the file version or one scalar.
fn event(
    wall_time: f64,
    step: i64,
    file_version: Option<&str>,
    scalar: Option<(&str, f32)>,
) -> Vec<u8> {
    let mut e = Vec::new();
    e.push(0x09); // field 1, fixed64
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(0x10); // field 2, varint
    varint(step as u64, &mut e);
    if let Some(v) = file_version {
        field_bytes(3, v.as_bytes(), &mut e);
    }
    if let Some((tag, value)) = scalar {
        let mut val = Vec::new();
        field_bytes(1, tag.as_bytes(), &mut val);
        val.push(0x15); // field 2, fixed32
        val.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        field_bytes(1, &val, &mut summary);
        field_bytes(5, &summary, &mut e);
    }
    e
}

/// Writes scalars to `events.out.tfevents.<seconds>.aistd` in a directory.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new event file in `dir` (created if needed).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let t = now();
        let path = dir.join(format!("events.out.tfevents.{}.aistd", t as u64));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.record(&event(t, 0, Some("brain.Event:2"), None))?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut r = Vec::with_capacity(data.len() + 16);
        r.extend_from_slice(&len);
        r.extend_from_slice(&masked(crc32c(&len)).to_le_bytes());
        r.extend_from_slice(data);
        r.extend_from_slice(&masked(crc32c(data)).to_le_bytes());
        self.out.write_all(&r).map_err(|e| Error::io(&self.path, e))
    }

    /// One scalar.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<()> {
        self.record(&event(now(), step, None, Some((tag, value))))
    }

    /// Pushes what is buffered to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// An observer that logs every epoch as TensorBoard scalars (`train/loss`, `validation/loss`,
/// `validation/metric`, `lr`, `samples_per_second`, step = epoch; an event file in the log
/// directory) and as a line of `metrics.jsonl`; every optimizer step as `train/step_loss` (step =
/// global step; an event file in `steps/`, so that the epoch scalars' steps stay epochs) and as a
/// line of `steps.jsonl` (epoch, step, loss, learning rate); and, at [`TrainingLog::finish`], the
/// learning curves as `curves.svg`. Write errors are kept and reported by `finish`.
#[derive(Debug)]
pub struct TrainingLog {
    events: EventWriter,
    steps: EventWriter,
    jsonl: BufWriter<File>,
    steps_jsonl: BufWriter<File>,
    dir: PathBuf,
    error: Option<Error>,
    epochs: Vec<EpochRecord>,
}

impl TrainingLog {
    /// Logs into `dir`.
    pub fn create(dir: &Path) -> Result<Self> {
        let events = EventWriter::create(dir)?;
        let steps = EventWriter::create(&dir.join("steps"))?;
        let p = dir.join("metrics.jsonl");
        let jsonl = BufWriter::new(File::create(&p).map_err(|e| Error::io(&p, e))?);
        let p = dir.join("steps.jsonl");
        let steps_jsonl = BufWriter::new(File::create(&p).map_err(|e| Error::io(&p, e))?);
        Ok(Self {
            events,
            steps,
            jsonl,
            steps_jsonl,
            dir: dir.to_path_buf(),
            error: None,
            epochs: Vec::new(),
        })
    }

    fn write(&mut self, r: &EpochRecord) -> Result<()> {
        let step = r.epoch as i64;
        self.events
            .scalar("train/loss", step, r.train_loss as f32)?;
        if let Some(v) = r.valid_loss {
            self.events.scalar("validation/loss", step, v as f32)?;
        }
        if let Some(v) = r.valid_metric {
            self.events.scalar("validation/metric", step, v as f32)?;
        }
        self.events.scalar("lr", step, r.lr)?;
        self.events
            .scalar("samples_per_second", step, r.samples_per_second as f32)?;
        self.events.flush()?;
        let line =
            serde_json::to_string(r).map_err(|e| Error::invalid("metrics", e.to_string()))?;
        let p = self.dir.join("metrics.jsonl");
        writeln!(self.jsonl, "{line}").map_err(|e| Error::io(&p, e))?;
        self.jsonl.flush().map_err(|e| Error::io(&p, e))?;
        let p = self.dir.join("steps.jsonl");
        self.steps_jsonl.flush().map_err(|e| Error::io(&p, e))
    }

    fn write_step(&mut self, r: &StepRecord) -> Result<()> {
        self.steps
            .scalar("train/step_loss", r.step as i64, r.loss as f32)?;
        let line =
            serde_json::to_string(r).map_err(|e| Error::invalid("metrics", e.to_string()))?;
        writeln!(self.steps_jsonl, "{line}")
            .map_err(|e| Error::io(&self.dir.join("steps.jsonl"), e))
    }

    /// Flushes, writes `curves.svg`, and reports the first write error, if any.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.events.flush()?;
        self.steps.flush()?;
        let p = self.dir.join("steps.jsonl");
        self.steps_jsonl.flush().map_err(|e| Error::io(&p, e))?;
        let svg = self.dir.join("curves.svg");
        std::fs::write(&svg, curves_svg(&self.epochs)).map_err(|e| Error::io(&svg, e))?;
        Ok(self.events.path().to_path_buf())
    }
}

impl Observer for TrainingLog {
    fn on_step(&mut self, r: &StepRecord) {
        if self.error.is_none()
            && let Err(e) = self.write_step(r)
        {
            self.error = Some(e);
        }
    }

    fn on_epoch(&mut self, r: &EpochRecord) {
        self.epochs.push(r.clone());
        if self.error.is_none()
            && let Err(e) = self.write(r)
        {
            self.error = Some(e);
        }
    }
}

/// The learning curves: training and validation loss (left axis, from 0) and the validation
/// metric (right axis, 0–1) per epoch.
pub fn curves_svg(epochs: &[EpochRecord]) -> String {
    let (w, h, pad) = (640.0, 320.0, 44.0);
    let n = epochs.len().max(2) as f64 - 1.0;
    let max_loss = epochs
        .iter()
        .flat_map(|e| [Some(e.train_loss), e.valid_loss])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n.max(1.0);
    let y = |v: f64, top: f64| h - pad - (h - 2.0 * pad) * (v / top).clamp(0.0, 1.0);
    let line = |vals: Vec<Option<f64>>, top: f64, colour: &str, dash: &str| -> String {
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v, top))))
            .collect();
        if pts.is_empty() {
            return String::new();
        }
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>\n",
            pts.join(" ")
        )
    };
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<title>Learning curves</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    o.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{0}\" stroke=\"#333\"/>\n",
        h - pad,
        w - pad
    ));
    o.push_str(&format!(
        "<text x=\"4\" y=\"{:.0}\">{max_loss:.3}</text><text x=\"4\" y=\"{:.0}\">0</text><text x=\"{:.0}\" y=\"{:.0}\">epoch {}</text>\n",
        pad + 4.0,
        h - pad,
        w - pad - 60.0,
        h - 12.0,
        epochs.len()
    ));
    o.push_str(&line(
        epochs.iter().map(|e| Some(e.train_loss)).collect(),
        max_loss,
        "#4e79a7",
        "none",
    ));
    o.push_str(&line(
        epochs.iter().map(|e| e.valid_loss).collect(),
        max_loss,
        "#e15759",
        "none",
    ));
    o.push_str(&line(
        epochs.iter().map(|e| e.valid_metric).collect(),
        1.0,
        "#59a14f",
        "4 3",
    ));
    o.push_str("<text x=\"60\" y=\"18\" fill=\"#4e79a7\">training loss</text><text x=\"170\" y=\"18\" fill=\"#e15759\">validation loss</text><text x=\"290\" y=\"18\" fill=\"#59a14f\">validation metric (0–1, dashed)</text>\n</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_masking_match_the_reference_values() {
        // RFC 3720 B.4: 32 bytes of zeros → 0x8A9136AA; "123456789" → 0xE3069283.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked(0), 0xa282_ead8);
    }

    #[test]
    fn events_are_framed_records() {
        let dir = tempfile::tempdir().expect("dir");
        let mut w = EventWriter::create(dir.path()).expect("writer");
        w.scalar("loss", 3, 0.5).expect("scalar");
        w.flush().expect("flush");
        let bytes = std::fs::read(w.path()).expect("read");
        // Walk the records: each length and CRC must check.
        let mut i = 0;
        let mut n = 0;
        while i < bytes.len() {
            let len = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8")) as usize;
            let lcrc = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().expect("4"));
            assert_eq!(lcrc, masked(crc32c(&bytes[i..i + 8])));
            let data = &bytes[i + 12..i + 12 + len];
            let dcrc = u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().expect("4"));
            assert_eq!(dcrc, masked(crc32c(data)));
            i += 16 + len;
            n += 1;
        }
        assert_eq!(n, 2);
        assert!(
            w.path()
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.contains("tfevents"))
        );
    }
}
