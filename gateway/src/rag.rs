//! The gateway's side of RAG: the knowledge base and the LLM client built from the
//! config, and the start-up clean-up of documents a crash left half-indexed. What
//! the RAG actor acts through (replies, drafts) is `switchboard_actors::rag_host`.

use crate::config::Config;
use switchboard_actors::storage::Store;
use switchboard_rag::chunk::ChunkConfig;
use switchboard_rag::kb::{EmbedderConfig, KbConfig, Knowledge, StoreConfig};
use switchboard_rag::openai::{Endpoint, LlmClient};

/// Prefix of knowledge-base document ids.
pub const DOCUMENT_PREFIX: &str = "doc";

/// The knowledge base `config` describes (opened on first use).
pub fn knowledge(config: &Config) -> Knowledge {
    let rag = &config.rag;
    let embedder = match &rag.embeddings_url {
        Some(url) => EmbedderConfig::OpenAi {
            endpoint: Endpoint {
                api_key: rag.embeddings_api_key.clone(),
                ..Endpoint::new(url.clone())
            },
            model: rag.embeddings_model.clone(),
            dimensions: None,
        },
        None => EmbedderConfig::Local {
            model_dir: rag.model_dir.clone(),
        },
    };
    let store = match &rag.qdrant_url {
        Some(url) => StoreConfig::Qdrant {
            url: url.clone(),
            api_key: rag.qdrant_api_key.clone(),
            collection_prefix: "switchboard".into(),
        },
        None => StoreConfig::Edge {
            dir: config.data_dir.join("qdrant"),
        },
    };
    Knowledge::new(KbConfig {
        embedder,
        store,
        chunking: ChunkConfig::default(),
    })
}

/// The LLM client, when one is configured.
pub fn llm(config: &Config) -> anyhow::Result<Option<LlmClient>> {
    let rag = &config.rag;
    let Some(url) = &rag.llm_url else {
        return Ok(None);
    };
    let endpoint = Endpoint {
        api_key: rag.llm_api_key.clone(),
        timeout: rag.llm_timeout,
        ..Endpoint::new(url.clone())
    };
    Ok(Some(LlmClient::new(endpoint, rag.llm_model.clone())?))
}

/// Removes documents a crash left half-indexed (their rows and any vectors stored).
pub async fn clean_unfinished(store: &Store, knowledge: &Knowledge) -> anyhow::Result<()> {
    let rows = store.unfinished_kb_documents().await?;
    if rows.is_empty() {
        return Ok(());
    }
    let kb = knowledge.get().await?;
    for d in rows {
        kb.delete(&d.tenant_id, &d.id).await?;
        store.delete_kb_document(&d.tenant_id, &d.id).await?;
        tracing::warn!(tenant_id = %d.tenant_id, document_id = %d.id, "removed a document left half-indexed by a crash");
    }
    Ok(())
}
