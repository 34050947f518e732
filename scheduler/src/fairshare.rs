//! Slurm's classic fair-share factor (`PriorityFlags=NO_FAIR_TREE`): normalized shares down the
//! account tree, effective usage top-down, and `F = 2^(−U_E / S)`.
//!
//! ```
//! use aistd_scheduler::fairshare::ShareTree;
//!
//! // Slurm's documented example (classic_fair_share.shtml).
//! let mut t = ShareTree::new();
//! t.account("A", "root", 40.0)?.account("D", "root", 60.0)?;
//! t.account("B", "A", 30.0)?.account("C", "A", 10.0)?;
//! t.account("E", "D", 25.0)?.account("F", "D", 35.0)?;
//! t.user("user1", "B", 1.0, 0.2)?.user("user2", "C", 1.0, 0.25)?.user("user3", "C", 1.0, 0.0)?;
//! t.user("user4", "E", 1.0, 0.25)?.user("user5", "F", 1.0, 0.0)?;
//! let f = t.factors()?;
//! assert!((f["user1"].factor - 0.408479).abs() < 1e-6);
//! # Ok::<(), aistd_scheduler::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Assoc {
    shares: f64,
    /// Normalized usage of a user (U = U_H / R_H); accounts sum their children.
    usage: f64,
    user: bool,
    children: Vec<usize>,
}

/// The account and user tree with raw shares and normalized usage.
#[derive(Debug, Clone)]
pub struct ShareTree {
    names: Vec<String>,
    nodes: Vec<Assoc>,
}

impl Default for ShareTree {
    fn default() -> Self {
        Self::new()
    }
}

/// One association's figures, as `sshare -l` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FairShare {
    /// Normalized shares S.
    pub normalized_shares: f64,
    /// Normalized usage U (for accounts, the sum over their users).
    pub usage: f64,
    /// Effective usage U_E.
    pub effective_usage: f64,
    /// `2^(−U_E / S)` (users only; accounts get the same formula for reference).
    pub factor: f64,
}

