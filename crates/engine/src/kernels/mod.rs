//! The kernels the decoder's layers call, one module per family, each with its CPU and CUDA
//! bodies side by side so that the model code never branches on the device.
//!
//! - [`gemm`]: every projection (q/k/v/o, gate/up/down, LM head) through one GEMM layer whose
//!   reduction order over K does not depend on the number of rows.
//! - [`attention`]: causal attention over the paged KV cache, each query reduced over its own
//!   sequence's keys in fixed splits, for prefill and decode alike.
//! - [`sampling`]: the sampled choice of the next token, on integers, the same bits on the CPU
//!   and the GPU.
//! - [`activation`]: SiLU for the MLP's composed path.
//! - [`norm`]: RMSNorm, summing its squares in one order on the CPU and the GPU.

pub mod activation;
pub mod attention;
pub mod gemm;
pub mod norm;
pub mod sampling;

use std::collections::BTreeMap;

/// Which kernels compute a run's numbers (`--kernels`): the batch-invariant ones, the default, with
/// which a sequence's numbers do not depend on its batch; the batch-dependent choices other
/// engines make (candle's matmul: cuBLAS picking its kernel per call, candle's CPU GEMM taking
/// another path for one row), for reproducing the problem the paper measures; or the portable
/// tier, whose every reduction follows the CPU's order on every device, for recomputing a GPU
/// run's bits on a CPU (slow on a GPU by design).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Batch invariant (the GEMM layer and the fixed-split attention).
    #[default]
    Invariant,
    /// The projections through candle's own matmul: batch dependent.
    Heuristic,
    /// The CPU's order on every device: the fixed-order GEMM ([`gemm::portable`]), attention
    /// ([`attention::paged_attention_portable`]), RMSNorm ([`norm`]), the portable exponential in
    /// SiLU and softmax, and tokens chosen on the host from the copied logits. On the CPU it is
    /// the invariant kernels themselves.
    Portable,
}

impl KernelChoice {
    /// `invariant` or `heuristic`.
    ///
    /// ```
    /// use reprolm_engine::kernels::KernelChoice;
    /// assert_eq!(KernelChoice::parse("heuristic")?, KernelChoice::Heuristic);
    /// assert!(KernelChoice::parse("fast").unwrap_err().contains("invariant"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "invariant" => Ok(KernelChoice::Invariant),
            "heuristic" => Ok(KernelChoice::Heuristic),
            "portable" => Ok(KernelChoice::Portable),
            other => Err(format!(
                "unknown kernels `{other}`: `invariant` (batch invariant, the default), \
                 `heuristic` (batch dependent, as other engines) or `portable` (the CPU's \
                 order on every device)"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads, as manifests record it.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelChoice::Invariant => "invariant",
            KernelChoice::Heuristic => "heuristic",
            KernelChoice::Portable => "portable",
        }
    }
}

/// Whether our fused GPU kernels (RMSNorm, SwiGLU, RoPE, the greedy and sampled token choice;
/// the engine's `fused` module) replace the composed candle ops (`--fused-kernels`). They round where the
/// composed ops do except for the order in which RMSNorm sums its squares, so the setting is part
/// of what decides the numbers; `off` is there to measure what fusion buys, or to rule it out.
/// The CPU has no fused kernels: there the setting changes nothing, but it is recorded as given,
/// so that the kernels value is compared whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fusion {
    /// Fused kernels wherever one applies (the default).
    #[default]
    On,
    /// The composed ops only.
    Off,
}

impl Fusion {
    /// `on` or `off`.
    ///
    /// ```
    /// use reprolm_engine::kernels::Fusion;
    /// assert_eq!(Fusion::parse("off")?, Fusion::Off);
    /// assert!(Fusion::parse("no").unwrap_err().contains("`on`"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "on" => Ok(Fusion::On),
            "off" => Ok(Fusion::Off),
            other => Err(format!(
                "unknown fused-kernels setting `{other}`: `on` (the default) or `off`"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads, as manifests record it.
    pub fn as_str(self) -> &'static str {
        match self {
            Fusion::On => "on",
            Fusion::Off => "off",
        }
    }
}

/// Whether CUDA runs each decode step as a captured CUDA graph (`--cuda-graphs`): the step's
/// ~300 kernel launches replayed by one, over persistent input buffers, per batch bucket (see
/// [`crate::decode_graph`]). A captured step pads its batch to the bucket, which the
/// batch-invariant kernels make invisible: a row's bits are the same with graphs on and off. So
/// graphs run only where the kernels are batch invariant, never with `--kernels heuristic`, and
/// never on the CPU. `off` is there to measure what graphs buy, or to rule them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Graphs {
    /// Decode steps as CUDA graphs wherever they apply (the default).
    #[default]
    On,
    /// Every kernel launched one by one.
    Off,
}

