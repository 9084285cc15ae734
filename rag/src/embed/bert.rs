//! The BERT encoder of all-MiniLM-L6-v2, forward pass only, on the CPU.
//!
//! The sequences of a batch are not padded: their tokens are laid end to end in one
//! `[tokens × hidden]` matrix, so the linear layers (nearly all the work) run once
//! over every real token and nothing else, and attention runs per sequence over its
//! own tokens. That is what a padded batch computes for the real positions (the
//! mask gives padding zero weight), without the padding.
//!
//! Per layer: fused Q·K·V projection, softmax(QKᵀ/√d)·V per head, output
//! projection, residual and layer norm, then the feed-forward block (GELU) with its
//! residual and layer norm. The embeddings are word + position + token type, layer
//! normed. Weights come from the model's `model.safetensors` (F32), as stored.

use super::EmbedError;
use super::kernels::{
    add_layer_norm, add_matmul_t, axpy, dot, fill_rows, gelu, layer_norm, softmax,
};
use safetensors::{Dtype, SafeTensors};

/// The fields of `config.json` the encoder needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value weights stacked: `[3·hidden × hidden]`.
    qkv: Vec<f32>,
    qkv_bias: Vec<f32>,
    out: Vec<f32>,
    out_bias: Vec<f32>,
    attention_norm: Norm,
    up: Vec<f32>,
    up_bias: Vec<f32>,
    down: Vec<f32>,
    down_bias: Vec<f32>,
    output_norm: Norm,
}

#[derive(Debug)]
pub(super) struct Bert {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    eps: f32,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
}

/// One tokenised text: its ids and token type ids (same length).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tokens<'a> {
    pub ids: &'a [u32],
    pub types: &'a [u32],
}

/// Buffers one thread reuses from batch to batch.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    y: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
}

fn resize(buf: &mut Vec<f32>, len: usize) {
    buf.clear();
    buf.resize(len, 0.0);
}

