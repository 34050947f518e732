//! A privacy-budget ledger: budgets per dataset and per (principal, dataset), spending by basic
//! composition (ε and δ add up), refusal of any query that would go over, and every charge and
//! refusal written to a [`SpendSink`] before the answer is given.
//!
//! The ledger's state is the sum of its accepted entries, so replaying the entries a sink kept
//! ([`PrivacyLedger::restore`]) rebuilds it after a restart: with a durable sink (the root
//! package wires the governance audit log) spending survives a crash.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An (ε, δ) amount.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Budget {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

impl Budget {
    /// (ε, δ); both must be finite and ≥ 0, δ < 1.
    pub fn new(epsilon: f64, delta: f64) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(Error::range(
                "epsilon",
                epsilon,
                "must be a finite number ≥ 0",
            ));
        }
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(Error::range("delta", delta, "must be in [0, 1)"));
        }
        Ok(Self { epsilon, delta })
    }

    fn plus(self, o: Budget) -> Budget {
        Budget {
            epsilon: self.epsilon + o.epsilon,
            delta: self.delta + o.delta,
        }
    }

    fn covers(self, spent: Budget) -> bool {
        // A relative slack of 1e-12 so that ten charges of 0.1 fit a budget of 1.0.
        spent.epsilon <= self.epsilon * (1.0 + 1e-12) && spent.delta <= self.delta * (1.0 + 1e-12)
    }
}

/// One ledger line: a charge that was accepted, or one that was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SpendEntry {
    /// Who asked.
    pub principal: String,
    /// Which dataset.
    pub dataset: String,
    /// What the query was (free text: `"dp mean income"`).
    pub query: String,
    /// The cost asked for.
    pub cost: Budget,
    /// Whether it was accepted.
    pub accepted: bool,
    /// The dataset's total spent after this entry.
    pub dataset_spent: Budget,
    /// The principal's spent on this dataset after this entry.
    pub principal_spent: Budget,
    /// Why it was refused (empty if accepted).
    pub reason: String,
}

/// Where ledger entries go. A charge counts only once its entry is recorded: if `record` fails,
/// the query is refused.
pub trait SpendSink: Send + Sync + std::fmt::Debug {
    /// Records one entry.
    fn record(&self, entry: &SpendEntry) -> std::result::Result<(), String>;
}

/// A sink that keeps entries in memory.
#[derive(Debug, Default)]
pub struct MemorySpendSink {
    entries: Mutex<Vec<SpendEntry>>,
}

