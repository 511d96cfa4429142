//! Greedy choice and top-k log-probabilities computed where the logits are, so that a GPU decode
//! step copies `2 + 2k` numbers per row to the host instead of the whole vocabulary.
//!
//! A Qwen vocabulary has 151,936 entries: copying f32 logits and log-probabilities of 32 rows is
//! 39 MB per token, which would take longer than the decode step itself. On a GPU one fused kernel
//! (`fused::greedy_top_k`) makes the choice; elsewhere (and for k above its limit) a
//! handful of elementwise and row-reduction ops do. Either way the tie rules are the host ones
//! ([`sampling::argmax`](crate::sampling::argmax) and [`sampling::top_k`](crate::sampling::top_k)):
//! the lowest index wins a tie, so the device and host paths choose the same tokens.

use crate::Result;
use candle_core::{DType, Tensor, D};

/// Row width every row of a log-softmax on a GPU is padded to (see [`log_softmax_rows`]).
const ROW_ALIGN: usize = 8;

/// `log_softmax` over the last dimension of `(rows, n)` f32 logits, each row's value independent of
/// the row's position in the batch.
///
/// On a GPU with the fused kernels on, a fused kernel (`fused::log_softmax`) computes it in two
/// launches. Otherwise (`--fused-kernels off`) candle's ops do, and one of them needs care:
/// candle's CUDA row sum (`fast_sum_f32`) loads a row in float4 groups counted from the buffer's
/// start, with a scalar head up to the first 16-byte boundary: a row that starts at element
/// `r * n` groups its terms by `r * n mod 4`, so with an `n` that is not a multiple of 4 the same
/// logits give log-probabilities that differ in the last bit by row. Padding each row with `-inf`
/// to a multiple of 8 makes every row start on a boundary (an `exp` of `-inf` adds an exact zero),
/// so each row is summed in one grouping. On the CPU (`log_softmax_cpu`) each row is summed in
/// order with the portable `exp` and `ln`, and nothing is padded.
pub fn log_softmax_rows(logits: &Tensor, fusion: crate::kernels::Fusion) -> Result<Tensor> {
    let (rows, n) = logits.dims2()?;
    if logits.device().is_cpu() {
        return log_softmax_cpu(logits);
    }
    if let Some(lp) = crate::fused::log_softmax(&logits.to_dtype(DType::F32)?, fusion)? {
        return Ok(lp);
    }
    if n % ROW_ALIGN == 0 {
        return log_softmax_gpu(logits);
    }
    let pad = ROW_ALIGN - n % ROW_ALIGN;
    let fill = Tensor::full(f32::NEG_INFINITY, (rows, pad), logits.device())?;
    let padded = Tensor::cat(&[&logits.to_dtype(DType::F32)?, &fill], 1)?;
    Ok(log_softmax_gpu(&padded)?.narrow(1, 0, n)?.contiguous()?)
}

/// candle's `log_softmax` (`x - max`, minus the log of the sum of its exps), with the row maximum
/// taken over parts of the row first: candle reduces a row in one block, which over a 152k
/// vocabulary took 0.12 ms of a 2.8 ms decode step. A maximum is exact in any grouping, so the
/// result has candle's bits.
fn log_softmax_gpu(x: &Tensor) -> Result<Tensor> {
    let (rows, n) = x.dims2()?;
    let parts = (2..=128)
        .rev()
        .find(|p| n % p == 0 && n / p >= 256)
        .unwrap_or(1);
    let max = if parts > 1 {
        x.reshape((rows, parts, n / parts))?
            .max_keepdim(2)?
            .reshape((rows, parts))?
            .max_keepdim(1)?
    } else {
        x.max_keepdim(1)?
    };
    let diff = x.broadcast_sub(&max)?;
    let sum_exp = diff.exp()?.sum_keepdim(1)?;
    Ok(diff.broadcast_sub(&sum_exp.log()?)?)
}

