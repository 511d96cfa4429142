//! cuBLASLt with one algorithm pinned per weight shape: the GEMM of 16-bit and f32 projections
//! whose reduction order over K does not depend on the number of rows.
//!
//! cuBLAS's default call asks its heuristic for every shape it sees, and the heuristic picks
//! another kernel (tile, split-K, stream-K) as the row count changes, so a row's bits change with
//! its batch. Here a weight shape `(N, K)` gets its algorithm once ([`plan_on`]): the pin table's
//! ([`pins`], tuned per GPU type and cuBLASLt version by `reprolm bench gemm --tune`)
//! or, for shapes it lacks, the heuristic's ranking at fixed row counts ([`Plan::choose`],
//! [`PIN_ROWS`]); either is checked to run every row count of [`VALID_ROWS`]. That algorithm then
//! serves every row count after `cublasLtMatmulAlgoCheck` accepts it; there is no fallback to
//! another algorithm. With the same kernel, tile, split of K (a pinned split-K algorithm cuts K
//! the same way and reduces the parts in the same order at every row count) and K loop, each
//! output element is reduced in the same order; `reprolm bench gemm` checks it bitwise per shape.
//! Which algorithm a shape got is reported by [`Plan::describe`].
//!
//! The bias rides in the epilogue (`CUBLASLT_EPILOGUE_BIAS`): added in f32 to the accumulated sum
//! before the one rounding to the output type, as torch's `addmm` does.
//!
//! **Faster algorithms per row count, the same bits.** One algorithm is rarely the fastest at
//! both 1 and 4096 rows (measured on an H100 for a 3584 x 3584 bf16 weight: the pinned one takes
//! 242 us at 4096 rows, where another tile takes 152). But cuBLASLt's kernels without split-K reduce
//! each output over K in one accumulator, k-step by k-step in order, whatever their tile, so
//! they agree bit for bit (every split-K-free candidate of every 7B projection shape did in
//! `bench gemm --tune`, whose digests show it). So the first [`linear`] call of a plan times the
//! candidates that cut K as the pinned one does (none of them split-K for a split-K-free pin; for
//! a split-K pin, those with its number of parts and reduction scheme, which may share its bits
//! where their parts are the same ranges of K) at the row counts of [`BUCKET_ROWS`] and gives
//! each range of row counts the fastest one, provided it reproduces the pinned algorithm's bits
//! on a probe of [`PROBE_ROWS`] random rows ([`Plan::by_rows`]); a candidate that does not is
//! never used. Decode row counts (up to [`PINNED_UP_TO_ROWS`]) keep the pin, which is tuned for
//! them in a CUDA graph. The pinned algorithm still decides the numbers; the others only compute them
//! faster. The choice is timed, so it can differ between two processes, which changes no bit.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublaslt::sys as lt;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::cuda_backend::CudaDevice;
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

use super::pins::{self, AlgoConfig};

/// The row count at which the heuristic ranks the candidates of a shape the pin table does not
/// hold: a prefill-sized problem (measured on an H200: such algorithms are about as fast as
/// cuBLAS's own choice from 512 rows up, and up to 2x slower for a few rows of a large weight;
/// ranking at a decode size instead picks algorithms up to 10x slower at prefill).
pub const PIN_ROWS: &[usize] = &[512];

/// Row counts every pinned algorithm must run (checked with `cublasLtMatmulAlgoCheck` when it is
/// chosen; other row counts are checked when first met).
pub const VALID_ROWS: &[usize] = &[1, 2, 3, 8, 17, 64, 333, 4096, 65536];

/// The pointer alignment (bytes) the pinned algorithms are chosen for; operands that start
/// elsewhere are copied first.
const ALIGN: usize = 16;

/// Bytes of workspace a pinned algorithm may use (one buffer per device, kept for the process).
/// Some split-K-free kernels ask for a few bytes (a tile scheduler's counter) at larger row counts.
pub const WORKSPACE: usize = 1 << 20;

/// Candidates asked of the heuristic per shape.
const CANDIDATES: usize = 16;

/// Row counts at which [`Plan::by_rows`] times the candidates; each stands for the row counts
/// up to the geometric mean of it and the next (the last for every larger count), within
/// [`BUCKET_BYTES`].
pub const BUCKET_ROWS: &[usize] = &[1, 8, 32, 128, 512, 4096];

/// The most bytes of x or of the output a timing call may take (the LM head's output at 4096
/// rows would be 2.5 GB in f32); larger row counts keep the last row count's choice.
const BUCKET_BYTES: usize = 256 << 20;

/// Rows of random x on which a candidate must reproduce the pinned algorithm's bits.
pub const PROBE_ROWS: usize = 16;

/// Row counts up to this are always served by the pinned algorithm itself. The pin is tuned for
/// them inside a CUDA graph, as decode runs them (`bench gemm --tune`); timed call by call at
/// load, a GEMM of a few rows measures the host, and the choice would be noise.
pub const PINNED_UP_TO_ROWS: usize = super::DECODE_ROWS;

/// A candidate serves a range of row counts only if it is at least this much faster there.
const BUCKET_GAIN: f64 = 0.95;

fn check(status: lt::cublasStatus_t, what: &str) -> candle_core::Result<()> {
    if status == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(format!(
            "cuBLASLt {what}: {status:?}"
        )))
    }
}

