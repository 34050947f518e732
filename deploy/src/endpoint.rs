//! The [`Endpoint`] trait: a model you can ask for inferences, in process.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::infer::{InferRequest, InferResponse};
use crate::tensor::TensorSpec;

/// A boxed future that can move between threads (what [`Endpoint::infer`] returns, so the
/// trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a model is, as the v2 protocol's model metadata response gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Its versions served here.
    pub versions: Vec<String>,
    /// The runtime that runs it.
    pub platform: String,
    /// Its inputs.
    pub inputs: Vec<TensorSpec>,
    /// Its outputs.
    pub outputs: Vec<TensorSpec>,
}

/// A model that answers inference requests.
///
/// # Contract
///
/// - [`metadata`](Endpoint::metadata) is stable while the endpoint lives: input and output names
///   are unique, and every answer conforms to it.
/// - [`ready`](Endpoint::ready) is `false` until the endpoint can answer (for a bundle: verified
///   and warmed up by one inference); while not ready, `infer` fails with
///   [`Error::NotReady`](crate::Error::NotReady).
/// - `infer` validates the request against the metadata first: a missing, unknown, duplicated,
///   mistyped or misshapen input, or an unknown requested output, is
///   [`Error::InvalidTensor`](crate::Error::InvalidTensor) naming the tensor, and the model is
///   not called. A failure inside the model is [`Error::Runtime`](crate::Error::Runtime).
/// - The response holds the requested outputs (all, in metadata order, when none are
///   requested), each conforming to its spec, and echoes the request's `id`.
/// - Answers are a function of the request: the same request gives the same outputs, whatever
///   runs concurrently.
/// - `infer` may be called from many threads at once.
///
/// The conformance kit (feature `conformance`) checks all of this for any implementor.
pub trait Endpoint: Send + Sync + Debug {
    /// The model's metadata.
    fn metadata(&self) -> ModelMetadata;
    /// Whether it can answer now.
    fn ready(&self) -> bool;
    /// Answers `request`.
    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>>;
}

impl<E: Endpoint + ?Sized> Endpoint for Arc<E> {
    fn metadata(&self) -> ModelMetadata {
        (**self).metadata()
    }
    fn ready(&self) -> bool {
        (**self).ready()
    }
    fn infer(&self, request: InferRequest) -> BoxFuture<'_, Result<InferResponse>> {
        (**self).infer(request)
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread (for synchronous callers and tests; an async
/// server awaits [`Endpoint::infer`] instead).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
