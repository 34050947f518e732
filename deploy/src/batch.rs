//! The dynamic batcher: an [`Endpoint`] that queues requests and runs them through the wrapped
//! endpoint as batches along the first dimension, as Triton's dynamic batcher does.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata, block_on};
use crate::infer::{InferRequest, InferResponse, Tensor};
use crate::metrics::Histogram;
use crate::{Error, Result};

/// How the batcher forms batches.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// The most rows in one batch; a request with more is refused.
    pub max_batch_size: usize,
    /// Batch sizes to dispatch at as soon as the queue can form one (the largest possible),
    /// without waiting for the delay.
    pub preferred_sizes: Vec<usize>,
    /// The longest the oldest queued request waits for a batch to fill.
    pub max_queue_delay: Duration,
    /// Requests queued at most; more are refused with [`Error::Overloaded`].
    pub queue_limit: usize,
    /// Priority levels `1..=levels`, 1 first; a request picks one with the parameter
    /// `priority` (0 or absent: [`default_priority`](Self::default_priority)).
    pub priority_levels: u32,
    /// The level of requests that name none.
    pub default_priority: u32,
    /// Batches run at once (worker threads, each calling the wrapped endpoint).
    pub instances: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 8,
            preferred_sizes: Vec::new(),
            max_queue_delay: Duration::from_micros(100),
            queue_limit: 1024,
            priority_levels: 1,
            default_priority: 1,
            instances: 1,
        }
    }
}

/// What the batcher has done: batches by size, and recent queue waits.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Requests answered (successfully or not) through a batch.
    pub requests: u64,
    /// Batches run, by their number of rows.
    pub batch_rows: BTreeMap<usize, u64>,
    /// Queue waits of the most recent requests (up to 65,536), in microseconds: from arrival
    /// to dispatch, including time spent waiting for a busy worker.
    pub queue_waits_us: Vec<f64>,
    /// The part of those waits the batcher itself added, holding a request while a worker was
    /// free to run it (from the later of its arrival and the worker becoming free), µs.
    pub hold_us: Vec<f64>,
    /// Every request's queue wait, seconds (arrival to dispatch).
    pub queue_seconds: Histogram,
    /// Every batch's rows.
    pub batch_size: Histogram,
}

impl Default for BatchStats {
    fn default() -> Self {
        BatchStats {
            requests: 0,
            batch_rows: BTreeMap::new(),
            queue_waits_us: Vec::new(),
            hold_us: Vec::new(),
            queue_seconds: Histogram::latency(),
            batch_size: Histogram::sizes(),
        }
    }
}

const WAIT_SAMPLES: usize = 65_536;

type Reply = Arc<Mutex<(Option<Result<InferResponse>>, Option<Waker>)>>;

#[derive(Debug)]
struct Pending {
    request: InferRequest,
    rows: usize,
    key: String,
    arrived: Instant,
    reply: Reply,
}

#[derive(Debug, Default)]
struct State {
    /// One queue per priority level, level 1 first.
    levels: Vec<VecDeque<Pending>>,
    queued: usize,
    shutdown: bool,
    stats: BatchStats,
    next_wait: usize,
}

#[derive(Debug)]
struct Shared {
    inner: Arc<dyn Endpoint>,
    config: BatchConfig,
    metadata: ModelMetadata,
    state: Mutex<State>,
    wake: Condvar,
}

