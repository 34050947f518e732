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
    /// Serving overhead on a no-op (identity) model: the predictor called directly, through
    /// the in-process endpoint and over HTTP (one keep-alive connection, JSON); prints JSON.
    Overhead(OverheadArgs),
    /// Load on any KServe v2 server: closed-loop clients, each on its own keep-alive
    /// connection, POST the same JSON body to a model's infer path; prints throughput and
    /// latency percentiles as JSON (scripts/peers/bench_serving.py drives aistd and MLServer
    /// with it).
    Load(LoadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The server, as http://HOST:PORT.
    #[arg(long)]
    url: String,
    /// The model whose `/v2/models/MODEL/infer` is called.
    #[arg(long)]
    model: String,
    /// A file holding the JSON request body.
    #[arg(long)]
    body: std::path::PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of load before measuring (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
}

#[derive(Debug, Args)]
pub(crate) struct OverheadArgs {
    /// Requests per measurement.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Worker threads of the HTTP server (0: one per core).
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
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

/// Latency percentiles (µs) of `n` calls of `f`, after 1,000 warm-up calls.
fn time(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<serde_json::Value> {
    for _ in 0..1000 {
        f()?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "p50_us": percentile(&lat, 0.5),
        "p99_us": percentile(&lat, 0.99),
    }))
}

/// POSTs on a keep-alive connection; the status.
fn post(conn: &mut std::net::TcpStream, path: &str, body: &[u8], buf: &mut Vec<u8>) -> Result<u16> {
    use std::io::{Read, Write};
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            anyhow::ensure!(
                !head.contains("transfer-encoding: chunked"),
                "the server answered with a chunked body, which this client does not read"
            );
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk)?;
                anyhow::ensure!(n > 0, "the server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
    }
}

fn overhead(a: &OverheadArgs) -> Result<()> {
    use aistd_deploy::http::{ModelRepository, RunningServer, ServerConfig};
    use aistd_deploy::{Bundle, Manifest, Predictor, Runtimes};
    let dir = std::env::temp_dir().join(format!("aistd-overhead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("src/README"), "no-op model")?;
    let m = Manifest::new("noop", "1", "identity")?
        .with_input(TensorSpec::new("x", DataType::Fp32, &[-1, 4])?)
        .with_output(TensorSpec::new("y", DataType::Fp32, &[-1, 4])?);
    let bundle = Bundle::create(&dir.join("bundle"), m, &dir.join("src"))?;
    let predictor = aistd_deploy::Identity::for_manifest(bundle.manifest())?;
    let endpoint = Arc::new(Runtimes::builtin().load(&bundle)?);
    let x = Tensor::fp32("x", &[1, 4], vec![1.0, 2.0, 3.0, 4.0])?;
    let direct = time(a.requests, || {
        predictor
            .predict(std::slice::from_ref(&x))
            .map_err(anyhow::Error::msg)?;
        Ok(())
    })?;
    let request = InferRequest::new().with_input(x.clone());
    let in_process = time(a.requests, || {
        block_on(endpoint.infer(request.clone()))?;
        Ok(())
    })?;
    let repo = Arc::new(ModelRepository::new());
    repo.insert(endpoint)?;
    let server = RunningServer::start(
        "127.0.0.1:0".parse()?,
        repo,
        ServerConfig {
            threads: a.server_threads,
            ..ServerConfig::default()
        },
    )?;
    let mut conn = std::net::TcpStream::connect(server.addr())?;
    conn.set_nodelay(true)?;
    let body = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}"#;
    let mut buf = Vec::new();
    let http = time(a.requests, || {
        let status = post(&mut conn, "/v2/models/noop/infer", body, &mut buf)?;
        anyhow::ensure!(
            status == 200,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&buf)
        );
        Ok(())
    })?;
    server.shutdown()?;
    // The transport's floor: a thread that answers each request with a fixed response, with
    // no HTTP library, no routing and no model, on the same kind of connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let echo_addr = listener.local_addr()?;
    std::thread::spawn(move || -> Result<()> {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let len: usize = String::from_utf8_lossy(&buf[..end])
                    .to_ascii_lowercase()
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if buf.len() < end + 4 + len {
                    break;
                }
                buf.drain(..end + 4 + len);
                s.write_all(reply)?;
            }
        }
    });
    let mut conn = std::net::TcpStream::connect(echo_addr)?;
    conn.set_nodelay(true)?;
    let floor = time(a.requests, || {
        post(&mut conn, "/", body, &mut buf)?;
        Ok(())
    })?;
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    print_json(&serde_json::json!({
        "requests": a.requests,
        "predictor_direct": direct,
        "endpoint_in_process": in_process,
        "http_keep_alive_json": http,
        "tcp_fixed_response_floor": floor,
    }))
}

/// `aistd serve-bench load`.
fn load(a: &LoadArgs) -> Result<()> {
    use anyhow::Context;
    let addr = a
        .url
        .strip_prefix("http://")
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty() && !r.contains('/'))
        .with_context(|| format!("--url {}: expected http://HOST:PORT", a.url))?
        .to_string();
    anyhow::ensure!(a.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        a.seconds > 0.0 && a.warmup_seconds >= 0.0,
        "--seconds must be positive and --warmup-seconds not negative"
    );
    let body = std::fs::read(&a.body).with_context(|| format!("{}", a.body.display()))?;
    let path = format!("/v2/models/{}/infer", a.model);
    let warm_until = Instant::now() + Duration::from_secs_f64(a.warmup_seconds);
    let stop = warm_until + Duration::from_secs_f64(a.seconds);
    let per_client = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.clients)
            .map(|_| {
                let (addr, path, body) = (&addr, &path, &body);
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut conn = std::net::TcpStream::connect(addr.as_str())
                        .with_context(|| format!("connect to {addr}"))?;
                    conn.set_nodelay(true)?;
                    let mut buf = Vec::new();
                    let mut lat = Vec::new();
                    loop {
                        let t = Instant::now();
                        if t >= stop {
                            return Ok(lat);
                        }
                        let status = post(&mut conn, path, body, &mut buf)?;
                        anyhow::ensure!(
                            status == 200,
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&buf)
                        );
                        if t >= warm_until {
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let mut all: Vec<f64> = per_client.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    print_json(&serde_json::json!({
        "url": a.url,
        "model": a.model,
        "clients": a.clients,
        "seconds": a.seconds,
        "requests": all.len(),
        "requests_per_s": all.len() as f64 / a.seconds,
        "p50_us": percentile(&all, 0.50),
        "p95_us": percentile(&all, 0.95),
        "p99_us": percentile(&all, 0.99),
        "max_us": all.last().copied().unwrap_or(0.0),
    }))
}

pub(crate) fn run(cmd: ServeBenchCommand) -> Result<ExitCode> {
    match cmd {
        ServeBenchCommand::Overhead(a) => overhead(&a)?,
        ServeBenchCommand::Load(a) => load(&a)?,
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