impl Graphs {
    /// `on` or `off`.
    ///
    /// ```
    /// use reprolm_engine::kernels::Graphs;
    /// assert_eq!(Graphs::parse("off")?, Graphs::Off);
    /// assert!(Graphs::parse("yes").unwrap_err().contains("`on`"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "on" => Ok(Graphs::On),
            "off" => Ok(Graphs::Off),
            other => Err(format!(
                "unknown cuda-graphs setting `{other}`: `on` (the default) or `off`"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads, as manifests record it.
    pub fn as_str(self) -> &'static str {
        match self {
            Graphs::On => "on",
            Graphs::Off => "off",
        }
    }
}

/// Where a GPU run chooses each next token (`--pick`): on the device, copying back a few
/// candidates per row instead of the vocabulary (the default), or on the host from the copied
/// logits, as the CPU does, which checks the device's choice. On the CPU both are the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPick {
    /// On the logits' device (the default).
    #[default]
    Device,
    /// On the host.
    Host,
}

impl TokenPick {
    /// `device` or `host`.
    ///
    /// ```
    /// use reprolm_engine::kernels::TokenPick;
    /// assert_eq!(TokenPick::parse("host")?, TokenPick::Host);
    /// assert!(TokenPick::parse("gpu").unwrap_err().contains("`device`"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "device" => Ok(TokenPick::Device),
            "host" => Ok(TokenPick::Host),
            other => Err(format!(
                "unknown pick `{other}`: `device` (the default) or `host`"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPick::Device => "device",
            TokenPick::Host => "host",
        }
    }
}

/// Everything besides the precision policy's dtypes that decides a run's numbers, as one value:
/// resolved once from the command line, passed at load ([`LoadOptions`](crate::LoadOptions)),
/// recorded whole in the run manifest ([`recorded`](Self::recorded)) and compared whole on
/// resume. Whether a run is deterministic, and how tensor-parallel partial sums combine, are
/// views of it rather than settings of their own, so that no two places can disagree.
///
/// ```
/// use reprolm_engine::kernels::{Fusion, KernelChoice, Kernels};
/// use reprolm_engine::TpMode;
/// let k = Kernels::default();
/// assert!(k.batch_invariant() && !k.deterministic());
/// assert_eq!((k.choice, k.fusion), (KernelChoice::Invariant, Fusion::On));
/// let tpinv = Kernels { tp: TpMode::Invariant, ..k };
/// assert!(tpinv.deterministic(), "the TP-invariant reduction runs the fixed-order kernels");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kernels {
    /// Batch-invariant or heuristic kernels in the fast path (`--kernels`); deterministic mode
    /// takes the invariant ones whatever this says.
    pub choice: KernelChoice,
    /// The fast kernels or the fixed-order ones of deterministic mode (`--deterministic`).
    pub mode: reprolm_precision::ComputeMode,
    /// How tensor-parallel partial sums are reduced (`--tp-mode`); fixed at load, since it
    /// decides which tensor-parallel sizes a model may be split into.
    pub tp: crate::parallel::TpMode,
    /// Fused GPU kernels on or off (`--fused-kernels`).
    pub fusion: Fusion,
    /// Where tokens are chosen (`--pick`).
    pub pick: TokenPick,
    /// The batch-invariant GEMM of 16-bit projections on CUDA (`--gemm`).
    pub gemm: gemm::InvariantGemm,
    /// Decode steps as CUDA graphs (`--cuda-graphs`); see [`graphs_on`](Self::graphs_on).
    pub graphs: Graphs,
}

