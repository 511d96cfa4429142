//! The run directory: the unit every downstream tool reads.
//!
//! ```text
//! RUN/manifest.json     provenance and configuration (Manifest)
//! RUN/responses.jsonl   one scored response per (problem, sample) (ResponseRecord)
//! RUN/logprobs.bin      top-k candidates of every generated token (LogprobsRecord)
//! ```
//! Each file carries a format version and readers reject versions they do not know. The types live in the
//! metrics crate so that reports read run directories without linking the inference engine.

mod dir;
mod logprobs;
mod manifest;
mod responses;

pub use dir::{Finish, LoadedRun, Recovery, RunDir};
pub use logprobs::{
    LogprobsEntry, LogprobsFile, LogprobsRecord, LogprobsWriter, DEFAULT_LOGPROBS_K, LOGPROBS_FILE,
    LOGPROBS_FORMAT_VERSION, PAD_TOKEN,
};
pub use manifest::{
    BatchingMode, DeviceInfo, FieldDiff, Manifest, ModelInfo, Origin, PolicyInfo, SamplingParams,
    TaskInfo, WeightFile, MANIFEST_FILE, MANIFEST_FORMAT_VERSION,
};
pub use responses::{
    read_responses, write_responses, Durability, FinishReason, ResponseRecord, ResponsesScan,
    SampleKey, RESPONSES_FILE, RESPONSES_FORMAT_VERSION,
};