/// `log_softmax` of each row of CPU logits, `(x - max) - ln(sum of exp(x - max))` with the sum
/// taken in order in f64 and [`portable`](reprolm_precision::portable)'s `exp` and `ln`: the recorded
/// log-probabilities are the same bits on every CPU, where libm's `expf` and `logf` (which
/// candle's op calls) differ between C libraries.
fn log_softmax_cpu(logits: &Tensor) -> Result<Tensor> {
    use reprolm_precision::portable::{exp, ln};
    let (rows, n) = logits.dims2()?;
    let values = logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(values.len());
    for row in values.chunks(n.max(1)).take(rows) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // The terms in f32, their sum in f64 (in order): an f32 running sum over a 152k-token
        // vocabulary drifts by ~1e-4 relative, which would move every log-probability by as much.
        let sum = row.iter().fold(0f64, |s, &x| s + exp(x - max) as f64);
        let log_sum = ln(sum as f32);
        out.extend(row.iter().map(|&x| (x - max) - log_sum));
    }
    Ok(Tensor::from_vec(out, (rows, n), logits.device())?)
}

/// What one decode step needs from each row: the greedy token, its log-probability, and the
/// top-k candidates by log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPick {
    /// The first index of the largest logit.
    pub token: u32,
    /// `log_softmax(logits)[token]`.
    pub token_logprob: f32,
    /// The k largest log-probabilities as (id, value), descending, lower id first on ties.
    pub top: Vec<(u32, f32)>,
}

/// Greedy token and top-`k` log-probabilities of each row of `logits` (`(rows, vocab)`, f32),
/// computed on the logits' device (selection is exact, so the fused kernel and the composed ops
/// agree bit for bit).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let logits = Tensor::new(&[[0.5f32, 2.0, 2.0, -1.0]], &Device::Cpu)?;
/// let lp = candle_nn::ops::log_softmax(&logits, 1)?;
/// let fusion = reprolm_engine::kernels::Fusion::On;
/// let picks = reprolm_engine::device_top_k::pick_rows(&logits, &lp, 2, fusion)?;
/// assert_eq!(picks[0].token, 1);
/// assert_eq!(picks[0].top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
/// # Ok::<(), reprolm_engine::Error>(())
/// ```
pub fn pick_rows(
    logits: &Tensor,
    logprobs: &Tensor,
    k: usize,
    fusion: crate::kernels::Fusion,
) -> Result<Vec<RowPick>> {
    let (rows, n) = logits.dims2()?;
    // On a GPU one fused kernel makes the same choice; the composed ops below are about 45
    // launches and a dozen single-block reductions over the vocabulary per step.
    if let Some(table) = crate::fused::greedy_top_k(logits, logprobs, k.min(n), fusion)? {
        let table: Vec<Vec<f32>> = table.to_vec2()?;
        return Ok(table
            .into_iter()
            .map(|r| RowPick {
                token: r[0] as u32,
                token_logprob: r[1],
                top: r[2..].chunks(2).map(|c| (c[0] as u32, c[1])).collect(),
            })
            .collect());
    }
    let dev = logits.device();
    // `n - i` for column i: the largest marked value of `is_max * reversed` is the first index.
    // Exact in f32 for any vocabulary below 2^24.
    let reversed = Tensor::arange(0f32, n as f32, dev)?
        .affine(-1.0, n as f64)?
        .unsqueeze(0)?;
    let first_max = |values: &Tensor| -> Result<(Tensor, Tensor)> {
        let max = values.max_keepdim(D::Minus1)?;
        let is_max = values.broadcast_eq(&max)?.to_dtype(DType::F32)?;
        let rev = is_max.broadcast_mul(&reversed)?.max_keepdim(D::Minus1)?;
        Ok((rev, max))
    };
    let (token_rev, _) = first_max(logits)?;
    let token_idx = token_rev.affine(-1.0, n as f64)?.to_dtype(DType::U32)?;
    let mut columns = vec![token_rev, logprobs.gather(&token_idx, D::Minus1)?];
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (rows, n), dev)?;
    let mut remaining = logprobs.clone();
    for i in 0..k.min(n) {
        let (rev, max) = first_max(&remaining)?;
        if i + 1 < k.min(n) {
            let taken = reversed.broadcast_eq(&rev)?;
            remaining = taken.where_cond(&neg_inf, &remaining)?;
        }
        columns.push(rev);
        columns.push(max);
    }
    let table: Vec<Vec<f32>> = Tensor::cat(&columns, D::Minus1)?.to_vec2()?;
    let id = |rev: f32| (n as f32 - rev) as u32;
    Ok(table
        .into_iter()
        .map(|r| RowPick {
            token: id(r[0]),
            token_logprob: r[1],
            top: r[2..].chunks(2).map(|c| (id(c[0]), c[1])).collect(),
        })
        .collect())
}

