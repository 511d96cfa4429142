//! Numerical precision policies for reprolm.
//!
//! A [`PrecisionPolicy`] says, for every component of a decoder, which floating point type holds
//! its values and runs its arithmetic. The engine takes one at load time and obeys it in every op,
//! so that "BF16", "FP32" or "LayerCast" in a report means exactly one thing.
//!
//! ```
//! use reprolm_precision::{Component, PrecisionPolicy};
//! use candle_core::DType;
//!
//! let lc = PrecisionPolicy::preset("layercast").unwrap();
//! assert_eq!(lc.dtype(Component::LinearStorage), DType::BF16);
//! assert_eq!(lc.dtype(Component::MatmulCompute), DType::F32);
//! ```
#![deny(missing_docs)]

mod error;
mod linear;
mod policy;

pub use error::{Error, Result};
pub use linear::Linear;
pub use policy::{dtype_name, parse_dtype, Component, PrecisionPolicy, PRESETS};