/// A cuBLASLt handle (one per process; a handle is not tied to a device or stream).
struct Handle(lt::cublasLtHandle_t);
// Safety: cuBLASLt handles may be used from any thread; calls that share a descriptor are
// serialised by the plan's lock.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn handle() -> candle_core::Result<&'static Handle> {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let mut h = std::ptr::null_mut();
    // Safety: writes a new handle into `h`.
    check(unsafe { lt::cublasLtCreate(&mut h) }, "create")?;
    Ok(HANDLE.get_or_init(|| Handle(h)))
}

/// The cuBLAS types of an operand dtype: `(data type, compute type)`.
fn types(dtype: DType) -> candle_core::Result<(lt::cudaDataType_t, lt::cublasComputeType_t)> {
    use lt::cublasComputeType_t::CUBLAS_COMPUTE_32F;
    use lt::cudaDataType_t::*;
    Ok(match dtype {
        DType::BF16 => (CUDA_R_16BF, CUBLAS_COMPUTE_32F),
        DType::F16 => (CUDA_R_16F, CUBLAS_COMPUTE_32F),
        // True FP32 (no TF32), as candle's own f32 GEMM.
        DType::F32 => (CUDA_R_32F, CUBLAS_COMPUTE_32F),
        other => candle_core::bail!("pinned cuBLASLt GEMM: no {other:?} support"),
    })
}

/// A matrix layout, destroyed on drop.
struct MatrixLayout(lt::cublasLtMatrixLayout_t);

impl MatrixLayout {
    /// Column-major `rows × cols` with leading dimension `rows`.
    fn new(ty: lt::cudaDataType_t, rows: usize, cols: usize) -> candle_core::Result<Self> {
        let mut l = std::ptr::null_mut();
        // Safety: creates a new layout object.
        check(
            unsafe {
                lt::cublasLtMatrixLayoutCreate(&mut l, ty, rows as u64, cols as u64, rows as i64)
            },
            "layout",
        )?;
        Ok(MatrixLayout(l))
    }
}

impl Drop for MatrixLayout {
    fn drop(&mut self) {
        // Safety: created by cublasLtMatrixLayoutCreate, destroyed once.
        unsafe { lt::cublasLtMatrixLayoutDestroy(self.0) };
    }
}

/// A matmul descriptor (`D = op(A) op(B)`, A transposed), destroyed on drop.
struct Desc(lt::cublasLtMatmulDesc_t);

impl Drop for Desc {
    fn drop(&mut self) {
        // Safety: created by cublasLtMatmulDescCreate, destroyed once.
        unsafe { lt::cublasLtMatmulDescDestroy(self.0) };
    }
}

fn set_desc<T>(
    d: &Desc,
    attr: lt::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> candle_core::Result<()> {
    // Safety: `v` is a live value of the attribute's documented type and size.
    check(
        unsafe {
            lt::cublasLtMatmulDescSetAttribute(
                d.0,
                attr,
                v as *const T as *const c_void,
                std::mem::size_of::<T>(),
            )
        },
        "descriptor attribute",
    )
}

/// The shape a plan serves: the weight `(n, k)`, the dtype of both operands and of the output,
/// whether a bias is fused, and how its algorithm is chosen when the pin table has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanKey {
    /// Output features (weight rows).
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Operand and output dtype.
    pub dtype: DType,
    /// Bias in the epilogue.
    pub bias: bool,
    /// How the algorithm is chosen.
    pub strategy: PinStrategy,
}

/// How a shape's algorithm is chosen: the row counts the heuristic is asked at, and whether
/// split-K algorithms may be pinned (their partial sums are reduced in a fixed order, so a pinned
/// split-K algorithm is as batch invariant as any other; the benchmark checks it bitwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinStrategy {
    /// Row counts the heuristic ranks candidates at; the smallest rank sum wins.
    pub rows: &'static [usize],
    /// Whether split-K algorithms are candidates.
    pub split_k: bool,
}

impl PinStrategy {
    /// The default: see [`PIN_ROWS`].
    pub const DEFAULT: PinStrategy = PinStrategy {
        rows: PIN_ROWS,
        split_k: true,
    };

    /// `REPROLM_GEMM_PIN` (comma-separated row counts) and `REPROLM_GEMM_SPLITK` (`0` or `1`)
    /// over [`PinStrategy::DEFAULT`]; read once per process.
    pub fn from_env() -> PinStrategy {
        static S: OnceLock<PinStrategy> = OnceLock::new();
        *S.get_or_init(|| {
            let mut s = PinStrategy::DEFAULT;
            if let Ok(v) = std::env::var("REPROLM_GEMM_PIN") {
                let rows: Vec<usize> = v
                    .split(',')
                    .filter_map(|r| r.trim().parse().ok())
                    .filter(|&r| r > 0)
                    .collect();
                if !rows.is_empty() {
                    s.rows = Box::leak(rows.into_boxed_slice());
                }
            }
            if let Ok(v) = std::env::var("REPROLM_GEMM_SPLITK") {
                s.split_k = v != "0";
            }
            s
        })
    }
}

impl std::fmt::Display for PinStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: Vec<String> = self.rows.iter().map(|r| r.to_string()).collect();
        write!(
            f,
            "ranked at {} rows, split-K {}",
            rows.join("+"),
            if self.split_k { "allowed" } else { "off" }
        )
    }
}