/// Asserts that `got` is the log-softmax of the logits `row` against a float64 one: each entry
/// within `ulps` f32 epsilons of the row's largest finite |log-probability|, and -inf where the
/// logit is -inf.
#[cfg(test)]
fn assert_near_float64_log_softmax(row: &[f32], got: &[f32], ulps: f64, what: &str) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let scale = row
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| (x as f64 - lse).abs())
        .fold(0f64, f64::max);
    for (&x, &y) in row.iter().zip(got) {
        if x == f32::NEG_INFINITY {
            assert_eq!(y, f32::NEG_INFINITY, "{what}");
            continue;
        }
        let err = (y as f64 - (x as f64 - lse)).abs();
        assert!(
            err <= ulps * f32::EPSILON as f64 * scale,
            "{what}: {err:e} at {x}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Fusion;
    use crate::sampling;
    use candle_core::Device;

    #[test]
    fn agrees_with_the_host_rules_including_ties() -> Result<()> {
        let dev = Device::Cpu;
        // Coarse values (multiples of 1/4 in a small range) make ties at the top common.
        let raw = Tensor::randn(0f32, 1.0, (16, 300), &dev)?;
        let logits = ((raw * 4.0)?.round()? / 4.0)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picks = pick_rows(&logits, &lp, 5, Fusion::On)?;
        let (hl, hp): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (logits.to_vec2()?, lp.to_vec2()?);
        let mut ties = 0;
        for (r, p) in picks.iter().enumerate() {
            let token = sampling::argmax(&hl[r]);
            assert_eq!(p.token, token, "row {r}");
            assert_eq!(p.token_logprob, hp[r][token as usize]);
            assert_eq!(p.top, sampling::top_k(&hp[r], 5), "row {r}");
            ties += usize::from(p.top[0].1 == p.top[1].1);
        }
        assert!(ties > 0, "the data must exercise ties");
        Ok(())
    }

    #[test]
    fn padding_a_row_with_minus_infinity_changes_no_log_probability() -> Result<()> {
        // The padded form (used on GPUs) must give the same values as the plain one; with rows
        // summed sequentially, bitwise.
        let logits = Tensor::randn(0f32, 3.0, (5, 327), &Device::Cpu)?;
        let plain = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let fill = Tensor::full(f32::NEG_INFINITY, (5, 5), &Device::Cpu)?;
        let padded = candle_nn::ops::log_softmax(&Tensor::cat(&[&logits, &fill], 1)?, D::Minus1)?
            .narrow(1, 0, 327)?;
        let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (plain.to_vec2()?, padded.to_vec2()?);
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert_eq!(x.to_bits(), y.to_bits());
            }
        }
        // The CPU body too, and a row's values do not depend on the other rows.
        let ours = log_softmax_rows(&logits, Fusion::On)?.to_vec2::<f32>()?;
        let ours_padded = log_softmax_rows(&Tensor::cat(&[&logits, &fill], 1)?, Fusion::On)?
            .narrow(1, 0, 327)?
            .to_vec2::<f32>()?;
        assert_eq!(ours, ours_padded);
        assert_eq!(
            log_softmax_rows(&logits.narrow(0, 2, 1)?, Fusion::On)?.to_vec2::<f32>()?[0],
            ours[2]
        );
        Ok(())
    }

    /// The CPU body against a float64 log-softmax: within a few f32 ulps of the row's largest
    /// magnitude, at vocabulary widths.
    #[test]
    fn cpu_log_softmax_matches_float64() -> Result<()> {
        let logits = (Tensor::randn(0f32, 4.0, (3, 151_936), &Device::Cpu)? - 2.0)?;
        let ours = log_softmax_rows(&logits, Fusion::On)?.to_vec2::<f32>()?;
        for (row, got) in logits.to_vec2::<f32>()?.iter().zip(&ours) {
            assert_near_float64_log_softmax(row, got, 4.0, "cpu");
        }
        Ok(())
    }

    #[test]
    fn k_larger_than_the_row_and_k_zero() -> Result<()> {
        let logits = Tensor::new(&[[1f32, 3.0, 2.0]], &Device::Cpu)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let all = pick_rows(&logits, &lp, 10, Fusion::On)?;
        assert_eq!(
            all[0].top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
        let none = pick_rows(&logits, &lp, 0, Fusion::On)?;
        assert!(none[0].top.is_empty());
        assert_eq!(none[0].token, 1);
        Ok(())
    }
}

