//! A linear layer that stores its weight in one dtype and multiplies in another, and the matmul
//! it (and attention) runs in a chosen dtype.

use crate::deterministic::{self, ComputeMode};
use crate::Result;
use candle_core::{DType, Module, Tensor};

/// `lhs · rhs` with both operands cast to `dtype`, the result in `dtype`.
///
/// candle's CPU backend has no bf16 GEMM. A 16-bit GEMM on a GPU (cuBLAS, and torch's CPU kernel)
/// multiplies 16-bit operands with f32 accumulation and rounds the result once, so on CPU we do
/// the same by hand for bf16 and f16: the values widen to f32 exactly, the f32 matmul
/// accumulates, and the product is rounded once. Only the summation order differs from a GPU
/// kernel, as between any two kernels. f32 and f64, and every dtype on CUDA, use candle's matmul.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let a = Tensor::new(&[[1f32, 2.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[3f32], [4.0]], &Device::Cpu)?;
/// let y = reprolm_precision::matmul(&a, &b, DType::BF16)?;
/// assert_eq!(y.dtype(), DType::BF16);
/// assert_eq!(y.to_dtype(DType::F32)?.to_vec2::<f32>()?, vec![vec![11.0]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn matmul(lhs: &Tensor, rhs: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    affine_product(lhs, rhs, None, dtype)
}

/// Whether a `dtype` matmul on this device is done by widening to f32 (see [`matmul`]).
fn widened(dtype: DType, device: &candle_core::Device) -> bool {
    matches!(dtype, DType::BF16 | DType::F16) && device.is_cpu()
}

/// `lhs · rhs (+ bias)` in `dtype`. When the product is widened (16-bit on CPU), the bias is
/// added in f32 before the single rounding, as torch's `addmm` and cuBLAS's bias epilogue do;
/// otherwise the product is rounded, then the bias added in `dtype`.
fn affine_product(
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    if widened(dtype, lhs.device()) {
        // Round the operands to `dtype` first, so the result is what a `dtype` kernel computes
        // whatever dtype the caller handed in.
        let wide = |t: &Tensor| t.to_dtype(dtype)?.to_dtype(DType::F32);
        let mut y = wide(lhs)?.matmul(&wide(rhs)?)?;
        if let Some(b) = bias {
            y = y.broadcast_add(&wide(b)?)?;
        }
        return y.to_dtype(dtype);
    }
    let y = lhs.to_dtype(dtype)?.matmul(&rhs.to_dtype(dtype)?)?;
    match bias {
        Some(b) => y.broadcast_add(&b.to_dtype(dtype)?),
        None => Ok(y),
    }
}

/// `y = x Wᵀ + b` with storage and compute dtypes chosen by a policy.
///
/// LayerCast needs the weight to stay bf16 in memory and become f32 only for the duration of the
/// matmul, so the cast happens in `forward`, not at load. When storage and compute agree the cast
/// is a no-op clone.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    compute: DType,
}

impl Linear {
    /// A layer from a `(out, in)` weight and optional `(out,)` bias, converted to `storage` now
    /// and to `compute` at every call.
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        storage: DType,
        compute: DType,
    ) -> Result<Self> {
        let weight = weight.to_dtype(storage)?;
        let bias = bias.map(|b| b.to_dtype(storage)).transpose()?;
        Ok(Linear {
            weight,
            bias,
            compute,
        })
    }

    /// The stored weight, `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The stored bias, `(out,)`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The dtype the matmul runs in, and the dtype of the output.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// `x Wᵀ + b` with the kernels `mode` selects; `x` is `(..., in)`, the output `(..., out)`
    /// in the compute dtype.
    ///
    /// Leading dimensions are flattened into one `(rows, in)` matrix. In
    /// [`ComputeMode::Deterministic`] every output element is reduced in the one order of
    /// [`deterministic::linear`], whatever the number of rows (this crate's kernel is the CPU's;
    /// the engine's GEMM layer has the CUDA bodies); in [`ComputeMode::Fast`]
    /// candle's GEMM runs, whose row results can depend on the row count (one row takes another
    /// path). The decoder calls neither directly: its GEMM layer (`reprolm_engine::kernels::gemm`)
    /// is batch invariant in every mode and on every device.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use reprolm_precision::{ComputeMode, Linear, ReductionOrder};
    /// let w = Tensor::randn(0f32, 1.0, (6, 16), &Device::Cpu)?;
    /// let lin = Linear::new(w, None, DType::BF16, DType::BF16)?;
    /// let x = Tensor::randn(0f32, 1.0, (3, 16), &Device::Cpu)?;
    /// let det = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);
    /// let all = lin.forward_with(&x, det)?;
    /// let one = lin.forward_with(&x.narrow(0, 2, 1)?, det)?;
    /// assert_eq!(all.narrow(0, 2, 1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?,
    ///            one.to_dtype(DType::F32)?.to_vec2::<f32>()?);
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn forward_with(&self, x: &Tensor, mode: ComputeMode) -> Result<Tensor> {
        over_rows(&x.to_dtype(self.compute)?, |x2| match mode {
            ComputeMode::Fast => self.fast_product(x2),
            ComputeMode::Deterministic(order) => {
                deterministic::linear(x2, &self.weight, self.bias.as_ref(), self.compute, order)
            }
        })
    }
}