impl Bert {
    /// Reads the weights from a safetensors file's bytes.
    pub(super) fn load(bytes: &[u8], config: &Config) -> Result<Self, EmbedError> {
        if config.hidden_act != "gelu" {
            return Err(EmbedError::Files(format!(
                "config.json: hidden_act {:?} is not supported (only \"gelu\")",
                config.hidden_act
            )));
        }
        let (h, i) = (config.hidden_size, config.intermediate_size);
        if config.num_attention_heads == 0 || h % config.num_attention_heads != 0 {
            return Err(EmbedError::Files(format!(
                "config.json: hidden_size {h} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            )));
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| EmbedError::Files(format!("model.safetensors: {e}")))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, EmbedError> {
            // Older checkpoints name layer norm parameters gamma and beta.
            let view = st
                .tensor(name)
                .or_else(|e| match name.rsplit_once('.') {
                    Some((base, "weight")) if name.contains("LayerNorm") => {
                        st.tensor(&format!("{base}.gamma")).map_err(|_| e)
                    }
                    Some((base, "bias")) if name.contains("LayerNorm") => {
                        st.tensor(&format!("{base}.beta")).map_err(|_| e)
                    }
                    _ => Err(e),
                })
                .map_err(|e| EmbedError::Files(format!("model.safetensors: {name}: {e}")))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape {
                return Err(EmbedError::Files(format!(
                    "model.safetensors: {name} is {:?} {:?}, expected F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let norm = |prefix: &str| -> Result<Norm, EmbedError> {
            Ok(Norm {
                gamma: get(&format!("{prefix}.LayerNorm.weight"), &[h])?,
                beta: get(&format!("{prefix}.LayerNorm.bias"), &[h])?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            let mut qkv = Vec::with_capacity(3 * h * h);
            let mut qkv_bias = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv.extend(get(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                qkv_bias.extend(get(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv,
                qkv_bias,
                out: get(&format!("{p}.attention.output.dense.weight"), &[h, h])?,
                out_bias: get(&format!("{p}.attention.output.dense.bias"), &[h])?,
                attention_norm: norm(&format!("{p}.attention.output"))?,
                up: get(&format!("{p}.intermediate.dense.weight"), &[i, h])?,
                up_bias: get(&format!("{p}.intermediate.dense.bias"), &[i])?,
                down: get(&format!("{p}.output.dense.weight"), &[h, i])?,
                down_bias: get(&format!("{p}.output.dense.bias"), &[h])?,
                output_norm: norm(&format!("{p}.output"))?,
            });
        }
        Ok(Self {
            hidden: h,
            heads: config.num_attention_heads,
            intermediate: i,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            word: get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            embedding_norm: norm("embeddings")?,
            layers,
        })
    }

    pub(super) fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Mean-pooled, unit-length vectors, one per sequence, on the calling thread.
    pub(super) fn embed(
        &self,
        batch: &[Tokens<'_>],
        s: &mut Scratch,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let h = self.hidden;
        let total: usize = batch.iter().map(|t| t.ids.len()).sum();
        resize(&mut s.x, total * h);
        let mut row = 0;
        for t in batch {
            if t.ids.len() > self.max_positions || t.ids.len() != t.types.len() {
                return Err(EmbedError::Tokenizer(format!(
                    "{} tokens ({} type ids) for {} positions",
                    t.ids.len(),
                    t.types.len(),
                    self.max_positions
                )));
            }
            for (pos, (&id, &ty)) in t.ids.iter().zip(t.types).enumerate() {
                let out = &mut s.x[row * h..(row + 1) * h];
                let word = self.row(&self.word, id)?;
                let ty = self.row(&self.token_type, ty)?;
                let position = &self.position[pos * h..(pos + 1) * h];
                for (((o, w), p), y) in out.iter_mut().zip(word).zip(position).zip(ty) {
                    *o = w + p + y;
                }
                row += 1;
            }
        }
        let norm = &self.embedding_norm;
        layer_norm(&mut s.x, &norm.gamma, &norm.beta, self.eps);
        for layer in &self.layers {
            self.layer(layer, batch, total, s);
        }
        // Mean over each sequence's tokens, then unit length.
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        for t in batch {
            let n = t.ids.len();
            let mut mean = vec![0f32; h];
            for r in s.x[start * h..(start + n) * h].chunks_exact(h) {
                for (m, v) in mean.iter_mut().zip(r) {
                    *m += v;
                }
            }
            let count = (n as f32).max(1e-9);
            mean.iter_mut().for_each(|m| *m /= count);
            let length = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|m| *m /= length);
            out.push(mean);
            start += n;
        }
        Ok(out)
    }

    fn row<'a>(&self, table: &'a [f32], index: u32) -> Result<&'a [f32], EmbedError> {
        let h = self.hidden;
        let i = index as usize;
        table.get(i * h..(i + 1) * h).ok_or_else(|| {
            EmbedError::Tokenizer(format!("token id {index} is outside the model's table"))
        })
    }

    fn layer(&self, l: &Layer, batch: &[Tokens<'_>], total: usize, s: &mut Scratch) {
        let (h, i) = (self.hidden, self.intermediate);
        // Q, K, V for every token in one multiply.
        resize(&mut s.qkv, total * 3 * h);
        fill_rows(&mut s.qkv, &l.qkv_bias);
        add_matmul_t(&mut s.qkv, &s.x, &l.qkv, total, 3 * h, h);
        self.attention(batch, s);
        // Output projection, residual, norm.
        resize(&mut s.y, total * h);
        fill_rows(&mut s.y, &l.out_bias);
        add_matmul_t(&mut s.y, &s.context, &l.out, total, h, h);
        add_layer_norm(
            &mut s.y,
            &s.x,
            &l.attention_norm.gamma,
            &l.attention_norm.beta,
            self.eps,
        );
        std::mem::swap(&mut s.x, &mut s.y);
        // Feed-forward, residual, norm.
        resize(&mut s.up, total * i);
        fill_rows(&mut s.up, &l.up_bias);
        add_matmul_t(&mut s.up, &s.x, &l.up, total, i, h);
        gelu(&mut s.up);
        fill_rows(&mut s.y, &l.down_bias);
        add_matmul_t(&mut s.y, &s.up, &l.down, total, h, i);
        add_layer_norm(
            &mut s.y,
            &s.x,
            &l.output_norm.gamma,
            &l.output_norm.beta,
            self.eps,
        );
        std::mem::swap(&mut s.x, &mut s.y);
    }

    /// softmax(QKᵀ/√d)·V for each head of each sequence, into `s.context`.
    fn attention(&self, batch: &[Tokens<'_>], s: &mut Scratch) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let total: usize = batch.iter().map(|t| t.ids.len()).sum();
        resize(&mut s.context, total * h);
        let stride = 3 * h;
        let mut start = 0;
        for t in batch {
            let n = t.ids.len();
            let qkv = &s.qkv[start * stride..(start + n) * stride];
            let context = &mut s.context[start * h..(start + n) * h];
            resize(&mut s.scores, n);
            for head in 0..self.heads {
                let (q_at, k_at, v_at) = (head * d, h + head * d, 2 * h + head * d);
                for qi in 0..n {
                    let q = &qkv[qi * stride + q_at..qi * stride + q_at + d];
                    for (kj, score) in s.scores.iter_mut().enumerate() {
                        let k = &qkv[kj * stride + k_at..kj * stride + k_at + d];
                        *score = dot(q, k) * scale;
                    }
                    softmax(&mut s.scores);
                    let out = &mut context[qi * h + head * d..qi * h + head * d + d];
                    for (vj, &p) in s.scores.iter().enumerate() {
                        axpy(out, p, &qkv[vj * stride + v_at..vj * stride + v_at + d]);
                    }
                }
            }
            start += n;
        }
    }
}