impl Kernels {
    /// The compute mode a forward pass runs: [`mode`](Self::mode), except that the
    /// TP-invariant reduction is deterministic mode with K in
    /// [`TREE_CHUNKS`](crate::parallel::TREE_CHUNKS) tree chunks (whatever order `mode` names),
    /// so that tp 1 computes the tree a group of up to 8 ranks does.
    pub fn forward_mode(&self) -> reprolm_precision::ComputeMode {
        use reprolm_precision::{ComputeMode, ReductionOrder};
        match self.tp {
            crate::parallel::TpMode::Standard => self.mode,
            crate::parallel::TpMode::Invariant => ComputeMode::Deterministic(
                ReductionOrder::tree(crate::parallel::TREE_CHUNKS)
                    .expect("TREE_CHUNKS is a power of two"),
            ),
        }
    }

    /// Whether the fixed-order kernels run (`--deterministic`, or the TP-invariant reduction,
    /// which runs them in a tree order), as the manifest's `kernels.deterministic` records it.
    pub fn deterministic(&self) -> bool {
        self.forward_mode().is_deterministic()
    }

    /// Whether a sequence's logits do not depend on its batch (see
    /// [`Decoder::batch_invariant`](crate::Decoder::batch_invariant)): every setting but the
    /// fast path with the heuristic kernels.
    pub fn batch_invariant(&self) -> bool {
        self.deterministic() || self.choice != KernelChoice::Heuristic
    }

    /// Whether the portable tier runs (see [`KernelChoice::Portable`]).
    pub fn portable(&self) -> bool {
        self.choice == KernelChoice::Portable
    }

    /// The GEMM the projections run: candle's in the fast path with the heuristic kernels, else
    /// the batch-invariant family `--gemm` names (deterministic mode included).
    pub fn gemm_family(&self) -> gemm::GemmFamily {
        match (self.forward_mode(), self.choice) {
            (_, KernelChoice::Portable) => gemm::GemmFamily::Portable,
            (reprolm_precision::ComputeMode::Fast, KernelChoice::Heuristic) => {
                gemm::GemmFamily::Heuristic
            }
            _ => self.gemm.family(),
        }
    }

    /// What a GPU run with these kernels does at `device`: where tokens are chosen there (the
    /// CPU's device is the host).
    pub fn pick_on(&self, device: &candle_core::Device) -> TokenPick {
        // The portable tier chooses on the host from the copied logits, with the CPU's
        // log-softmax: the device's reductions over the vocabulary are in another order.
        if device.is_cpu() || self.portable() {
            TokenPick::Host
        } else {
            self.pick
        }
    }

    /// Whether decode steps run as CUDA graphs on `device`: asked for, on CUDA, and with
    /// batch-invariant kernels (a captured step pads its batch to a bucket, which only those
    /// kernels make invisible).
    ///
    /// ```
    /// use candle_core::Device;
    /// use reprolm_engine::kernels::{Graphs, Kernels};
    /// assert_eq!(Kernels::default().graphs_on(&Device::Cpu), Graphs::Off, "no graphs on the CPU");
    /// ```
    pub fn graphs_on(&self, device: &candle_core::Device) -> Graphs {
        // The portable tier chooses tokens on the host from the logits, which a captured step
        // does not return; it launches its kernels one by one.
        if device.is_cuda() && self.batch_invariant() && !self.portable() {
            self.graphs
        } else {
            Graphs::Off
        }
    }

