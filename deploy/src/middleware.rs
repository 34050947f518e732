//! Middleware: endpoints that wrap an endpoint, composing like tower layers. Each forwards
//! `metadata` and `ready` and changes only how `infer` is admitted:
//!
//! - [`ConcurrencyLimit`]: at most N requests inside at once; more are [`Error::Overloaded`].
//! - [`RateLimit`]: a token bucket (rate per second, burst); over it, [`Error::Overloaded`].
//! - [`Timeout`]: no answer within the limit is [`Error::Timeout`] (the caller stops waiting;
//!   a model already computing is not interrupted).
//! - [`SizeLimit`]: requests whose tensors exceed N bytes are [`Error::TooLarge`].
//! - [`Authenticated`]: bearer tokens (kept as SHA-256 digests) name a principal, and an
//!   [`Authorize`] policy decides; [`Error::Unauthenticated`] or [`Error::Forbidden`] otherwise.
//!   The token is removed from the request before it goes further in.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata};
use crate::infer::{Bearer, InferRequest, InferResponse, TensorData};
use crate::{Error, Result};

macro_rules! forward_metadata {
    () => {
        fn metadata(&self) -> ModelMetadata {
            self.inner.metadata()
        }
        fn ready(&self) -> bool {
            self.inner.ready()
        }
    };
}

/// At most `max` requests inside the wrapped endpoint at once.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    inner: Arc<dyn Endpoint>,
    max: usize,
    inside: AtomicUsize,
}

impl ConcurrencyLimit {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, max: usize) -> Self {
        ConcurrencyLimit {
            inner,
            max: max.max(1),
            inside: AtomicUsize::new(0),
        }
    }

    /// Requests inside now.
    pub fn in_flight(&self) -> usize {
        self.inside.load(Ordering::Acquire)
    }
}

struct Inside<'a>(&'a AtomicUsize);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Endpoint for ConcurrencyLimit {
    forward_metadata!();

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            if self.inside.fetch_add(1, Ordering::AcqRel) >= self.max {
                self.inside.fetch_sub(1, Ordering::AcqRel);
                return Err(Error::Overloaded {
                    model: self.inner.metadata().name,
                    reason: format!("{} requests in flight (the limit)", self.max),
                });
            }
            let _inside = Inside(&self.inside);
            self.inner.infer(request).await
        })
    }
}

/// A token bucket: `rate` requests per second on average, bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimit {
    inner: Arc<dyn Endpoint>,
    rate: f64,
    burst: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// Wraps `inner`; the bucket starts full.
    pub fn new(inner: Arc<dyn Endpoint>, rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            inner,
            rate: rate.max(0.0),
            burst,
            bucket: Mutex::new((burst, Instant::now())),
        }
    }

    fn take(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * self.rate;
        b.0 = (b.0 + refill).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Endpoint for RateLimit {
    forward_metadata!();

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            if !self.take() {
                return Err(Error::Overloaded {
                    model: self.inner.metadata().name,
                    reason: format!(
                        "over the rate limit of {} requests/s (burst {})",
                        self.rate, self.burst
                    ),
                });
            }
            self.inner.infer(request).await
        })
    }
}

/// Requests whose tensors hold more than `max_bytes` (BYTES elements count their length plus
/// 4) are refused before the wrapped endpoint sees them.
#[derive(Debug)]
pub struct SizeLimit {
    inner: Arc<dyn Endpoint>,
    max_bytes: usize,
}

impl SizeLimit {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, max_bytes: usize) -> Self {
        SizeLimit { inner, max_bytes }
    }
}

/// The bytes a request's tensors hold.
pub fn request_bytes(request: &InferRequest) -> usize {
    request
        .inputs
        .iter()
        .map(|t| match &t.data {
            TensorData::Bytes(v) => v.iter().map(|b| b.len() + 4).sum(),
            d => d.len() * d.datatype().size().unwrap_or(1),
        })
        .sum()
}

impl Endpoint for SizeLimit {
    forward_metadata!();

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            let bytes = request_bytes(&request);
            if bytes > self.max_bytes {
                return Err(Error::TooLarge {
                    model: self.inner.metadata().name,
                    bytes,
                    limit: self.max_bytes,
                });
            }
            self.inner.infer(request).await
        })
    }
}

