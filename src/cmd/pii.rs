//! `aistd pii`: find PII in text, classify the columns of a table.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use aistd_governance::pii::{ClassificationRules, PiiScanner, classify};
use aistd_governance::{CsvOptions, open_path};
use anyhow::{Context, Result};
use clap::Subcommand;

use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum PiiCommand {
    /// Find PII in a document, or with --jsonl in one {"text": …} object per line (one
    /// {"entities": [{"type", "start", "end", "score"}]} line out per line in; start and end are
    /// character offsets).
    Scan {
        /// The input file, or `-` (the default) for standard input.
        #[arg(default_value = "-")]
        input: String,
        /// Read one JSON object with a "text" field per line; write one result per line.
        #[arg(long)]
        jsonl: bool,
        /// Print the whole document's result as JSON.
        #[arg(long)]
        json: bool,
        /// Report only entities scored at least this.
        #[arg(long, default_value_t = 0.3)]
        threshold: f64,
    },
    /// Classify every column of a table into Public / Internal / Confidential / Restricted.
    Classify {
        /// CSV, Arrow IPC or Parquet file.
        file: PathBuf,
        /// Classification rules (YAML); built-in defaults otherwise.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print the classification as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: PiiCommand) -> Result<ExitCode> {
    match cmd {
        PiiCommand::Scan {
            input,
            jsonl,
            json,
            threshold,
        } => {
            let scanner = PiiScanner::new().with_threshold(threshold);
            let reader: Box<dyn Read> = if input == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::fs::File::open(&input).with_context(|| format!("opening {input}"))?)
            };
            if jsonl {
                let out = std::io::stdout();
                let mut out = std::io::BufWriter::new(out.lock());
                for (i, line) in std::io::BufReader::new(reader).lines().enumerate() {
                    let line = line.with_context(|| format!("{input}: line {}", i + 1))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .with_context(|| format!("{input}: line {}: not JSON", i + 1))?;
                    let text = v.get("text").and_then(|t| t.as_str()).with_context(|| {
                        format!("{input}: line {}: no string field \"text\"", i + 1)
                    })?;
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({ "entities": scanner.analyze(text) }),
                    )?;
                    out.write_all(b"\n")?;
                }
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut text = String::new();
            std::io::BufReader::new(reader)
                .read_to_string(&mut text)
                .with_context(|| format!("reading {input} as UTF-8"))?;
            let entities = scanner.analyze(&text);
            if json {
                print_json(&serde_json::json!({ "entities": entities }))?;
            } else {
                let chars: Vec<char> = text.chars().collect();
                for e in &entities {
                    let span: String = chars[e.start..e.end].iter().collect();
                    println!(
                        "{:<14} {:>7}..{:<7} {:.2}  {span}",
                        e.entity_type.as_str(),
                        e.start,
                        e.end,
                        e.score
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PiiCommand::Classify { file, rules, json } => {
            let source = open_path(&file, CsvOptions::default())?;
            let rules = match rules {
                Some(r) => ClassificationRules::from_path(r)?,
                None => ClassificationRules::default(),
            };
            let c = classify(source.as_ref(), &rules, &PiiScanner::new())?;
            if json {
                print_json(&c)?;
            } else {
                print!("{}", c.to_markdown());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
