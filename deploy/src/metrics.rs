//! Serving metrics in the Prometheus text exposition format (0.0.4): request counters, latency,
//! queue-time and batch-size histograms, in-flight and pending gauges, labelled by model and
//! version, with Triton's `nv_inference_*` names available, and a recommended-replicas signal.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;
use crate::batch::Batcher;
use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata};
use crate::infer::{InferRequest, InferResponse};

/// A histogram with fixed upper bounds (cumulative buckets are formed when rendered).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative); the last is above every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds (sorted, deduplicated).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let n = bounds.len() + 1;
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    /// Latency buckets in seconds, 50 µs to 10 s.
    pub fn latency() -> Self {
        Histogram::new(&[
            50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
            500e-3, 1.0, 2.5, 5.0, 10.0,
        ])
    }

    /// Batch-size buckets: powers of two to 1024.
    pub fn sizes() -> Self {
        Histogram::new(&(0..=10).map(|k| f64::from(1u32 << k)).collect::<Vec<_>>())
    }

    /// Records `v`.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Appends its samples in the text format: cumulative `NAME_bucket{LABELS,le="…"}`, the
    /// `+Inf` bucket, `NAME_sum` and `NAME_count` (`labels` without braces, non-empty).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// What the metrics show and how replicas are recommended.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Also expose Triton's names (`nv_inference_request_success`, …).
    pub triton_names: bool,
    /// Requests one replica should hold at once (in flight plus queued).
    pub target_concurrency: f64,
    /// The latency one replica should keep (an exponentially weighted mean, weight 0.1).
    pub target_latency: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            triton_names: true,
            target_concurrency: 8.0,
            target_latency: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
struct Counts {
    success: u64,
    failures: BTreeMap<&'static str, u64>,
    rows: u64,
    duration: Histogram,
    in_flight: u64,
    ewma_latency: Option<f64>,
}

/// The counters of one served model version.
#[derive(Debug)]
pub struct EndpointMetrics {
    model: String,
    version: String,
    counts: Mutex<Counts>,
    batcher: Mutex<Option<Arc<Batcher>>>,
}

impl EndpointMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The failure label of an error.
fn reason(e: &Error) -> &'static str {
    match e {
        Error::InvalidTensor { .. } | Error::InvalidInput { .. } | Error::Malformed { .. } => {
            "invalid"
        }
        Error::NotReady(_) => "not_ready",
        Error::Overloaded { .. } => "overloaded",
        Error::Unauthenticated { .. } | Error::Forbidden { .. } => "unauthorized",
        Error::Timeout { .. } => "timeout",
        Error::TooLarge { .. } => "too_large",
        Error::Runtime { .. } => "runtime",
        _ => "other",
    }
}

/// A label value as the text format escapes it.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every served model's metrics, rendered together.
#[derive(Debug, Default)]
pub struct Metrics {
    config: MetricsConfig,
    endpoints: Mutex<Vec<Arc<EndpointMetrics>>>,
    drift: Mutex<Vec<(String, Arc<crate::drift::DriftTracker>)>>,
}

impl Metrics {
    /// Metrics with `config`.
    pub fn new(config: MetricsConfig) -> Self {
        Metrics {
            config,
            endpoints: Mutex::new(Vec::new()),
            drift: Mutex::new(Vec::new()),
        }
    }

