//! `--column-reads` end to end on a split image of the real model: the
//! device's cost model decides whether a sparse run reads the kept columns
//! per token or every column through the ring, both give the same text,
//! and forcing either way is obeyed.

use super::*;
use crate::cmd_pack::{Layout, PackArgs};
use crate::session_args::ColumnReadsArg;
use crate::testutil::real_model;

fn sparse_run(image: &std::path::Path, sparsity: f32, reads: ColumnReadsArg) -> serde_json::Value {
    let mut a = RunArgs::greedy_json(image.to_path_buf());
    a.model.dram_budget = Some("33%".into());
    a.model.sparsity = sparsity;
    a.model.column_reads = reads;
    a.n_predict = 4;
    let mut out = Vec::new();
    run(&a, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn the_cost_model_chooses_how_columns_are_read() {
    crate::testutil::with_main_stack(columns_by_cost_model);
}

fn columns_by_cost_model() {
    let Some(model) = real_model() else { return };
    let dir = std::env::temp_dir().join(format!("lode-run-columns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("split.lode");
    let mut p = PackArgs::quiet_defaults(model, image.clone());
    p.layout = Some(Layout::Split);
    crate::cmd_pack::run(&p, &mut Vec::new()).unwrap();

    // 922 of 1,536 kept 612-byte columns touch nearly every 4 KiB block:
    // on the built-in cost model reading them whole wins.
    let auto = sparse_run(&image, 0.4, ColumnReadsArg::Auto);
    let st = &auto["stream"];
    assert_eq!(st["column_reads"], "whole", "{st}");
    let price = &st["column_estimate"];
    assert_eq!(
        (price["kept"].as_u64(), price["neurons"].as_u64()),
        (Some(922), Some(1536))
    );
    assert!(price["sparse_ms"].as_f64() > Some(0.75 * price["whole_ms"].as_f64().unwrap()));
    assert_eq!(st["needed_columns_per_token"], 0.0, "{st}");
    // Forced per-token reads: the same text, the kept columns counted.
    let sparse = sparse_run(&image, 0.4, ColumnReadsArg::Sparse);
    assert_eq!(sparse["stream"]["column_reads"], "sparse");
    assert_eq!(sparse["generated_ids"], auto["generated_ids"]);
    assert!(
        sparse["stream"]["needed_columns_per_token"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Forced whole reads of a run the rule would read sparsely (5% kept:
    // long runs of blocks unread).
    let few = sparse_run(&image, 0.95, ColumnReadsArg::Auto);
    assert_eq!(few["stream"]["column_reads"], "sparse", "{}", few["stream"]);
    let forced = sparse_run(&image, 0.95, ColumnReadsArg::Whole);
    assert_eq!(forced["stream"]["column_reads"], "whole");
    assert_eq!(forced["generated_ids"], few["generated_ids"]);
    let _ = std::fs::remove_dir_all(&dir);
}
