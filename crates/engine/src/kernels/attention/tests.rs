use super::*;
use candle_core::{DType, Device, Tensor};

/// A deterministic pseudo-random vector in [-1.5, 1.5).
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        })
        .collect()
}

/// Two sequences of `lens` positions in a pool whose blocks are handed out interleaved and out
/// of order; returns the pools, the block tables and each sequence's keys and values as rows.
struct Fixture {
    /// The head width.
    d: usize,
    keys: Tensor,
    values: Tensor,
    tables: Vec<Vec<u32>>,
    /// Per sequence, per kv head, per position: the key and value rows.
    k_rows: Vec<Vec<Vec<Vec<f32>>>>,
    v_rows: Vec<Vec<Vec<Vec<f32>>>>,
}

const KVH: usize = 2;
/// The head width of most tests: not a multiple of 32, so CUDA takes its f32-arithmetic route.
const D: usize = 24;

fn fixture(lens: &[usize], dtype: DType, dev: &Device) -> Fixture {
    fixture_of_width(lens, D, dtype, dev)
}

fn fixture_of_width(lens: &[usize], d: usize, dtype: DType, dev: &Device) -> Fixture {
    let blocks: usize = lens.iter().map(|l| l.div_ceil(BLOCK_SIZE)).sum::<usize>() + 3;
    let slots = blocks * BLOCK_SIZE;
    // Hand out blocks from the top, alternating sequences.
    let mut free: Vec<u32> = (0..blocks as u32).collect();
    let mut tables = vec![Vec::new(); lens.len()];
    let mut more = true;
    while more {
        more = false;
        for (s, &l) in lens.iter().enumerate() {
            if tables[s].len() < l.div_ceil(BLOCK_SIZE) {
                tables[s].push(free.pop().unwrap());
                more = true;
            }
        }
    }
    let mut kpool = vec![f32::NAN; KVH * slots * d];
    let mut vpool = vec![f32::NAN; KVH * slots * d];
    let mut k_rows = Vec::new();
    let mut v_rows = Vec::new();
    for (s, &l) in lens.iter().enumerate() {
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for g in 0..KVH {
            let (mut kh, mut vh) = (Vec::new(), Vec::new());
            for p in 0..l {
                let seed = (s * 1_000_000 + g * 100_000 + p) as u64;
                // Keys spread wide enough that the splits' maxima differ.
                let k: Vec<f32> = rand(d, seed).iter().map(|x| x * 1.7).collect();
                let v = rand(d, seed + 7_777_777);
                let slot = tables[s][p / BLOCK_SIZE] as usize * BLOCK_SIZE + p % BLOCK_SIZE;
                let at = (g * slots + slot) * d;
                kpool[at..at + d].copy_from_slice(&k);
                vpool[at..at + d].copy_from_slice(&v);
                kh.push(k);
                vh.push(v);
            }
            ks.push(kh);
            vs.push(vh);
        }
        k_rows.push(ks);
        v_rows.push(vs);
    }
    let pool = |v: Vec<f32>| {
        Tensor::from_vec(v, (KVH, slots, d), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap()
    };
    Fixture {
        d,
        keys: pool(kpool),
        values: pool(vpool),
        tables,
        k_rows,
        v_rows,
    }
}

/// `(tokens, heads, d)` queries for the given (sequence, position) tokens.
fn queries_for(tokens: &[(usize, usize)], heads: usize, d: usize) -> Vec<f32> {
    let mut q = Vec::new();
    for &(s, p) in tokens {
        for h in 0..heads {
            q.extend(rand(d, (9_000_000 + s * 100_000 + h * 10_000 + p) as u64));
        }
    }
    q
}

/// A row's f32 bits, for bitwise comparisons.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The largest absolute difference between two sets of rows.
#[cfg(feature = "cuda")]
fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn run(
    f: &Fixture,
    tokens: &[(usize, usize)],
    heads: usize,
    dtype: DType,
    dev: &Device,
) -> Vec<Vec<f32>> {
    run_with(paged_attention, f, tokens, heads, dtype, dev)
}

/// The attention entry point the tests call: [`paged_attention`] or the portable one.
type Entry = fn(&Tensor, &Tensor, &Tensor, &PagedQueries, f64, DType) -> Result<Tensor>;

fn run_with(
    entry: Entry,
    f: &Fixture,
    tokens: &[(usize, usize)],
    heads: usize,
    dtype: DType,
    dev: &Device,
) -> Vec<Vec<f32>> {
    let q = Tensor::from_vec(
        queries_for(tokens, heads, f.d),
        (tokens.len(), heads, f.d),
        dev,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    let pq = PagedQueries::new(
        tokens.iter().map(|t| t.0 as u32).collect(),
        tokens.iter().map(|t| t.1 as u32).collect(),
        &f.tables,
        dev,
    )
    .unwrap();
    let out = entry(&q, &f.keys, &f.values, &pq, 0.3, dtype).unwrap();
    // (token, head·D) rows.
    let out = out.to_dtype(DType::F32).unwrap().flatten_from(1).unwrap();
    out.to_vec2().unwrap()
}

#[test]
fn matches_a_float64_causal_softmax_over_several_splits() {
    let lens = [2 * KV_SPLIT + 37, 5];
    let f = fixture(&lens, DType::F32, &Device::Cpu);
    let heads = 3 * KVH;
    let tokens: Vec<(usize, usize)> = (0..lens[0])
        .step_by(29)
        .map(|p| (0, p))
        .chain([(0, lens[0] - 1), (1, 4), (1, 0)])
        .collect();
    let got = run(&f, &tokens, heads, DType::F32, &Device::Cpu);
    let q = queries_for(&tokens, heads, D);
    let mut worst = 0f64;
    for (i, &(s, p)) in tokens.iter().enumerate() {
        for h in 0..heads {
            let g = h / (heads / KVH);
            let qv = &q[(i * heads + h) * D..][..D];
            let scores: Vec<f64> = (0..=p)
                .map(|j| {
                    let k = &f.k_rows[s][g][j];
                    qv.iter()
                        .zip(k)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        * 0.3
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
            for e in 0..D {
                let want: f64 = (0..=p)
                    .map(|j| (scores[j] - m).exp() / z * f.v_rows[s][g][j][e] as f64)
                    .sum();
                worst = worst.max((got[i][h * D + e] as f64 - want).abs());
            }
        }
    }
    assert!(worst < 2e-6, "max abs error against float64: {worst:e}");
}

/// A query's bits depend on its own sequence only: alone or beside another sequence, as part
/// of a prefill or as a single decode token, at any place in the call.
fn invariance_on(dev: &Device, dtype: DType) {
    let lens = [KV_SPLIT + 100, 2 * KV_SPLIT + 3];
    let f = fixture(&lens, dtype, dev);
    let heads = 2 * KVH;
    let probe = [(0, KV_SPLIT + 99), (1, 2 * KV_SPLIT + 2), (1, 17)];
    let alone: Vec<Vec<f32>> = probe
        .iter()
        .map(|&t| run(&f, &[t], heads, dtype, dev).remove(0))
        .collect();
    // Whole prefills of both sequences (many queries: on CUDA the one-block-per-query path).
    let mut all: Vec<(usize, usize)> = (0..lens[1]).map(|p| (1, p)).collect();
    all.extend((0..lens[0]).map(|p| (0, p)));
    let together = run(&f, &all, heads, dtype, dev);
    for (i, t) in probe.iter().enumerate() {
        let at = all.iter().position(|x| x == t).unwrap();
        assert_eq!(bits(&together[at]), bits(&alone[i]), "{t:?} in a prefill");
    }
    // A decode-like call: the probes in another order, with a repeat.
    let mixed = [probe[2], probe[0], probe[1], probe[2]];
    let got = run(&f, &mixed, heads, dtype, dev);
    for (row, t) in got.iter().zip(mixed) {
        let i = probe.iter().position(|x| *x == t).unwrap();
        assert_eq!(row, &alone[i], "{t:?} in a decode batch");
    }
}

#[test]
fn a_querys_bits_do_not_depend_on_the_rest_of_the_call() {
    invariance_on(&Device::Cpu, DType::F32);
    invariance_on(&Device::Cpu, DType::BF16);
}

#[test]
fn bad_shapes_and_tables_are_refused() {
    let dev = Device::Cpu;
    let f = fixture(&[20], DType::F32, &dev);
    let q = Tensor::zeros((1, 2, D), DType::F32, &dev).unwrap();
    // Position 40 is past the sequence's two blocks.
    let err = PagedQueries::new(vec![0], vec![40], &f.tables, &dev).unwrap_err();
    assert!(err.to_string().contains("past its 2 blocks"), "{err}");
    let pq = PagedQueries::new(vec![0], vec![3], &f.tables, &dev).unwrap();
    let q3 = Tensor::zeros((1, 3, D), DType::F32, &dev).unwrap();
    let err = paged_attention(&q3, &f.keys, &f.values, &pq, 1.0, DType::F32).unwrap_err();
    assert!(err.to_string().contains("3 query heads over 2"), "{err}");
    assert!(paged_attention(&q, &f.keys, &f.values, &pq, 1.0, DType::F32).is_ok());
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_matches_the_cpu_and_keeps_a_querys_bits() {
    let Some(dev) = crate::kernels::gpu_test::device() else {
        return;
    };
    for dtype in [DType::F32, DType::BF16] {
        invariance_on(&dev, dtype);
        let lens = [2 * KV_SPLIT + 37, 5];
        let tokens: Vec<(usize, usize)> = (0..lens[0])
            .step_by(13)
            .map(|p| (0, p))
            .chain([(1, 4)])
            .collect();
        let cpu = run(
            &fixture(&lens, dtype, &Device::Cpu),
            &tokens,
            4,
            dtype,
            &Device::Cpu,
        );
        let gpu = run(&fixture(&lens, dtype, &dev), &tokens, 4, dtype, &dev);
        let worst = max_abs_diff(&cpu, &gpu);
        let bound = if dtype == DType::F32 { 2e-6 } else { 1.6e-2 };
        assert!(
            worst <= bound,
            "{dtype:?}: CPU and CUDA differ by {worst:e}"
        );
    }
}

/// A call with many query tokens takes the prefill kernel (tiles of consecutive positions sharing
/// each split's keys): every query keeps the bits it has alone (the split kernels), whatever its
/// tile, including tiles that straddle a split boundary and the short last tile.
#[cfg(feature = "cuda")]
#[test]
fn cuda_prefill_tiles_keep_a_querys_bits() {
    let Some(dev) = crate::kernels::gpu_test::device() else {
        return;
    };
    for dtype in [DType::F32, DType::BF16] {
        let lens = [8 * KV_SPLIT + 41, KV_SPLIT + 3];
        let f = fixture(&lens, dtype, &dev);
        // 2,089 + 259 tokens x 2 kv heads: more than the split kernels take.
        let mut all: Vec<(usize, usize)> = (0..lens[0]).map(|p| (0, p)).collect();
        all.extend((0..lens[1]).map(|p| (1, p)));
        assert!(all.len() * KVH >= super::cuda::PARALLEL_SPLITS_BELOW);
        let together = run(&f, &all, 4, dtype, &dev);
        let probes = [
            (0, 0),
            (0, KV_SPLIT - 1),
            (0, KV_SPLIT),
            (0, 3 * KV_SPLIT + 7),
            (0, lens[0] - 1),
            (1, 1),
            (1, lens[1] - 1),
        ];
        for t in probes {
            let alone = run(&f, &[t], 4, dtype, &dev).remove(0);
            let at = all.iter().position(|x| *x == t).unwrap();
            assert_eq!(bits(&together[at]), bits(&alone), "{dtype:?} {t:?}");
        }
    }
}

/// The tensor-core route (16-bit q and cache, head width 128): a query keeps the bits it has
/// alone (one warp per chunk, folded by a second kernel) inside whole prefills (tiles of rows
/// sharing each chunk), at chunk boundaries and in a tile's last rows, with 6 query heads per kv
/// head so that tiles hold tokens x heads unevenly; and it stays within rounding of the CPU.
#[cfg(feature = "cuda")]
#[test]
fn cuda_tensor_core_route_keeps_a_querys_bits_and_matches_the_cpu() {
    let Some(dev) = crate::kernels::gpu_test::device() else {
        return;
    };
    let heads = 6 * KVH;
    for dtype in [DType::BF16, DType::F16] {
        let lens = [5 * 64 + 17, 64 + 1];
        let f = fixture_of_width(&lens, 128, dtype, &dev);
        let mut all: Vec<(usize, usize)> = (0..lens[0]).map(|p| (0, p)).collect();
        all.extend((0..lens[1]).map(|p| (1, p)));
        let together = run(&f, &all, heads, dtype, &dev);
        let probes = [
            (0, 0),
            (0, 63),
            (0, 64),
            (0, 3 * 64 + 9),
            (0, lens[0] - 1),
            (1, 1),
            (1, lens[1] - 1),
        ];
        let mut alone = Vec::new();
        for t in probes {
            let one = run(&f, &[t], heads, dtype, &dev).remove(0);
            let at = all.iter().position(|x| *x == t).unwrap();
            assert_eq!(
                bits(&together[at]),
                bits(&one),
                "{dtype:?} {t:?} in a prefill"
            );
            alone.push(one);
        }
        let decode: Vec<(usize, usize)> = probes.iter().rev().copied().collect();
        for (row, t) in run(&f, &decode, heads, dtype, &dev).iter().zip(&decode) {
            let i = probes.iter().position(|x| x == t).unwrap();
            assert_eq!(
                bits(row),
                bits(&alone[i]),
                "{dtype:?} {t:?} in a decode batch"
            );
        }
        let cpu_f = fixture_of_width(&lens, 128, dtype, &Device::Cpu);
        let cpu = run(&cpu_f, &all, heads, dtype, &Device::Cpu);
        let worst = max_abs_diff(&cpu, &together);
        assert!(
            worst <= 1.6e-2,
            "{dtype:?}: CPU and CUDA differ by {worst:e}"
        );
    }
}

/// The portable route's CUDA body computes the CPU body's bits: several splits, a partial last
/// split, a head width with a tail of fewer than 8 lanes and one that is a multiple of 32, grouped
/// query heads, and every pool dtype.
#[cfg(feature = "cuda")]
#[test]
fn portable_cuda_attention_gives_the_cpus_bits() {
    let Some(dev) = crate::kernels::gpu_test::device() else {
        return;
    };
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for d in [D + 3, 64] {
            let lens = [2 * KV_SPLIT + 37, 5];
            let tokens: Vec<(usize, usize)> = (0..lens[0])
                .step_by(29)
                .map(|p| (0, p))
                .chain([(1, 4), (0, lens[0] - 1)])
                .collect();
            let cpu = run_with(
                paged_attention_portable,
                &fixture_of_width(&lens, d, dtype, &Device::Cpu),
                &tokens,
                4,
                dtype,
                &Device::Cpu,
            );
            let gpu = run_with(
                paged_attention_portable,
                &fixture_of_width(&lens, d, dtype, &dev),
                &tokens,
                4,
                dtype,
                &dev,
            );
            for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
                assert_eq!(bits(c), bits(g), "{dtype:?} d {d}: token {:?}", tokens[i]);
            }
        }
    }
}
