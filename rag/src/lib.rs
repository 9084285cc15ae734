//! Switchboard's knowledge base: the embedder and vector-store traits (local MiniLM
//! via candle, embedded qdrant-edge by default), chunking, the LLM client and the
//! `RagActor` that answers inbound messages from a tenant's documents.
//!
//! This crate sits between `crypto` (it verifies HMAC-signed internal events) and
//! `actors` (which spawns the `RagActor`). Its components arrive with the RAG issue;
//! until then it holds nothing, so nothing depends on behaviour it does not have.
