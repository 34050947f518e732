//! Runtimes: a bundle's platform names a loader that turns its files into a [`Predictor`];
//! [`BundleEndpoint`] serves the predictor behind the [`Endpoint`] contract.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bundle::Bundle;
use crate::endpoint::{BoxFuture, Endpoint, ModelMetadata};
use crate::infer::{InferRequest, InferResponse, Tensor, TensorData};
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// A loaded model: inputs in, outputs out, synchronously.
///
/// # Contract
///
/// `predict` receives the inputs in the order of the bundle manifest's inputs, already checked
/// against it, and returns every output of the manifest (any order), each conforming to its
/// spec. An `Err` is the model's failure, reported to the caller as
/// [`Error::Runtime`]. It may be called from many threads at once.
pub trait Predictor: Send + Sync + fmt::Debug {
    /// Runs the model.
    fn predict(&self, inputs: &[Tensor]) -> std::result::Result<Vec<Tensor>, String>;
}

/// Turns a verified bundle into a predictor.
pub type Loader = Arc<dyn Fn(&Bundle) -> Result<Arc<dyn Predictor>> + Send + Sync>;

/// Loaders by platform name.
#[derive(Clone, Default)]
pub struct Runtimes {
    loaders: BTreeMap<String, Loader>,
}

impl fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtimes")
            .field("platforms", &self.platforms())
            .finish()
    }
}

impl Runtimes {
    /// No runtimes.
    pub fn new() -> Self {
        Runtimes::default()
    }

    /// The runtimes built into this crate: [`IDENTITY`] ([`Identity`]) and, with the `onnx`
    /// feature, [`ONNX`](crate::onnx::ONNX) ([`OnnxPredictor`](crate::onnx::OnnxPredictor)).
    pub fn builtin() -> Self {
        let mut r = Runtimes::new();
        r.register(IDENTITY, |b: &Bundle| {
            Ok(Arc::new(Identity::for_manifest(b.manifest())?) as Arc<dyn Predictor>)
        });
        #[cfg(feature = "onnx")]
        r.register(crate::onnx::ONNX, |b: &Bundle| {
            Ok(Arc::new(crate::onnx::OnnxPredictor::load(b)?) as Arc<dyn Predictor>)
        });
        r
    }

    /// Registers (or replaces) the loader of `platform`.
    pub fn register(
        &mut self,
        platform: impl Into<String>,
        loader: impl Fn(&Bundle) -> Result<Arc<dyn Predictor>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.loaders.insert(platform.into(), Arc::new(loader));
        self
    }

    /// The registered platforms, sorted.
    pub fn platforms(&self) -> Vec<String> {
        self.loaders.keys().cloned().collect()
    }

    /// Loads `bundle` with its platform's loader and warms it up ([`BundleEndpoint::new`]).
    pub fn load(&self, bundle: &Bundle) -> Result<BundleEndpoint> {
        let platform = &bundle.manifest().platform;
        let loader = self
            .loaders
            .get(platform)
            .ok_or_else(|| Error::UnknownPlatform {
                platform: platform.clone(),
                known: self.platforms().join(", "),
            })?;
        BundleEndpoint::new(bundle, loader(bundle)?)
    }
}

/// A bundle's model as an [`Endpoint`]: requests checked against the manifest's signature,
/// outputs checked against it too, ready once a warm-up inference has passed.
#[derive(Debug)]
pub struct BundleEndpoint {
    metadata: ModelMetadata,
    manifest_sha256: String,
    predictor: Arc<dyn Predictor>,
    ready: AtomicBool,
}

impl BundleEndpoint {
    /// Serves `predictor` with `bundle`'s signature, after one warm-up inference on zeros (each
    /// `-1` dimension taken as 1) whose outputs must conform; its failure is the error.
    pub fn new(bundle: &Bundle, predictor: Arc<dyn Predictor>) -> Result<Self> {
        let m = bundle.manifest();
        if m.inputs.is_empty() || m.outputs.is_empty() {
            return Err(Error::invalid(
                format!("bundle {}", bundle.dir().display()),
                "an endpoint needs at least one input and one output in the manifest",
            ));
        }
        let endpoint = BundleEndpoint {
            metadata: ModelMetadata {
                name: m.name.clone(),
                versions: vec![m.version.clone()],
                platform: m.platform.clone(),
                inputs: m.inputs.clone(),
                outputs: m.outputs.clone(),
            },
            manifest_sha256: bundle.manifest_sha256().to_string(),
            predictor,
            ready: AtomicBool::new(false),
        };
        let warm: Vec<Tensor> = m.inputs.iter().map(zeros).collect::<Result<_>>()?;
        endpoint.run(&warm).map_err(|e| Error::Runtime {
            model: m.name.clone(),
            reason: format!("warm-up inference failed: {e}"),
        })?;
        endpoint.ready.store(true, Ordering::Release);
        tracing::info!(model = %m.name, version = %m.version, "endpoint ready");
        Ok(endpoint)
    }

