//! Compute management for AI jobs.
//!
//! - [`Resources`]: CPU millicores, memory, GPUs in thousandths (fractions pack), custom resources.
//! - [`ResourcePool`]: where jobs run, with a `# Contract` and a conformance kit
//!   (module `conformance`, feature `conformance`). [`SimulatedPool`] runs in virtual time.
//! - [`core::Core`]: the scheduling core — FIFO, priority, shortest-job-first, 2D-LAS, DRF and
//!   weighted fair-share queues; strict, skipping or EASY-backfill head-of-line handling; best-fit
//!   or spread placement with GPU devices shared by fractions and gangs kept on one node, then one
//!   switch; all-or-nothing gangs; quotas; preemption; elastic jobs; start-time estimates;
//!   machine-readable pending reasons; rejection of jobs that can never fit.
//! - [`drf`]: Dominant Resource Fairness; [`fairshare`]: Slurm's classic fair-share factor.
//! - [`health`]: node health from NVIDIA Xid, kernel, `nvidia-smi` and heartbeat signals;
//!   [`core::Core::set_health`] drains unhealthy nodes and requeues their jobs.
//! - [`sim::simulate`]: discrete-event replay of a trace ([`trace`]: Tiresias, Alibaba v2023,
//!   generic) with JCT, waiting, makespan, utilization and fairness.
//!
//! ```
//! use aistd_scheduler::{Blocking, JobSpec, JobState, NodeSpec, QueuePolicy, ResourcePool, Resources, SimulatedPool};
//!
//! let nodes = (0..2).map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 128_000, 4))).collect();
//! let pool = SimulatedPool::new("sim", nodes, QueuePolicy::Fifo, Blocking::Strict)?;
//! let job = pool.submit(JobSpec::new("train", 2, Resources::new(8, 32_000, 4)).duration(3600.0))?;
//! assert_eq!(pool.status(job)?.state, JobState::Running);   // a gang over both nodes
//! pool.run_until_idle()?;
//! assert_eq!(pool.status(job)?.finished, Some(3600.0));
//! # Ok::<(), aistd_scheduler::Error>(())
//! ```
//!
//! - [`LocalPool`] runs real work on this machine; [`SlurmPool`] drives a Slurm cluster.
//! - [`tenants`]: weights, guarantees and limits in a hierarchy for the DRF and fair-share
//!   policies; [`accounting`]: utilization, cost and energy; [`autoscale`]: nodes to add and to
//!   power off.
//!
//! Not built yet (issue #5): a scheduler daemon serving pools over the network, and placement
//! that uses a topology deeper than node and switch.

pub mod accounting;
pub mod autoscale;
pub mod core;
pub mod drf;
mod error;
pub mod fairshare;
pub mod health;
pub mod local;
mod model;
mod pool;
pub mod resources;
pub mod sim;
pub mod slurm;
pub mod tenants;
pub mod trace;

#[cfg(any(feature = "conformance", test))]
pub mod conformance;

pub use crate::core::{Blocking, QueuePolicy};
pub use error::{Error, Result};
pub use local::LocalPool;
pub use model::{Event, JobId, JobSpec, JobState, JobStatus, NodeSpec, NodeStatus, PendingReason};
pub use pool::ResourcePool;
pub use resources::Resources;
pub use sim::SimulatedPool;
pub use slurm::SlurmPool;