impl MemorySpendSink {
    /// The entries so far.
    pub fn entries(&self) -> Vec<SpendEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl SpendSink for MemorySpendSink {
    fn record(&self, entry: &SpendEntry) -> std::result::Result<(), String> {
        self.entries
            .lock()
            .map_err(|_| "ledger sink lock poisoned".to_string())?
            .push(entry.clone());
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    dataset_budget: BTreeMap<String, Budget>,
    principal_budget: BTreeMap<(String, String), Budget>,
    default_principal_budget: Option<Budget>,
    dataset_spent: BTreeMap<String, Budget>,
    principal_spent: BTreeMap<(String, String), Budget>,
}

/// The ledger. Thread-safe; share it with an `Arc`.
#[derive(Debug, Default)]
pub struct PrivacyLedger {
    state: Mutex<State>,
    sink: Option<Arc<dyn SpendSink>>,
}

impl PrivacyLedger {
    /// An empty ledger: no dataset may be queried until it has a budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes every entry to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn SpendSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::InvalidInput {
            what: "privacy ledger".into(),
            reason: "lock poisoned by a panic in another thread".into(),
        })
    }

    /// The total budget of `dataset`, across all principals.
    pub fn set_dataset_budget(&self, dataset: &str, budget: Budget) -> Result<()> {
        self.lock()?.dataset_budget.insert(dataset.into(), budget);
        Ok(())
    }

    /// The budget of `principal` on `dataset` (within the dataset's).
    pub fn set_principal_budget(
        &self,
        principal: &str,
        dataset: &str,
        budget: Budget,
    ) -> Result<()> {
        self.lock()?
            .principal_budget
            .insert((principal.into(), dataset.into()), budget);
        Ok(())
    }

    /// The budget of every principal without one of their own.
    pub fn set_default_principal_budget(&self, budget: Budget) -> Result<()> {
        self.lock()?.default_principal_budget = Some(budget);
        Ok(())
    }

    /// What has been spent on `dataset` (all principals) and by `principal` on it.
    pub fn spent(&self, principal: &str, dataset: &str) -> Result<(Budget, Budget)> {
        let s = self.lock()?;
        Ok((
            s.dataset_spent.get(dataset).copied().unwrap_or_default(),
            s.principal_spent
                .get(&(principal.into(), dataset.into()))
                .copied()
                .unwrap_or_default(),
        ))
    }

    /// What is left for `principal` on `dataset`: the smaller of the dataset's and the
    /// principal's remainders (`None` if the dataset has no budget).
    pub fn remaining(&self, principal: &str, dataset: &str) -> Result<Option<Budget>> {
        let s = self.lock()?;
        let Some(db) = s.dataset_budget.get(dataset).copied() else {
            return Ok(None);
        };
        let ds = s.dataset_spent.get(dataset).copied().unwrap_or_default();
        let key = (principal.to_string(), dataset.to_string());
        let mut left = Budget {
            epsilon: (db.epsilon - ds.epsilon).max(0.0),
            delta: (db.delta - ds.delta).max(0.0),
        };
        if let Some(pb) = s
            .principal_budget
            .get(&key)
            .copied()
            .or(s.default_principal_budget)
        {
            let ps = s.principal_spent.get(&key).copied().unwrap_or_default();
            left.epsilon = left.epsilon.min((pb.epsilon - ps.epsilon).max(0.0));
            left.delta = left.delta.min((pb.delta - ps.delta).max(0.0));
        }
        Ok(Some(left))
    }

    /// Charges `cost` to `principal` on `dataset` for `query`, or refuses with
    /// [`Error::BudgetExceeded`]. Either way the entry goes to the sink first; a sink failure
    /// refuses the charge.
    pub fn charge(
        &self,
        principal: &str,
        dataset: &str,
        query: &str,
        cost: Budget,
    ) -> Result<SpendEntry> {
        let cost = Budget::new(cost.epsilon, cost.delta)?;
        let mut s = self.lock()?;
        let key = (principal.to_string(), dataset.to_string());
        let ds = s.dataset_spent.get(dataset).copied().unwrap_or_default();
        let ps = s.principal_spent.get(&key).copied().unwrap_or_default();
        let refusal = match s.dataset_budget.get(dataset) {
            None => Some(format!("dataset {dataset:?} has no privacy budget")),
            Some(db) if !db.covers(ds.plus(cost)) => Some(format!(
                "dataset {dataset:?}: spent ε = {}, δ = {} of ε = {}, δ = {}; this query asks ε = {}, δ = {}",
                ds.epsilon, ds.delta, db.epsilon, db.delta, cost.epsilon, cost.delta
            )),
            Some(_) => match s
                .principal_budget
                .get(&key)
                .copied()
                .or(s.default_principal_budget)
            {
                Some(pb) if !pb.covers(ps.plus(cost)) => Some(format!(
                    "{principal} on {dataset:?}: spent ε = {}, δ = {} of ε = {}, δ = {}; this query asks ε = {}, δ = {}",
                    ps.epsilon, ps.delta, pb.epsilon, pb.delta, cost.epsilon, cost.delta
                )),
                _ => None,
            },
        };
        let accepted = refusal.is_none();
        let (nds, nps) = if accepted {
            (ds.plus(cost), ps.plus(cost))
        } else {
            (ds, ps)
        };
        let entry = SpendEntry {
            principal: principal.into(),
            dataset: dataset.into(),
            query: query.into(),
            cost,
            accepted,
            dataset_spent: nds,
            principal_spent: nps,
            reason: refusal.clone().unwrap_or_default(),
        };
        if let Some(sink) = &self.sink {
            sink.record(&entry).map_err(|e| Error::InvalidInput {
                what: "privacy ledger sink".into(),
                reason: format!("could not record the charge, so it is refused: {e}"),
            })?;
        }
        if let Some(reason) = refusal {
            return Err(Error::BudgetExceeded {
                principal: principal.into(),
                dataset: dataset.into(),
                reason,
            });
        }
        s.dataset_spent.insert(dataset.into(), nds);
        s.principal_spent.insert(key, nps);
        Ok(entry)
    }

    /// Re-applies accepted entries (from a sink's durable record) to the spent totals. Budgets
    /// are configuration and are set separately.
    pub fn restore<'a>(&self, entries: impl IntoIterator<Item = &'a SpendEntry>) -> Result<usize> {
        let mut s = self.lock()?;
        let mut n = 0;
        for e in entries.into_iter().filter(|e| e.accepted) {
            let d = s.dataset_spent.entry(e.dataset.clone()).or_default();
            *d = d.plus(e.cost);
            let p = s
                .principal_spent
                .entry((e.principal.clone(), e.dataset.clone()))
                .or_default();
            *p = p.plus(e.cost);
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(e: f64, d: f64) -> Budget {
        Budget::new(e, d).expect("budget")
    }

    #[test]
    fn refuses_over_budget_and_records_everything() {
        let sink = Arc::new(MemorySpendSink::default());
        let l = PrivacyLedger::new().with_sink(sink.clone());
        l.set_dataset_budget("loans", b(1.0, 1e-6)).expect("set");
        l.set_default_principal_budget(b(0.6, 1e-6)).expect("set");
        for _ in 0..6 {
            l.charge("ana", "loans", "dp count", b(0.1, 0.0))
                .expect("fits");
        }
        let e = l
            .charge("ana", "loans", "dp count", b(0.1, 0.0))
            .expect_err("over");
        assert!(matches!(e, Error::BudgetExceeded { .. }), "{e}");
        assert!(e.to_string().contains("ana"), "{e}");
        // Bob still has his own 0.6, but the dataset has only 0.4 left.
        l.charge("bob", "loans", "dp sum", b(0.4, 1e-7))
            .expect("fits");
        let e = l
            .charge("bob", "loans", "dp sum", b(0.01, 0.0))
            .expect_err("dataset full");
        assert!(e.to_string().contains("dataset"), "{e}");
        assert!(l.charge("bob", "other", "q", b(0.01, 0.0)).is_err());
        let (ds, ps) = l.spent("bob", "loans").expect("spent");
        assert!((ds.epsilon - 1.0).abs() < 1e-12 && (ps.epsilon - 0.4).abs() < 1e-12);
        let entries = sink.entries();
        assert_eq!(entries.len(), 10);
        assert_eq!(entries.iter().filter(|e| e.accepted).count(), 7);
        assert_eq!(
            l.remaining("ana", "loans")
                .expect("r")
                .expect("some")
                .epsilon,
            0.0
        );

        // A fresh ledger restored from the sink's entries has the same spending.
        let again = PrivacyLedger::new();
        again
            .set_dataset_budget("loans", b(1.0, 1e-6))
            .expect("set");
        assert_eq!(again.restore(&entries).expect("restore"), 7);
        assert_eq!(again.spent("bob", "loans").expect("s"), (ds, ps));
        assert!(again.charge("carl", "loans", "q", b(0.01, 0.0)).is_err());
    }

    #[derive(Debug)]
    struct Broken;
    impl SpendSink for Broken {
        fn record(&self, _: &SpendEntry) -> std::result::Result<(), String> {
            Err("disk full".into())
        }
    }

    #[test]
    fn a_failing_sink_refuses_the_charge() {
        let l = PrivacyLedger::new().with_sink(Arc::new(Broken));
        l.set_dataset_budget("d", b(1.0, 0.0)).expect("set");
        let e = l.charge("p", "d", "q", b(0.1, 0.0)).expect_err("refused");
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(l.spent("p", "d").expect("s").0, Budget::default());
        assert!(Budget::new(-1.0, 0.0).is_err() && Budget::new(1.0, 1.0).is_err());
    }
}