    /// The SHA-256 of the manifest it serves.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// Runs the predictor on inputs in manifest order; checks the outputs.
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let model = &self.metadata.name;
        let outputs = self
            .predictor
            .predict(inputs)
            .map_err(|reason| Error::Runtime {
                model: model.clone(),
                reason,
            })?;
        for spec in &self.metadata.outputs {
            let Some(t) = outputs.iter().find(|t| t.name == spec.name) else {
                return Err(Error::Runtime {
                    model: model.clone(),
                    reason: format!("returned no output `{}`", spec.name),
                });
            };
            t.conforms_to(spec).map_err(|e| Error::Runtime {
                model: model.clone(),
                reason: format!("returned an output that breaks its signature: {e}"),
            })?;
        }
        Ok(outputs)
    }
}

/// Zeros for `spec`, each `-1` dimension taken as 1.
fn zeros(spec: &TensorSpec) -> Result<Tensor> {
    let shape: Vec<usize> = spec.shape.iter().map(|d| (*d).max(1) as usize).collect();
    let n = shape.iter().product();
    Tensor::new(&spec.name, &shape, TensorData::zeros(spec.datatype, n))
}

impl Endpoint for BundleEndpoint {
    fn metadata(&self) -> ModelMetadata {
        self.metadata.clone()
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            if !self.ready() {
                return Err(Error::NotReady(self.metadata.name.clone()));
            }
            request.validate(&self.metadata.inputs, &self.metadata.outputs)?;
            let InferRequest {
                id,
                mut inputs,
                outputs: wanted,
                ..
            } = request;
            // Manifest order.
            let mut ordered = Vec::with_capacity(inputs.len());
            for spec in &self.metadata.inputs {
                if let Some(i) = inputs.iter().position(|t| t.name == spec.name) {
                    ordered.push(inputs.swap_remove(i));
                }
            }
            let mut produced = self.run(&ordered)?;
            let outputs = if wanted.is_empty() {
                self.metadata
                    .outputs
                    .iter()
                    .filter_map(|s| {
                        let i = produced.iter().position(|t| t.name == s.name)?;
                        Some(produced.swap_remove(i))
                    })
                    .collect()
            } else {
                wanted
                    .iter()
                    .filter_map(|w| {
                        let i = produced.iter().position(|t| &t.name == w)?;
                        Some(produced.swap_remove(i))
                    })
                    .collect()
            };
            Ok(InferResponse {
                model_name: self.metadata.name.clone(),
                model_version: self.metadata.versions.first().cloned(),
                id,
                outputs,
            })
        })
    }
}

/// The platform name of [`Identity`].
pub const IDENTITY: &str = "identity";

/// Returns each input as the output at the same position (Triton's identity backend): for
/// testing clients, servers and middleware on every datatype without a model.
#[derive(Debug, Clone)]
pub struct Identity {
    outputs: Vec<String>,
}

impl Identity {
    /// An identity for `manifest`, whose outputs must pair with its inputs (same count, same
    /// datatypes and shapes).
    pub fn for_manifest(manifest: &crate::Manifest) -> Result<Self> {
        let what = || format!("identity model {}", manifest.name);
        if manifest.inputs.len() != manifest.outputs.len() {
            return Err(Error::invalid(
                what(),
                format!(
                    "{} inputs but {} outputs (they pair up)",
                    manifest.inputs.len(),
                    manifest.outputs.len()
                ),
            ));
        }
        for (i, o) in manifest.inputs.iter().zip(&manifest.outputs) {
            if i.datatype != o.datatype || i.shape != o.shape {
                return Err(Error::invalid(
                    what(),
                    format!(
                        "output {} ({} {:?}) does not match input {} ({} {:?})",
                        o.name, o.datatype, o.shape, i.name, i.datatype, i.shape
                    ),
                ));
            }
        }
        Ok(Identity {
            outputs: manifest.outputs.iter().map(|o| o.name.clone()).collect(),
        })
    }
}

impl Predictor for Identity {
    fn predict(&self, inputs: &[Tensor]) -> std::result::Result<Vec<Tensor>, String> {
        Ok(inputs
            .iter()
            .zip(&self.outputs)
            .map(|(t, name)| Tensor {
                name: name.clone(),
                shape: t.shape.clone(),
                data: t.data.clone(),
            })
            .collect())
    }
}
