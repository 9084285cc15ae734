//! Switchboard's knowledge base: the embedder and vector-store traits (local MiniLM
//! in-process, embedded qdrant-edge by default), chunking, the LLM client and the
//! `RagActor` that answers inbound messages from a tenant's documents.
//!
//! This crate sits between `crypto` (it verifies HMAC-signed internal events) and
//! `actors` (which spawns the `RagActor`).
//!
//! # Layout
//! - [`embed`]: the [`embed::Embedder`] trait and [`embed::MiniLm`], all-MiniLM-L6-v2
//!   in-process from local files (sentence-transformers parity).
//! - [`chunk`]: sentence- and paragraph-aware chunking with overlap, sized in tokens.
//! - [`store`]: the [`store::VectorStore`] trait and [`store::EdgeStore`] (embedded
//!   qdrant-edge); tenant scoping is enforced inside the store.
//! - [`qdrant`]: [`qdrant::QdrantStore`], the same store on a Qdrant server (gRPC),
//!   used when `QDRANT_URL` is set.
//! - [`openai`]: OpenAI-compatible HTTP clients: [`openai::OpenAiEmbedder`] (remote
//!   embeddings) and [`openai::LlmClient`] (chat completions, JSON answers with one repair).
//! - [`kb`]: [`kb::KnowledgeBase`] (chunk → embed → upsert; search; delete), opened
//!   lazily from config by [`kb::Knowledge`].
//! - [`answer`]: intent, retrieval and the reply (LLM, or the best passage, labelled).
//! - [`signed`]: HMAC-signed internal events and their verification.
//! - [`actor`]: the [`actor::RagActor`], its [`actor::Host`] (what the gateway provides)
//!   and the reply settings (`off` / `draft` / `auto`).

pub mod actor;
pub mod answer;
pub mod chunk;
pub mod embed;
pub mod kb;
pub mod openai;
pub mod qdrant;
pub mod signed;
pub mod store;
