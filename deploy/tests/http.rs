//! The KServe v2 HTTP server, driven over raw TCP: health, metadata, JSON and binary inference
//! on many datatypes, compression, every error case with the server staying up, hot reload,
//! graceful shutdown. (`scripts/test.sh` also drives it with tritonclient.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aistd_deploy::endpoint::BoxFuture;
use aistd_deploy::http::{ModelRepository, RunningServer, ServerConfig};
use aistd_deploy::metrics::{Metrics, MetricsConfig};
use aistd_deploy::{
    Bundle, DataType, Endpoint, InferRequest, InferResponse, Manifest, ModelMetadata, Runtimes,
    TensorSpec,
};
use serde_json::{Value, json};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        let n = self
            .header("inference-header-content-length")
            .map_or(self.body.len(), |n| n.parse().expect("length"));
        serde_json::from_slice(&self.body[..n]).expect("json body")
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn post_json(addr: SocketAddr, path: &str, v: &Value) -> Reply {
    http(
        addr,
        "POST",
        path,
        &[],
        &serde_json::to_vec(v).expect("json"),
    )
}

/// An identity bundle with inputs/outputs of several datatypes.
fn identity_bundle(root: &Path, version: &str) -> Bundle {
    let src = root.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("README"), b"identity").expect("write");
    let mut m = Manifest::new("echo", version, "identity").expect("manifest");
    for (dt, shape) in [
        (DataType::Fp32, vec![-1, 3]),
        (DataType::Int64, vec![-1]),
        (DataType::Bool, vec![2]),
        (DataType::Bytes, vec![-1]),
        (DataType::Fp16, vec![2]),
        (DataType::Uint8, vec![-1, 2]),
    ] {
        m = m
            .with_input(TensorSpec::new(format!("in_{dt}"), dt, &shape).expect("spec"))
            .with_output(TensorSpec::new(format!("out_{dt}"), dt, &shape).expect("spec"));
    }
    Bundle::create(&root.join(format!("bundle-{version}")), m, &src).expect("bundle")
}

fn start(root: &Path) -> (RunningServer, Arc<ModelRepository>) {
    let repo = Arc::new(ModelRepository::new());
    let ep = Runtimes::builtin()
        .load(&identity_bundle(root, "1"))
        .expect("load");
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()));
    repo.insert(Arc::new(metrics.wrap(Arc::new(ep))))
        .expect("insert");
    let server = RunningServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        repo.clone(),
        ServerConfig {
            max_body_bytes: 1 << 20,
            threads: 2,
            metrics: Some(metrics.clone()),
        },
    )
    .expect("start");
    (server, repo)
}

fn json_inputs() -> Value {
    json!({
        "id": "r1",
        "inputs": [
            {"name": "in_FP32", "datatype": "FP32", "shape": [2, 3], "data": [[1.5, 2, 3], [4, 5, -6.25]]},
            {"name": "in_INT64", "datatype": "INT64", "shape": [2], "data": [-9007199254740993i64, 7]},
            {"name": "in_BOOL", "datatype": "BOOL", "shape": [2], "data": [true, false]},
            {"name": "in_BYTES", "datatype": "BYTES", "shape": [2], "data": ["héllo", ""]},
            {"name": "in_FP16", "datatype": "FP16", "shape": [2], "data": [0.5, -2]},
            {"name": "in_UINT8", "datatype": "UINT8", "shape": [1, 2], "data": [0, 255]}
        ]
    })
}

