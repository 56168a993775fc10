//! Gemma 3 270M's Q5_0, Q4_K and Q6_K tensors decoded by lode's reference
//! dequantizers (`formats/src/gguf/kquants.rs`) against llama.cpp's own
//! Python reader: `tests/golden/gemma3-kquants.json`, written by
//! `scripts/golden-kquants` with gguf-py. Skipped without the model
//! (`scripts/fetch-model gemma3-270m`).

use std::path::PathBuf;

use lode_formats::gguf::{dequantize_row, Gguf};
use serde_json::Value;

fn model() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-Q4_K_M.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (scripts/fetch-model gemma3-270m)",
            p.display()
        );
        None
    }
}

#[test]
fn k_quant_rows_equal_llama_cpps() {
    let Some(path) = model() else { return };
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/gemma3-kquants.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for t in golden["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let info = gguf.tensor(name).unwrap();
        assert_eq!(
            format!("{:?}", info.dtype),
            t["type"].as_str().unwrap(),
            "{name}"
        );
        seen.insert(t["type"].as_str().unwrap().to_string());
        let cols = info.dims.row_len() as usize;
        let rb = info.row_bytes() as usize;
        let data = gguf.data(&info).unwrap();
        for r in t["rows"].as_array().unwrap() {
            let i = r["row"].as_u64().unwrap() as usize;
            let mut row = vec![0f32; cols];
            dequantize_row(info.dtype, &data[i * rb..(i + 1) * rb], &mut row).unwrap();
            for (k, want) in r["first"].as_array().unwrap().iter().enumerate() {
                assert_eq!(
                    row[k],
                    want.as_f64().unwrap() as f32,
                    "{name} row {i} [{k}]"
                );
            }
            let sum: f64 = row.iter().map(|&x| f64::from(x)).sum();
            let sq: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let (ws, wq) = (r["sum"].as_f64().unwrap(), r["sum_sq"].as_f64().unwrap());
            assert!(
                (sum - ws).abs() <= 1e-9 * (1.0 + wq),
                "{name} row {i}: {sum} vs {ws}"
            );
            assert!(
                (sq - wq).abs() <= 1e-9 * (1.0 + wq),
                "{name} row {i}: {sq} vs {wq}"
            );
        }
    }
    let want: std::collections::BTreeSet<String> = ["Q4_K", "Q5_0", "Q6_K"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, want);
}