/// One pinned algorithm for one [`PlanKey`].
pub struct Plan {
    key: PlanKey,
    desc: Desc,
    a: MatrixLayout,
    /// The pinned algorithm: its order of reduction is the plan's numbers.
    algo: lt::cublasLtMatmulAlgo_t,
    /// Faster algorithms with the same bits for ranges of row counts, set once by
    /// [`Plan::by_rows`]: `(most rows, algorithm)`, ascending (empty where none is faster), or
    /// why choosing them failed.
    buckets: OnceLock<std::result::Result<Vec<(usize, lt::cublasLtMatmulAlgo_t)>, String>>,
    /// The algorithm each live row count runs, once `cublasLtMatmulAlgoCheck` accepted it.
    checked: Mutex<HashMap<usize, lt::cublasLtMatmulAlgo_t>>,
    /// Held for each call: the bias pointer is written into the shared descriptor.
    call: Mutex<()>,
    /// Where the algorithm came from: `pin table` or `heuristic`.
    source: &'static str,
}

// Safety: the raw descriptor and layout are only touched under `call` (or read-only).
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

/// One attribute of an algorithm's configuration (cuBLASLt wants the attribute's exact size: 4
/// bytes for most, 2 for the inner and cluster shapes); -1 if it cannot be read.
fn algo_attr(
    algo: &lt::cublasLtMatmulAlgo_t,
    attr: lt::cublasLtMatmulAlgoConfigAttributes_t,
) -> i64 {
    for size in [4usize, 2, 8] {
        let mut v: u64 = 0;
        let mut written = 0usize;
        // Safety: reads at most `size` <= 8 bytes into `v`.
        let st = unsafe {
            lt::cublasLtMatmulAlgoConfigGetAttribute(
                algo,
                attr,
                &mut v as *mut u64 as *mut c_void,
                size,
                &mut written,
            )
        };
        if st == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return match size {
                2 => (v & 0xffff) as i64,
                4 => (v & 0xffff_ffff) as u32 as i32 as i64,
                _ => v as i64,
            };
        }
    }
    -1
}

/// What cuBLASLt makes of an [`AlgoConfig`]: read from, and rebuilt into, an algorithm.
trait Cublas: Sized {
    fn of(algo: &lt::cublasLtMatmulAlgo_t) -> Self;
    fn build(&self, dtype: DType) -> candle_core::Result<lt::cublasLtMatmulAlgo_t>;
}

impl Cublas for AlgoConfig {
    fn of(algo: &lt::cublasLtMatmulAlgo_t) -> AlgoConfig {
        use lt::cublasLtMatmulAlgoConfigAttributes_t as C;
        let a = |c| algo_attr(algo, c) as i32;
        AlgoConfig {
            id: a(C::CUBLASLT_ALGO_CONFIG_ID),
            tile: a(C::CUBLASLT_ALGO_CONFIG_TILE_ID),
            stages: a(C::CUBLASLT_ALGO_CONFIG_STAGES_ID),
            splitk: a(C::CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
            reduction: a(C::CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
            swizzle: a(C::CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
            custom: a(C::CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
            inner: a(C::CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID),
            cluster: a(C::CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID),
        }
    }

    /// The algorithm with this configuration for operands of `dtype`.
    fn build(&self, dtype: DType) -> candle_core::Result<lt::cublasLtMatmulAlgo_t> {
        use lt::cublasLtMatmulAlgoConfigAttributes_t as C;
        let (ty, compute) = types(dtype)?;
        let mut algo = lt::cublasLtMatmulAlgo_t { data: [0; 8] };
        // Safety: initialises `algo` for the given types and id.
        check(
            unsafe {
                lt::cublasLtMatmulAlgoInit(
                    handle()?.0,
                    compute,
                    lt::cudaDataType_t::CUDA_R_32F,
                    ty,
                    ty,
                    ty,
                    ty,
                    self.id,
                    &mut algo,
                )
            },
            "algorithm init",
        )?;
        let set = |algo: &mut lt::cublasLtMatmulAlgo_t, attr, v: i32, size: usize| {
            let v32 = v as u32;
            let v16 = v as u16;
            let ptr = if size == 2 {
                &v16 as *const u16 as *const c_void
            } else {
                &v32 as *const u32 as *const c_void
            };
            // Safety: `ptr` points at a value of the attribute's size.
            check(
                unsafe { lt::cublasLtMatmulAlgoConfigSetAttribute(algo, attr, ptr, size) },
                "algorithm attribute",
            )
        };
        set(&mut algo, C::CUBLASLT_ALGO_CONFIG_TILE_ID, self.tile, 4)?;
        set(&mut algo, C::CUBLASLT_ALGO_CONFIG_STAGES_ID, self.stages, 4)?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_SPLITK_NUM,
            self.splitk,
            4,
        )?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
            self.reduction,
            4,
        )?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING,
            self.swizzle,
            4,
        )?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION,
            self.custom,
            4,
        )?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID,
            self.inner,
            2,
        )?;
        set(
            &mut algo,
            C::CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
            self.cluster,
            2,
        )?;
        Ok(algo)
    }
}

/// `cublasLtGetVersion()` of the loaded library.
pub fn cublaslt_version() -> usize {
    // Safety: a plain query.
    unsafe { lt::cublasLtGetVersion() }
}