/// `product` of `x` taken as rows: `x` of shape `(..., in)` flattened to `(rows, in)`, `product`
/// returning `(rows, out)`, and the result given `x`'s leading dimensions back, `(..., out)`.
/// Every projection (this crate's [`Linear`] and the engine's GEMM layer) runs its GEMM this way.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::ones((2, 3, 4), candle_core::DType::F32, &Device::Cpu)?;
/// let y = reprolm_precision::over_rows(&x, |rows| {
///     assert_eq!(rows.dims(), &[6, 4]);
///     rows.sum_keepdim(1)
/// })?;
/// assert_eq!(y.dims(), &[2, 3, 1]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn over_rows<E: From<candle_core::Error>>(
    x: &Tensor,
    product: impl FnOnce(&Tensor) -> std::result::Result<Tensor, E>,
) -> std::result::Result<Tensor, E> {
    let mut dims = x.dims().to_vec();
    let in_features = *dims
        .last()
        .expect("linear input has at least one dimension");
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = product(&x.reshape((rows, in_features))?)?;
    *dims.last_mut().expect("checked above") = y.dim(1)?;
    Ok(y.reshape(dims)?)
}

impl Linear {
    /// `x Wᵀ + b` for a flattened `(rows, in)` input with candle's GEMM, after widening a 16-bit
    /// weight stored for an f32 computation (LayerCast).
    fn fast_product(&self, x2: &Tensor) -> Result<Tensor> {
        let w = self.weight.to_dtype(self.compute)?;
        Ok(affine_product(
            x2,
            &w.t()?,
            self.bias.as_ref(),
            self.compute,
        )?)
    }
}

impl Module for Linear {
    /// [`Linear::forward_with`] in [`ComputeMode::Fast`]: candle's GEMM on one flattened
    /// `(rows, in)` matrix, whose row results we measured independent of the row count for two
    /// rows or more.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, ComputeMode::Fast)
            .map_err(|e| match e {
                crate::Error::Candle(e) => e,
                other => candle_core::Error::Msg(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layercast_equals_fp32_on_bf16_rounded_weights() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (24, 16), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 24, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16), &dev)?;
        let lc = Linear::new(w.clone(), Some(b.clone()), DType::BF16, DType::F32).unwrap();
        let rounded_w = w.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        let rounded_b = b.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        let fp32 = Linear::new(rounded_w, Some(rounded_b), DType::F32, DType::F32).unwrap();
        assert_eq!(lc.weight().dtype(), DType::BF16);
        let (a, b) = (lc.forward(&x)?, fp32.forward(&x)?);
        assert_eq!(a.dims(), &[2, 3, 24]);
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn bf16_matmul_rounds_an_f32_accumulated_product_once() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (5, 64), &dev)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, (64, 7), &dev)?.to_dtype(DType::BF16)?;
        let got = matmul(&a, &b, DType::BF16)?;
        let exact = a
            .to_dtype(DType::F64)?
            .matmul(&b.to_dtype(DType::F64)?)?
            .to_dtype(DType::BF16)?;
        // Rounding the f64 product and the f32-accumulated one to bf16 agree except at ties.
        let diff = (got.to_dtype(DType::F64)? - exact.to_dtype(DType::F64)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        let scale = exact
            .to_dtype(DType::F64)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff <= scale * 2f64.powi(-8), "{diff} vs {scale}");
        Ok(())
    }

    #[test]
    fn matches_a_float64_reference() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f64, 1.0, (8, 5), &dev)?;
        let x = Tensor::randn(0f64, 1.0, (4, 5), &dev)?;
        let want = x.matmul(&w.t()?)?;
        let lin = Linear::new(w, None, DType::F32, DType::F32).unwrap();
        let got = lin.forward(&x)?.to_dtype(DType::F64)?;
        let err = (got - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(err < 1e-5, "{err}");
        Ok(())
    }
}
