//! The KServe Open Inference Protocol v2 over HTTP/1.1 (feature `http`, hyper on tokio).
//!
//! Routes: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`,
//! `GET /v2/models/{m}[/versions/{v}]`, `GET /v2/models/{m}[/versions/{v}]/ready`,
//! `POST /v2/models/{m}[/versions/{v}]/infer` (JSON, or the binary tensor data extension;
//! `gzip`/`deflate` request bodies, and inference responses compressed as `Accept-Encoding`
//! asks), and `GET /metrics` (Prometheus text) when configured. Errors are
//! `{"error": "…"}`: 400 for a bad request, 404 for an unknown model, version or route, 413 for an oversized body, 500 when the model fails, 503
//! when it is not ready or overloaded. Models can be added and replaced while serving
//! ([`ModelRepository`]); shutdown stops accepting and drains requests in flight.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::endpoint::{BoxFuture, Endpoint};
use crate::registry::version_order;
use crate::v2::{self, WireRequest};
use crate::{Error, Result};

/// The header that gives the JSON part's length in the binary tensor data extension.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The models a server answers for, by name and version; changes apply to the next request
/// (requests in flight keep the endpoint they started with).
#[derive(Debug, Default)]
pub struct ModelRepository {
    models: RwLock<Models>,
    /// The endpoint answering a model's unversioned routes, when not its latest version (a
    /// router splitting traffic between versions, for instance).
    defaults: RwLock<BTreeMap<String, Arc<dyn Endpoint>>>,
}

/// Endpoints by model name, then version.
type Models = BTreeMap<String, BTreeMap<String, Arc<dyn Endpoint>>>;

impl ModelRepository {
    /// An empty repository.
    pub fn new() -> Self {
        ModelRepository::default()
    }

    /// Adds `endpoint` under its metadata's name and each of its versions (replacing an
    /// endpoint already there: a hot reload).
    pub fn insert(&self, endpoint: Arc<dyn Endpoint>) -> Result<()> {
        let m = endpoint.metadata();
        if m.versions.is_empty() {
            return Err(Error::invalid(
                format!("model {}", m.name),
                "has no version",
            ));
        }
        let mut models = self
            .models
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let versions = models.entry(m.name.clone()).or_default();
        for v in &m.versions {
            versions.insert(v.clone(), endpoint.clone());
        }
        tracing::info!(model = %m.name, versions = ?m.versions, "model added");
        Ok(())
    }

    /// Makes `endpoint` answer the unversioned routes of its model (instead of the latest
    /// version); versioned routes still reach each version.
    pub fn set_default(&self, endpoint: Arc<dyn Endpoint>) {
        let name = endpoint.metadata().name;
        self.defaults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, endpoint);
    }

    /// Removes a version of a model (the model when it was the last); whether it was there.
    /// A default endpoint set for the model is dropped with it (it may route to that version):
    /// the unversioned routes fall back to the latest version left.
    pub fn remove(&self, model: &str, version: &str) -> bool {
        let mut models = self
            .models
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(versions) = models.get_mut(model) else {
            return false;
        };
        let removed = versions.remove(version).is_some();
        if versions.is_empty() {
            models.remove(model);
        }
        if removed && self.clear_default(model) {
            tracing::warn!(
                model,
                version,
                "version removed: its model's default endpoint (a router?) was dropped; unversioned requests go to the latest version"
            );
        }
        removed
    }

    /// Drops the default endpoint of `model` (see [`set_default`](Self::set_default)); whether
    /// there was one.
    pub fn clear_default(&self, model: &str) -> bool {
        self.defaults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(model)
            .is_some()
    }

    /// The model names.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The versions of `model`, oldest first.
    pub fn versions(&self, model: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .read()
            .get(model)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| version_order(a, b));
        v
    }

    /// The endpoint of `model` at `version`, or at its latest version.
    pub fn get(&self, model: &str, version: Option<&str>) -> Option<Arc<dyn Endpoint>> {
        if version.is_none()
            && let Some(e) = self
                .defaults
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(model)
        {
            return Some(e.clone());
        }
        let models = self.read();
        let versions = models.get(model)?;
        match version {
            Some(v) => versions.get(v).cloned(),
            None => versions
                .iter()
                .max_by(|a, b| version_order(a.0, b.0))
                .map(|(_, e)| e.clone()),
        }
    }

    /// Whether every model is ready (and there is at least one).
    pub fn ready(&self) -> bool {
        let models = self.read();
        !models.is_empty() && models.values().flat_map(|v| v.values()).all(|e| e.ready())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Models> {
        self.models
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request body accepted, before and after decompression (bytes).
    pub max_body_bytes: usize,
    /// Worker threads of the tokio runtime (0: one per core).
    pub threads: usize,
    /// Served at `GET /metrics` when set.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 64 << 20,
            threads: 0,
            metrics: None,
        }
    }
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: Vec<u8>, header_len: Option<usize>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    match header_len {
        Some(n) => {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
                h.insert(HEADER_LENGTH, v);
            }
        }
        None => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    r
}

