//! OpenLineage run events (spec 2-0-2) for governance runs: START, COMPLETE and FAIL, with the
//! `schema` and `dataSource` dataset facets, the `dataQualityMetrics` input facet and the
//! `dataQualityAssertions` dataset facet. Events go to a JSON Lines file and, when configured, are
//! POSTed to an OpenLineage HTTP endpoint such as Marquez (`http://host:5000/api/v1/lineage`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_schema::Schema;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::expect::ExpectationResult;
use crate::profile::Profile;
use crate::source::Descriptor;

/// `schemaURL` of a RunEvent.
pub const RUN_EVENT_SCHEMA: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const DATASOURCE_FACET: &str = "https://openlineage.io/spec/facets/1-0-0/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet";
const METRICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet";
const ASSERTIONS_FACET: &str = "https://openlineage.io/spec/facets/1-2-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet";
/// The `producer` of every event.
pub const PRODUCER: &str = concat!(
    "https://example.invalid/aistd/tree/v",
    env!("CARGO_PKG_VERSION"),
    "/governance"
);

/// One dataset of an event, with its facets.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageDataset {
    namespace: String,
    name: String,
    facets: Map<String, Value>,
    input_facets: Map<String, Value>,
}

fn facet(schema_url: &str, body: Value) -> Value {
    let mut m = Map::new();
    m.insert("_producer".into(), PRODUCER.into());
    m.insert("_schemaURL".into(), schema_url.into());
    if let Value::Object(b) = body {
        m.extend(b);
    }
    Value::Object(m)
}