/// Wakes futures at deadlines, from one thread shared by every [`Timeout`].
#[derive(Debug, Default)]
struct Timer {
    entries: Mutex<BTreeMap<(Instant, u64), Waker>>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::default());
        let spawned = std::thread::Builder::new()
            .name("aistd-timer".into())
            .spawn(move || t.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the timeout thread did not start; timeouts will not fire");
        }
        t
    })
}

impl Timer {
    fn run(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            match entries.first_key_value().map(|(k, _)| *k) {
                Some(key) if key.0 <= now => {
                    if let Some(w) = entries.remove(&key) {
                        w.wake();
                    }
                }
                Some(key) => {
                    entries = self
                        .changed
                        .wait_timeout(entries, key.0 - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    entries = self
                        .changed
                        .wait(entries)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    fn set(&self, key: (Instant, u64), waker: Waker) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, waker);
        self.changed.notify_one();
    }

    fn cancel(&self, key: (Instant, u64)) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }
}

/// Answers [`Error::Timeout`] when the wrapped endpoint has not answered within `limit`.
#[derive(Debug)]
pub struct Timeout {
    inner: Arc<dyn Endpoint>,
    limit: Duration,
}

impl Timeout {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, limit: Duration) -> Self {
        Timeout { inner, limit }
    }
}

struct Deadline<'a> {
    inner: BoxFuture<'a, Result<InferResponse>>,
    key: (Instant, u64),
    armed: bool,
    model: String,
    limit: Duration,
}

impl Future for Deadline<'_> {
    type Output = Result<InferResponse>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(r) = this.inner.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if Instant::now() >= this.key.0 {
            return Poll::Ready(Err(Error::Timeout {
                model: this.model.clone(),
                millis: this.limit.as_millis() as u64,
            }));
        }
        timer().set(this.key, cx.waker().clone());
        this.armed = true;
        Poll::Pending
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        if self.armed {
            timer().cancel(self.key);
        }
    }
}

impl Endpoint for Timeout {
    forward_metadata!();

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let key = (
            Instant::now() + self.limit,
            NEXT.fetch_add(1, Ordering::Relaxed),
        );
        Box::pin(Deadline {
            inner: self.inner.infer(request),
            key,
            armed: false,
            model: self.inner.metadata().name,
            limit: self.limit,
        })
    }
}

/// Decides whether a principal may use a model version.
pub trait Authorize: Send + Sync + Debug {
    /// `Ok` to allow; `Err(reason)` to refuse.
    fn authorize(
        &self,
        principal: &str,
        model: &str,
        version: &str,
    ) -> std::result::Result<(), String>;
}

/// Allows every authenticated principal.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorize for AllowAll {
    fn authorize(&self, _: &str, _: &str, _: &str) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Bearer-token authentication and a policy's authorization in front of an endpoint.
#[derive(Debug)]
pub struct Authenticated {
    inner: Arc<dyn Endpoint>,
    /// SHA-256 (hex) of each token → its principal.
    tokens: BTreeMap<String, String>,
    policy: Arc<dyn Authorize>,
}

impl Authenticated {
    /// Wraps `inner`; no token is accepted until added.
    pub fn new(inner: Arc<dyn Endpoint>, policy: Arc<dyn Authorize>) -> Self {
        Authenticated {
            inner,
            tokens: BTreeMap::new(),
            policy,
        }
    }

    /// Accepts `token` as `principal` (only its digest is kept).
    pub fn with_token(mut self, token: &Bearer, principal: impl Into<String>) -> Self {
        self.tokens.insert(token.sha256_hex(), principal.into());
        self
    }
}

impl Endpoint for Authenticated {
    forward_metadata!();

    fn infer(&self, mut request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            let m = self.inner.metadata();
            let unauthenticated = |reason: &str| Error::Unauthenticated {
                model: m.name.clone(),
                reason: reason.into(),
            };
            let token = request
                .bearer
                .take()
                .ok_or_else(|| unauthenticated("no bearer token"))?;
            let principal = self
                .tokens
                .get(&token.sha256_hex())
                .ok_or_else(|| unauthenticated("the bearer token is not accepted"))?;
            let version = m.versions.first().cloned().unwrap_or_default();
            if let Err(reason) = self.policy.authorize(principal, &m.name, &version) {
                tracing::info!(principal = %principal, model = %m.name, "request refused by the policy");
                return Err(Error::Forbidden {
                    model: m.name.clone(),
                    principal: principal.clone(),
                    reason,
                });
            }
            self.inner.infer(request).await
        })
    }
}