    /// Exposes `tracker`'s report for `model` with the other metrics: per feature, the gauges
    /// `aistd_drift_psi`, `aistd_drift_ks_statistic`, `aistd_drift_ks_p_value`,
    /// `aistd_drift_jensen_shannon`, `aistd_drift_wasserstein`, `aistd_drift_observations` and
    /// `aistd_drift_detected{test="psi"|"ks"}` (1 past the threshold).
    pub fn track_drift(
        &self,
        model: &str,
        version: &str,
        tracker: Arc<crate::drift::DriftTracker>,
    ) {
        self.drift
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                format!(
                    "model=\"{}\",version=\"{}\"",
                    escape_label(model),
                    escape_label(version)
                ),
                tracker,
            ));
    }

    /// Wraps `inner` so its requests are counted (labels: its name and first version).
    pub fn wrap(&self, inner: Arc<dyn Endpoint>) -> Metered {
        let m = inner.metadata();
        let metrics = Arc::new(EndpointMetrics {
            model: m.name,
            version: m.versions.first().cloned().unwrap_or_default(),
            counts: Mutex::new(Counts {
                success: 0,
                failures: BTreeMap::new(),
                rows: 0,
                duration: Histogram::latency(),
                in_flight: 0,
                ewma_latency: None,
            }),
            batcher: Mutex::new(None),
        });
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(metrics.clone());
        Metered { inner, metrics }
    }

    /// The recommended number of replicas of a model version:
    /// `max(1, ⌈(in flight + queued) / target_concurrency⌉, ⌈mean latency / target_latency⌉)`.
    fn replicas(&self, in_flight: u64, pending: u64, ewma: Option<f64>) -> f64 {
        let by_load =
            ((in_flight + pending) as f64 / self.config.target_concurrency.max(1e-9)).ceil();
        let by_latency = ewma.map_or(0.0, |l| {
            (l / self.config.target_latency.as_secs_f64().max(1e-9)).ceil()
        });
        by_load.max(by_latency).max(1.0)
    }

    /// The text exposition (content type `text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        struct Row {
            labels: String,
            success: u64,
            failures: BTreeMap<&'static str, u64>,
            rows: u64,
            duration: Histogram,
            in_flight: u64,
            replicas: f64,
            batch: Option<crate::batch::BatchStats>,
            pending: u64,
        }
        let rows: Vec<Row> = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| {
                let batcher = e
                    .batcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let (batch, pending) = match &batcher {
                    Some(b) => (Some(b.stats()), b.queued() as u64),
                    None => (None, 0),
                };
                let c = e.lock();
                Row {
                    labels: format!(
                        "model=\"{}\",version=\"{}\"",
                        escape_label(&e.model),
                        escape_label(&e.version)
                    ),
                    success: c.success,
                    failures: c.failures.clone(),
                    rows: c.rows,
                    duration: c.duration.clone(),
                    in_flight: c.in_flight,
                    replicas: self.replicas(c.in_flight, pending, c.ewma_latency),
                    batch,
                    pending,
                }
            })
            .collect();
        let mut o = String::new();
        let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&Row, &mut String)| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &rows {
                f(r, &mut o);
            }
        };
        family(
            "aistd_inference_request_success_total",
            "counter",
            "Inference requests answered.",
            &|r, o| {
                let _ = writeln!(
                    o,
                    "aistd_inference_request_success_total{{{}}} {}",
                    r.labels, r.success
                );
            },
        );
        family(
            "aistd_inference_request_failure_total",
            "counter",
            "Inference requests that failed, by reason.",
            &|r, o| {
                for (why, n) in &r.failures {
                    let _ = writeln!(
                        o,
                        "aistd_inference_request_failure_total{{{},reason=\"{why}\"}} {n}",
                        r.labels
                    );
                }
            },
        );
        family(
            "aistd_inference_rows_total",
            "counter",
            "Rows (first-dimension entries) inferred in answered requests.",
            &|r, o| {
                let _ = writeln!(o, "aistd_inference_rows_total{{{}}} {}", r.labels, r.rows);
            },
        );
        family(
            "aistd_inference_request_duration_seconds",
            "histogram",
            "Request latency through the endpoint, queueing included.",
            &|r, o| {
                r.duration
                    .render("aistd_inference_request_duration_seconds", &r.labels, o);
            },
        );
        family(
            "aistd_inference_in_flight_requests",
            "gauge",
            "Requests inside the endpoint now.",
            &|r, o| {
                let _ = writeln!(
                    o,
                    "aistd_inference_in_flight_requests{{{}}} {}",
                    r.labels, r.in_flight
                );
            },
        );
        family(
            "aistd_inference_pending_requests",
            "gauge",
            "Requests waiting in the batch queue now.",
            &|r, o| {
                let _ = writeln!(
                    o,
                    "aistd_inference_pending_requests{{{}}} {}",
                    r.labels, r.pending
                );
            },
        );
        family(
            "aistd_inference_queue_duration_seconds",
            "histogram",
            "Time from arrival to dispatch in the dynamic batcher.",
            &|r, o| {
                if let Some(b) = &r.batch {
                    b.queue_seconds
                        .render("aistd_inference_queue_duration_seconds", &r.labels, o);
                }
            },
        );
        family(
            "aistd_inference_batch_size",
            "histogram",
            "Rows per batch the dynamic batcher ran.",
            &|r, o| {
                if let Some(b) = &r.batch {
                    b.batch_size
                        .render("aistd_inference_batch_size", &r.labels, o);
                }
            },
        );
        family(
            "aistd_recommended_replicas",
            "gauge",
            "Replicas to run: max(1, ceil((in flight + queued) / target concurrency), ceil(mean latency / target latency)).",
            &|r, o| {
                let _ = writeln!(
                    o,
                    "aistd_recommended_replicas{{{}}} {}",
                    r.labels, r.replicas
                );
            },
        );
        if self.config.triton_names {
            family(
                "nv_inference_request_success",
                "counter",
                "Number of successful inference requests, all batch sizes (Triton's name).",
                &|r, o| {
                    let _ = writeln!(
                        o,
                        "nv_inference_request_success{{{}}} {}",
                        r.labels, r.success
                    );
                },
            );
            family(
                "nv_inference_request_failure",
                "counter",
                "Number of failed inference requests, all batch sizes (Triton's name).",
                &|r, o| {
                    let total: u64 = r.failures.values().sum();
                    let _ = writeln!(o, "nv_inference_request_failure{{{}}} {total}", r.labels);
                },
            );
            family(
                "nv_inference_count",
                "counter",
                "Number of inferences performed (Triton's name).",
                &|r, o| {
                    let _ = writeln!(o, "nv_inference_count{{{}}} {}", r.labels, r.rows);
                },
            );
            family(
                "nv_inference_exec_count",
                "counter",
                "Number of model executions performed (Triton's name).",
                &|r, o| {
                    let n = r.batch.as_ref().map_or(r.success, |b| b.batch_size.count());
                    let _ = writeln!(o, "nv_inference_exec_count{{{}}} {n}", r.labels);
                },
            );
            family(
                "nv_inference_request_duration_us",
                "counter",
                "Cumulative inference request duration in microseconds (Triton's name).",
                &|r, o| {
                    let _ = writeln!(
                        o,
                        "nv_inference_request_duration_us{{{}}} {:.0}",
                        r.labels,
                        r.duration.sum() * 1e6
                    );
                },
            );
            family(
                "nv_inference_queue_duration_us",
                "counter",
                "Cumulative inference queuing duration in microseconds (Triton's name).",
                &|r, o| {
                    let us = r
                        .batch
                        .as_ref()
                        .map_or(0.0, |b| b.queue_seconds.sum() * 1e6);
                    let _ = writeln!(o, "nv_inference_queue_duration_us{{{}}} {us:.0}", r.labels);
                },
            );
            family(
                "nv_inference_pending_request_count",
                "gauge",
                "Instantaneous number of pending requests awaiting execution (Triton's name).",
                &|r, o| {
                    let _ = writeln!(
                        o,
                        "nv_inference_pending_request_count{{{}}} {}",
                        r.labels, r.pending
                    );
                },
            );
        }
        let drift: Vec<(String, Vec<crate::drift::FeatureDrift>)> = self
            .drift
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(labels, t)| (labels.clone(), t.report()))
            .collect();
        if !drift.is_empty() {
            type Value = fn(&crate::drift::FeatureDrift) -> f64;
            let gauges: [(&str, &str, Value); 6] = [
                (
                    "aistd_drift_psi",
                    "Population stability index of the feature's served values against the reference profile.",
                    |d| d.psi,
                ),
                (
                    "aistd_drift_ks_statistic",
                    "Kolmogorov-Smirnov statistic against the reference profile.",
                    |d| d.ks_statistic,
                ),
                (
                    "aistd_drift_ks_p_value",
                    "Asymptotic p-value of the Kolmogorov-Smirnov statistic.",
                    |d| d.ks_p_value,
                ),
                (
                    "aistd_drift_jensen_shannon",
                    "Jensen-Shannon distance (natural log) against the reference profile.",
                    |d| d.jensen_shannon,
                ),
                (
                    "aistd_drift_wasserstein",
                    "Wasserstein-1 distance on the reference's bin centres.",
                    |d| d.wasserstein,
                ),
                (
                    "aistd_drift_observations",
                    "Served values of the feature counted (NaNs excluded).",
                    |d| d.current_count as f64,
                ),
            ];
            for (name, help, value) in gauges {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (model, report) in &drift {
                    for d in report {
                        let _ = writeln!(
                            o,
                            "{name}{{{model},feature=\"{}\"}} {}",
                            escape_label(&d.name),
                            value(d)
                        );
                    }
                }
            }
            let _ = writeln!(
                o,
                "# HELP aistd_drift_detected 1 when the feature drifted: PSI >= 0.1, or the KS p-value below 0.05 / features.\n# TYPE aistd_drift_detected gauge"
            );
            for (model, report) in &drift {
                for d in report {
                    for (test, hit) in [("psi", d.psi_drift), ("ks", d.ks_drift)] {
                        let _ = writeln!(
                            o,
                            "aistd_drift_detected{{{model},feature=\"{}\",test=\"{test}\"}} {}",
                            escape_label(&d.name),
                            u8::from(hit)
                        );
                    }
                }
            }
        }
        o
    }
}

