//! Embeddings: the [`Embedder`] trait and the default, all-MiniLM-L6-v2 run in-process
//! from local files ([`MiniLm`]).
//!
//! Parity with sentence-transformers: the same WordPiece tokenizer (`tokenizer.json`,
//! truncated at 256 tokens like the model's `max_seq_length`), the BERT encoder,
//! mean pooling over each text's tokens of the last hidden state, then L2
//! normalisation. A fixture of reference vectors made by sentence-transformers
//! checks it (`tests/parity.rs`).
//!
//! The encoder is our own ([`bert`]), on `gemm`'s matrix multiply: texts are not
//! padded to a common length, and the batches of one call run on as many threads
//! as the machine has cores, each multiplying on its own thread (no worker pool to
//! hand each operation to and wait on).
//!
//! # Layout
//! - [`bert`]: the encoder's weights and forward pass.
//! - [`kernels`]: matrix multiply, layer norm, softmax, GELU on `f32` slices.

use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenizers::{Tokenizer, TruncationParams};

mod bert;
mod kernels;

/// Longest input, in tokens (the model's `max_seq_length`); longer texts are cut.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model files: {0}")]
    Files(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("inference: {0}")]
    Inference(String),
    #[error("embedding service: {0}")]
    Remote(String),
}

/// Turns texts into unit vectors.
pub trait Embedder: Send + Sync + std::fmt::Debug + 'static {
    /// Names the model (one vector collection per model).
    fn model_id(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>>;
    /// How many tokens the model sees in `text` (chunks are sized with it). The
    /// default is an estimate (≈ 4 characters per token) for models whose tokenizer
    /// is not local.
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count().div_ceil(4)
    }
}

/// Vectors with the index of their text.
type Indexed = Vec<(usize, Vec<f32>)>;

/// all-MiniLM-L6-v2 (384 dimensions) on the CPU.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Inner>,
}

struct Inner {
    model: bert::Bert,
    tokenizer: Tokenizer,
    dims: usize,
    /// Threads one call may use (the machine's cores).
    threads: usize,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("dims", &self.inner.dims)
            .finish_non_exhaustive()
    }
}

/// Where the model's files are: `dir` must hold `model.safetensors`, `tokenizer.json`
/// and `config.json` (what `scripts/models.sh` unpacks into `models/all-MiniLM-L6-v2`).
pub fn model_files(dir: &Path) -> Result<[PathBuf; 3], EmbedError> {
    let files = ["model.safetensors", "tokenizer.json", "config.json"].map(|f| dir.join(f));
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(EmbedError::Files(format!(
            "{} is missing (run scripts/models.sh to fetch the model)",
            missing.display()
        )));
    }
    Ok(files)
}

impl MiniLm {
    pub const MODEL_ID: &'static str = "all-MiniLM-L6-v2";

    /// Loads the model from `dir` (see [`model_files`]).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let [weights, tokenizer, config] = model_files(dir)?;
        let config: bert::Config = serde_json::from_str(
            &std::fs::read_to_string(&config).map_err(|e| EmbedError::Files(e.to_string()))?,
        )
        .map_err(|e| EmbedError::Files(format!("config.json: {e}")))?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // No padding: the encoder takes each text at its own length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let bytes = std::fs::read(&weights).map_err(|e| EmbedError::Files(e.to_string()))?;
        let model = bert::Bert::load(&bytes, &config)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Ok(Self {
            inner: Arc::new(Inner {
                dims: model.hidden_size(),
                model,
                tokenizer,
                threads,
            }),
        })
    }

    /// Embeds on the calling thread and, for more than one batch, on as many more
    /// as the machine has cores (call it off the async runtime). Texts are batched
    /// longest first, so the batches are of even work; the vectors come back in the
    /// order given.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .inner
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
        // Enough batches to keep every thread busy, none larger than BATCH.
        let threads = self.inner.threads.min(texts.len());
        let size = texts.len().div_ceil(threads).clamp(1, BATCH);
        let batches: Vec<&[usize]> = order.chunks(size).collect();
        let next = AtomicUsize::new(0);
        let work = || -> Result<Indexed, EmbedError> {
            let mut scratch = bert::Scratch::default();
            let mut done = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(b) else {
                    return Ok(done);
                };
                let tokens: Vec<bert::Tokens<'_>> = batch
                    .iter()
                    .map(|&i| bert::Tokens {
                        ids: encodings[i].get_ids(),
                        types: encodings[i].get_type_ids(),
                    })
                    .collect();
                let vectors = self.inner.model.embed(&tokens, &mut scratch)?;
                done.extend(batch.iter().copied().zip(vectors));
            }
        };
        let results: Vec<Result<Indexed, EmbedError>> = if batches.len() == 1 {
            vec![work()]
        } else {
            std::thread::scope(|scope| {
                let helpers: Vec<_> = (1..threads.min(batches.len()))
                    .map(|_| scope.spawn(work))
                    .collect();
                let mut results = vec![work()];
                for helper in helpers {
                    results.push(helper.join().unwrap_or_else(|_| {
                        Err(EmbedError::Inference("an embedding thread panicked".into()))
                    }));
                }
                results
            })
        };
        let mut out = vec![Vec::new(); texts.len()];
        for result in results {
            for (i, vector) in result? {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// Token count of `text` as this model sees it (without special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner
            .tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.split_whitespace().count())
    }
}

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        Self::MODEL_ID
    }

    fn dimensions(&self) -> usize {
        self.inner.dims
    }

    fn count_tokens(&self, text: &str) -> usize {
        MiniLm::count_tokens(self, text)
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        let me = self.clone();
        Box::pin(async move {
            // Inference is CPU-bound: keep it off the runtime's worker threads.
            tokio::task::spawn_blocking(move || me.embed_blocking(&texts))
                .await
                .map_err(|e| EmbedError::Inference(e.to_string()))?
        })
    }
}

/// The model directory: `SWITCHBOARD_MODEL_DIR`, else `models/all-MiniLM-L6-v2` under
/// the current directory.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models").join(MiniLm::MODEL_ID))
}
