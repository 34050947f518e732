//! # aistd
//!
//! Standard, composable interfaces for AI infrastructure, with production-grade default
//! implementations. This facade re-exports the member crates behind features named after them:
//!
//! | feature | crate | centre |
//! |---|---|---|
//! | `governance` (default) | [`aistd-governance`](governance) | [`DataSource`](governance::DataSource): sources, profiling, expectations, cleaning, protection, audit, lineage |
//! | `compliance` (default) | [`aistd-compliance`](compliance) | [`Policy`](compliance::Policy) with Cedar, differential privacy, fairness, the compliance report |
//! | `scheduler` (default) | [`aistd-scheduler`](scheduler) | [`ResourcePool`](scheduler::ResourcePool): local, simulated and Slurm pools, the scheduling core, trace simulation, accounting |
//! | `training` (default) | [`aistd-training`](training) | [`Trainer`](training::Trainer) and [`Model`](training::Model): MLPs on ndarray + rayon, optimizers, metrics |
//! | `deploy` (default) | [`aistd-deploy`](deploy) | [`Endpoint`](deploy::Endpoint): model bundles (SHA-256 manifests, Ed25519 signatures, archives), the registry, runtimes serving bundles (middleware and the HTTP server follow; see the README's status table) |
//!
//! ```
//! # #[cfg(feature = "governance")] {
//! use aistd::governance::{generate, Pipeline, Expectation};
//! let (source, truth) = generate::LoanGenerator::new(generate::GeneratorConfig::default().with_rows(1_000))
//!     .into_source()?;
//! let (_clean, _quarantine, report) = Pipeline::new(source)
//!     .dedup_exact(None)
//!     .expect(Expectation::not_null("name"))
//!     .progress(false)
//!     .run_in_memory()?;
//! assert_eq!(report.duplicates_removed, truth.exact_duplicates);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "compliance")]
pub use aistd_compliance as compliance;
#[cfg(all(feature = "training", feature = "deploy"))]
pub mod bundling;
#[cfg(all(feature = "compliance", feature = "governance"))]
pub mod glue;
#[cfg(feature = "deploy")]
pub use aistd_deploy as deploy;
#[cfg(feature = "governance")]
pub use aistd_governance as governance;
#[cfg(feature = "scheduler")]
pub use aistd_scheduler as scheduler;
#[cfg(feature = "training")]
pub use aistd_training as training;
