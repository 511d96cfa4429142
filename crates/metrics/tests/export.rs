//! `export_parquet` writes the rows `export_jsonl` writes: read back with the parquet crate's row
//! reader, each row is its JSON line (issue #26).

use std::fs::File;

use parquet::file::reader::{FileReader, SerializedFileReader};
use reprolm_metrics::export::{export_jsonl, export_parquet, PARQUET_COLUMNS};
use reprolm_metrics::run_dir::{
    Durability, FinishReason, LogprobsRecord, Manifest, ResponseRecord, RunDir,
};
use reprolm_metrics::LoadedRun;

/// Three samples covering what the columns can hold: a graded record with every optional text,
/// one with a position of fewer than k candidates (null padding), and an empty response.
fn write_run(dir: &std::path::Path) {
    let mut run = RunDir::create(dir, Manifest::example(), Durability::Flush).unwrap();
    let mut r = ResponseRecord::new("p1", 0, 12, "x = 4", vec![87, 284], FinishReason::Stop);
    (r.correct, r.score) = (true, 1.0);
    r.extracted_answer = Some("4".into());
    (r.question, r.gold_answer, r.prompt) = (
        Some("What is 2+2?".into()),
        Some("4".into()),
        Some("<|user|>What is 2+2?".into()),
    );
    let mut lp = LogprobsRecord::new("p1", 0, 5);
    lp.push_position(&[87, 5, 6, 7, 8], &[-0.1, -2.5, -3.25, -4.0, -4.5]);
    lp.push_position(&[284, 9], &[-0.01, -4.5]);
    run.append(&r, &lp).unwrap();
    let r = ResponseRecord::new("p1", 1, 12, "x", vec![3_000_000_000], FinishReason::Length);
    let mut lp = LogprobsRecord::new("p1", 1, 5);
    lp.push_position(&[3_000_000_000], &[-0.5]);
    run.append(&r, &lp).unwrap();
    let r = ResponseRecord::new("p2", 0, 40, "", vec![], FinishReason::PromptTooLong);
    run.append(&r, &LogprobsRecord::new("p2", 0, 5)).unwrap();
}

#[test]
fn parquet_export_holds_the_jsonl_export_row_for_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run(&dir);
    let run = LoadedRun::load(&dir).unwrap();
    let mut jsonl = Vec::new();
    assert_eq!(export_jsonl(&run, &mut jsonl).unwrap(), 3);
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let path = tmp.path().join("export.parquet");
    assert_eq!(
        export_parquet(&run, File::create(&path).unwrap()).unwrap(),
        3
    );

    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    assert_eq!(meta.num_rows(), 3);
    let names: Vec<&str> = meta
        .schema()
        .get_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(names, PARQUET_COLUMNS);
    let rows: Vec<serde_json::Value> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap().to_json_value())
        .collect();
    assert_eq!(rows.len(), lines.len());
    for (row, line) in rows.iter().zip(&lines) {
        assert_eq!(row, line);
    }
    // Spot checks, so an error on both sides is not hidden by the comparison.
    assert_eq!(rows[0]["extracted_answer"], "4");
    assert_eq!(
        rows[0]["top_ids"][1],
        serde_json::json!([284, 9, null, null, null])
    );
    assert_eq!(
        rows[0]["top_logprobs"][0],
        serde_json::json!([-0.1f32 as f64, -2.5, -3.25, -4.0, -4.5])
    );
    assert_eq!(rows[1]["token_ids"], serde_json::json!([3_000_000_000u32]));
    assert_eq!(rows[1]["finish_reason"], "length");
    assert_eq!(rows[2]["question"], serde_json::Value::Null);
    assert_eq!(rows[2]["top_ids"], serde_json::json!([]));
}
