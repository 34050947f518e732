//! The router: one model name served by several endpoints (versions) with weighted canaries,
//! sticky routing by a request key, shadow (mirrored) traffic, and promotion and rollback that
//! fail no request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata, block_on};
use crate::infer::{InferRequest, InferResponse};
use crate::{Error, Result};

#[derive(Debug, Clone)]
struct Route {
    name: String,
    endpoint: Arc<dyn Endpoint>,
    weight: u32,
    /// Smooth weighted round-robin state.
    current: i64,
}

/// What the shadow has seen: requests mirrored, answers that matched the primary's, that
/// differed, that failed, and requests dropped because the shadow was behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowStats {
    /// Requests given to the shadow.
    pub mirrored: u64,
    /// Shadow answers equal to the primary's (outputs compared exactly).
    pub matched: u64,
    /// Shadow answers that differed.
    pub differed: u64,
    /// Shadow failures (the caller never sees them).
    pub failed: u64,
    /// Requests not mirrored because the shadow queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct ShadowCounters {
    mirrored: AtomicU64,
    matched: AtomicU64,
    differed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

type ShadowJob = (InferRequest, Vec<crate::Tensor>);

#[derive(Debug)]
struct Shadow {
    queue: SyncSender<ShadowJob>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// Routes requests for one model among named endpoints.
#[derive(Debug)]
pub struct Router {
    metadata: ModelMetadata,
    sticky_parameter: String,
    routes: Mutex<Vec<Route>>,
    history: Mutex<Vec<Vec<Route>>>,
    served: Mutex<BTreeMap<String, u64>>,
    shadow: Mutex<Option<Shadow>>,
    shadow_counts: Arc<ShadowCounters>,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Router {
    /// A router sending everything to `primary`, named `name`. Requests with the string
    /// parameter `sticky_parameter` (e.g. `"user"`) always go to the same route while the
    /// routes stay the same.
    pub fn new(
        name: impl Into<String>,
        primary: Arc<dyn Endpoint>,
        sticky_parameter: impl Into<String>,
    ) -> Self {
        let metadata = primary.metadata();
        Router {
            metadata,
            sticky_parameter: sticky_parameter.into(),
            routes: Mutex::new(vec![Route {
                name: name.into(),
                endpoint: primary,
                weight: 1,
                current: 0,
            }]),
            history: Mutex::new(Vec::new()),
            served: Mutex::new(BTreeMap::new()),
            shadow: Mutex::new(None),
            shadow_counts: Arc::new(ShadowCounters::default()),
        }
    }

    fn check_compatible(&self, e: &dyn Endpoint) -> Result<()> {
        let m = e.metadata();
        let same = |a: &[crate::TensorSpec], b: &[crate::TensorSpec]| {
            a.len() == b.len()
                && a.iter().all(|s| {
                    b.iter().any(|t| {
                        t.name == s.name
                            && t.datatype == s.datatype
                            && t.shape.len() == s.shape.len()
                    })
                })
        };
        if m.name != self.metadata.name
            || !same(&m.inputs, &self.metadata.inputs)
            || !same(&m.outputs, &self.metadata.outputs)
        {
            return Err(Error::invalid(
                format!("route to {}:{}", m.name, m.versions.join(",")),
                format!(
                    "its signature differs from model {}'s (same name, tensor names, datatypes and ranks needed)",
                    self.metadata.name
                ),
            ));
        }
        Ok(())
    }

    /// Replaces the routes with `routes` (name, endpoint, weight); the previous set is kept for
    /// [`rollback`](Self::rollback). Requests already routed finish where they went.
    pub fn set_routes(&self, routes: Vec<(String, Arc<dyn Endpoint>, u32)>) -> Result<()> {
        if routes.iter().map(|r| u64::from(r.2)).sum::<u64>() == 0 {
            return Err(Error::invalid("routes", "the weights sum to 0"));
        }
        for (i, (name, e, _)) in routes.iter().enumerate() {
            if routes[..i].iter().any(|r| &r.0 == name) {
                return Err(Error::invalid(
                    "routes",
                    format!("route {name} given twice"),
                ));
            }
            self.check_compatible(e.as_ref())?;
        }
        let new: Vec<Route> = routes
            .into_iter()
            .filter(|r| r.2 > 0)
            .map(|(name, endpoint, weight)| Route {
                name,
                endpoint,
                weight,
                current: 0,
            })
            .collect();
        let old = std::mem::replace(&mut *self.lock_routes(), new);
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(old);
        tracing::info!(model = %self.metadata.name, routes = ?self.weights(), "routes changed");
        Ok(())
    }

    /// Sends everything to route `name` (a canary becomes the primary).
    pub fn promote(&self, name: &str) -> Result<()> {
        let route = self
            .lock_routes()
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .ok_or_else(|| Error::invalid("promote", format!("no route {name}")))?;
        self.set_routes(vec![(route.name, route.endpoint, 1)])
    }

    /// Restores the routes before the last change; returns whether there was one.
    pub fn rollback(&self) -> bool {
        let Some(previous) = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        else {
            return false;
        };
        *self.lock_routes() = previous;
        tracing::info!(model = %self.metadata.name, routes = ?self.weights(), "routes rolled back");
        true
    }

    /// The routes and their weights.
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.lock_routes()
            .iter()
            .map(|r| (r.name.clone(), r.weight))
            .collect()
    }