/// The fused choice ([`crate::fused::greedy_top_k`]) against the host rules, on a real GPU: run
/// with `cargo test --release --features cuda -p reprolm-engine device_top_k`; without a CUDA device
/// the test says so and passes vacuously (CI has none; `scripts/gpu-check.sh` covers the same ground).
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests {
    use super::*;
    use candle_core::{Device, D};

    use crate::kernels::gpu_test::device as gpu;

    #[test]
    fn greedy_top_k_is_the_composed_choice() -> Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        // Coarse values make ties at the top common; odd widths exercise the row tails, and the
        // wide one is cut into many parts (the last a short one) by the first kernel.
        for width in [1001, 50_001] {
            let raw = Tensor::randn(0f32, 1.0, (6, width), &dev)?;
            let logits = ((raw * 4.0)?.round()? / 4.0)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            for k in [0, 1, 5, 8] {
                let on = crate::kernels::Fusion::On;
                let fused = pick_rows(&logits, &lp, k, on)?;
                let host = pick_rows(
                    &logits.to_device(&Device::Cpu)?,
                    &lp.to_device(&Device::Cpu)?,
                    k,
                    on,
                )?;
                assert_eq!(fused, host, "width {width}, k = {k}");
            }
        }
        Ok(())
    }

    /// The fused log-softmax against float64, and each row's bits alone and in any batch: at a
    /// vocabulary's width, at one too wide for 256 parts of 2,048, and with whole parts of -inf.
    #[test]
    fn fused_log_softmax_matches_float64_and_keeps_a_rows_bits_in_any_batch() -> Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        let on = crate::kernels::Fusion::On;
        let bits = crate::kernels::gpu_test::bits;
        for width in [1000, 151_936, 600_001] {
            let mut host =
                (Tensor::randn(0f32, 4.0, (5, width), &Device::Cpu)? - 2.0)?.to_vec2::<f32>()?;
            for x in &mut host[3][..(width / 2).min(4096)] {
                *x = f32::NEG_INFINITY;
            }
            let logits = Tensor::new(host.clone(), &dev)?;
            let all = log_softmax_rows(&logits, on)?;
            let got = all.to_vec2::<f32>()?;
            for (row, (want, got)) in host.iter().zip(&got).enumerate() {
                let what = format!("width {width} row {row}");
                assert_near_float64_log_softmax(want, got, 8.0, &what);
                let alone = log_softmax_rows(&logits.narrow(0, row, 1)?, on)?;
                assert_eq!(bits(&alone), bits(&all.narrow(0, row, 1)?), "{what}");
            }
        }
        Ok(())
    }

    #[test]
    fn the_composed_route_with_the_row_max_in_parts_gives_candles_log_softmax() -> Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        for width in [1000, 151_936] {
            let logits = (Tensor::randn(0f32, 1.0, (3, width), &dev)? * 6.0)?;
            let ours = log_softmax_gpu(&logits)?;
            let candle = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let bits = crate::kernels::gpu_test::bits;
            assert_eq!(bits(&ours), bits(&candle), "width {width}");
        }
        Ok(())
    }
}
