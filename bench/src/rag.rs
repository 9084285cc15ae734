//! The `rag` scenario: the knowledge-base engine in-process (no gateway) — how fast
//! the local model embeds, how fast documents are ingested (chunk → embed → upsert),
//! and search latency in the embedded qdrant-edge store as it grows.
//!
//! Search is measured at each `--chunks` size; the store is filled with synthetic
//! unit vectors (embedding 100k real passages would take most of an hour on two
//! cores and says nothing more about the index), then optimised as the gateway's
//! store is, and queried with vectors of real questions embedded by the model.

use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use switchboard_rag::chunk::Format;
use switchboard_rag::embed::{Embedder, MiniLm};
use switchboard_rag::kb::KnowledgeBase;
use switchboard_rag::store::{ChunkRecord, EdgeStore};

#[derive(Debug, Clone)]
pub struct RagParams {
    pub sentences: usize,
    pub documents: usize,
    pub chunks: Vec<usize>,
    pub queries: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchPoint {
    pub chunks: usize,
    pub fill_seconds: f64,
    /// Before `optimize` (segments as written, searched without an HNSW index).
    pub unoptimized_p50_ms: f64,
    pub unoptimized_p99_ms: f64,
    pub optimize_seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Embedding the question plus the search, p50.
    pub with_embedding_p50_ms: f64,
}

/// The same sentences embedded by sentence-transformers (PyTorch, CPU), when the
/// machine's `python3` has it; else why not.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reference {
    Measured {
        engine: String,
        sentences_per_second: f64,
        /// Ours divided by theirs.
        ratio: f64,
        /// The least cosine between our vector and theirs, over every tenth
        /// sentence (1 is the same direction).
        min_cosine: f64,
    },
    Skipped {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RagReport {
    pub scenario: &'static str,
    pub model: String,
    pub sentences: usize,
    pub sentences_per_second: f64,
    /// sentence-transformers on the same model and sentences, in the same run.
    pub reference: Reference,
    pub documents: usize,
    pub document_bytes: usize,
    pub chunks_ingested: usize,
    pub documents_per_second: f64,
    pub search: Vec<SearchPoint>,
    /// Search latency at the largest store size, after optimisation.
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl RagReport {
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "rag: model {} (CPU, in-process), embedded qdrant-edge",
                self.model
            ),
            format!(
                "  sentences embedded: {:.1}/s ({} sentences of 9-20 words)",
                self.sentences_per_second, self.sentences
            ),
            match &self.reference {
                Reference::Measured {
                    engine,
                    sentences_per_second,
                    ratio,
                    min_cosine,
                } => format!(
                    "  same sentences, {engine}: {sentences_per_second:.1}/s (ours {ratio:.2}× that; vectors agree to cosine ≥ {min_cosine:.9})"
                ),
                Reference::Skipped { reason } => {
                    format!("  sentence-transformers side by side: skipped ({reason})")
                }
            },
            format!(
                "  documents ingested: {:.1}/s ({} documents, {} KiB, {} chunks; chunk + embed + upsert)",
                self.documents_per_second,
                self.documents,
                self.document_bytes / 1024,
                self.chunks_ingested
            ),
            "  chunks    search p50 ms  p99 ms  max ms  embed+search p50 ms  fill s  | before optimize: p50 ms  p99 ms  optimize s".into(),
        ];
        for p in &self.search {
            out.push(format!(
                "  {:>7}  {:>13.2}  {:>6.2}  {:>6.2}  {:>19.2}  {:>6.1}  | {:>22.2}  {:>6.2}  {:>10.1}",
                p.chunks,
                p.p50_ms,
                p.p99_ms,
                p.max_ms,
                p.with_embedding_p50_ms,
                p.fill_seconds,
                p.unoptimized_p50_ms,
                p.unoptimized_p99_ms,
                p.optimize_seconds
            ));
        }
        out
    }
}

const WORDS: &[&str] = &[
    "order",
    "delivery",
    "parcel",
    "refund",
    "invoice",
    "account",
    "password",
    "opening",
    "hours",
    "weekend",
    "shop",
    "price",
    "discount",
    "warranty",
    "repair",
    "battery",
    "screen",
    "subscription",
    "cancel",
    "upgrade",
    "address",
    "courier",
    "tracking",
    "payment",
    "card",
    "transfer",
    "receipt",
    "exchange",
    "size",
    "colour",
    "stock",
    "branch",
    "appointment",
    "booking",
    "table",
    "menu",
    "allergy",
    "vegan",
    "parking",
    "holiday",
];