impl LineageDataset {
    /// A dataset by namespace (e.g. `file`) and name (e.g. an absolute path).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            facets: Map::new(),
            input_facets: Map::new(),
        }
    }

    /// A dataset named after a descriptor's URI (`file:///abs/x.csv` → namespace `file`, name
    /// `/abs/x.csv`), with the `dataSource` facet.
    pub fn from_descriptor(d: &Descriptor) -> Self {
        let (ns, name) = match d.uri.split_once("://") {
            Some((scheme, rest)) => (scheme.to_string(), rest.to_string()),
            None => match d.uri.split_once(':') {
                Some((scheme, rest)) => (scheme.to_string(), rest.to_string()),
                None => ("aistd".to_string(), d.uri.clone()),
            },
        };
        let mut ds = Self::new(ns, name);
        let uri = if d.uri.contains("://") {
            d.uri.clone()
        } else {
            format!("aistd://{}", d.name)
        };
        ds.facets.insert(
            "dataSource".into(),
            facet(DATASOURCE_FACET, json!({ "name": d.name, "uri": uri })),
        );
        ds
    }

    /// Adds the `schema` facet (field names and Arrow types; sensitivity levels, where a
    /// classification is in the field metadata, as descriptions).
    pub fn with_schema(mut self, schema: &Schema) -> Self {
        let fields: Vec<Value> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut v = json!({ "name": f.name(), "type": f.data_type().to_string(), "ordinal_position": i + 1 });
                if let Some(level) = f.metadata().get(crate::access::CLASSIFICATION_METADATA) {
                    v["description"] = format!("sensitivity: {level}").into();
                }
                v
            })
            .collect();
        self.facets.insert(
            "schema".into(),
            facet(SCHEMA_FACET, json!({ "fields": fields })),
        );
        self
    }

    /// Adds the `dataQualityMetrics` input facet from a profile.
    pub fn with_quality_metrics(mut self, p: &Profile) -> Self {
        let mut cols = Map::new();
        for c in &p.columns {
            let mut m = Map::new();
            m.insert("nullCount".into(), c.nulls.into());
            m.insert("count".into(), json!((c.count - c.nulls) as f64));
            m.insert(
                "distinctCount".into(),
                c.distinct.unwrap_or(c.distinct_approx).into(),
            );
            for (k, v) in [("min", &c.min), ("max", &c.max)] {
                if v.is_number() {
                    m.insert(k.into(), v.clone());
                }
            }
            if let Some(mean) = c.mean.filter(|m| m.is_finite()) {
                m.insert(
                    "sum".into(),
                    json!(mean * (c.count - c.nulls - c.nans) as f64),
                );
            }
            if !c.quantiles.is_empty() {
                let q: Map<String, Value> = c
                    .quantiles
                    .iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(q, v)| (q.to_string(), json!(v)))
                    .collect();
                m.insert("quantiles".into(), Value::Object(q));
            }
            cols.insert(c.name.clone(), Value::Object(m));
        }
        self.input_facets.insert(
            "dataQualityMetrics".into(),
            facet(
                METRICS_FACET,
                json!({ "rowCount": p.rows, "columnMetrics": cols }),
            ),
        );
        self
    }

    /// Adds the `dataQualityAssertions` facet from expectation results.
    pub fn with_assertions(mut self, results: &[ExpectationResult]) -> Self {
        let assertions: Vec<Value> = results
            .iter()
            .map(|r| {
                let mut a = json!({ "assertion": r.expectation.rule.kind(), "success": r.success });
                if let Some(c) = r.expectation.rule.column() {
                    a["column"] = c.into();
                }
                a
            })
            .collect();
        self.facets.insert(
            "dataQualityAssertions".into(),
            facet(ASSERTIONS_FACET, json!({ "assertions": assertions })),
        );
        self
    }

    fn to_json(&self, input: bool) -> Value {
        let mut v =
            json!({ "namespace": self.namespace, "name": self.name, "facets": self.facets });
        if input && !self.input_facets.is_empty() {
            v["inputFacets"] = Value::Object(self.input_facets.clone());
        }
        v
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineageSink {
    /// Appended as one JSON object per line.
    Jsonl(PathBuf),
    /// POSTed as JSON to an `http://` OpenLineage endpoint.
    Http(String),
}

/// Emits the events of one run.
#[derive(Debug, Clone)]
pub struct Lineage {
    namespace: String,
    job: String,
    run_id: String,
    sinks: Vec<LineageSink>,
}

/// A UUIDv7 (time-ordered, as OpenLineage recommends for run ids).
pub fn uuid_v7() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b[6..]);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Lineage {
    /// A run of job `job` in `namespace`, with a fresh run id and no sinks.
    pub fn new(namespace: impl Into<String>, job: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            job: job.into(),
            run_id: uuid_v7(),
            sinks: Vec::new(),
        }
    }

    /// Also append events to a JSON Lines file.
    pub fn to_jsonl(mut self, path: impl Into<PathBuf>) -> Self {
        self.sinks.push(LineageSink::Jsonl(path.into()));
        self
    }

    /// Also POST events to an OpenLineage endpoint (`http://host:port/api/v1/lineage`).
    pub fn to_http(mut self, url: impl Into<String>) -> Self {
        self.sinks.push(LineageSink::Http(url.into()));
        self
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The event as JSON.
    pub fn event(
        &self,
        event_type: &str,
        inputs: &[LineageDataset],
        outputs: &[LineageDataset],
    ) -> Value {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let mut time = crate::source::datetime::timestamp_string(micros);
        if !time.contains('.') {
            time.push_str(".000000");
        }
        json!({
            "eventType": event_type,
            "eventTime": time + "Z",
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": { "runId": self.run_id },
            "job": { "namespace": self.namespace, "name": self.job },
            "inputs": inputs.iter().map(|d| d.to_json(true)).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(|d| d.to_json(false)).collect::<Vec<_>>(),
        })
    }

    /// Emits a START event.
    pub fn start(&self, inputs: &[LineageDataset]) -> Result<()> {
        self.emit(&self.event("START", inputs, &[]))
    }

    /// Emits a COMPLETE event.
    pub fn complete(&self, inputs: &[LineageDataset], outputs: &[LineageDataset]) -> Result<()> {
        self.emit(&self.event("COMPLETE", inputs, outputs))
    }

    /// Emits a FAIL event.
    pub fn fail(&self, inputs: &[LineageDataset]) -> Result<()> {
        self.emit(&self.event("FAIL", inputs, &[]))
    }

    fn emit(&self, event: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(event)
            .map_err(|e| Error::invalid("lineage event", e.to_string()))?;
        for sink in &self.sinks {
            match sink {
                LineageSink::Jsonl(path) => {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| Error::io(path, e))?;
                    line.push(b'\n');
                    f.write_all(&line).map_err(|e| Error::io(path, e))?;
                    line.pop();
                }
                LineageSink::Http(url) => post_json(url, &line)?,
            }
        }
        Ok(())
    }
}

/// POSTs a JSON body to an `http://` URL; any status but 2xx is an error.
fn post_json(url: &str, body: &[u8]) -> Result<()> {
    let bad = |why: String| Error::invalid(format!("lineage endpoint {url}"), why);
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad("only http:// endpoints are supported (put a TLS proxy in front for https)".into())
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let io = |e: std::io::Error| Error::io(Path::new(url), e);
    let mut s = TcpStream::connect(&addr).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: aistd/{}\r\nConnection: close\r\n\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(io)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(io)?;
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "not an HTTP response: {:?}",
                text.chars().take(80).collect::<String>()
            ))
        })?;
    if !(200..300).contains(&status) {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        return Err(bad(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    Ok(())
}
