//! Switchboard's knowledge base: the embedder and vector-store traits (local MiniLM
//! via candle, embedded qdrant-edge by default), chunking, the LLM client and the
//! `RagActor` that answers inbound messages from a tenant's documents.
//!
//! This crate sits between `crypto` (it verifies HMAC-signed internal events) and
//! `actors` (which spawns the `RagActor`).
//!
//! # Layout
//! - [`embed`]: the [`embed::Embedder`] trait and [`embed::MiniLm`], all-MiniLM-L6-v2
//!   in-process with candle from local files (sentence-transformers parity).
//! - [`chunk`]: sentence- and paragraph-aware chunking with overlap, sized in tokens.
//! - [`store`]: the [`store::VectorStore`] trait and [`store::EdgeStore`] (embedded
//!   qdrant-edge); tenant scoping is enforced inside the store.

pub mod chunk;
pub mod embed;
pub mod store;
