//! Data you can trust, natively on Arrow.
//!
//! `aistd-governance` reads tables through one trait, [`DataSource`] (CSV, Arrow IPC, Parquet,
//! in memory), profiles them in one streaming pass, checks declarative expectations, cleans them
//! with a quarantine that accounts for every removed row, labels rows, and composes all of it in a
//! streaming [`Pipeline`].
//!
//! ```
//! use aistd_governance::{generate, Pipeline, Expectation, NullAction};
//!
//! // Built-in, seeded, realistic data with known dirt.
//! let data = generate::LoanGenerator::new(generate::GeneratorConfig::default().with_rows(2_000).with_seed(7));
//! let (source, truth) = data.into_source()?;
//!
//! let out = tempfile::tempdir()?;
//! let report = Pipeline::new(source)
//!     .dedup_exact(None)
//!     .on_null("income", NullAction::Drop)
//!     .expect(Expectation::not_null("email").mostly(0.95))
//!     .progress(false)
//!     .run(out.path())?;
//! assert_eq!(report.rows_in, report.rows_out + report.rows_quarantined);
//! assert_eq!(report.duplicates_removed, truth.exact_duplicates);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Implementing `DataSource`
//! Implement [`DataSource::schema`], [`DataSource::scan`] and [`DataSource::descriptor`], honour
//! the trait's Contract, and run every function of the [`conformance`] kit (feature
//! `conformance`) against your source in your tests.

pub mod access;
pub mod audit;
pub mod clean;
mod column;
#[cfg(any(feature = "conformance", test))]
pub mod conformance;
pub mod crypto;
mod error;
pub mod expect;
pub mod format;
pub mod generate;
mod html;
mod keys;
pub mod label;
pub mod lineage;
pub mod pii;
pub mod pipeline;
pub mod profile;
pub mod protect;
pub mod source;

pub use clean::{Imputation, NullAction, OutlierAction, OutlierMethod};
pub use error::{Error, Result};
pub use expect::{Expectation, ExpectationResult, ExpectationSuite, Rule};
pub use format::Format;
pub use label::{Labeler, RuleLabeler};
pub use pipeline::{Pipeline, Report};
pub use profile::{ColumnProfile, Profile};
pub use source::{
    BatchStream, CsvOptions, CsvSource, DataSource, DataSourceExt, Descriptor, IpcFileSource,
    IpcStreamSource, MemorySource, ParquetSource, ScanOptions, open_path, write_ipc_file,
};
