//! [`QdrantStore`] against a real Qdrant server: tenant scoping, replacing on
//! re-upsert, deletes, reopening, and a collection built for another vector size.
//!
//! Runs only when `QDRANT_URL` (the gRPC address, e.g. `http://127.0.0.1:6334`; and
//! `QDRANT_API_KEY` if the server wants one) is set when the tests are **built**
//! (`build.rs` turns it into `cfg(qdrant_url)`); otherwise every test is ignored, so
//! nextest reports them as skipped rather than passed. Each test works in its own
//! collection (`sbtest_<random>_<model>`) and drops it at the end, pass or fail.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_rag::qdrant::QdrantStore;
use switchboard_rag::store::{ChunkRecord, StoreError, VectorStore};

const MODEL: &str = "test-model";
const DIMS: usize = 16;

fn url() -> String {
    std::env::var("QDRANT_URL").expect("QDRANT_URL is set (checked when building)")
}

fn api_key() -> Option<String> {
    std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
}

/// A collection prefix no other test or test run uses: the time plus a random
/// number (std's hasher is randomly keyed, so no extra dependency is needed).
fn unique_prefix() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let random = RandomState::new().hash_one(nanos);
    format!("sbtest_{nanos:x}_{random:x}")
}

async fn connect(prefix: &str, dims: usize) -> Result<QdrantStore, StoreError> {
    QdrantStore::connect(&url(), api_key(), prefix, MODEL, dims).await
}