/// The response encoding an `Accept-Encoding` value asks for: `gzip`, else `deflate`, when
/// listed without `q=0`; none otherwise (identity).
fn response_encoding(accept: &str) -> Option<&'static str> {
    let accepted = |name: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next_back()
                .unwrap_or(1.0);
            coding.eq_ignore_ascii_case(name) && q > 0.0
        })
    };
    ["gzip", "deflate"].into_iter().find(|e| accepted(e))
}

/// `body` compressed with `encoding` (`gzip`, or `deflate`: the zlib format, as HTTP means it).
fn compress(encoding: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let level = flate2::Compression::fast();
    if encoding == "gzip" {
        let mut w = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 2), level);
        w.write_all(body)?;
        w.finish()
    } else {
        let mut w = flate2::write::ZlibEncoder::new(Vec::with_capacity(body.len() / 2), level);
        w.write_all(body)?;
        w.finish()
    }
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    respond(status, serde_json::to_vec(v).unwrap_or_default(), None)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, v2::error_json(message), None)
}

/// The HTTP status of an error, as Triton maps them.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::NotReady(_) | Error::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Runtime { .. } | Error::Io { .. } | Error::Audit(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A future whose panics become an [`Error::Runtime`] (a model that panics fails its request;
/// the connection and the server live on).
struct CatchUnwind<'a> {
    inner: BoxFuture<'a, Result<crate::InferResponse>>,
    model: String,
}

impl Future for CatchUnwind<'_> {
    type Output = Result<crate::InferResponse>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.inner.as_mut().poll(cx)
        })) {
            Ok(p) => p,
            Err(_) => Poll::Ready(Err(Error::Runtime {
                model: this.model.clone(),
                reason: "the model panicked".into(),
            })),
        }
    }
}

struct Service {
    repo: Arc<ModelRepository>,
    config: ServerConfig,
}

