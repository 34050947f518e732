//! An autoscaler that recommends nodes to add (queue pressure) and nodes to power off (idle
//! timeout), from periodic observations of a [`Core`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::model::{JobId, JobState, NodeSpec, PendingReason};
use crate::resources::Resources;

/// When to scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AutoscalePolicy {
    /// Seconds a node must be idle before it is recommended for power-off.
    pub idle_timeout: f64,
    /// Seconds a job must wait for resources before nodes are recommended for it.
    pub pending_timeout: f64,
    /// Nodes that stay on whatever happens.
    pub min_nodes: usize,
    /// The most nodes the cluster may have on.
    pub max_nodes: usize,
    /// The shape of a node to add.
    pub template: NodeSpec,
}

impl AutoscalePolicy {
    /// Nodes like `template`, 10 minutes idle before power-off, 5 minutes of waiting before
    /// adding, between `min_nodes` and `max_nodes`.
    pub fn new(template: NodeSpec, min_nodes: usize, max_nodes: usize) -> Self {
        Self {
            idle_timeout: 600.0,
            pending_timeout: 300.0,
            min_nodes,
            max_nodes,
            template,
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// Nodes like the template to add.
    pub add: u32,
    /// Nodes to power off, longest idle first.
    pub power_off: Vec<String>,
    /// Why, in words.
    pub reasons: Vec<String>,
}

/// Remembers since when nodes are idle and jobs wait, between observations.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: AutoscalePolicy,
    idle_since: HashMap<String, f64>,
    waiting_since: HashMap<JobId, f64>,
}

impl Autoscaler {
    /// An autoscaler with `policy`.
    pub fn new(policy: AutoscalePolicy) -> Result<Self> {
        if !(policy.idle_timeout >= 0.0 && policy.pending_timeout >= 0.0)
            || policy.min_nodes > policy.max_nodes
            || policy.template.capacity.is_zero()
        {
            return Err(Error::invalid(
                "autoscale policy",
                "timeouts must be ≥ 0, min_nodes ≤ max_nodes, and the template must have capacity",
            ));
        }
        Ok(Self {
            policy,
            idle_since: HashMap::new(),
            waiting_since: HashMap::new(),
        })
    }

