//! `aistd serve-bench`: serving measurements (scripts/bench-peers.sh prints them as a table).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aistd_deploy::batch::{BatchConfig, Batcher};
use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::{
    DataType, Endpoint, InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec,
};
use anyhow::Result;
use clap::{Args, Subcommand};

use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum ServeBenchCommand {
    /// Dynamic batching against none, on one model instance whose cost is a + b·rows, with
    /// closed-loop clients sending one-row requests; prints JSON.
    Batching(BatchingArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BatchingArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Fixed cost of one model call, µs.
    #[arg(long, default_value_t = 2000)]
    a_us: u64,
    /// Cost per row, µs.
    #[arg(long, default_value_t = 100)]
    b_us: u64,
    /// The batcher's max batch size.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// The batcher's max queue delay, µs.
    #[arg(long, default_value_t = 500)]
    delay_us: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// One model instance (a mutex, as a GPU runs one call at a time) whose call costs a + b·rows;
/// `y = x + 1`.
#[derive(Debug)]
struct CostModel {
    a: Duration,
    b: Duration,
    instance: Mutex<()>,
}

impl Endpoint for CostModel {
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: "cost".into(),
            versions: vec!["1".into()],
            platform: "bench".into(),
            inputs: vec![TensorSpec::new("x", DataType::Fp32, &[-1, 4]).expect("valid spec")],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, &[-1, 4]).expect("valid spec")],
        }
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, request: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            let m = self.metadata();
            request.validate(&m.inputs, &m.outputs)?;
            let x = &request.inputs[0];
            let rows = x.shape[0] as u32;
            {
                let _instance = self
                    .instance
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                std::thread::sleep(self.a + self.b * rows);
            }
            let y = x
                .as_fp32()
                .unwrap_or_default()
                .iter()
                .map(|v| v + 1.0)
                .collect();
            Ok(InferResponse {
                model_name: m.name,
                model_version: Some("1".into()),
                id: request.id,
                outputs: vec![Tensor::fp32("y", &x.shape, y)?],
            })
        })
    }
}

/// Closed-loop clients for `seconds`: requests per second and latency percentiles (µs).
fn drive(endpoint: &dyn Endpoint, clients: usize, seconds: f64) -> Result<serde_json::Value> {
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let latencies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut lat = Vec::new();
                    let mut i = 0u32;
                    while Instant::now() < stop {
                        let x = vec![c as f32, i as f32, 0.0, 1.0];
                        let request =
                            InferRequest::new().with_input(Tensor::fp32("x", &[1, 4], x)?);
                        let t = Instant::now();
                        let r = block_on(endpoint.infer(request))?;
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                        let y = r.outputs[0].as_fp32().unwrap_or_default();
                        anyhow::ensure!(
                            y == [c as f32 + 1.0, i as f32 + 1.0, 1.0, 2.0],
                            "wrong answer"
                        );
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client panicked"))??,
            );
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "requests": sorted.len(),
        "requests_per_s": sorted.len() as f64 / elapsed,
        "p50_us": percentile(&sorted, 0.50),
        "p95_us": percentile(&sorted, 0.95),
        "p99_us": percentile(&sorted, 0.99),
    }))
}

/// The `q` quantile of sorted values (nearest rank); 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn run(cmd: ServeBenchCommand) -> Result<ExitCode> {
    match cmd {
        ServeBenchCommand::Batching(a) => {
            let model = Arc::new(CostModel {
                a: Duration::from_micros(a.a_us),
                b: Duration::from_micros(a.b_us),
                instance: Mutex::new(()),
            });
            let plain = drive(model.as_ref(), a.clients, a.seconds)?;
            let batcher = Batcher::new(
                model,
                BatchConfig {
                    max_batch_size: a.max_batch,
                    max_queue_delay: Duration::from_micros(a.delay_us),
                    queue_limit: a.clients.max(1) * 4,
                    ..BatchConfig::default()
                },
            )?;
            let batched = drive(&batcher, a.clients, a.seconds)?;
            let stats = batcher.stats();
            let mut waits = stats.queue_waits_us.clone();
            waits.sort_by(f64::total_cmp);
            let mut holds = stats.hold_us.clone();
            holds.sort_by(f64::total_cmp);
            let rows: u64 = stats.batch_rows.iter().map(|(r, n)| *r as u64 * n).sum();
            let batches: u64 = stats.batch_rows.values().sum();
            let ratio = batched["requests_per_s"].as_f64().unwrap_or(0.0)
                / plain["requests_per_s"].as_f64().unwrap_or(f64::NAN);
            print_json(&serde_json::json!({
                "clients": a.clients,
                "a_us": a.a_us,
                "b_us": a.b_us,
                "max_batch": a.max_batch,
                "delay_us": a.delay_us,
                "no_batching": plain,
                "batching": batched,
                "throughput_ratio": ratio,
                "mean_batch_rows": rows as f64 / batches.max(1) as f64,
                "queue_wait_p99_us": percentile(&waits, 0.99),
                "batcher_hold_p99_us": percentile(&holds, 0.99),
            }))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