/// A dynamic batcher around an endpoint whose inputs and outputs all have a variable first
/// dimension (the batch).
///
/// Requests are grouped when their requested outputs and their inputs' other dimensions are
/// equal; a batch never holds more than `max_batch_size` rows, and each request gets exactly
/// its rows of every output back. Workers stop after draining the queue when the batcher is
/// dropped.
#[derive(Debug)]
pub struct Batcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Batcher {
    /// Starts `config.instances` workers over `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, config: BatchConfig) -> Result<Batcher> {
        let metadata = inner.metadata();
        let name = metadata.name.clone();
        let bad = |reason: String| Error::invalid(format!("batching model {name}"), reason);
        if config.max_batch_size == 0 || config.instances == 0 || config.queue_limit == 0 {
            return Err(bad(
                "max_batch_size, instances and queue_limit must be at least 1".into(),
            ));
        }
        if config.priority_levels == 0
            || config.default_priority == 0
            || config.default_priority > config.priority_levels
        {
            return Err(bad(format!(
                "default priority {} is not within levels 1..={}",
                config.default_priority, config.priority_levels
            )));
        }
        if let Some(p) = config
            .preferred_sizes
            .iter()
            .find(|p| **p == 0 || **p > config.max_batch_size)
        {
            return Err(bad(format!(
                "preferred size {p} is not within 1..={}",
                config.max_batch_size
            )));
        }
        if let Some(s) = metadata
            .inputs
            .iter()
            .chain(&metadata.outputs)
            .find(|s| s.shape.first() != Some(&-1))
        {
            return Err(bad(format!(
                "tensor {} has shape {:?}; batching needs a first dimension of -1",
                s.name, s.shape
            )));
        }
        let levels = (0..config.priority_levels)
            .map(|_| VecDeque::new())
            .collect();
        let shared = Arc::new(Shared {
            inner,
            metadata,
            state: Mutex::new(State {
                levels,
                ..State::default()
            }),
            wake: Condvar::new(),
            config,
        });
        let workers = (0..shared.config.instances)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("batcher-{}-{i}", s.metadata.name))
                    .spawn(move || s.work())
                    .map_err(|e| bad(format!("starting a worker: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Batcher { shared, workers })
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// What the batcher has done so far.
    pub fn stats(&self) -> BatchStats {
        self.shared.lock().stats.clone()
    }

    fn enqueue(&self, request: InferRequest) -> Result<Reply> {
        let s = &self.shared;
        let m = &s.metadata;
        request.validate(&m.inputs, &m.outputs)?;
        let rows = request.inputs[0].shape[0];
        if let Some(t) = request.inputs.iter().find(|t| t.shape[0] != rows) {
            return Err(Error::tensor(
                &t.name,
                format!(
                    "{} rows where input {} has {rows} (inputs share the batch dimension)",
                    t.shape[0], request.inputs[0].name
                ),
            ));
        }
        if rows > s.config.max_batch_size {
            return Err(Error::tensor(
                &request.inputs[0].name,
                format!(
                    "a batch of {rows} rows exceeds the model's max batch size {}",
                    s.config.max_batch_size
                ),
            ));
        }
        let level = match request.parameters.get("priority") {
            None => s.config.default_priority,
            Some(v) => match v.as_u64() {
                Some(0) => s.config.default_priority,
                Some(p) if p <= u64::from(s.config.priority_levels) => p as u32,
                _ => {
                    return Err(Error::invalid(
                        "parameter priority",
                        format!(
                            "{v} is not a level within 1..={} (0: default)",
                            s.config.priority_levels
                        ),
                    ));
                }
            },
        };
        let mut key = request.outputs.join(",");
        for t in &request.inputs {
            key.push_str(&format!("|{}:{:?}", t.name, &t.shape[1..]));
        }
        let reply: Reply = Arc::new(Mutex::new((None, None)));
        let mut state = s.lock();
        if state.shutdown {
            return Err(Error::NotReady(m.name.clone()));
        }
        if state.queued >= s.config.queue_limit {
            return Err(Error::Overloaded {
                model: m.name.clone(),
                reason: format!(
                    "the batch queue is full ({} requests)",
                    s.config.queue_limit
                ),
            });
        }
        state.levels[(level - 1) as usize].push_back(Pending {
            request,
            rows,
            key,
            arrived: Instant::now(),
            reply: reply.clone(),
        });
        state.queued += 1;
        drop(state);
        s.wake.notify_one();
        Ok(reply)
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct Answer(Reply);

impl Future for Answer {
    type Output = Result<InferResponse>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn answer(reply: &Reply, result: Result<InferResponse>) {
    let waker = {
        let mut slot = reply.lock().unwrap_or_else(PoisonError::into_inner);
        slot.0 = Some(result);
        slot.1.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The worker loop: form a batch, run it, answer, until shut down with an empty queue.
    fn work(&self) {
        let mut free_since = Instant::now();
        let mut state = self.lock();
        loop {
            let Some(head) = state.levels.iter().find_map(|q| q.front()) else {
                if state.shutdown {
                    return;
                }
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let (key, deadline) = (head.key.clone(), head.arrived + self.config.max_queue_delay);
            // Compatible requests in priority, then arrival, order, while they fit.
            let mut picked: Vec<(usize, usize)> = Vec::new();
            let mut prefix = Vec::new();
            let mut total = 0;
            'scan: for (l, q) in state.levels.iter().enumerate() {
                for (i, p) in q.iter().enumerate() {
                    if p.key != key {
                        continue;
                    }
                    if total + p.rows > self.config.max_batch_size {
                        break 'scan;
                    }
                    total += p.rows;
                    picked.push((l, i));
                    prefix.push(total);
                }
            }
            let full = total >= self.config.max_batch_size;
            let preferred = self
                .config
                .preferred_sizes
                .iter()
                .filter_map(|p| prefix.iter().position(|t| t == p))
                .max();
            let now = Instant::now();
            let take = if full || now >= deadline || state.shutdown {
                picked.len()
            } else if let Some(i) = preferred {
                i + 1
            } else {
                state = self
                    .wake
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            };
            // Remove the picked requests (from the back, so indices stay valid).
            let mut batch: Vec<Pending> = Vec::with_capacity(take);
            for &(l, i) in picked[..take].iter().rev() {
                if let Some(p) = state.levels[l].remove(i) {
                    batch.push(p);
                }
            }
            batch.reverse();
            state.queued -= batch.len();
            let rows: usize = batch.iter().map(|p| p.rows).sum();
            *state.stats.batch_rows.entry(rows).or_insert(0) += 1;
            state.stats.batch_size.observe(rows as f64);
            state.stats.requests += batch.len() as u64;
            let st = &mut *state;
            for p in &batch {
                let wait = now.saturating_duration_since(p.arrived).as_secs_f64() * 1e6;
                st.stats.queue_seconds.observe(wait / 1e6);
                let hold = now
                    .saturating_duration_since(p.arrived.max(free_since))
                    .as_secs_f64()
                    * 1e6;
                if st.stats.queue_waits_us.len() < WAIT_SAMPLES {
                    st.stats.queue_waits_us.push(wait);
                    st.stats.hold_us.push(hold);
                } else {
                    st.stats.queue_waits_us[st.next_wait % WAIT_SAMPLES] = wait;
                    st.stats.hold_us[st.next_wait % WAIT_SAMPLES] = hold;
                }
                st.next_wait = st.next_wait.wrapping_add(1);
            }
            drop(state);
            self.run(batch, rows);
            free_since = Instant::now();
            state = self.lock();
        }
    }

    /// Runs one batch through the wrapped endpoint and answers each request with its rows.
    fn run(&self, batch: Vec<Pending>, rows: usize) {
        let first = &batch[0].request;
        let mut merged = InferRequest {
            id: None,
            inputs: first
                .inputs
                .iter()
                .map(|t| {
                    let mut shape = t.shape.clone();
                    shape[0] = rows;
                    Tensor {
                        name: t.name.clone(),
                        shape,
                        data: crate::infer::TensorData::zeros(t.datatype(), 0),
                    }
                })
                .collect(),
            outputs: first.outputs.clone(),
            parameters: BTreeMap::new(),
            bearer: None,
        };
        for p in &batch {
            for (m, t) in merged.inputs.iter_mut().zip(&p.request.inputs) {
                let from = p.request.input(&m.name).unwrap_or(t);
                m.data.append(&from.data);
            }
        }
        // A panic inside the model fails this batch, not the worker (its requests would hang).
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(self.inner.infer(merged))
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Runtime {
                model: self.metadata.name.clone(),
                reason: format!("the model panicked: {what}"),
            })
        });
        let result = ran.and_then(|r| {
            for o in &r.outputs {
                if o.shape.first() != Some(&rows) {
                    return Err(Error::Runtime {
                        model: self.metadata.name.clone(),
                        reason: format!(
                            "output {} has shape {:?} for a batch of {rows} rows",
                            o.name, o.shape
                        ),
                    });
                }
            }
            Ok(r)
        });
        match result {
            Err(e) => {
                for p in &batch {
                    answer(&p.reply, Err(e.clone()));
                }
            }
            Ok(r) => {
                let mut start = 0;
                for p in &batch {
                    let outputs = r
                        .outputs
                        .iter()
                        .map(|o| {
                            let per_row = o.shape[1..].iter().product::<usize>();
                            let mut shape = o.shape.clone();
                            shape[0] = p.rows;
                            Tensor {
                                name: o.name.clone(),
                                shape,
                                data: o.data.slice(start * per_row..(start + p.rows) * per_row),
                            }
                        })
                        .collect();
                    start += p.rows;
                    answer(
                        &p.reply,
                        Ok(InferResponse {
                            model_name: r.model_name.clone(),
                            model_version: r.model_version.clone(),
                            id: p.request.id.clone(),
                            outputs,
                        }),
                    );
                }
            }
        }
    }
}

impl Endpoint for Batcher {
    fn metadata(&self) -> ModelMetadata {
        self.shared.metadata.clone()
    }

    fn ready(&self) -> bool {
        self.shared.inner.ready()
    }

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        let queued = self.enqueue(request);
        Box::pin(async move { Answer(queued?).await })
    }
}