    /// Requests answered, by route name.
    pub fn served(&self) -> BTreeMap<String, u64> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Mirrors every request (after the primary answered) to `shadow`, whose answers are
    /// compared with the primary's and never returned; at most `queue` requests wait for it,
    /// more are dropped. `None` stops mirroring.
    pub fn set_shadow(&self, shadow: Option<Arc<dyn Endpoint>>, queue: usize) -> Result<()> {
        let old = self
            .shadow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut old) = old {
            drop(old.queue);
            if let Some(w) = old.worker.take() {
                let _ = w.join();
            }
        }
        let Some(endpoint) = shadow else {
            return Ok(());
        };
        self.check_compatible(endpoint.as_ref())?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<ShadowJob>(queue.max(1));
        let counts = self.shadow_counts.clone();
        let worker = std::thread::Builder::new()
            .name(format!("shadow-{}", self.metadata.name))
            .spawn(move || {
                for (request, primary) in rx {
                    match block_on(endpoint.infer(request)) {
                        Ok(r) if r.outputs == primary => {
                            counts.matched.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok(_) => counts.differed.fetch_add(1, Ordering::Relaxed),
                        Err(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
            .map_err(|e| Error::invalid("shadow", format!("starting its worker: {e}")))?;
        *self.shadow.lock().unwrap_or_else(PoisonError::into_inner) = Some(Shadow {
            queue: tx,
            worker: Some(worker),
        });
        Ok(())
    }

    /// What the shadow has seen (after [`set_shadow`](Self::set_shadow)`(None, _)` returns,
    /// every mirrored request has been counted).
    pub fn shadow_stats(&self) -> ShadowStats {
        let c = &self.shadow_counts;
        ShadowStats {
            mirrored: c.mirrored.load(Ordering::Relaxed),
            matched: c.matched.load(Ordering::Relaxed),
            differed: c.differed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Vec<Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The route for `request`: by its sticky key's hash over the weights, else by smooth
    /// weighted round-robin (exact proportions over every cycle of the total weight).
    fn pick(&self, request: &InferRequest) -> (String, Arc<dyn Endpoint>) {
        let mut routes = self.lock_routes();
        let total: i64 = routes.iter().map(|r| i64::from(r.weight)).sum();
        let sticky = request
            .parameters
            .get(&self.sticky_parameter)
            .and_then(|v| v.as_str());
        let i = match sticky {
            Some(key) => {
                let mut point = (fnv1a(key) % total.max(1) as u64) as i64;
                routes
                    .iter()
                    .position(|r| {
                        point -= i64::from(r.weight);
                        point < 0
                    })
                    .unwrap_or(0)
            }
            None => {
                for r in routes.iter_mut() {
                    r.current += i64::from(r.weight);
                }
                let best = routes
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, r)| (r.current, std::cmp::Reverse(*i)))
                    .map_or(0, |(i, _)| i);
                routes[best].current -= total;
                best
            }
        };
        (routes[i].name.clone(), routes[i].endpoint.clone())
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.set_shadow(None, 1);
    }
}

impl Endpoint for Router {
    fn metadata(&self) -> ModelMetadata {
        let mut m = self.metadata.clone();
        let mut versions: Vec<String> = self
            .lock_routes()
            .iter()
            .flat_map(|r| r.endpoint.metadata().versions)
            .collect();
        versions.sort();
        versions.dedup();
        m.versions = versions;
        m
    }

    fn ready(&self) -> bool {
        self.lock_routes().iter().all(|r| r.endpoint.ready())
    }

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            let (name, endpoint) = self.pick(&request);
            let mirror = self
                .shadow
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|s| (s.queue.clone(), request.clone()));
            let result = endpoint.infer(request).await;
            if result.is_ok() {
                *self
                    .served
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(name)
                    .or_insert(0) += 1;
            }
            if let (Some((queue, request)), Ok(r)) = (mirror, &result) {
                let c = &self.shadow_counts;
                match queue.try_send((request, r.outputs.clone())) {
                    Ok(()) => c.mirrored.fetch_add(1, Ordering::Relaxed),
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        c.dropped.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            result
        })
    }
}