impl Service {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.clone(), parts.as_slice()) {
            (Method::GET, ["v2", "health", "live"]) => {
                json_response(StatusCode::OK, &json!({"live": true}))
            }
            (Method::GET, ["v2", "health", "ready"]) => {
                let ready = self.repo.ready();
                json_response(
                    if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    },
                    &json!({ "ready": ready }),
                )
            }
            (Method::GET, ["metrics"]) => match &self.config.metrics {
                Some(m) => {
                    let mut r = Response::new(Full::new(Bytes::from(m.render())));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                None => error(StatusCode::NOT_FOUND, "metrics are not enabled"),
            },
            (Method::GET, ["v2"]) => json_response(
                StatusCode::OK,
                &json!({
                    "name": "aistd",
                    "version": env!("CARGO_PKG_VERSION"),
                    "extensions": ["binary_tensor_data"],
                }),
            ),
            (_, ["v2", "models", model, rest @ ..]) => {
                let (version, tail) = match rest {
                    ["versions", v, tail @ ..] => (Some(*v), tail),
                    tail => (None, tail),
                };
                let Some(endpoint) = self.repo.get(model, version) else {
                    return error(
                        StatusCode::NOT_FOUND,
                        &match version {
                            Some(v) if !self.repo.versions(model).is_empty() => {
                                format!("model {model} has no version {v}")
                            }
                            _ => format!("unknown model {model}"),
                        },
                    );
                };
                match (method, tail) {
                    (Method::GET, []) => {
                        let mut m = endpoint.metadata();
                        if version.is_none() {
                            m.versions = self.repo.versions(model);
                        }
                        json_response(StatusCode::OK, &v2::metadata_json(&m))
                    }
                    (Method::GET, ["ready"]) => {
                        let ready = endpoint.ready();
                        json_response(
                            if ready {
                                StatusCode::OK
                            } else {
                                StatusCode::SERVICE_UNAVAILABLE
                            },
                            &json!({ "name": model, "ready": ready }),
                        )
                    }
                    (Method::POST, ["infer"]) => self.infer(endpoint, req).await,
                    (_, ["infer"]) | (_, []) | (_, ["ready"]) => error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        &format!("{} {path}: method not allowed", req.method()),
                    ),
                    _ => error(StatusCode::NOT_FOUND, &format!("no route {path}")),
                }
            }
            _ => error(StatusCode::NOT_FOUND, &format!("no route {method} {path}")),
        }
    }

    async fn infer(&self, endpoint: Arc<dyn Endpoint>, req: Request<Incoming>) -> Response<Body> {
        let header_len = match req.headers().get(HEADER_LENGTH) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()) {
                Some(n) => Some(n),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "Inference-Header-Content-Length: not a length",
                    );
                }
            },
        };
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| crate::Bearer::new(token.trim()))
            });
        let encoding = req
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase());
        let accept = req
            .headers()
            .get(hyper::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(response_encoding);
        let limit = self.config.max_body_bytes;
        if let Some(len) = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<usize>().ok())
            && len > limit
        {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body of {len} bytes exceeds the limit of {limit}"),
            );
        }
        let body = match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body: {e} (limit {limit} bytes)"),
                );
            }
        };
        let body = match encoding.as_deref() {
            None | Some("identity") => body.to_vec(),
            Some(enc @ ("gzip" | "deflate")) => {
                let mut out = Vec::new();
                let read = if enc == "gzip" {
                    flate2::read::GzDecoder::new(&body[..])
                        .take(limit as u64 + 1)
                        .read_to_end(&mut out)
                } else {
                    flate2::read::ZlibDecoder::new(&body[..])
                        .take(limit as u64 + 1)
                        .read_to_end(&mut out)
                };
                if let Err(e) = read {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("Content-Encoding {enc}: {e}"),
                    );
                }
                if out.len() > limit {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("decompressed body exceeds the limit of {limit} bytes"),
                    );
                }
                out
            }
            Some(other) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Content-Encoding {other} is not supported (gzip, deflate)"),
                );
            }
        };
        // A header length without binary data is plain JSON (tritonclient sends it either way).
        let wire: WireRequest = match v2::decode_request(&body, header_len) {
            Ok(w) => w,
            Err(e) => return error(status_of(&e), &e.to_string()),
        };
        let model = endpoint.metadata().name;
        let mut request = wire.request.clone();
        request.bearer = bearer;
        let answer = CatchUnwind {
            inner: endpoint.infer(request),
            model,
        }
        .await;
        match answer {
            Ok(r) => {
                let (body, header_len) = v2::encode_response(&r, &wire);
                match accept.map(|enc| (enc, compress(enc, &body))) {
                    Some((enc, Ok(packed))) => {
                        let mut r = respond(StatusCode::OK, packed, header_len);
                        r.headers_mut()
                            .insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
                        r
                    }
                    Some((enc, Err(e))) => {
                        tracing::warn!(error = %e, encoding = enc, "response not compressed");
                        respond(StatusCode::OK, body, header_len)
                    }
                    None => respond(StatusCode::OK, body, header_len),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "inference failed");
                let mut r = error(status_of(&e), &e.to_string());
                if matches!(e, Error::Unauthenticated { .. }) {
                    r.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer"),
                    );
                }
                r
            }
        }
    }
}

/// Serves `repo` on `listener` until `shutdown` completes; then stops accepting and waits for
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    repo: Arc<ModelRepository>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let service = Arc::new(Service { repo, config });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, Infallible>(service.handle(req).await) }
                    }),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A server running on its own threads; [`shutdown`](Self::shutdown) (or drop) stops it
/// gracefully.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 for any free port) and serves `repo` on a new tokio runtime.
    pub fn start(
        addr: SocketAddr,
        repo: Arc<ModelRepository>,
        config: ServerConfig,
    ) -> Result<Self> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if config.threads > 0 {
            builder.worker_threads(config.threads);
        }
        let runtime = builder
            .enable_all()
            .thread_name("aistd-http")
            .build()
            .map_err(|e| Error::invalid("http server", format!("starting tokio: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Error::invalid(format!("address {addr}"), format!("cannot bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::invalid("http server", e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("aistd-http-main".into())
            .spawn(move || {
                runtime.block_on(serve(listener, repo, config, async move {
                    let _ = stopped.await;
                }))
            })
            .map_err(|e| Error::invalid("http server", e.to_string()))?;
        tracing::info!(%addr, "serving the KServe v2 protocol");
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process gets SIGINT (Ctrl-C) or SIGTERM, then shuts down gracefully.
    pub fn run_until_signal(self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid("http server", format!("starting tokio: {e}")))?;
        rt.block_on(async {
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| Error::invalid("http server", format!("SIGTERM handler: {e}")))?;
                tokio::select! {
                    r = tokio::signal::ctrl_c() => r.map_err(|e| Error::invalid("http server", e.to_string()))?,
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| Error::invalid("http server", e.to_string()))?;
            Ok::<(), Error>(())
        })?;
        tracing::info!("signal received: draining requests in flight");
        self.shutdown()
    }

    /// Stops accepting connections, lets requests in flight finish, and returns.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::invalid("http server", "its thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
