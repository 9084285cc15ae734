//! Embeddings: the [`Embedder`] trait and the default, all-MiniLM-L6-v2 run in-process
//! with candle from local files ([`MiniLm`]).
//!
//! Parity with sentence-transformers: the same WordPiece tokenizer (`tokenizer.json`,
//! truncated at 256 tokens like the model's `max_seq_length`), the BERT encoder,
//! masked mean pooling over the last hidden state, then L2 normalisation. A fixture
//! of reference vectors made by sentence-transformers checks it (`tests/parity.rs`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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
    Inference(#[from] candle_core::Error),
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

/// all-MiniLM-L6-v2 (384 dimensions) on the CPU.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dims: usize,
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
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(&config).map_err(|e| EmbedError::Files(e.to_string()))?,
        )
        .map_err(|e| EmbedError::Files(format!("config.json: {e}")))?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let device = Device::Cpu;
        let bytes = std::fs::read(&weights).map_err(|e| EmbedError::Files(e.to_string()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                device,
                dims: config.hidden_size,
            }),
        })
    }

    /// Embeds on the calling thread (call it off the async runtime). Texts are
    /// batched longest first, so each batch pads to a length close to its own texts'
    /// (every position of a padded batch goes through the model); the vectors come
    /// back in the order given.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            for (&i, vector) in chunk.iter().zip(self.inner.forward(&batch)?) {
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

impl Inner {
    fn forward(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor, EmbedError> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e).as_slice(), &self.device))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Tensor::stack(&rows, 0)?)
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let types = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Masked mean pooling, then L2 normalisation (sentence-transformers' recipe).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
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
                .map_err(|e| EmbedError::Inference(candle_core::Error::Msg(e.to_string())))?
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
