//! placeholder

pub mod arith;
