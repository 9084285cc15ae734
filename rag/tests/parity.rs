//! Embedding parity: our vectors for fixed sentences match the reference vectors
//! sentence-transformers produced from the same model files
//! (`tests/fixtures/minilm_reference.json`, made by `make_reference.py`).

use std::path::PathBuf;
use switchboard_rag::embed::{Embedder, MiniLm};

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
        })
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let sentences: Vec<String> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let model = MiniLm::load(&model_dir()).expect("model files (run scripts/models.sh)");
    assert_eq!(model.dimensions(), 384);
    let ours = model.embed(sentences.clone()).await.unwrap();
    let mut worst = 0f32;
    for (i, (mine, theirs)) in ours
        .iter()
        .zip(fixture["vectors"].as_array().unwrap())
        .enumerate()
    {
        let theirs: Vec<f32> = theirs
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(mine.len(), theirs.len());
        let norm: f32 = mine.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit length");
        let cosine: f32 = mine.iter().zip(&theirs).map(|(a, b)| a * b).sum();
        let max_diff = mine
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(max_diff);
        assert!(
            cosine > 0.99999 && max_diff < 1e-4,
            "sentence {i} ({:?}): cosine {cosine}, max component difference {max_diff}",
            sentences[i]
        );
    }
    println!("parity: worst component difference {worst:e}");
    // Batching does not change a vector.
    let alone = model.embed(vec![sentences[1].clone()]).await.unwrap();
    let diff = alone[0]
        .iter()
        .zip(&ours[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "padding in a batch changed a vector by {diff}");
}