/// A deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn word(&mut self) -> &'static str {
        WORDS[(self.next() % WORDS.len() as u64) as usize]
    }
    fn sentence(&mut self) -> String {
        let n = 8 + (self.next() % 12) as usize;
        let mut s: Vec<&str> = (0..n).map(|_| self.word()).collect();
        s.insert(1, "the");
        let mut out = s.join(" ");
        if let Some(f) = out.get_mut(0..1) {
            f.make_ascii_uppercase();
        }
        out.push('.');
        out
    }
    fn unit(&mut self, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims)
            .map(|_| (self.next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.into_iter().map(|x| x / n).collect()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

pub async fn rag(model_dir: &Path, params: &RagParams) -> anyhow::Result<RagReport> {
    let model = MiniLm::load(model_dir)
        .map_err(|e| anyhow::anyhow!("{e} (run scripts/models.sh, or pass --model-dir)"))?;
    let dims = model.dimensions();
    let mut rng = Rng(0x5eed_1234_abcd_0001);

    // 1. Sentences embedded per second (batches of 32, as the knowledge base does).
    let sentences: Vec<String> = (0..params.sentences).map(|_| rng.sentence()).collect();
    let _warm = model
        .embed(sentences[..8.min(sentences.len())].to_vec())
        .await?;
    let started = Instant::now();
    let ours = model.embed(sentences.clone()).await?;
    let sentences_per_second = params.sentences as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  embedded {} sentences: {sentences_per_second:.1}/s",
        params.sentences
    );
    let reference = match reference_rate(model_dir, &sentences).await {
        Ok((engine, rate, theirs)) => Reference::Measured {
            engine,
            sentences_per_second: rate,
            ratio: sentences_per_second / rate,
            min_cosine: theirs
                .iter()
                .map(|(i, v)| cosine(&ours[*i], v))
                .fold(1.0, f64::min),
        },
        Err(reason) => Reference::Skipped { reason },
    };
    eprintln!("  sentence-transformers: {reference:?}");

    // 2. Documents ingested per second: ~1.5 KB FAQ-like documents, 4 paragraphs.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EdgeStore::open(
        &dir.path().join("ingest"),
        MiniLm::MODEL_ID,
        dims,
    )?);
    let kb = KnowledgeBase::new(Arc::new(model.clone()), store);
    let docs: Vec<String> = (0..params.documents)
        .map(|_| {
            (0..4)
                .map(|_| (0..3).map(|_| rng.sentence()).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .collect();
    let document_bytes = docs.iter().map(String::len).sum();
    let started = Instant::now();
    let mut chunks_ingested = 0;
    for (i, d) in docs.iter().enumerate() {
        chunks_ingested += kb
            .ingest("ten_bench", &format!("doc_{i}"), "FAQ", d, Format::Text)
            .await?;
    }
    let documents_per_second = params.documents as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  ingested {} documents ({chunks_ingested} chunks): {documents_per_second:.1}/s",
        params.documents
    );

    // 3. Search latency as the store grows.
    let questions: Vec<String> = (0..params.queries.min(200))
        .map(|_| rng.sentence())
        .collect();
    let question_vectors = model.embed(questions.clone()).await?;
    let store = EdgeStore::open(&dir.path().join("search"), MiniLm::MODEL_ID, dims)?;
    let mut search = Vec::new();
    let mut distribution = Vec::new();
    let mut filled = 0usize;
    let mut sizes = params.chunks.clone();
    sizes.sort_unstable();
    for target in sizes {
        let started = Instant::now();
        while filled < target {
            let n = (target - filled).min(1_000);
            let points = (filled..filled + n)
                .map(|i| {
                    let record = ChunkRecord {
                        document_id: format!("doc_{}", i / 8),
                        title: "synthetic".into(),
                        chunk_index: i % 8,
                        text: format!("passage {i}"),
                    };
                    (record, rng.unit(dims))
                })
                .collect();
            store.upsert_blocking("ten_bench", points)?;
            filled += n;
        }
        let fill_seconds = started.elapsed().as_secs_f64();
        let measure = |n: usize| -> anyhow::Result<Vec<f64>> {
            let mut ms = Vec::with_capacity(n);
            for i in 0..n {
                let q = question_vectors[i % question_vectors.len()].clone();
                let t = Instant::now();
                let hits = store.search_blocking("ten_bench", q, 5)?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(hits.len() == 5, "search returned {} hits", hits.len());
            }
            ms.sort_by(f64::total_cmp);
            Ok(ms)
        };
        let plain = measure(params.queries.min(200))?;
        let started = Instant::now();
        store.optimize()?;
        let optimize_seconds = started.elapsed().as_secs_f64();
        let ms = measure(params.queries)?;
        let mut with_embedding = Vec::new();
        for q in questions.iter().take(100) {
            let t = Instant::now();
            let v = model.embed(vec![q.clone()]).await?.remove(0);
            store.search_blocking("ten_bench", v, 5)?;
            with_embedding.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        with_embedding.sort_by(f64::total_cmp);
        let point = SearchPoint {
            chunks: target,
            fill_seconds,
            unoptimized_p50_ms: percentile(&plain, 0.5),
            unoptimized_p99_ms: percentile(&plain, 0.99),
            optimize_seconds,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            max_ms: percentile(&ms, 1.0),
            with_embedding_p50_ms: percentile(&with_embedding, 0.5),
        };
        eprintln!(
            "  {} chunks: search p50 {:.2} ms, p99 {:.2} ms",
            point.chunks, point.p50_ms, point.p99_ms
        );
        search.push(point);
        distribution = crate::report::distribution_of(&ms);
    }
    Ok(RagReport {
        scenario: "rag",
        model: MiniLm::MODEL_ID.into(),
        sentences: params.sentences,
        sentences_per_second,
        reference,
        documents: params.documents,
        document_bytes,
        chunks_ingested,
        documents_per_second,
        search,
        distribution,
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

/// Their vectors for every tenth sentence, by index.
type Sample = Vec<(usize, Vec<f32>)>;

/// Embeds `sentences` with sentence-transformers from `python3` (same model files,
/// batches of 32, CPU, one warm-up batch first) and returns its engine, its rate and
/// its vectors for every tenth sentence; an `Err` says why it could not (no
/// python3, no sentence_transformers module, or the run failed).
async fn reference_rate(
    model_dir: &Path,
    sentences: &[String],
) -> Result<(String, f64, Sample), String> {
    use tokio::io::AsyncWriteExt;
    const SCRIPT: &str = r#"
import json, sys, time
try:
    import sentence_transformers, torch
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(0)
sentences = json.load(sys.stdin)
model = sentence_transformers.SentenceTransformer(sys.argv[1], device="cpu")
model.encode(sentences[:8], batch_size=32)
started = time.perf_counter()
vectors = model.encode(sentences, batch_size=32)
rate = len(sentences) / (time.perf_counter() - started)
print(json.dumps({"rate": rate, "sample": [[i, vectors[i].tolist()] for i in range(0, len(sentences), 10)], "engine": "sentence-transformers %s on PyTorch %s CPU (%d threads)"
    % (sentence_transformers.__version__, torch.__version__, torch.get_num_threads())}))
"#;
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(model_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    let input = serde_json::to_vec(sentences).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A script that stops before reading (no module) closes the pipe: its
        // output says why.
        let _ = stdin.write_all(&input).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output");
        return Err(format!("python3 failed: {last}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("python3 printed no result ({e})"))?;
    if let Some(missing) = v["missing"].as_str() {
        return Err(format!("python3 has no sentence-transformers: {missing}"));
    }
    let sample: Option<Sample> = serde_json::from_value(v["sample"].clone()).ok();
    match (v["engine"].as_str(), v["rate"].as_f64(), sample) {
        (Some(engine), Some(rate), Some(sample))
            if rate > 0.0 && sample.iter().all(|(i, _)| *i < sentences.len()) =>
        {
            Ok((engine.to_owned(), rate, sample))
        }
        _ => Err("python3 printed no rate and vectors".into()),
    }
}