    /// The settings by name, as the manifest's `kernels` map records them: `kernels` (the
    /// choice), `deterministic`, `tp_mode`, `fused_kernels`, `token_choice` (where tokens are
    /// chosen on `device`), `gemm` (the GEMM on `device`) and `cuda_graphs` (whether decode
    /// steps run as graphs there). What a finished run is checked against without loading its
    /// model.
    ///
    /// ```
    /// use candle_core::Device;
    /// use reprolm_engine::kernels::{Fusion, Kernels};
    /// let k = Kernels { fusion: Fusion::Off, ..Kernels::default() };
    /// let s = k.settings(&Device::Cpu);
    /// assert_eq!(s.keys().collect::<Vec<_>>(), ["cuda_graphs", "deterministic", "fused_kernels", "gemm", "kernels", "token_choice", "tp_mode"]);
    /// assert_eq!((s["fused_kernels"].as_str(), s["cuda_graphs"].as_str()), ("off", "off"));
    /// ```
    pub fn settings(&self, device: &candle_core::Device) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cuda_graphs".into(), self.graphs_on(device).as_str().into()),
            ("kernels".into(), self.choice.as_str().into()),
            ("deterministic".into(), self.deterministic().to_string()),
            ("tp_mode".into(), self.tp.as_str().into()),
            ("fused_kernels".into(), self.fusion.as_str().into()),
            ("token_choice".into(), self.pick_on(device).as_str().into()),
            ("gemm".into(), self.gemm_on(device).into()),
        ])
    }

    /// The GEMM the projections run on `device`, by the name the manifest's `kernels.gemm`
    /// records ([`GemmFamily::name_on`](gemm::GemmFamily::name_on)).
    pub fn gemm_on(&self, device: &candle_core::Device) -> &'static str {
        self.gemm_family().name_on(device)
    }

    /// The value by name for the run manifest (where resuming compares it whole): the
    /// [`settings`](Self::settings), and what they give on `device` for this policy and model:
    /// the order of the matmuls' reduction over K, and the attention route and its split size
    /// (from the policy's attention and KV-cache dtypes and the model's `head_dim`).
    ///
    /// ```
    /// use candle_core::Device;
    /// use reprolm_engine::kernels::{KernelChoice, Kernels};
    /// use reprolm_precision::{ComputeMode, PrecisionPolicy};
    /// let bf16 = PrecisionPolicy::preset("bf16")?;
    /// let k = Kernels::default().recorded(&Device::Cpu, &bf16, 128);
    /// assert_eq!((k["kernels"].as_str(), k["gemm"].as_str()), ("invariant", "cpu"));
    /// assert_eq!((k["token_choice"].as_str(), k["reduction"].as_str()), ("host", "sequential"));
    /// assert_eq!((k["deterministic"].as_str(), k["tp_mode"].as_str()), ("false", "standard"));
    /// assert_eq!((k["fused_kernels"].as_str(), k["attention"].as_str()), ("on", "cpu, splits of 256"));
    /// let heuristic = Kernels { choice: KernelChoice::Heuristic, ..Kernels::default() };
    /// let k = heuristic.recorded(&Device::Cpu, &bf16, 128);
    /// assert_eq!((k["gemm"].as_str(), k["reduction"].as_str()), ("split-K by row count, rounded partials (batch dependent)", "batch dependent"));
    /// let tpinv = Kernels { tp: reprolm_engine::TpMode::Invariant, ..Kernels::default() };
    /// let k = tpinv.recorded(&Device::Cpu, &bf16, 128);
    /// assert_eq!((k["reduction"].as_str(), k["deterministic"].as_str()), ("tree of 8 chunks", "true"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recorded(
        &self,
        device: &candle_core::Device,
        policy: &reprolm_precision::PrecisionPolicy,
        head_dim: usize,
    ) -> BTreeMap<String, String> {
        use reprolm_precision::{Component, ComputeMode};
        let mut out = self.settings(device);
        let family = self.gemm_family();
        let reduction = match self.forward_mode() {
            ComputeMode::Deterministic(order) if order.chunks() > 1 => {
                format!("tree of {} chunks", order.chunks())
            }
            _ if family == gemm::GemmFamily::Heuristic => "batch dependent".into(),
            _ if family == gemm::GemmFamily::Portable => "sequential".into(),
            _ if device.is_cuda() => match gemm::library_version(device) {
                // The pinned algorithms, hence the order, depend on the library's version.
                Some(v) => format!("fixed per weight shape ({v})"),
                None => "fixed per weight shape".into(),
            },
            _ => "sequential".into(),
        };
        out.insert("reduction".into(), reduction);
        let route = if self.portable() {
            format!("portable, splits of {}", attention::KV_SPLIT)
        } else {
            attention::route_name(
                device,
                policy.dtype(Component::Attention),
                policy.dtype(Component::KvCache),
                head_dim,
            )
        };
        out.insert("attention".into(), route);
        out
    }
}

/// Whether every kernel family has a batch-invariant body for `device` (the CPU and CUDA; not
/// Metal), so that deterministic mode can be asked for there.
pub fn batch_invariant_on(device: &candle_core::Device) -> bool {
    device.is_cpu() || device.is_cuda()
}

/// The portable tier on the GPU against the CPU (its CUDA exponential and logarithm, a decoder).
#[cfg(all(test, feature = "cuda"))]
mod portable_gpu_tests;

