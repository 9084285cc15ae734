//! Retrieval on a small knowledge base: paraphrased questions (no shared keywords
//! to speak of) find the passage that answers them, with the real model and the
//! embedded Qdrant engine.

use std::path::PathBuf;
use switchboard_rag::chunk::{ChunkConfig, Format, chunk};
use switchboard_rag::embed::{Embedder, MiniLm};
use switchboard_rag::store::{ChunkRecord, EdgeStore, VectorStore};

const KB: &[(&str, &str)] = &[
    (
        "hours",
        "# Opening hours\n\nOur shop is open Monday to Friday from 9am to 6pm and on Saturdays from 10am to 2pm. We are closed on Sundays and public holidays.",
    ),
    (
        "shipping",
        "# Delivery\n\nOrders are dispatched within one working day. Standard delivery takes two to four working days; express delivery arrives the next day if you order before noon.",
    ),
    (
        "returns",
        "# Returns\n\nYou can return any item within 30 days of delivery for a full refund. Items must be unused and in their original packaging. Refunds go back to the original payment method.",
    ),
    (
        "password",
        "# Account access\n\nIf you cannot sign in, use the 'Forgot password' link on the login page. We will email you a link to choose a new password; the link is valid for one hour.",
    ),
    (
        "payment",
        "# Payment\n\nWe accept Visa, Mastercard, American Express, PayPal and bank transfer. Cash on delivery is not available.",
    ),
    (
        "warranty",
        "# Warranty\n\nAll electronics come with a two-year warranty covering manufacturing defects. Accidental damage and water damage are not covered.",
    ),
    (
        "allergens",
        "# Allergens\n\nOur bakery products may contain traces of nuts, gluten, milk and eggs. Ask staff for the full ingredient list of any item.",
    ),
];

const QUESTIONS: &[(&str, &str)] = &[
    ("When can I come by the store?", "hours"),
    ("Are you around on the weekend?", "hours"),
    ("How long until my parcel gets here?", "shipping"),
    (
        "Can I send back something I bought and get my money back?",
        "returns",
    ),
    ("I forgot my login credentials, what now?", "password"),
    ("Do you take credit cards?", "payment"),
    (
        "My laptop stopped working after eight months, is that covered?",
        "warranty",
    ),
    ("Is it safe for someone with a peanut allergy?", "allergens"),
];

#[tokio::test]
async fn paraphrased_questions_find_the_right_passage() {
    let dir = std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
        });
    let model = MiniLm::load(&dir).expect("model files (run scripts/models.sh)");
    let data = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(data.path(), model.model_id(), model.dimensions()).unwrap();
    let counter = |s: &str| model.count_tokens(s);
    for (doc, text) in KB {
        let chunks = chunk(text, Format::Markdown, &ChunkConfig::default(), &counter);
        let vectors = model
            .embed(chunks.iter().map(|c| c.text.clone()).collect())
            .await
            .unwrap();
        let points = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, v)| {
                (
                    ChunkRecord {
                        document_id: (*doc).into(),
                        title: c.heading.clone().unwrap_or_default(),
                        chunk_index: c.index,
                        text: c.text,
                    },
                    v,
                )
            })
            .collect();
        store.upsert("ten_kb", points).await.unwrap();
    }
    for (question, want) in QUESTIONS {
        let v = model.embed(vec![(*question).into()]).await.unwrap();
        let hits = store.search("ten_kb", v[0].clone(), 3).await.unwrap();
        assert_eq!(
            hits[0].document_id, *want,
            "{question:?} found {:?} (score {})",
            hits[0].document_id, hits[0].score
        );
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
    }
    // Another tenant asking the same thing finds nothing.
    let v = model.embed(vec![QUESTIONS[0].0.into()]).await.unwrap();
    assert!(
        store
            .search("ten_other", v[0].clone(), 3)
            .await
            .unwrap()
            .is_empty()
    );
}