#[test]
fn health_metadata_and_json_inference() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, _) = start(tmp.path());
    let addr = server.addr();
    assert_eq!(http(addr, "GET", "/v2/health/live", &[], b"").status, 200);
    assert_eq!(http(addr, "GET", "/v2/health/ready", &[], b"").status, 200);
    let meta = http(addr, "GET", "/v2", &[], b"").json();
    assert_eq!(meta["name"], "aistd");
    assert_eq!(meta["extensions"], json!(["binary_tensor_data"]));
    let model = http(addr, "GET", "/v2/models/echo", &[], b"").json();
    assert_eq!(model["versions"], json!(["1"]));
    assert_eq!(model["platform"], "identity");
    assert_eq!(
        model["inputs"][0],
        json!({"name": "in_FP32", "datatype": "FP32", "shape": [-1, 3]})
    );
    assert_eq!(
        http(addr, "GET", "/v2/models/echo/versions/1/ready", &[], b"").status,
        200
    );

    let r = post_json(addr, "/v2/models/echo/infer", &json_inputs());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["model_name"], "echo");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "r1");
    let out = |name: &str| {
        v["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .expect("output")
    };
    assert_eq!(
        out("out_FP32")["data"],
        json!([1.5, 2.0, 3.0, 4.0, 5.0, -6.25])
    );
    assert_eq!(out("out_FP32")["shape"], json!([2, 3]));
    assert_eq!(out("out_INT64")["data"], json!([-9007199254740993i64, 7]));
    assert_eq!(out("out_BOOL")["data"], json!([true, false]));
    assert_eq!(out("out_BYTES")["data"], json!(["héllo", ""]));
    assert_eq!(out("out_FP16")["data"], json!([0.5, -2.0]));
    assert_eq!(out("out_UINT8")["data"], json!([0, 255]));
    // One requested output only.
    let mut one = json_inputs();
    one["outputs"] = json!([{"name": "out_BOOL"}]);
    let v = post_json(addr, "/v2/models/echo/versions/1/infer", &one).json();
    assert_eq!(v["outputs"].as_array().expect("outputs").len(), 1);
    // Two answered, one refused by the model's signature: the metrics say so.
    let mut wrong = json_inputs();
    wrong["inputs"][2]["shape"] = json!([3]);
    wrong["inputs"][2]["data"] = json!([true, true, true]);
    assert_eq!(post_json(addr, "/v2/models/echo/infer", &wrong).status, 400);
    let m = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .expect("type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8_lossy(&m.body);
    for line in [
        "aistd_inference_request_success_total{model=\"echo\",version=\"1\"} 2",
        "aistd_inference_request_failure_total{model=\"echo\",version=\"1\",reason=\"invalid\"} 1",
        "nv_inference_request_success{model=\"echo\",version=\"1\"} 2",
        "aistd_inference_request_duration_seconds_count{model=\"echo\",version=\"1\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    server.shutdown().expect("shutdown");
}

#[test]
fn binary_tensor_data_and_compressed_requests() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, _) = start(tmp.path());
    let addr = server.addr();
    // FP32 and BYTES in binary, the rest in JSON; every output back in binary.
    let fp32: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut bytes = Vec::new();
    for s in [&b"ab"[..], b"\x00\xff"] {
        bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bytes.extend_from_slice(s);
    }
    let header = json!({
        "inputs": [
            {"name": "in_FP32", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": fp32.len()}},
            {"name": "in_INT64", "datatype": "INT64", "shape": [1], "data": [5]},
            {"name": "in_BOOL", "datatype": "BOOL", "shape": [2], "data": [false, true]},
            {"name": "in_BYTES", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": bytes.len()}},
            {"name": "in_FP16", "datatype": "FP16", "shape": [2], "data": [1, 2]},
            {"name": "in_UINT8", "datatype": "UINT8", "shape": [1, 2], "data": [3, 4]}
        ],
        "parameters": {"binary_data_output": true}
    });
    let header = serde_json::to_vec(&header).expect("json");
    let mut body = header.clone();
    body.extend_from_slice(&fp32);
    body.extend_from_slice(&bytes);
    let n = header.len().to_string();
    let r = http(
        addr,
        "POST",
        "/v2/models/echo/infer",
        &[("Inference-Header-Content-Length", &n)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let hl: usize = r
        .header("inference-header-content-length")
        .expect("binary response")
        .parse()
        .expect("len");
    let v = r.json();
    let mut at = hl;
    let mut data = std::collections::BTreeMap::new();
    for o in v["outputs"].as_array().expect("outputs") {
        let size = o["parameters"]["binary_data_size"]
            .as_u64()
            .expect("binary") as usize;
        data.insert(
            o["name"].as_str().expect("name").to_string(),
            r.body[at..at + size].to_vec(),
        );
        at += size;
    }
    assert_eq!(at, r.body.len());
    assert_eq!(data["out_FP32"], fp32);
    assert_eq!(data["out_BYTES"], bytes);
    assert_eq!(data["out_INT64"], 5i64.to_le_bytes());
    assert_eq!(data["out_BOOL"], [0, 1]);
    assert_eq!(data["out_FP16"], [0x00, 0x3c, 0x00, 0x40]);

    // gzip and deflate bodies.
    let plain = serde_json::to_vec(&json_inputs()).expect("json");
    for (name, compressed) in [
        ("gzip", {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).expect("gzip");
            e.finish().expect("gzip")
        }),
        ("deflate", {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).expect("deflate");
            e.finish().expect("deflate")
        }),
    ] {
        let r = http(
            addr,
            "POST",
            "/v2/models/echo/infer",
            &[("Content-Encoding", name)],
            &compressed,
        );
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["id"], "r1");
    }

    // Compressed responses, as Accept-Encoding asks: gzip first, deflate next, q=0 refuses.
    let uncompressed = http(addr, "POST", "/v2/models/echo/infer", &[], &plain);
    assert_eq!(uncompressed.header("content-encoding"), None);
    for (accept, want) in [
        ("gzip", Some("gzip")),
        ("deflate, gzip;q=0.5", Some("gzip")),
        ("gzip;q=0, deflate", Some("deflate")),
        ("br", None),
        ("identity", None),
    ] {
        let r = http(
            addr,
            "POST",
            "/v2/models/echo/infer",
            &[("Accept-Encoding", accept)],
            &plain,
        );
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), want, "{accept}");
        let mut body = Vec::new();
        match want {
            Some("gzip") => {
                flate2::read::GzDecoder::new(&r.body[..])
                    .read_to_end(&mut body)
                    .expect("gunzip");
            }
            Some(_) => {
                flate2::read::ZlibDecoder::new(&r.body[..])
                    .read_to_end(&mut body)
                    .expect("inflate");
            }
            None => body = r.body.clone(),
        }
        assert_eq!(body, uncompressed.body, "{accept}");
    }
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, _) = start(tmp.path());
    let addr = server.addr();
    let mut wrong_type = json_inputs();
    wrong_type["inputs"][0]["datatype"] = json!("INT32");
    let mut wrong_count = json_inputs();
    wrong_count["inputs"][1]["data"] = json!([1, 2, 3]);
    let mut wrong_shape = json_inputs();
    wrong_shape["inputs"][2]["shape"] = json!([3]);
    wrong_shape["inputs"][2]["data"] = json!([true, true, true]);
    let mut bad_binary = json_inputs();
    bad_binary["inputs"][0] = json!({"name": "in_FP32", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 8}});
    let bad_binary = serde_json::to_vec(&bad_binary).expect("json");
    let bad_binary_len = bad_binary.len().to_string();
    let mut bad_binary_body = bad_binary.clone();
    bad_binary_body.extend_from_slice(&[0; 8]);
    let cases: Vec<(u16, &str, Reply)> = vec![
        (
            400,
            "not valid JSON",
            http(addr, "POST", "/v2/models/echo/infer", &[], b"{nope"),
        ),
        (
            400,
            "in_FP32",
            post_json(addr, "/v2/models/echo/infer", &wrong_type),
        ),
        (
            400,
            "in_INT64",
            post_json(addr, "/v2/models/echo/infer", &wrong_count),
        ),
        (
            400,
            "in_BOOL",
            post_json(addr, "/v2/models/echo/infer", &wrong_shape),
        ),
        (
            400,
            "binary_data_size 8 where 3 FP32 elements need 12",
            http(
                addr,
                "POST",
                "/v2/models/echo/infer",
                &[("Inference-Header-Content-Length", &bad_binary_len)],
                &bad_binary_body,
            ),
        ),
        (
            404,
            "unknown model nope",
            post_json(addr, "/v2/models/nope/infer", &json_inputs()),
        ),
        (
            404,
            "has no version 7",
            http(addr, "GET", "/v2/models/echo/versions/7", &[], b""),
        ),
        (404, "no route", http(addr, "GET", "/v3/x", &[], b"")),
        (
            405,
            "method not allowed",
            http(addr, "GET", "/v2/models/echo/infer", &[], b""),
        ),
        // Refused on its declared length, before any body is read.
        (
            413,
            "exceeds the limit",
            http(
                addr,
                "POST",
                "/v2/models/echo/infer",
                &[("Content-Length", "2097152")],
                b"",
            ),
        ),
        (
            400,
            "not supported",
            http(
                addr,
                "POST",
                "/v2/models/echo/infer",
                &[("Content-Encoding", "br")],
                b"{}",
            ),
        ),
    ];
    for (status, words, r) in &cases {
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, *status, "{words}: {text}");
        let v: Value = serde_json::from_slice(&r.body).expect("a JSON error body");
        assert!(
            v["error"].as_str().expect("error").contains(words),
            "{words}: {text}"
        );
    }
    // A burst of bad requests mixed into good ones, concurrently: every good one succeeds.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                s.spawn(move || {
                    if i % 2 == 0 {
                        post_json(addr, "/v2/models/echo/infer", &json_inputs()).status
                    } else {
                        http(addr, "POST", "/v2/models/echo/infer", &[], b"[1,2").status
                    }
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let status = h.join().expect("thread");
            assert_eq!(status, if i % 2 == 0 { 200 } else { 400 });
        }
    });
}

