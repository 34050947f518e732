//! Dominant Resource Fairness (Ghodsi et al., NSDI 2011): progressive filling that repeatedly
//! gives one task to the user with the smallest dominant share whose next task still fits.
//!
//! ```
//! use aistd_scheduler::{Resources, drf::allocate};
//!
//! // The paper's example: 9 CPUs, 18 GB; A's tasks ⟨1 CPU, 4 GB⟩, B's ⟨3 CPUs, 1 GB⟩.
//! let total = Resources::parse("cpu=9,mem=18")?;
//! let a = allocate(&total, &[("A".into(), Resources::parse("cpu=1,mem=4")?), ("B".into(), Resources::parse("cpu=3,mem=1")?)])?;
//! assert_eq!((a[0].tasks, a[1].tasks), (3, 2));
//! # Ok::<(), aistd_scheduler::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resources::Resources;

/// What one user receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Allocation {
    /// The user.
    pub user: String,
    /// Tasks granted.
    pub tasks: u64,
    /// Resources granted.
    pub allocated: Resources,
    /// The largest share of any resource they hold.
    pub dominant_share: f64,
}

/// DRF over `total` for users with per-task `demands` (each user wants as many tasks as fit).
/// Ties go to the user listed first.
pub fn allocate(total: &Resources, demands: &[(String, Resources)]) -> Result<Vec<Allocation>> {
    if let Some((u, _)) = demands.iter().find(|(_, d)| d.is_zero()) {
        return Err(Error::invalid(
            format!("demand of {u}"),
            "a task must need some resource",
        ));
    }
    let mut out: Vec<Allocation> = demands
        .iter()
        .map(|(u, _)| Allocation {
            user: u.clone(),
            tasks: 0,
            allocated: Resources::zero(),
            dominant_share: 0.0,
        })
        .collect();
    let mut free = total.clone();
    let mut blocked = vec![false; demands.len()];
    loop {
        let next = (0..demands.len()).filter(|i| !blocked[*i]).min_by(|a, b| {
            out[*a]
                .dominant_share
                .total_cmp(&out[*b].dominant_share)
                .then(a.cmp(b))
        });
        let Some(i) = next else { break };
        match free.minus(&demands[i].1) {
            Some(rest) => {
                free = rest;
                let a = &mut out[i];
                a.tasks += 1;
                a.allocated = a.allocated.plus(&demands[i].1);
                a.dominant_share = a.allocated.dominant_share(total);
            }
            None => blocked[i] = true,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_example() {
        let total = Resources::parse("cpu=9,mem=18").expect("total");
        let a = allocate(
            &total,
            &[
                ("A".into(), Resources::parse("cpu=1,mem=4").expect("a")),
                ("B".into(), Resources::parse("cpu=3,mem=1").expect("b")),
            ],
        )
        .expect("drf");
        assert_eq!((a[0].tasks, a[1].tasks), (3, 2));
        assert!((a[0].dominant_share - 2.0 / 3.0).abs() < 1e-12);
        assert!((a[1].dominant_share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(a[0].allocated, Resources::parse("cpu=3,mem=12").expect("r"));
        assert!(allocate(&total, &[("z".into(), Resources::zero())]).is_err());
    }
}