    /// Looks at `core` at `now` (call it periodically, with non-decreasing times).
    pub fn observe(&mut self, core: &Core, now: f64) -> Result<Recommendation> {
        let nodes = core.nodes();
        let mut rec = Recommendation::default();
        // Jobs waiting for resources (not for a quota or behind others that will start).
        let mut starved: Vec<(JobId, u32, Resources)> = Vec::new();
        let pending = core.pending_ids();
        self.waiting_since.retain(|id, _| pending.contains(id));
        for id in pending {
            let st = core.status(id)?;
            if st.state != JobState::Pending {
                continue;
            }
            let for_resources = matches!(
                st.reason,
                Some(PendingReason::Insufficient { .. } | PendingReason::GangNotFittable { .. })
            );
            if !for_resources {
                self.waiting_since.remove(&id);
                continue;
            }
            let since = *self.waiting_since.entry(id).or_insert(now);
            if now - since >= self.policy.pending_timeout {
                let spec = core.spec(id)?;
                starved.push((id, spec.tasks, spec.per_task.clone()));
            }
        }
        if !starved.is_empty() {
            // First fit of the starved jobs' tasks into fresh template nodes.
            let cap = &self.policy.template.capacity;
            let mut bins: Vec<Resources> = Vec::new();
            let mut unfit = 0;
            for (_, tasks, per) in &starved {
                if !per.fits_in(cap) {
                    unfit += 1;
                    continue;
                }
                for _ in 0..*tasks {
                    match bins.iter_mut().find(|b| per.fits_in(b)) {
                        Some(b) => *b = b.minus(per).unwrap_or_default(),
                        None => bins.push(cap.minus(per).unwrap_or_default()),
                    }
                }
            }
            let room = self.policy.max_nodes.saturating_sub(nodes.len());
            rec.add = bins.len().min(room) as u32;
            rec.reasons.push(format!(
                "{} job(s) waited ≥ {:.0} s for resources: {} node(s) like {} hold them{}{}",
                starved.len(),
                self.policy.pending_timeout,
                bins.len(),
                self.policy.template.name,
                if bins.len() > room {
                    format!(", capped at {room} by max_nodes")
                } else {
                    String::new()
                },
                if unfit > 0 {
                    format!("; {unfit} do not fit the template")
                } else {
                    String::new()
                }
            ));
        }
        // Idle nodes.
        let mut idle: Vec<(f64, String)> = Vec::new();
        for n in &nodes {
            if n.free == n.spec.capacity {
                let since = *self.idle_since.entry(n.spec.name.clone()).or_insert(now);
                if now - since >= self.policy.idle_timeout {
                    idle.push((since, n.spec.name.clone()));
                }
            } else {
                self.idle_since.remove(&n.spec.name);
            }
        }
        if starved.is_empty() && !idle.is_empty() {
            idle.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let spare = nodes.len().saturating_sub(self.policy.min_nodes);
            rec.power_off = idle.into_iter().take(spare).map(|(_, n)| n).collect();
            if !rec.power_off.is_empty() {
                rec.reasons.push(format!(
                    "{} node(s) idle ≥ {:.0} s (keeping {} on)",
                    rec.power_off.len(),
                    self.policy.idle_timeout,
                    self.policy.min_nodes
                ));
            }
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Blocking, QueuePolicy};
    use crate::model::JobSpec;

    fn cluster(n: usize) -> Vec<NodeSpec> {
        (0..n)
            .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 256_000, 8)))
            .collect()
    }

    fn policy() -> AutoscalePolicy {
        AutoscalePolicy::new(NodeSpec::new("8gpu", Resources::new(32, 256_000, 8)), 1, 6)
    }

    #[test]
    fn idle_nodes_go_off_after_the_timeout_keeping_the_minimum() {
        let mut core = Core::new(cluster(3), QueuePolicy::Fifo, Blocking::Strict).expect("core");
        let busy = core
            .submit(JobSpec::new("busy", 1, Resources::new(1, 1000, 8)), 0.0)
            .expect("busy");
        core.schedule(0.0);
        let mut a = Autoscaler::new(policy()).expect("autoscaler");
        assert_eq!(
            a.observe(&core, 0.0).expect("obs").power_off,
            Vec::<String>::new()
        );
        assert!(a.observe(&core, 599.0).expect("obs").power_off.is_empty());
        let rec = a.observe(&core, 600.0).expect("obs");
        assert_eq!(rec.power_off, vec!["n1", "n2"], "{rec:?}");
        // When the busy node frees too, min_nodes = 1 keeps one of the three on.
        core.end(busy, JobState::Completed, 700.0).expect("end");
        assert_eq!(a.observe(&core, 1300.0).expect("obs").power_off.len(), 2);
    }

    #[test]
    fn waiting_gangs_ask_for_nodes_and_stop_power_off() {
        let mut core = Core::new(cluster(2), QueuePolicy::Fifo, Blocking::Strict).expect("core");
        let hog = core
            .submit(JobSpec::new("hog", 2, Resources::new(1, 1000, 8)), 0.0)
            .expect("hog");
        core.schedule(0.0);
        // Two gangs of 2 × 8 GPUs and one 4-GPU job wait.
        for k in 0..2 {
            core.submit(
                JobSpec::new(format!("g{k}"), 2, Resources::new(1, 1000, 8)),
                1.0,
            )
            .expect("gang");
        }
        core.submit(JobSpec::new("small", 1, Resources::new(1, 1000, 4)), 1.0)
            .expect("small");
        core.schedule(1.0);
        let mut a = Autoscaler::new(policy()).expect("autoscaler");
        assert_eq!(
            a.observe(&core, 1.0).expect("obs").add,
            0,
            "not waited long enough"
        );
        let rec = a.observe(&core, 301.0).expect("obs");
        // 4 nodes for the gangs, and the 4-GPU job needs a fifth; max_nodes 6 leaves room for 4.
        assert_eq!(rec.add, 4, "{rec:?}");
        assert!(rec.reasons[0].contains("capped at 4"), "{rec:?}");
        assert!(rec.power_off.is_empty());
        core.end(hog, JobState::Completed, 302.0).expect("end");
        assert!(
            Autoscaler::new(AutoscalePolicy::new(
                NodeSpec::new("x", Resources::zero()),
                0,
                1
            ))
            .is_err()
        );
    }
}
