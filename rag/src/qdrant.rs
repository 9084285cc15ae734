//! [`QdrantStore`]: the [`VectorStore`] on a Qdrant server over gRPC (`qdrant-client`),
//! used instead of the embedded [`EdgeStore`](crate::store::EdgeStore) when
//! `QDRANT_URL` is set (the caller reads the config and calls [`QdrantStore::connect`]).
//!
//! Same layout and the same rules as the embedded store: one collection per
//! embedding model (`{prefix}_{model}`, cosine), created on first connect with a
//! keyword index on `tenant` marked `is_tenant` and one on `document_id`. **Tenant
//! scoping lives here:** upserts stamp the tenant on every payload whatever the caller
//! passed, and every search, count and delete carries a `tenant = t` filter built
//! inside this module; search results are checked for the tenant again. Point ids come
//! from [`point_id`], so re-ingesting a document replaces its chunks.
//!
//! Writes use `wait = true`: when `upsert` or `delete_document` returns, a search sees
//! the change. Failures (server unreachable, gRPC status, a collection built for
//! another vector size) come back as [`StoreError`], with the collection and the
//! operation in the message. The client times requests out after 5 s and retries
//! once on a fresh connection when the server was unavailable; that is safe here, as
//! upserts (fixed point ids) and deletes (by filter) are idempotent.

use crate::store::{ChunkRecord, Hit, StoreError, TENANT_KEY, VectorStore, point_id};
use futures::future::BoxFuture;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, KeywordIndexParamsBuilder, PointStruct,
    PointsOperationResponse, QueryPointsBuilder, UpdateStatus, UpsertPointsBuilder,
    VectorParamsBuilder, vectors_config,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use std::fmt;

/// Payload key of the document id (the same field the embedded store writes).
const DOCUMENT_KEY: &str = "document_id";
/// Points per upsert request: keeps each gRPC message far below the server's limit
/// (256 × 384-d vectors ≈ 400 KB) however large the document.
const UPSERT_BATCH: usize = 256;
/// The most hits a search returns, as in the embedded store.
const MAX_LIMIT: usize = 100;

/// The collection for `model_id`: `{prefix}_{model_id}`, each part lower-cased with
/// anything outside `[a-z0-9_]` turned into `_` (`all-MiniLM-L6-v2` →
/// `switchboard_all_minilm_l6_v2`). Model ids that differ only in punctuation or
/// case share a name, so give such models different prefixes.
pub fn collection_name(prefix: &str, model_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .collect()
    };
    format!("{}_{}", clean(prefix), clean(model_id))
}

/// A collection on a Qdrant server. Cheap to clone: clones share the client's
/// connection pool.
#[derive(Clone)]
pub struct QdrantStore {
    client: Qdrant,
    /// Kept for `Debug` (the API key is not kept outside the client).
    url: String,
    collection: String,
    /// The collection's vector size; vectors of another size are refused before
    /// they reach the server.
    dims: usize,
}

// === impl QdrantStore ===

impl QdrantStore {
    /// Connects to the server at `url` (the gRPC port, normally 6334) and opens the
    /// collection for `model_id`, creating it with its payload indexes if missing.
    ///
    /// Fails if the server cannot be reached, or with [`StoreError::Dimensions`] if
    /// the collection exists with another vector size (a different model under the
    /// same name: pick another prefix or drop the collection).
    pub async fn connect(
        url: &str,
        api_key: Option<String>,
        collection_prefix: &str,
        model_id: &str,
        dims: usize,
    ) -> Result<Self, StoreError> {
        // The client's own version check blocks a thread and prints to stdout; the
        // health check below instead fails fast on an unreachable server and logs
        // the server's version.
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .skip_compatibility_check()
            .build()
            .map_err(|e| engine(format!("qdrant client for {url}"), e))?;
        let health = client
            .health_check()
            .await
            .map_err(|e| engine(format!("qdrant at {url} is unreachable"), e))?;
        let store = Self {
            client,
            url: url.to_owned(),
            collection: collection_name(collection_prefix, model_id),
            dims,
        };
        let created = store.ensure_collection().await?;
        tracing::info!(
            url,
            collection = %store.collection,
            dims,
            server_version = %health.version,
            created,
            "qdrant collection ready"
        );
        Ok(store)
    }