/// The GPU name the pin table is keyed by.
pub fn gpu_name(dev: &CudaDevice) -> String {
    dev.cuda_stream()
        .context()
        .name()
        .unwrap_or_else(|_| "unknown GPU".into())
}

impl Plan {
    /// A plan for `key` with the given algorithm, if `cublasLtMatmulAlgoCheck` accepts it at every
    /// row count of [`VALID_ROWS`].
    pub fn with_algo(key: PlanKey, algo: &AlgoConfig) -> candle_core::Result<Option<Plan>> {
        let mut plan = Plan::empty(key)?;
        plan.algo = algo.build(key.dtype)?;
        Ok(VALID_ROWS
            .iter()
            .all(|&m| plan.runs(m).unwrap_or(false))
            .then_some(plan))
    }

    /// The candidates the heuristic offers for `key` at any of `rows` (within [`WORKSPACE`],
    /// split-K included), each once, that run every row count of [`VALID_ROWS`].
    pub fn candidates_for(key: PlanKey, rows: &[usize]) -> candle_core::Result<Vec<AlgoConfig>> {
        let plan = Plan::empty(key)?;
        let mut out: Vec<AlgoConfig> = Vec::new();
        for &r in rows {
            for algo in plan.candidates(r)? {
                let cfg = AlgoConfig::of(&algo);
                if !out.contains(&cfg) && Plan::with_algo(key, &cfg)?.is_some() {
                    out.push(cfg);
                }
            }
        }
        Ok(out)
    }