impl ShareTree {
    /// A tree with only `root`.
    pub fn new() -> Self {
        Self {
            names: vec!["root".into()],
            nodes: vec![Assoc {
                shares: 1.0,
                usage: 0.0,
                user: false,
                children: Vec::new(),
            }],
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn add(
        &mut self,
        name: &str,
        parent: &str,
        shares: f64,
        usage: f64,
        user: bool,
    ) -> Result<&mut Self> {
        if self.index(name).is_some() {
            return Err(Error::invalid(
                format!("association {name:?}"),
                "already exists",
            ));
        }
        let p = self.index(parent).ok_or_else(|| {
            Error::invalid(
                format!("association {name:?}"),
                format!("parent {parent:?} does not exist"),
            )
        })?;
        if self.nodes[p].user {
            return Err(Error::invalid(
                format!("association {name:?}"),
                format!("parent {parent:?} is a user"),
            ));
        }
        if !(shares.is_finite() && shares > 0.0) {
            return Err(Error::invalid(format!("shares of {name:?}"), "must be > 0"));
        }
        if !(usage.is_finite() && usage >= 0.0) {
            return Err(Error::invalid(format!("usage of {name:?}"), "must be ≥ 0"));
        }
        self.names.push(name.to_string());
        self.nodes.push(Assoc {
            shares,
            usage,
            user,
            children: Vec::new(),
        });
        let i = self.nodes.len() - 1;
        self.nodes[p].children.push(i);
        Ok(self)
    }

    /// An account under `parent` (`"root"` at the top) with raw `shares`.
    pub fn account(&mut self, name: &str, parent: &str, shares: f64) -> Result<&mut Self> {
        self.add(name, parent, shares, 0.0, false)
    }

    /// A user of `account` with raw `shares` and normalized usage (its share of the cluster's
    /// decayed usage, 0–1).
    pub fn user(
        &mut self,
        name: &str,
        account: &str,
        shares: f64,
        usage: f64,
    ) -> Result<&mut Self> {
        self.add(name, account, shares, usage, true)
    }

    fn total_usage(&self, i: usize) -> f64 {
        let n = &self.nodes[i];
        if n.user {
            n.usage
        } else {
            n.children.iter().map(|c| self.total_usage(*c)).sum()
        }
    }

    /// Every association's normalized shares, effective usage and factor.
    pub fn factors(&self) -> Result<BTreeMap<String, FairShare>> {
        let mut out = BTreeMap::new();
        // Top-down: (node, its normalized shares, its effective usage).
        let mut stack: Vec<(usize, f64, f64)> = Vec::new();
        for c in &self.nodes[0].children {
            // First-tier accounts: effective usage is their actual usage.
            let siblings: f64 = self.nodes[0]
                .children
                .iter()
                .map(|s| self.nodes[*s].shares)
                .sum();
            let s = self.nodes[*c].shares / siblings;
            stack.push((*c, s, self.total_usage(*c)));
        }
        while let Some((i, s, ue)) = stack.pop() {
            let u = self.total_usage(i);
            out.insert(
                self.names[i].clone(),
                FairShare {
                    normalized_shares: s,
                    usage: u,
                    effective_usage: ue,
                    factor: 2f64.powf(-ue / s),
                },
            );
            let kids = &self.nodes[i].children;
            let all: f64 = kids.iter().map(|k| self.nodes[*k].shares).sum();
            for k in kids {
                let frac = self.nodes[*k].shares / all;
                let uk = self.total_usage(*k);
                stack.push((*k, s * frac, uk + (ue - uk) * frac));
            }
        }
        if out.is_empty() {
            return Err(Error::invalid("share tree", "has no associations"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slurm's classic_fair_share.shtml example, every intermediate value it lists.
    /// The account tree of Slurm's example: A 40, D 60 under root; B 30, C 10 under A; E 25,
    /// F 35 under D.
    fn documented_accounts() -> ShareTree {
        let mut t = ShareTree::new();
        for (name, parent, shares) in [
            ("A", "root", 40.0),
            ("D", "root", 60.0),
            ("B", "A", 30.0),
            ("C", "A", 10.0),
            ("E", "D", 25.0),
            ("F", "D", 35.0),
        ] {
            t.account(name, parent, shares).expect("account");
        }
        t
    }

    #[test]
    fn slurm_documented_example() {
        let mut t = documented_accounts();
        t.user("user1", "B", 1.0, 0.2).expect("u");
        t.user("user2", "C", 1.0, 0.25).expect("u");
        t.user("user3", "C", 1.0, 0.0).expect("u");
        t.user("user4", "E", 1.0, 0.25).expect("u");
        t.user("user5", "F", 1.0, 0.0).expect("u");
        let f = t.factors().expect("factors");
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() < tol;
        for (name, s, ue, factor) in [
            ("user1", 0.3, 0.3875, 0.408479),
            ("user2", 0.05, 0.275, 0.022097),
            ("user3", 0.05, 0.15, 0.125),
            ("user4", 0.25, 0.25, 0.5),
            ("user5", 0.35, 0.25 * 35.0 / 60.0, 0.749154),
        ] {
            let g = f[name];
            assert!(close(g.normalized_shares, s, 1e-12), "{name} S {g:?}");
            assert!(close(g.effective_usage, ue, 1e-12), "{name} UE {g:?}");
            assert!(close(g.factor, factor, 5e-7), "{name} F {g:?}");
        }
        for (acct, ue) in [
            ("A", 0.45),
            ("D", 0.25),
            ("B", 0.3875),
            ("C", 0.3),
            ("E", 0.25),
        ] {
            assert!(close(f[acct].effective_usage, ue, 1e-12), "{acct}");
        }
        // The page: with 4 shares instead of 1, user2's normalized share would be .08.
        let mut t2 = documented_accounts();
        t2.user("user2", "C", 4.0, 0.0)
            .expect("u")
            .user("user3", "C", 1.0, 0.0)
            .expect("u");
        assert!(close(
            t2.factors().expect("f")["user2"].normalized_shares,
            0.08,
            1e-12
        ));
        assert!(t.user("x", "nope", 1.0, 0.0).is_err());
        assert!(t.user("y", "user1", 1.0, 0.0).is_err());
        assert!(t.account("A", "root", 1.0).is_err());
        assert!(t.account("Z", "root", 0.0).is_err());
    }
}