    /// The collection this store reads and writes.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Creates the collection and its indexes if missing, or checks the existing
    /// one's vector size and adds any index it lacks (a create interrupted between
    /// the collection and its indexes). Returns whether it created the collection.
    async fn ensure_collection(&self) -> Result<bool, StoreError> {
        let name = &self.collection;
        let exists = self
            .client
            .collection_exists(name.as_str())
            .await
            .map_err(|e| engine(format!("checking collection {name}"), e))?;
        let mut created = false;
        if !exists {
            let request = CreateCollectionBuilder::new(name.as_str())
                .vectors_config(VectorParamsBuilder::new(self.dims as u64, Distance::Cosine));
            match self.client.create_collection(request).await {
                Ok(_) => created = true,
                // Another replica may have created it since we looked: go on and
                // check what it created.
                Err(e) => {
                    let now = self.client.collection_exists(name.as_str()).await;
                    if !matches!(now, Ok(true)) {
                        return Err(engine(format!("creating collection {name}"), e));
                    }
                }
            }
        }
        let info = self
            .client
            .collection_info(name.as_str())
            .await
            .map_err(|e| engine(format!("reading collection {name}"), e))?
            .result
            .ok_or_else(|| StoreError::Engine(format!("collection {name}: no info returned")))?;
        let vectors = info
            .config
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        match vectors {
            Some(vectors_config::Config::Params(params)) => {
                if params.size != self.dims as u64 {
                    return Err(StoreError::Dimensions {
                        got: self.dims,
                        want: usize::try_from(params.size).unwrap_or(usize::MAX),
                    });
                }
                if params.distance != Distance::Cosine as i32 {
                    return Err(StoreError::Engine(format!(
                        "collection {name} uses distance {:?}, not cosine",
                        Distance::try_from(params.distance).unwrap_or(Distance::UnknownDistance)
                    )));
                }
            }
            _ => {
                return Err(StoreError::Engine(format!(
                    "collection {name} does not have a single unnamed vector"
                )));
            }
        }
        for (field, is_tenant) in [(TENANT_KEY, true), (DOCUMENT_KEY, false)] {
            if info.payload_schema.contains_key(field) {
                continue;
            }
            let request =
                CreateFieldIndexCollectionBuilder::new(name.as_str(), field, FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(is_tenant))
                    .wait(true);
            let response = self
                .client
                .create_field_index(request)
                .await
                .map_err(|e| engine(format!("indexing {field} in {name}"), e))?;
            completed(&response, || format!("indexing {field} in {name}"))?;
        }
        Ok(created)
    }

    fn check_dims(&self, vector: &[f32]) -> Result<(), StoreError> {
        if vector.len() == self.dims {
            Ok(())
        } else {
            Err(StoreError::Dimensions {
                got: vector.len(),
                want: self.dims,
            })
        }
    }

    async fn upsert_points(
        &self,
        tenant: &str,
        points: Vec<(ChunkRecord, Vec<f32>)>,
    ) -> Result<(), StoreError> {
        // Check every vector before sending anything, so a bad one fails the whole
        // call rather than leaving the document half-written.
        for (_, vector) in &points {
            self.check_dims(vector)?;
        }
        let mut structs = Vec::with_capacity(points.len());
        for (record, vector) in points {
            let id = point_id(tenant, &record.document_id, record.chunk_index);
            let chunk_index = i64::try_from(record.chunk_index)
                .map_err(|_| StoreError::Engine(format!("chunk index {}", record.chunk_index)))?;
            let mut payload = Payload::with_capacity(5);
            payload.insert(TENANT_KEY, tenant);
            payload.insert(DOCUMENT_KEY, record.document_id);
            payload.insert("title", record.title);
            payload.insert("chunk_index", chunk_index);
            payload.insert("text", record.text);
            structs.push(PointStruct::new(id, vector, payload));
        }
        let name = &self.collection;
        let mut rest = structs;
        while !rest.is_empty() {
            let batch: Vec<PointStruct> = rest.drain(..rest.len().min(UPSERT_BATCH)).collect();
            let response = self
                .client
                .upsert_points(UpsertPointsBuilder::new(name.as_str(), batch).wait(true))
                .await
                .map_err(|e| engine(format!("upserting into {name}"), e))?;
            completed(&response, || format!("upserting into {name}"))?;
        }
        Ok(())
    }

    async fn search_points(
        &self,
        tenant: &str,
        vector: Vec<f32>,
        limit: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.check_dims(&vector)?;
        let name = &self.collection;
        let request = QueryPointsBuilder::new(name.as_str())
            .query(vector)
            .filter(tenant_filter(tenant, None))
            .limit(limit.clamp(1, MAX_LIMIT) as u64)
            .with_payload(true);
        let response = self
            .client
            .query(request)
            .await
            .map_err(|e| engine(format!("searching {name}"), e))?;
        Ok(response
            .result
            .into_iter()
            .filter_map(|p| {
                let text = |key: &str| Some(p.payload.get(key)?.as_str()?.to_owned());
                // Belt and braces: never hand out another tenant's chunk.
                if p.payload.get(TENANT_KEY)?.as_str()? != tenant {
                    return None;
                }
                Some(Hit {
                    document_id: text(DOCUMENT_KEY)?,
                    title: text("title")?,
                    chunk_index: usize::try_from(p.payload.get("chunk_index")?.as_integer()?)
                        .ok()?,
                    text: text("text")?,
                    score: p.score,
                })
            })
            .collect())
    }

