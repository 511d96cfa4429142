//! The pin table: which cuBLASLt algorithm serves which weight shape on which GPU type and
//! cuBLASLt version (`pins.toml` beside this file, written by `reprolm bench gemm --tune`).
//!
//! An algorithm chosen by timing would differ between two runs whenever two candidates are close,
//! and with it the bits of every result; a table read at load gives every run on the same GPU
//! type and library the same algorithm, hence the same numbers. Shapes the table does not hold
//! get the heuristic's deterministic choice (`cublaslt::Plan::choose`).

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// A cuBLASLt algorithm by its configuration attributes (cuBLASLt's `CUBLASLT_ALGO_CONFIG_*`),
/// enough to rebuild it with `cublasLtMatmulAlgoInit` in another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlgoConfig {
    /// `ID`: the kernel family.
    pub id: i32,
    /// `TILE_ID`.
    pub tile: i32,
    /// `STAGES_ID`.
    pub stages: i32,
    /// `SPLITK_NUM`: how many parts K is cut into (1: none).
    pub splitk: i32,
    /// `REDUCTION_SCHEME` of the split-K parts (0: none).
    pub reduction: i32,
    /// `CTA_SWIZZLING`.
    pub swizzle: i32,
    /// `CUSTOM_OPTION`.
    pub custom: i32,
    /// `INNER_SHAPE_ID`.
    pub inner: i32,
    /// `CLUSTER_SHAPE_ID`.
    pub cluster: i32,
}

/// One entry: the algorithm timed best for a shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// The GPU's name as the driver reports it, e.g. `NVIDIA H200`.
    pub gpu: String,
    /// `cublasLtGetVersion()`.
    pub cublaslt: usize,
    /// `bf16`, `f16` or `f32`: the operands' and output's dtype.
    pub dtype: String,
    /// Weight rows.
    pub n: usize,
    /// Weight columns (the reduction length).
    pub k: usize,
    /// Bias in the epilogue.
    pub bias: bool,
    /// The algorithm.
    pub algo: AlgoConfig,
}

/// What identifies an entry: `(gpu, cublaslt, dtype, n, k, bias)`; a table holds one entry per key.
pub type PinKey<'a> = (&'a str, usize, &'a str, usize, usize, bool);

impl Pin {
    /// The entry's key.
    pub fn key(&self) -> PinKey<'_> {
        (
            &self.gpu,
            self.cublaslt,
            &self.dtype,
            self.n,
            self.k,
            self.bias,
        )
    }
}

#[derive(Serialize, Deserialize, Default)]
struct File {
    #[serde(default)]
    pin: Vec<Pin>,
}

/// The table shipped with reprolm.
const PINS: &str = include_str!("pins.toml");

/// Parses a pin table (the format of `pins.toml`).
pub fn parse(text: &str) -> Result<Vec<Pin>, toml::de::Error> {
    Ok(toml::from_str::<File>(text)?.pin)
}

/// A pin table as TOML, after `header` (comment lines), entries sorted by GPU, version, dtype and
/// shape so that a regenerated table diffs cleanly.
pub fn to_toml(header: &str, pins: &[Pin]) -> String {
    let mut pins = pins.to_vec();
    pins.sort_by(|a, b| a.key().cmp(&b.key()));
    let body = toml::to_string(&File { pin: pins }).expect("pins serialise");
    format!("{header}\n{body}")
}

/// The shipped table's entries, parsed once.
pub fn shipped() -> &'static [Pin] {
    static P: OnceLock<Vec<Pin>> = OnceLock::new();
    P.get_or_init(|| parse(PINS).expect("kernels/gemm/pins.toml parses (unit-tested)"))
}

/// The table named by `REPROLM_GEMM_PINS`, if set: entries a user tuned on their GPU
/// (`reprolm bench gemm --tune FILE`) that serve before the shipped table's, without a rebuild.
/// Read once per process; a file that cannot be read or parsed is an error naming it.
pub fn user_table() -> Result<&'static [Pin], String> {
    static P: OnceLock<Result<Vec<Pin>, String>> = OnceLock::new();
    let table = P.get_or_init(|| match std::env::var_os("REPROLM_GEMM_PINS") {
        None => Ok(Vec::new()),
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!("REPROLM_GEMM_PINS={}: cannot read it: {e}", path.display())
            })?;
            parse(&text)
                .map_err(|e| format!("REPROLM_GEMM_PINS={}: not a pin table: {e}", path.display()))
        }
    });
    table.as_deref().map_err(Clone::clone)
}

/// Where a looked-up entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// `REPROLM_GEMM_PINS`'s file.
    UserTable,
    /// `pins.toml`, compiled in.
    Shipped,
}

/// The algorithm for a shape on a GPU type and cuBLASLt version, if a table holds one:
/// `REPROLM_GEMM_PINS`'s file first, then the shipped table.
pub fn lookup(
    gpu: &str,
    cublaslt: usize,
    dtype: &str,
    n: usize,
    k: usize,
    bias: bool,
) -> Result<Option<(&'static Pin, PinSource)>, String> {
    let key = (gpu, cublaslt, dtype, n, k, bias);
    let user = user_table()?.iter().find(|p| p.key() == key);
    Ok(user.map(|p| (p, PinSource::UserTable)).or_else(|| {
        shipped()
            .iter()
            .find(|p| p.key() == key)
            .map(|p| (p, PinSource::Shipped))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_has_one_entry_per_key() {
        let pins = shipped();
        let mut keys: Vec<_> = pins.iter().map(Pin::key).collect();
        let all = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all, "duplicate keys in pins.toml");
    }

    #[test]
    fn a_table_survives_writing_and_reading() {
        let pin = Pin {
            gpu: "NVIDIA H200".into(),
            cublaslt: 130100,
            dtype: "bf16".into(),
            n: 1536,
            k: 8960,
            bias: false,
            algo: AlgoConfig {
                id: 66,
                tile: 27,
                stages: 35,
                splitk: 1,
                reduction: 0,
                swizzle: 0,
                custom: 2,
                inner: 0,
                cluster: 3,
            },
        };
        let text = to_toml("# test", std::slice::from_ref(&pin));
        assert!(text.starts_with("# test\n"));
        assert_eq!(parse(&text).unwrap(), vec![pin]);
    }
}