/// What the GPU unit tests of the kernels share: the device (or a note that there is none) and
/// the bits of a result.
#[cfg(all(test, feature = "cuda"))]
pub(crate) mod gpu_test {
    use candle_core::{Device, Tensor};

    /// CUDA device 0, or `None` after saying the test is skipped (CI has no GPU).
    pub fn device() -> Option<Device> {
        match Device::new_cuda(0) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skipped: no CUDA device ({e})");
                None
            }
        }
    }

    /// Every value's bits ([`reprolm_precision::deterministic::value_bits`]).
    pub fn bits(t: &Tensor) -> Vec<u64> {
        reprolm_precision::deterministic::value_bits(t).expect("readable")
    }
}

/// Issue #23: each kernel family picks between its CPU and CUDA bodies in one place, so the
/// decoder has no device or feature branches. A branch is a line naming a device kind
/// (`is_cuda()`, `is_cpu()`, `Device::Cuda`) or the `cuda` feature; these tests read the sources.
#[cfg(test)]
mod one_place {
    use std::path::{Path, PathBuf};

    const BRANCHES: [&str; 5] = [
        "is_cuda()",
        "is_cpu()",
        "Device::Cuda",
        "cfg(feature = \"cuda\")",
        "cfg(not(feature = \"cuda\"))",
    ];

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// Every `.rs` file under `dir`, relative to `src/`, with its number of branch lines.
    fn branches_under(dir: &Path) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)
                .expect("readable source dir")
                .flatten()
            {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&p).expect("readable source");
                    let n = text
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .filter(|l| BRANCHES.iter().any(|b| l.contains(b)))
                        .count();
                    let rel = p.strip_prefix(src()).expect("under src");
                    out.push((rel.display().to_string(), n));
                }
            }
        }
        out.sort();
        out
    }

    /// Under `family` (relative to `src/`), only `dispatch` may branch, and it must; `bodies`
    /// (whole-file CUDA or CPU bodies, GPU tests, benchmarks) are what is chosen between.
    fn check(family: &str, dispatch: &[&str], bodies: &[&str]) {
        let found = branches_under(&src().join(family));
        let name = |f: &str| format!("{family}/{f}");
        for d in dispatch {
            assert!(
                found.iter().any(|(f, n)| *f == name(d) && *n > 0),
                "{family}: {d} should choose between the bodies: {found:?}"
            );
        }
        let stray: Vec<_> = found
            .iter()
            .filter(|(f, n)| {
                *n > 0
                    && !dispatch.iter().any(|d| *f == name(d))
                    && !bodies.iter().any(|b| *f == name(b))
            })
            .collect();
        assert!(
            stray.is_empty(),
            "{family}: device branches outside {dispatch:?}: {stray:?}"
        );
    }

    #[test]
    fn the_decoder_has_no_device_branches() {
        let mut found = branches_under(&src().join("models"));
        found.extend(branches_under(&src().join("scheduler")));
        found.push((
            "generate.rs".into(),
            branches_under(&src())
                .into_iter()
                .find(|(f, _)| f == "generate.rs")
                .expect("generate.rs")
                .1,
        ));
        let stray: Vec<_> = found.iter().filter(|(_, n)| *n > 0).collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn gemm_chooses_its_bodies_in_one_place() {
        // Two ops: the GEMM layer (mod.rs) and the portable tier's GEMM (portable.rs).
        check(
            "kernels/gemm",
            &["mod.rs", "portable.rs"],
            &["cublaslt.rs", "mma.rs", "bench.rs"],
        );
    }

    #[test]
    fn attention_chooses_its_bodies_in_one_place() {
        // Two ops: attention itself (mod.rs) and the cache write (write.rs).
        check(
            "kernels/attention",
            &["mod.rs", "write.rs"],
            &["cpu.rs", "cuda.rs", "tests.rs"],
        );
    }

    #[test]
    fn sampling_chooses_its_bodies_in_one_place() {
        // The host body is `choose` in mod.rs; cuda.rs holds the kernel and its stub.
        check("kernels/sampling", &["cuda.rs"], &[]);
    }

    #[test]
    fn fused_kernels_choose_their_bodies_in_one_place() {
        check("fused", &["mod.rs"], &[]);
    }
}
