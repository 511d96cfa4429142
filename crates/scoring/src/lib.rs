//! Scoring for reprolm: sandboxed code execution for LiveCodeBench.
#![deny(missing_docs)]

pub mod sandbox;