    async fn delete_points(&self, tenant: &str, document_id: &str) -> Result<(), StoreError> {
        let name = &self.collection;
        let request = DeletePointsBuilder::new(name.as_str())
            .points(tenant_filter(tenant, Some(document_id)))
            .wait(true);
        let response = self
            .client
            .delete_points(request)
            .await
            .map_err(|e| engine(format!("deleting from {name}"), e))?;
        completed(&response, || format!("deleting from {name}"))
    }

    async fn count_points(&self, tenant: &str) -> Result<usize, StoreError> {
        let name = &self.collection;
        let request = CountPointsBuilder::new(name.as_str())
            .filter(tenant_filter(tenant, None))
            .exact(true);
        let response = self
            .client
            .count(request)
            .await
            .map_err(|e| engine(format!("counting in {name}"), e))?;
        let count = response
            .result
            .ok_or_else(|| StoreError::Engine(format!("counting in {name}: no result")))?
            .count;
        usize::try_from(count).map_err(|_| StoreError::Engine(format!("count {count}")))
    }
}

impl fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl VectorStore for QdrantStore {
    fn upsert(
        &self,
        tenant: &str,
        points: Vec<(ChunkRecord, Vec<f32>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            if points.is_empty() {
                return Ok(());
            }
            self.upsert_points(&tenant, points).await
        })
    }

    fn search(
        &self,
        tenant: &str,
        vector: Vec<f32>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Hit>, StoreError>> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.search_points(&tenant, vector, limit).await })
    }

    fn delete_document(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let (tenant, document_id) = (tenant.to_owned(), document_id.to_owned());
        Box::pin(async move { self.delete_points(&tenant, &document_id).await })
    }

    fn count(&self, tenant: &str) -> BoxFuture<'_, Result<usize, StoreError>> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.count_points(&tenant).await })
    }
}

// === helpers ===

/// The filter every read and delete goes through.
fn tenant_filter(tenant: &str, document_id: Option<&str>) -> Filter {
    let mut must = vec![Condition::matches(TENANT_KEY, tenant.to_owned())];
    if let Some(d) = document_id {
        must.push(Condition::matches(DOCUMENT_KEY, d.to_owned()));
    }
    Filter::must(must)
}

/// `wait = true` writes answer once applied; anything but `Completed` (a wait
/// timeout, say) means the change may not be visible yet.
fn completed(
    response: &PointsOperationResponse,
    context: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    let status = response.result.map(|r| r.status);
    if status == Some(UpdateStatus::Completed as i32) {
        return Ok(());
    }
    let status = status
        .and_then(|s| UpdateStatus::try_from(s).ok())
        .map_or("no status", |s| s.as_str_name());
    Err(StoreError::Engine(format!(
        "{}: not completed ({status})",
        context()
    )))
}

/// An error with what we were doing; for a gRPC status, its code and message
/// without the response metadata `QdrantError` would print.
fn engine(context: String, e: QdrantError) -> StoreError {
    let detail = match &e {
        QdrantError::ResponseError { status } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    StoreError::Engine(format!("{context}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_prefix_and_cleaned_model_id() {
        assert_eq!(
            collection_name("switchboard", "all-MiniLM-L6-v2"),
            "switchboard_all_minilm_l6_v2"
        );
        assert_eq!(collection_name("sb", "org/model.v1"), "sb_org_model_v1");
    }

    #[test]
    fn filters_always_carry_the_tenant() {
        let f = tenant_filter("ten_a", None);
        assert_eq!(f.must.len(), 1);
        assert_eq!(
            f.must[0],
            Condition::matches(TENANT_KEY, "ten_a".to_owned())
        );
        let f = tenant_filter("ten_a", Some("doc"));
        assert_eq!(f.must.len(), 2);
        assert_eq!(
            f.must[1],
            Condition::matches(DOCUMENT_KEY, "doc".to_owned())
        );
        assert!(f.should.is_empty() && f.must_not.is_empty());
    }

    #[test]
    fn incomplete_writes_are_errors() {
        use qdrant_client::qdrant::UpdateResult;
        let response = |status: UpdateStatus| PointsOperationResponse {
            result: Some(UpdateResult {
                operation_id: Some(1),
                status: status as i32,
            }),
            time: 0.0,
            usage: None,
        };
        assert!(completed(&response(UpdateStatus::Completed), String::new).is_ok());
        let err = completed(&response(UpdateStatus::WaitTimeout), || "upserting".into());
        assert!(err.unwrap_err().to_string().contains("WaitTimeout"));
    }
}