/// Counts the requests it started, sleeps, then answers; panics on request id "panic".
#[derive(Debug)]
struct Slow(ModelMetadata, Arc<std::sync::atomic::AtomicUsize>);

impl Endpoint for Slow {
    fn metadata(&self) -> ModelMetadata {
        self.0.clone()
    }
    fn ready(&self) -> bool {
        true
    }
    fn infer(&self, r: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            assert_ne!(r.id.as_deref(), Some("panic"), "asked to panic");
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            Ok(InferResponse {
                model_name: self.0.name.clone(),
                model_version: Some("1".into()),
                id: r.id,
                outputs: vec![],
            })
        })
    }
}

#[test]
fn hot_reload_panics_and_graceful_shutdown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, repo) = start(tmp.path());
    let addr = server.addr();
    // A new version while serving: listed, and the default.
    let v2 = Runtimes::builtin()
        .load(&identity_bundle(tmp.path(), "2"))
        .expect("load");
    repo.insert(Arc::new(v2)).expect("insert");
    assert_eq!(
        http(addr, "GET", "/v2/models/echo", &[], b"").json()["versions"],
        json!(["1", "2"])
    );
    assert_eq!(
        post_json(addr, "/v2/models/echo/infer", &json_inputs()).json()["model_version"],
        "2"
    );
    assert_eq!(
        post_json(addr, "/v2/models/echo/versions/1/infer", &json_inputs()).json()["model_version"],
        "1"
    );

    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    repo.insert(Arc::new(Slow(
        ModelMetadata {
            name: "slow".into(),
            versions: vec!["1".into()],
            platform: "test".into(),
            inputs: vec![],
            outputs: vec![],
        },
        started.clone(),
    )))
    .expect("insert");
    let r = post_json(
        addr,
        "/v2/models/slow/infer",
        &json!({"id": "panic", "inputs": []}),
    );
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("panicked"));
    // A request in flight when shutdown begins still gets its answer.
    std::thread::scope(|s| {
        let inflight = s.spawn(|| {
            post_json(
                addr,
                "/v2/models/slow/infer",
                &json!({"id": "a", "inputs": []}),
            )
        });
        while started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.shutdown().expect("shutdown");
        let r = inflight.join().expect("thread");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["id"], "a");
    });
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn bearer_tokens_over_http() {
    use aistd_deploy::Bearer;
    use aistd_deploy::middleware::{AllowAll, Authenticated};
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Arc::new(ModelRepository::new());
    let ep = Runtimes::builtin()
        .load(&identity_bundle(tmp.path(), "1"))
        .expect("load");
    let guarded = Authenticated::new(Arc::new(ep), Arc::new(AllowAll))
        .with_token(&Bearer::new("s3cret"), "ci");
    repo.insert(Arc::new(guarded)).expect("insert");
    let server = RunningServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        repo,
        ServerConfig::default(),
    )
    .expect("start");
    let addr = server.addr();
    let body = serde_json::to_vec(&json_inputs()).expect("json");
    let none = http(addr, "POST", "/v2/models/echo/infer", &[], &body);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(
        none.json()["error"]
            .as_str()
            .expect("error")
            .contains("no bearer token")
    );
    let wrong = http(
        addr,
        "POST",
        "/v2/models/echo/infer",
        &[("Authorization", "Bearer guess")],
        &body,
    );
    assert_eq!(wrong.status, 401);
    let right = http(
        addr,
        "POST",
        "/v2/models/echo/infer",
        &[("Authorization", "Bearer s3cret")],
        &body,
    );
    assert_eq!(
        right.status,
        200,
        "{}",
        String::from_utf8_lossy(&right.body)
    );
}

#[test]
fn removing_a_version_drops_the_model_default_so_nothing_routes_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = ModelRepository::new();
    let load = |v: &str| -> Arc<dyn aistd_deploy::Endpoint> {
        Arc::new(
            Runtimes::builtin()
                .load(&identity_bundle(dir.path(), v))
                .expect("load"),
        )
    };
    let (v1, v2) = (load("1"), load("2"));
    repo.insert(v1.clone()).expect("insert");
    repo.insert(v2.clone()).expect("insert");
    // The default (a router, say) answers unversioned requests instead of the latest.
    repo.set_default(v1.clone());
    let version_of = |e: Option<Arc<dyn aistd_deploy::Endpoint>>| {
        e.expect("endpoint").metadata().versions[0].clone()
    };
    assert_eq!(version_of(repo.get("echo", None)), "1");
    assert!(repo.remove("echo", "1"));
    assert_eq!(version_of(repo.get("echo", None)), "2");
    assert!(repo.get("echo", Some("1")).is_none());
    assert!(!repo.clear_default("echo"), "already dropped");
    assert!(repo.remove("echo", "2"));
    assert!(repo.get("echo", None).is_none());
    assert!(!repo.remove("echo", "2"));
}