    /// The plan of `key` before an algorithm is set: descriptor and weight layout.
    fn empty(key: PlanKey) -> candle_core::Result<Plan> {
        use lt::cublasLtMatmulDescAttributes_t as D;
        let (ty, compute) = types(key.dtype)?;
        let mut d = std::ptr::null_mut();
        // Safety: creates a descriptor object.
        check(
            unsafe {
                lt::cublasLtMatmulDescCreate(&mut d, compute, lt::cudaDataType_t::CUDA_R_32F)
            },
            "descriptor",
        )?;
        let desc = Desc(d);
        // cublasOperation_t as an i32: 1 = transposed, 0 = not.
        set_desc(&desc, D::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?;
        set_desc(&desc, D::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?;
        if key.bias {
            set_desc(
                &desc,
                D::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &lt::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            )?;
        }
        // Column-major view of row-major operands: A = W is K x N (transposed to N x K),
        // B = x is K x M, D = y is N x M.
        let a = MatrixLayout::new(ty, key.k, key.n)?;
        Ok(Plan {
            key,
            desc,
            a,
            algo: lt::cublasLtMatmulAlgo_t { data: [0; 8] },
            buckets: OnceLock::new(),
            checked: Mutex::new(HashMap::new()),
            call: Mutex::new(()),
            source: "heuristic",
        })
    }

    /// Chooses the algorithm for `key`: the heuristic is asked at each of the strategy's row
    /// counts for its ranked candidates (within [`WORKSPACE`]; split-K only if the strategy
    /// allows it), the candidates that `cublasLtMatmulAlgoCheck` accepts at every row count of
    /// [`VALID_ROWS`] are kept, and the one with the smallest sum of ranks wins (ties to the
    /// earlier rank at the first row count). Deterministic: the same cuBLAS version on the same
    /// GPU type picks the same algorithm every time, which is what lets two runs compare bitwise.
    pub fn choose(key: PlanKey) -> candle_core::Result<Plan> {
        use lt::cublasLtMatmulAlgoConfigAttributes_t as C;
        let mut plan = Plan::empty(key)?;
        let lists: Vec<Vec<lt::cublasLtMatmulAlgo_t>> = key
            .strategy
            .rows
            .iter()
            .map(|&r| plan.candidates(r))
            .collect::<candle_core::Result<_>>()?;
        let split_ok = |a: &lt::cublasLtMatmulAlgo_t| {
            key.strategy.split_k
                || (algo_attr(a, C::CUBLASLT_ALGO_CONFIG_SPLITK_NUM) <= 1
                    && algo_attr(a, C::CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) <= 0)
        };
        let mut best: Option<(usize, usize, lt::cublasLtMatmulAlgo_t)> = None;
        for list in &lists {
            for algo in list {
                if !split_ok(algo) {
                    continue;
                }
                let score: usize = lists
                    .iter()
                    .map(|l| {
                        l.iter()
                            .position(|b| b.data == algo.data)
                            .unwrap_or(CANDIDATES)
                    })
                    .sum();
                let first = lists[0]
                    .iter()
                    .position(|b| b.data == algo.data)
                    .unwrap_or(CANDIDATES);
                if best.is_some_and(|(s, f, _)| (s, f) <= (score, first)) {
                    continue;
                }
                plan.algo = *algo;
                let valid = VALID_ROWS.iter().all(|&m| plan.runs(m).unwrap_or(false));
                if valid {
                    best = Some((score, first, *algo));
                }
            }
        }
        let Some((_, _, algo)) = best else {
            candle_core::bail!(
                "pinned cuBLASLt GEMM: no algorithm{} within {WORKSPACE} bytes of workspace runs every row count of {VALID_ROWS:?} for {key:?}",
                if key.strategy.split_k { "" } else { " without split-K" }
            );
        };
        plan.algo = algo;
        Ok(plan)
    }

    /// The heuristic's ranked candidates at `rows` rows.
    fn candidates(&self, rows: usize) -> candle_core::Result<Vec<lt::cublasLtMatmulAlgo_t>> {
        use lt::cublasLtMatmulPreferenceAttributes_t as P;
        let (b, c) = self.row_layouts(rows)?;
        let mut pref = std::ptr::null_mut();
        // Safety: creates a preference object, destroyed below.
        check(
            unsafe { lt::cublasLtMatmulPreferenceCreate(&mut pref) },
            "preference",
        )?;
        let ws_bytes: u64 = WORKSPACE as u64;
        let align: u32 = ALIGN as u32;
        let mut st = lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS;
        // Safety: attribute values of their documented types.
        unsafe {
            let mut set = |attr, v: *const c_void, size| {
                let r = lt::cublasLtMatmulPreferenceSetAttribute(pref, attr, v, size);
                if r != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                    st = r;
                }
            };
            set(
                P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws_bytes as *const u64 as *const c_void,
                8,
            );
            for attr in [
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
            ] {
                set(attr, &align as *const u32 as *const c_void, 4);
            }
        }
        let mut results: Vec<lt::cublasLtMatmulHeuristicResult_t> = Vec::with_capacity(CANDIDATES);
        let mut found = 0i32;
        // Safety: `results` has room for CANDIDATES entries; `found` receives how many are set.
        let heur = unsafe {
            lt::cublasLtMatmulAlgoGetHeuristic(
                handle()?.0,
                self.desc.0,
                self.a.0,
                b.0,
                c.0,
                c.0,
                pref,
                CANDIDATES as i32,
                results.as_mut_ptr(),
                &mut found,
            )
        };
        // Safety: destroys the preference created above.
        unsafe { lt::cublasLtMatmulPreferenceDestroy(pref) };
        check(st, "preference attribute")?;
        check(heur, "heuristic")?;
        // Safety: the heuristic initialised the first `found` entries.
        unsafe { results.set_len(found.clamp(0, CANDIDATES as i32) as usize) };
        Ok(results
            .into_iter()
            .filter(|r| {
                r.state == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS && r.workspaceSize <= WORKSPACE
            })
            .map(|r| r.algo)
            .collect())
    }

    /// The shape this plan serves.
    pub fn key(&self) -> PlanKey {
        self.key
    }

    /// The pinned algorithm's configuration (the one whose bits the plan gives).
    pub fn pinned(&self) -> AlgoConfig {
        AlgoConfig::of(&self.algo)
    }

    /// The pinned algorithm's configuration, e.g. `algo 66 tile 20 stages 22 splitk 1 ...`,
    /// and the faster ones that serve ranges of row counts, if chosen (`rows <= 16: tile 12
    /// custom 0 cluster 3; ...`).
    pub fn describe(&self) -> String {
        use lt::cublasLtMatmulAlgoConfigAttributes_t as C;
        let a = |c| algo_attr(&self.algo, c);
        let pinned = format!(
            "{}: algo {} tile {} stages {} splitk {} reduction {} swizzle {} custom {} inner {} cluster {}",
            self.source,
            a(C::CUBLASLT_ALGO_CONFIG_ID),
            a(C::CUBLASLT_ALGO_CONFIG_TILE_ID),
            a(C::CUBLASLT_ALGO_CONFIG_STAGES_ID),
            a(C::CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
            a(C::CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
            a(C::CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
            a(C::CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
            a(C::CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID),
            a(C::CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID),
        );
        match self.buckets.get().map(|b| b.as_deref()) {
            Some(Err(why)) => format!("{pinned}; no faster algorithms chosen: {why}"),
            None | Some(Ok([])) => pinned,
            Some(Ok(b)) => {
                let ranges: Vec<String> = b
                    .iter()
                    .map(|(most, algo)| {
                        let c = AlgoConfig::of(algo);
                        let rows = if *most == usize::MAX {
                            "larger".to_string()
                        } else {
                            format!("rows <= {most}")
                        };
                        if algo.data == self.algo.data {
                            format!("{rows}: pinned")
                        } else {
                            format!(
                                "{rows}: tile {} custom {} cluster {}",
                                c.tile, c.custom, c.cluster
                            )
                        }
                    })
                    .collect();
                format!("{pinned}; same bits, faster: {}", ranges.join("; "))
            }
        }
    }

    /// The algorithm that computes `m` rows fastest among those with the pinned one's bits.
    fn algo_for_rows(&self, m: usize) -> lt::cublasLtMatmulAlgo_t {
        self.buckets
            .get()
            .and_then(|b| b.as_ref().ok())
            .and_then(|b| b.iter().find(|(most, _)| m <= *most))
            .map_or(self.algo, |(_, a)| *a)
    }

    /// Chooses, once per plan, the fastest algorithm with the pinned one's bits for each range of
    /// row counts (see the module docs), timing on `w` (and `bias`) with random x: the candidates
    /// the heuristic offers at [`BUCKET_ROWS`] that cut K as the pinned algorithm does (split-K
    /// free, or the same number of parts and reduction scheme), each first checked to give the
    /// pinned algorithm's output bits on [`PROBE_ROWS`] rows. Calls after the first return at
    /// once. If the choice fails (no memory for the timing calls, say), the pinned algorithm
    /// serves every row count, which changes no bit, and [`describe`](Self::describe) says why.
    ///
    /// `REPROLM_GEMM_BY_ROWS=0` keeps the pinned algorithm for every row count (the same bits):
    /// a profiler slows every call it times, so two profiled processes would otherwise choose
    /// different algorithms and their kernel lists would not line up.
    pub fn by_rows(self: &Arc<Self>, w: &Tensor, bias: Option<&Tensor>) {
        if self.buckets.get().is_some() {
            return;
        }
        static OFF: OnceLock<bool> = OnceLock::new();
        let off =
            *OFF.get_or_init(|| std::env::var("REPROLM_GEMM_BY_ROWS").is_ok_and(|v| v == "0"));
        let chosen = if off {
            Err("turned off (REPROLM_GEMM_BY_ROWS=0)".to_string())
        } else {
            self.choose_by_rows(w, bias).map_err(|e| e.to_string())
        };
        // A second thread that chose at the same time found algorithms with the same bits.
        let _ = self.buckets.set(chosen);
        // Row counts checked before now ran the pinned algorithm; check them again.
        self.checked.lock().expect("plan lock").clear();
    }

    /// The ranges of row counts and their algorithms for [`by_rows`](Self::by_rows).
    fn choose_by_rows(
        self: &Arc<Self>,
        w: &Tensor,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Vec<(usize, lt::cublasLtMatmulAlgo_t)>> {
        let device = w.device().clone();
        let pinned = AlgoConfig::of(&self.algo);
        let host_bits = reprolm_precision::deterministic::value_bits;
        let rows_x = |m: usize| -> candle_core::Result<Tensor> {
            Tensor::randn(0f32, 1.0, (m, self.key.k), &device)?.to_dtype(self.key.dtype)
        };
        let probe = rows_x(PROBE_ROWS)?;
        let want = host_bits(&linear_with(self, &probe, w, bias)?)?;
        let mut same: Vec<Arc<Plan>> = Vec::new();
        // Candidates that cut K as the pinned algorithm does (not at all, or into as many parts
        // reduced by the same scheme); only those that reproduce its bits are kept.
        let cut = |c: &AlgoConfig| (c.splitk.max(1), c.reduction.max(0));
        for cfg in Plan::candidates_for(self.key, BUCKET_ROWS)? {
            if cfg == pinned || cut(&cfg) != cut(&pinned) {
                continue;
            }
            let Some(plan) = Plan::with_algo(self.key, &cfg)? else {
                continue;
            };
            let plan = Arc::new(plan);
            if host_bits(&linear_with(&plan, &probe, w, bias)?)? == want {
                same.push(plan);
            }
        }
        let time = |plan: &Arc<Plan>, x: &Tensor| -> candle_core::Result<f64> {
            linear_with(plan, x, w, bias)?;
            let mut best = f64::INFINITY;
            for _ in 0..2 {
                device.synchronize()?;
                let t = std::time::Instant::now();
                linear_with(plan, x, w, bias)?;
                device.synchronize()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok(best)
        };
        let size = self.key.dtype.size_in_bytes();
        let fits = |m: usize| m * self.key.n.max(self.key.k) * size <= BUCKET_BYTES;
        let rows: Vec<usize> = BUCKET_ROWS.iter().copied().filter(|&m| fits(m)).collect();
        let ends = super::row_range_ends(&rows);
        let mut buckets: Vec<(usize, lt::cublasLtMatmulAlgo_t)> = Vec::new();
        for (&m, &most) in rows.iter().zip(&ends) {
            if most <= PINNED_UP_TO_ROWS {
                match buckets.last_mut() {
                    Some(last) if last.1.data == self.algo.data => last.0 = most,
                    _ => buckets.push((most, self.algo)),
                }
                continue;
            }
            let x = rows_x(m)?;
            let pinned_time = time(self, &x)?;
            let mut choice = (pinned_time * BUCKET_GAIN, self.algo);
            for plan in &same {
                if !plan.runs(m)? {
                    continue;
                }
                let t = time(plan, &x)?;
                if t < choice.0 {
                    choice = (t, plan.algo);
                }
            }
            match buckets.last_mut() {
                Some(last) if last.1.data == choice.1.data => last.0 = most,
                _ => buckets.push((most, choice.1)),
            }
        }
        if buckets.iter().all(|(_, a)| a.data == self.algo.data) {
            buckets.clear();
        }
        Ok(buckets)
    }

    /// The layouts of x (`K x rows`) and of the output (`N x rows`) for a call of `rows` rows.
    fn row_layouts(&self, rows: usize) -> candle_core::Result<(MatrixLayout, MatrixLayout)> {
        let (ty, _) = types(self.key.dtype)?;
        Ok((
            MatrixLayout::new(ty, self.key.k, rows)?,
            MatrixLayout::new(ty, self.key.n, rows)?,
        ))
    }

    /// Whether `cublasLtMatmulAlgoCheck` accepts the pinned algorithm for `m` rows within the
    /// workspace.
    fn runs(&self, m: usize) -> candle_core::Result<bool> {
        self.runs_with(&self.algo, m)
    }

    /// [`Plan::runs`] for another algorithm of this plan's shape.
    fn runs_with(&self, algo: &lt::cublasLtMatmulAlgo_t, m: usize) -> candle_core::Result<bool> {
        let (b, c) = self.row_layouts(m)?;
        let mut result = std::mem::MaybeUninit::<lt::cublasLtMatmulHeuristicResult_t>::zeroed();
        // Safety: every descriptor is live; `result` is written by the call.
        let st = unsafe {
            lt::cublasLtMatmulAlgoCheck(
                handle()?.0,
                self.desc.0,
                self.a.0,
                b.0,
                c.0,
                c.0,
                algo,
                result.as_mut_ptr(),
            )
        };
        // Safety: zero-initialised, and written by a successful call.
        let ws = unsafe { result.assume_init() }.workspaceSize;
        Ok(st == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS && ws <= WORKSPACE)
    }

    /// The algorithm that runs `m` rows, asked of `cublasLtMatmulAlgoCheck` once per `m`: the
    /// faster one of its range if it runs them, else the pinned one (the same bits); an error
    /// names the shape when neither does, since no algorithm with other bits may stand in.
    fn check_rows(&self, m: usize) -> candle_core::Result<lt::cublasLtMatmulAlgo_t> {
        if let Some(a) = self.checked.lock().expect("plan lock").get(&m) {
            return Ok(*a);
        }
        let fast = self.algo_for_rows(m);
        let algo = if fast.data != self.algo.data && self.runs_with(&fast, m)? {
            fast
        } else if self.runs(m)? {
            self.algo
        } else {
            candle_core::bail!(
                "pinned cuBLASLt GEMM: the algorithm pinned for {:?} ({}) does not run {m} rows within {WORKSPACE} bytes of workspace",
                self.key,
                self.describe()
            );
        };
        self.checked.lock().expect("plan lock").insert(m, algo);
        Ok(algo)
    }

    fn launch(
        &self,
        x: (&CudaStorage, &Layout),
        w: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::driver::CudaView;
        let dev: &CudaDevice = x.0.device();
        let (m, k) = x.1.shape().dims2()?;
        let (n, kw) = w.1.shape().dims2()?;
        if k != self.key.k || kw != k || n != self.key.n || bias.is_some() != self.key.bias {
            candle_core::bail!(
                "pinned cuBLASLt GEMM: call {:?} x {:?} does not fit {:?}",
                x.1.dims(),
                w.1.dims(),
                self.key
            );
        }
        let algo = self.check_rows(m)?;
        let (b_layout, c_layout) = self.row_layouts(m)?;
        let stream = dev.cuda_stream();
        let out = reprolm_precision::cuda::Output::alloc(dev, self.key.dtype, m * n)?;
        fn view<'a, T>(
            s: &'a candle_core::cuda_backend::cudarc::driver::CudaSlice<T>,
            l: &Layout,
        ) -> candle_core::Result<CudaView<'a, T>> {
            match l.contiguous_offsets() {
                Some((a, b)) => Ok(s.slice(a..b)),
                None => candle_core::bail!("pinned cuBLASLt GEMM: operands must be contiguous"),
            }
        }
        macro_rules! ptr {
            ($st:expr, $l:expr) => {{
                match $st.dtype() {
                    DType::BF16 => {
                        view($st.as_cuda_slice::<half::bf16>()?, $l)?
                            .device_ptr(&stream)
                            .0
                    }
                    DType::F16 => {
                        view($st.as_cuda_slice::<half::f16>()?, $l)?
                            .device_ptr(&stream)
                            .0
                    }
                    DType::F32 => view($st.as_cuda_slice::<f32>()?, $l)?.device_ptr(&stream).0,
                    other => candle_core::bail!("pinned cuBLASLt GEMM: no {other:?} support"),
                }
            }};
        }
        let xp = ptr!(x.0, x.1);
        let wp = ptr!(w.0, w.1);
        let bp = match bias {
            Some((s, l)) => Some(ptr!(s, l)),
            None => None,
        };
        let yp = match &out {
            reprolm_precision::cuda::Output::F32(s) => s.device_ptr(&stream).0,
            reprolm_precision::cuda::Output::BF16(s) => s.device_ptr(&stream).0,
            reprolm_precision::cuda::Output::F16(s) => s.device_ptr(&stream).0,
        };
        let workspace = workspace(dev)?;
        let wsp = workspace.device_ptr(&stream).0;
        let (alpha, beta) = (1f32, 0f32);
        let _call = self.call.lock().expect("plan lock");
        if let Some(bp) = bp {
            set_desc(
                &self.desc,
                lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &bp,
            )?;
        }
        // Safety: pointers are live device buffers of the layouts' sizes (checked shapes,
        // contiguous views), the algorithm was checked for `m` rows within the workspace.
        let st = unsafe {
            lt::cublasLtMatmul(
                handle()?.0,
                self.desc.0,
                &alpha as *const f32 as *const c_void,
                wp as *const c_void,
                self.a.0,
                xp as *const c_void,
                b_layout.0,
                &beta as *const f32 as *const c_void,
                yp as *const c_void,
                c_layout.0,
                yp as *mut c_void,
                c_layout.0,
                &algo,
                wsp as *mut c_void,
                WORKSPACE,
                stream.cu_stream() as *mut _,
            )
        };
        check(st, "matmul")?;
        Ok((out.into_storage(dev), Shape::from((m, n))))
    }
}

/// The device's workspace buffer: [`WORKSPACE`] bytes, allocated on first use and kept, so that
/// a captured graph can replay a GEMM that uses it.
fn workspace(
    dev: &CudaDevice,
) -> candle_core::Result<Arc<candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>>> {
    type Slice = candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>;
    static BUFFERS: OnceLock<Mutex<HashMap<candle_core::cuda_backend::DeviceId, Arc<Slice>>>> =
        OnceLock::new();
    let mut b = BUFFERS
        .get_or_init(Default::default)
        .lock()
        .expect("workspace lock");
    if let Some(s) = b.get(&dev.id()) {
        return Ok(s.clone());
    }
    let s = Arc::new(dev.alloc_zeros::<u8>(WORKSPACE)?);
    b.insert(dev.id(), s.clone());
    Ok(s)
}

struct PinnedGemm(Arc<Plan>);

impl PinnedGemm {
    fn launch(
        &self,
        x: (&CudaStorage, &Layout),
        w: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        self.0.launch(x, w, bias)
    }
}

reprolm_precision::cuda_linear_op!(PinnedGemm, "reprolm-pinned-gemm");

/// The plan of `key` on `dev`: the pin table's algorithm for this GPU, cuBLASLt version and
/// shape when there is one (and it still runs every row count), else [`Plan::choose`]'s.
pub fn plan_on(dev: &CudaDevice, key: PlanKey) -> candle_core::Result<Arc<Plan>> {
    /// Plans by device and key: the lookup every GEMM call makes, so it asks the driver nothing.
    type Plans = HashMap<(candle_core::cuda_backend::DeviceId, PlanKey), Arc<Plan>>;
    static PLANS: OnceLock<Mutex<Plans>> = OnceLock::new();
    let mut plans = PLANS
        .get_or_init(Default::default)
        .lock()
        .expect("plans lock");
    if let Some(p) = plans.get(&(dev.id(), key)) {
        return Ok(p.clone());
    }
    let dtype = reprolm_precision::dtype_name(key.dtype);
    let pinned = pins::lookup(
        &gpu_name(dev),
        cublaslt_version(),
        dtype,
        key.n,
        key.k,
        key.bias,
    )
    .map_err(candle_core::Error::msg)?;
    let plan = match pinned {
        Some((p, from)) => match Plan::with_algo(key, &p.algo)? {
            Some(mut plan) => {
                plan.source = match from {
                    pins::PinSource::UserTable => "pin table of REPROLM_GEMM_PINS",
                    pins::PinSource::Shipped => "pin table",
                };
                plan
            }
            None => Plan::choose(key)?,
        },
        None => Plan::choose(key)?,
    };
    let p = Arc::new(plan);
    plans.insert((dev.id(), key), p.clone());
    Ok(p)
}

/// The key of the plan that serves `w` (and a bias or not) at the process's pin row count.
pub fn key_for(w: &Tensor, bias: bool) -> candle_core::Result<PlanKey> {
    let (n, k) = w.dims2()?;
    Ok(PlanKey {
        n,
        k,
        dtype: w.dtype(),
        bias,
        strategy: PinStrategy::from_env(),
    })
}

/// `t` contiguous and starting on an [`ALIGN`]-byte boundary (copied if its view starts elsewhere).
fn aligned(t: &Tensor) -> candle_core::Result<Tensor> {
    let t = t.contiguous()?;
    if (t.layout().start_offset() * t.dtype().size_in_bytes()) % ALIGN == 0 {
        Ok(t)
    } else {
        t.copy()
    }
}

/// `x · wᵀ (+ bias)` through `plan` (x, w and bias of the plan's dtype; x `(M, K)`).
pub fn linear_with(
    plan: &Arc<Plan>,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let op = PinnedGemm(plan.clone());
    apply_aligned(x, w, bias, &op)
}

/// Runs a matmul-shaped op (`reprolm_precision::cuda_linear_op!`) on `x`, `w` and the bias (in
/// `w`'s dtype), each made contiguous and [`ALIGN`]-aligned first: what both GEMM families need for
/// their vector loads.
pub(crate) fn apply_aligned<Op>(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    op: &Op,
) -> candle_core::Result<Tensor>
where
    Op: candle_core::CustomOp2 + candle_core::CustomOp3,
{
    let (x, w) = (aligned(x)?, aligned(w)?);
    match bias {
        Some(b) => x.apply_op3_no_bwd(&w, &aligned(&b.to_dtype(w.dtype())?)?, op),
        None => x.apply_op2_no_bwd(&w, op),
    }
}

/// `x · wᵀ (+ bias)` with the algorithm pinned for `w`'s shape (computed by the fastest
/// algorithm with its bits for this row count, chosen on the shape's first call:
/// [`Plan::by_rows`]).
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let p = plan_on(cuda_device(w)?, key_for(w, bias.is_some())?)?;
    p.by_rows(w, bias);
    linear_with(&p, x, w, bias)
}

/// The CUDA device a tensor lives on.
pub fn cuda_device(t: &Tensor) -> candle_core::Result<&CudaDevice> {
    match t.device() {
        candle_core::Device::Cuda(d) => Ok(d),
        other => candle_core::bail!("pinned cuBLASLt GEMM: a tensor on {other:?}, not CUDA"),
    }
}
