//! Compliance for AI systems whose numbers agree with the reference tools.
//!
//! - [`privacy`]: Rényi-DP accounting of the Poisson-subsampled Gaussian mechanism (DP-SGD),
//!   exactly as Opacus computes it (and as `dp-accounting` does on integer orders), conversion to
//!   (ε, δ), noise calibration, basic and advanced composition, classic and analytic Gaussian
//!   calibration.
//! - [`fairness`]: fairlearn's group metrics (selection rate, TPR, FPR, accuracy) with sample
//!   weights and intersectional groups, demographic parity and equalized odds differences and
//!   ratios.
//!
//! ```
//! use aistd_compliance::privacy::{epsilon, opacus_orders};
//!
//! // Opacus: q = 0.04, σ = 1.5, 2250 steps, δ = 1e-5.
//! let (eps, _order) = epsilon(0.04, 1.5, 2250, 1e-5, &opacus_orders())?;
//! assert!((eps - 7.32911117143).abs() < 1e-9);
//! # Ok::<(), aistd_compliance::Error>(())
//! ```
//!
//! - [`dp`]: noise mechanisms sampled exactly on integers (no floating-point leaks), DP aggregates
//!   over Arrow columns, and a privacy-budget ledger.
//! - [`fairness::stream`] counts groups over Arrow batches; [`fairness::mitigation`] reweighs and
//!   optimizes thresholds as fairlearn does.
//! - [`policy`]: the [`Policy`] trait; [`cedar`]: its Cedar implementation with built-in packs.
//! - [`report`]: the compliance report, mapped to the obligations it serves.

pub mod cedar;
pub mod dp;
mod error;
pub mod fairness;
pub mod policy;
pub mod privacy;
pub mod report;

pub use cedar::CedarPolicy;
pub use error::{Error, Result};
pub use policy::{Decision, Effect, Policy, Request};
