//! Differential privacy in practice: noise mechanisms sampled exactly, private aggregates over
//! Arrow columns, and a budget ledger. (The DP-SGD accountant is in [`crate::privacy`].)
//!
//! ```
//! use std::sync::Arc;
//! use aistd_compliance::dp::{aggregate, rng::Csprng, ledger::{Budget, PrivacyLedger}};
//! use arrow_array::{ArrayRef, Float64Array};
//!
//! let incomes: ArrayRef = Arc::new(Float64Array::from(vec![31_000.0, 52_000.0, 47_500.0, 88_000.0]));
//! let ledger = PrivacyLedger::new();
//! ledger.set_dataset_budget("loans", Budget::new(1.0, 0.0)?)?;
//! ledger.charge("ana", "loans", "mean income", Budget::new(0.5, 0.0)?)?;
//! let mut rng = Csprng::from_os()?;
//! let mean = aggregate::mean(&incomes, 0.0, 200_000.0, 0.5, &mut rng)?;
//! assert!(mean.value >= 0.0 && mean.value <= 200_000.0);
//! # Ok::<(), aistd_compliance::Error>(())
//! ```

pub mod aggregate;
pub(crate) mod exact;
pub mod ledger;
pub mod mechanism;
pub mod rng;