struct InFlight<'a>(&'a EndpointMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut c = self.0.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
    }
}

/// An endpoint whose requests are counted into [`Metrics`].
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Endpoint>,
    metrics: Arc<EndpointMetrics>,
}

impl Metered {
    /// Also report `batcher`'s queue times, batch sizes and queue length (the batcher this
    /// endpoint wraps, directly or not).
    pub fn with_batcher(self, batcher: Arc<Batcher>) -> Self {
        *self
            .metrics
            .batcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(batcher);
        self
    }
}

impl Endpoint for Metered {
    fn metadata(&self) -> ModelMetadata {
        self.inner.metadata()
    }

    fn ready(&self) -> bool {
        self.inner.ready()
    }

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, crate::Result<InferResponse>> {
        Box::pin(async move {
            let rows = request
                .inputs
                .first()
                .and_then(|t| t.shape.first().copied())
                .unwrap_or(1) as u64;
            self.metrics.lock().in_flight += 1;
            // Counted out even if the caller drops this future (a client that went away).
            let in_flight = InFlight(&self.metrics);
            let started = Instant::now();
            let result = self.inner.infer(request).await;
            let took = started.elapsed().as_secs_f64();
            drop(in_flight);
            let mut c = self.metrics.lock();
            c.duration.observe(took);
            c.ewma_latency = Some(c.ewma_latency.map_or(took, |m| 0.9 * m + 0.1 * took));
            match &result {
                Ok(_) => {
                    c.success += 1;
                    c.rows += rows;
                }
                Err(e) => *c.failures.entry(reason(e)).or_insert(0) += 1,
            }
            result
        })
    }
}
