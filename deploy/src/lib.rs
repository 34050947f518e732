//! Model deployment for AI platforms. This first part: **bundles**, the unit a model is shipped
//! in, and the tensor vocabulary of the KServe Open Inference Protocol v2.
//!
//! - [`bundle`]: a directory of model files with a manifest ([`Manifest`]: name, version,
//!   platform, input/output [`TensorSpec`]s, preprocessing, metadata, model card) listing the
//!   SHA-256 of every file, optionally signed with Ed25519 over the manifest's digest; verified
//!   on open (a missing, altered, unlisted or unsigned-when-required file is an error naming it);
//!   written atomically; packed into and unpacked from a single tar archive.
//! - [`registry`]: published bundles by model and version in a [`registry::BundleStore`] (local
//!   files or memory), stage aliases with promotion and rollback, every change recorded to an
//!   [`registry::AuditSink`] before it is applied.
//! - [`endpoint`]: the [`Endpoint`] trait (object-safe, async): metadata, readiness, inference on
//!   named, typed, shaped [`Tensor`]s in every v2 datatype ([`infer`]).
//! - [`runtime`]: platform → loader ([`Runtimes`]) of [`Predictor`]s, served by
//!   [`BundleEndpoint`] (requests and outputs checked against the manifest, ready after a
//!   warm-up inference).
//! - [`batch`]: the dynamic batcher ([`batch::Batcher`]), an endpoint around an endpoint.
//! - [`v2`]: the KServe v2 wire format (JSON and the binary tensor data extension), free of any
//!   transport.
//! - `http` (feature `http`): the v2 REST API over HTTP/1.1 (hyper on tokio), a
//!   `ModelRepository` that can change while serving, graceful shutdown.
//! - [`middleware`]: concurrency and rate limits, timeouts, request-size limits, bearer-token
//!   authentication with an authorization policy.
//! - [`router`]: weighted canaries, sticky routing, shadow traffic, promotion and rollback.
//! - [`drift`]: per-feature PSI, Kolmogorov–Smirnov, Jensen–Shannon and Wasserstein drift
//!   against a reference profile, in memory bounded by the bins ([`drift::DriftMonitor`]).
//! - [`metrics`]: Prometheus text metrics of served models ([`metrics::Metered`]), with
//!   Triton's `nv_inference_*` names and a recommended-replicas signal.
//! - [`sign`]: Ed25519 keys (RFC 8032) whose secrets stay out of `Debug` output.
//! - [`tensor`]: the v2 datatypes ([`DataType`]) and tensor signatures.
//!
//! ```
//! use aistd_deploy::{Bundle, DataType, Manifest, SigningKey, TensorSpec, Verify};
//!
//! let tmp = tempfile::tempdir()?;
//! let src = tmp.path().join("model");
//! std::fs::create_dir(&src)?;
//! std::fs::write(src.join("model.onnx"), b"weights")?;
//! let manifest = Manifest::new("iris", "3", "onnx")?
//!     .with_input(TensorSpec::new("x", DataType::Fp32, &[-1, 4])?)
//!     .with_output(TensorSpec::new("y", DataType::Int64, &[-1])?);
//! let mut bundle = Bundle::create(&tmp.path().join("iris-3"), manifest, &src)?;
//! let key = SigningKey::generate()?;
//! bundle.sign(&key)?;
//! let opened = Bundle::open(bundle.dir(), &Verify::signed_by([key.public_hex()]))?;
//! assert_eq!(opened.signer(), Some(key.public_hex().as_str()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Not yet here (see the README's status table): the ONNX runtime.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod batch;
pub mod bundle;
#[cfg(any(feature = "conformance", test))]
pub mod conformance;
pub mod drift;
pub mod endpoint;
mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod infer;
pub mod metrics;
pub mod middleware;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod sign;
pub mod tensor;
pub mod v2;

pub use bundle::{Bundle, FileEntry, Manifest, Verify};
pub use endpoint::{Endpoint, ModelMetadata};
pub use error::{Error, Result};
pub use infer::{Bearer, InferRequest, InferResponse, Tensor, TensorData};
pub use runtime::{BundleEndpoint, Identity, Predictor, Runtimes};
pub use sign::SigningKey;
pub use tensor::{DataType, TensorSpec};
