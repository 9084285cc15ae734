//! The knowledge base: one embedder and one vector store behind ingest, search and
//! delete, all scoped to a tenant.
//!
//! [`Knowledge`] opens it lazily from a [`KbConfig`] on first use, so a gateway that
//! never touches its knowledge base never loads the model; a failed open (model files
//! missing, Qdrant unreachable) is reported to that caller and retried by the next.

use crate::chunk::{self, ChunkConfig, Format};
use crate::embed::{EmbedError, Embedder, MiniLm};
use crate::store::{ChunkRecord, EdgeStore, Hit, StoreError, VectorStore};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Largest `limit` of a search.
pub const MAX_SEARCH_LIMIT: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("embedding: {0}")]
    Embed(#[from] EmbedError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the document has no text to index")]
    Empty,
    #[error("the knowledge base is not available: {0}")]
    Unavailable(String),
}

/// Which embedder.
#[derive(Debug, Clone)]
pub enum EmbedderConfig {
    /// all-MiniLM-L6-v2 from local files.
    Local { model_dir: PathBuf },
    /// An OpenAI-compatible `/v1/embeddings` endpoint; `dimensions` is probed when
    /// not given.
    OpenAi {
        endpoint: crate::openai::Endpoint,
        model: String,
        dimensions: Option<usize>,
    },
}

/// Which vector store.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded qdrant-edge engine under `dir`.
    Edge { dir: PathBuf },
    /// A Qdrant server (`QDRANT_URL`).
    Qdrant {
        url: String,
        api_key: Option<String>,
        collection_prefix: String,
    },
}

#[derive(Debug, Clone)]
pub struct KbConfig {
    pub embedder: EmbedderConfig,
    pub store: StoreConfig,
    pub chunking: ChunkConfig,
}

/// An open knowledge base.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn VectorStore>,
    chunking: ChunkConfig,
}

impl KnowledgeBase {
    pub fn new(embedder: Arc<dyn Embedder>, store: Arc<dyn VectorStore>) -> Self {
        Self {
            embedder,
            store,
            chunking: ChunkConfig::default(),
        }
    }

    pub fn with_chunking(mut self, chunking: ChunkConfig) -> Self {
        self.chunking = chunking;
        self
    }

    /// Opens the embedder and the store `config` names.
    pub async fn open(config: &KbConfig) -> Result<Self, KbError> {
        let embedder: Arc<dyn Embedder> = match &config.embedder {
            EmbedderConfig::Local { model_dir } => {
                let dir = model_dir.clone();
                let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
                    .await
                    .map_err(|e| KbError::Unavailable(e.to_string()))??;
                Arc::new(model)
            }
            EmbedderConfig::OpenAi {
                endpoint,
                model,
                dimensions,
            } => {
                let dims = match dimensions {
                    Some(d) => *d,
                    None => {
                        crate::openai::OpenAiEmbedder::probe(endpoint.clone(), model.clone())
                            .await?
                    }
                };
                Arc::new(crate::openai::OpenAiEmbedder::new(
                    endpoint.clone(),
                    model.clone(),
                    dims,
                )?)
            }
        };
        let (model_id, dims) = (embedder.model_id().to_owned(), embedder.dimensions());
        let store: Arc<dyn VectorStore> = match &config.store {
            StoreConfig::Edge { dir } => {
                let dir = dir.clone();
                let store =
                    tokio::task::spawn_blocking(move || EdgeStore::open(&dir, &model_id, dims))
                        .await
                        .map_err(|e| KbError::Unavailable(e.to_string()))??;
                Arc::new(store)
            }
            StoreConfig::Qdrant {
                url,
                api_key,
                collection_prefix,
            } => Arc::new(
                crate::qdrant::QdrantStore::connect(
                    url,
                    api_key.clone(),
                    collection_prefix,
                    &model_id,
                    dims,
                )
                .await?,
            ),
        };
        Ok(Self::new(embedder, store).with_chunking(config.chunking))
    }

    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn store(&self) -> &Arc<dyn VectorStore> {
        &self.store
    }

    /// Cuts a document into passages (without embedding them).
    pub fn chunk(&self, text: &str, format: Format) -> Vec<chunk::Chunk> {
        let embedder = self.embedder.clone();
        chunk::chunk(text, format, &self.chunking, &move |s: &str| {
            embedder.count_tokens(s)
        })
    }

    /// Chunks, embeds and stores a document; returns its number of chunks.
    /// Re-ingesting the same id replaces the chunks it had at the same positions.
    pub async fn ingest(
        &self,
        tenant: &str,
        document_id: &str,
        title: &str,
        text: &str,
        format: Format,
    ) -> Result<usize, KbError> {
        let chunks = {
            let (embedder, chunking, text) =
                (self.embedder.clone(), self.chunking, text.to_owned());
            tokio::task::spawn_blocking(move || {
                chunk::chunk(&text, format, &chunking, &|s: &str| {
                    embedder.count_tokens(s)
                })
            })
            .await
            .map_err(|e| KbError::Unavailable(e.to_string()))?
        };
        if chunks.is_empty() {
            return Err(KbError::Empty);
        }
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let vectors = self.embedder.embed(texts).await?;
        let points = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, v)| {
                let record = ChunkRecord {
                    document_id: document_id.to_owned(),
                    title: title.to_owned(),
                    chunk_index: c.index,
                    text: c.text,
                };
                (record, v)
            })
            .collect::<Vec<_>>();
        let n = points.len();
        self.store.upsert(tenant, points).await?;
        Ok(n)
    }

    /// The tenant's `limit` passages nearest to `query`, best first.
    pub async fn search(
        &self,
        tenant: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, KbError> {
        let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
        let mut vectors = self.embedder.embed(vec![query.to_owned()]).await?;
        let vector = vectors
            .pop()
            .ok_or_else(|| KbError::Unavailable("the embedder returned no vector".into()))?;
        Ok(self.store.search(tenant, vector, limit).await?)
    }

    /// Removes a document's passages (this tenant's only).
    pub async fn delete(&self, tenant: &str, document_id: &str) -> Result<(), KbError> {
        Ok(self.store.delete_document(tenant, document_id).await?)
    }

    /// How many passages the tenant has.
    pub async fn count(&self, tenant: &str) -> Result<usize, KbError> {
        Ok(self.store.count(tenant).await?)
    }
}

/// A knowledge base opened on first use.
#[derive(Debug)]
pub struct Knowledge {
    config: KbConfig,
    cell: OnceCell<KnowledgeBase>,
}

impl Knowledge {
    pub fn new(config: KbConfig) -> Self {
        Self {
            config,
            cell: OnceCell::new(),
        }
    }

    /// An already open knowledge base (tests).
    pub fn ready(config: KbConfig, kb: KnowledgeBase) -> Self {
        Self {
            config,
            cell: OnceCell::new_with(Some(kb)),
        }
    }

    pub fn config(&self) -> &KbConfig {
        &self.config
    }

    /// Opens it if needed (one opener at a time; a failure is not remembered).
    pub async fn get(&self) -> Result<&KnowledgeBase, KbError> {
        let started = std::time::Instant::now();
        let kb = self
            .cell
            .get_or_try_init(|| async {
                let kb = KnowledgeBase::open(&self.config).await;
                match &kb {
                    Ok(kb) => tracing::info!(
                        model = kb.model_id(),
                        ms = started.elapsed().as_millis() as u64,
                        "knowledge base opened"
                    ),
                    Err(e) => tracing::error!(error = %e, "knowledge base could not be opened"),
                }
                kb
            })
            .await?;
        Ok(kb)
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.cell.initialized()
    }
}