/// Runs `test` with a fresh store, then drops its collection even if it failed.
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(QdrantStore, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let prefix = unique_prefix();
    let store = connect(&prefix, DIMS).await.expect("connect to QDRANT_URL");
    let collection = store.collection().to_owned();
    let outcome = tokio::spawn(test(store, prefix)).await;
    let client = qdrant_client::Qdrant::from_url(&url())
        .api_key(api_key())
        .skip_compatibility_check()
        .build()
        .unwrap();
    client
        .delete_collection(collection.as_str())
        .await
        .expect("drop the test collection");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A deterministic pseudo-random unit vector.
fn unit(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..DIMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// `base` nudged towards `seed`'s vector: close to `base`, but less than identical.
fn near(base: &[f32], seed: u64, weight: f32) -> Vec<f32> {
    let other = unit(seed);
    let mut v: Vec<f32> = base
        .iter()
        .zip(&other)
        .map(|(a, b)| a + weight * b)
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn record(doc: &str, i: usize, text: &str) -> ChunkRecord {
    ChunkRecord {
        document_id: doc.into(),
        title: format!("title of {doc}"),
        chunk_index: i,
        text: text.into(),
    }
}

/// In a module so that `cargo nextest run -p switchboard-rag qdrant` selects them.
mod qdrant {
    use super::*;

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn search_returns_the_nearest_chunks_best_first_with_their_payload() {
        with_store(|store, _| async move {
            let query = unit(1);
            store
                .upsert(
                    "ten_a",
                    vec![
                        (record("doc", 2, "far"), unit(99)),
                        (record("doc", 0, "exact"), query.clone()),
                        (record("doc", 1, "close"), near(&query, 5, 0.3)),
                    ],
                )
                .await
                .unwrap();
            let hits = store.search("ten_a", query.clone(), 2).await.unwrap();
            assert_eq!(hits.len(), 2, "{hits:?}");
            assert_eq!(hits[0].text, "exact");
            assert_eq!(hits[0].document_id, "doc");
            assert_eq!(hits[0].title, "title of doc");
            assert_eq!(hits[0].chunk_index, 0);
            assert!((hits[0].score - 1.0).abs() < 1e-4, "{hits:?}");
            assert_eq!(hits[1].text, "close");
            assert_eq!(hits[1].chunk_index, 1);
            assert!(hits[1].score < hits[0].score);
            assert_eq!(store.count("ten_a").await.unwrap(), 3);
            // Vectors of the wrong size never reach the server.
            assert!(matches!(
                store.search("ten_a", vec![1.0; 3], 1).await,
                Err(StoreError::Dimensions { got: 3, want: DIMS })
            ));
            assert!(matches!(
                store
                    .upsert("ten_a", vec![(record("bad", 0, "x"), vec![1.0; 3])])
                    .await,
                Err(StoreError::Dimensions { got: 3, want: DIMS })
            ));
            assert_eq!(store.count("ten_a").await.unwrap(), 3);
        })
        .await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn tenants_never_see_or_touch_each_others_points() {
        with_store(|store, _| async move {
            let shared = unit(7);
            // The same document id and the same vector in both tenants.
            store
                .upsert(
                    "ten_a",
                    vec![
                        (record("doc", 0, "alpha secret"), shared.clone()),
                        (record("doc", 1, "alpha other"), unit(8)),
                    ],
                )
                .await
                .unwrap();
            store
                .upsert(
                    "ten_b",
                    vec![(record("doc", 0, "beta secret"), shared.clone())],
                )
                .await
                .unwrap();

            let a = store.search("ten_a", shared.clone(), 10).await.unwrap();
            assert_eq!(a.len(), 2, "{a:?}");
            assert!(a.iter().all(|h| h.text.starts_with("alpha")), "{a:?}");
            let b = store.search("ten_b", shared.clone(), 10).await.unwrap();
            assert_eq!(b.len(), 1, "{b:?}");
            assert_eq!(b[0].text, "beta secret");
            assert!(
                store
                    .search("ten_c", shared.clone(), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(store.count("ten_a").await.unwrap(), 2);
            assert_eq!(store.count("ten_b").await.unwrap(), 1);
            assert_eq!(store.count("ten_c").await.unwrap(), 0);

            // A's delete of "doc" leaves B's "doc" alone, and C's deletes nothing.
            store.delete_document("ten_c", "doc").await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 2);
            store.delete_document("ten_a", "doc").await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 0);
            assert_eq!(store.count("ten_b").await.unwrap(), 1);
            let b = store.search("ten_b", shared, 10).await.unwrap();
            assert_eq!(b[0].text, "beta secret");
        })
        .await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn upserting_a_document_again_replaces_its_chunks() {
        with_store(|store, _| async move {
            let chunks = |version: &str| {
                (0..3)
                    .map(|i| (record("doc", i, &format!("{version} {i}")), unit(i as u64)))
                    .collect::<Vec<_>>()
            };
            store.upsert("ten_a", chunks("v1")).await.unwrap();
            store.upsert("ten_a", chunks("v2")).await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 3);
            let hits = store.search("ten_a", unit(0), 10).await.unwrap();
            assert_eq!(hits.len(), 3, "{hits:?}");
            assert!(hits.iter().all(|h| h.text.starts_with("v2")), "{hits:?}");
            // An empty upsert is a no-op, not an error.
            store.upsert("ten_a", Vec::new()).await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 3);
        })
        .await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn deleting_a_document_removes_only_that_document() {
        with_store(|store, _| async move {
            store
                .upsert(
                    "ten_a",
                    vec![
                        (record("gone", 0, "gone 0"), unit(1)),
                        (record("gone", 1, "gone 1"), unit(2)),
                        (record("kept", 0, "kept 0"), unit(3)),
                    ],
                )
                .await
                .unwrap();
            store.delete_document("ten_a", "gone").await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 1);
            let hits = store.search("ten_a", unit(1), 10).await.unwrap();
            assert_eq!(hits.len(), 1, "{hits:?}");
            assert_eq!(hits[0].document_id, "kept");
            // Deleting a document that is not there is fine.
            store.delete_document("ten_a", "never").await.unwrap();
            assert_eq!(store.count("ten_a").await.unwrap(), 1);
        })
        .await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn connecting_again_sees_the_existing_points() {
        with_store(|store, prefix| async move {
            store
                .upsert("ten_a", vec![(record("doc", 0, "kept"), unit(1))])
                .await
                .unwrap();
            drop(store);
            let again = connect(&prefix, DIMS).await.unwrap();
            assert_eq!(again.count("ten_a").await.unwrap(), 1);
            let hits = again.search("ten_a", unit(1), 1).await.unwrap();
            assert_eq!(hits[0].text, "kept");
        })
        .await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(qdrant_url),
        ignore = "QDRANT_URL is not set: no Qdrant server to test against"
    )]
    async fn a_collection_of_another_vector_size_is_refused() {
        with_store(|_, prefix| async move {
            let err = connect(&prefix, DIMS * 2).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Dimensions {
                        got,
                        want: DIMS
                    } if got == DIMS * 2
                ),
                "{err:?}"
            );
        })
        .await;
    }
}
