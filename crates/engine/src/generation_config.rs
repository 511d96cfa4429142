//! The model's own generation defaults: which token ids end a sequence, and the sampling parameters its authors
//! recommend (generation_config.json).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::loader::{read_json, ModelFiles};

/// Stop ids and default sampling parameters from generation_config.json.
///
/// Every sampling field stays `None` when the file does not set it, so a run can tell "the model recommends
/// temperature 0.6" from "nobody said", and record which one it used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfig {
    /// Any of these ends a sequence. Qwen3 lists two (`<|im_end|>`, `<|endoftext|>`).
    pub eos_token_ids: Vec<u32>,
    /// The beginning-of-sequence id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// The padding id, if the model names one.
    pub pad_token_id: Option<u32>,
    /// Recommended sampling temperature.
    pub temperature: Option<f64>,
    /// Recommended nucleus-sampling mass.
    pub top_p: Option<f64>,
    /// Recommended top-k cut-off.
    pub top_k: Option<usize>,
    /// Recommended min-p cut-off.
    pub min_p: Option<f64>,
    /// Whether the authors sample (`true`) or decode greedily (`false`) by default.
    pub do_sample: Option<bool>,
}

impl GenerationConfig {
    /// Reads the model's generation_config.json, with token ids it lacks taken from config.json.
    ///
    /// ```no_run
    /// # use reprolm_engine::{GenerationConfig, ModelFiles, ModelSource};
    /// let files = ModelFiles::resolve(&ModelSource::parse("Qwen/Qwen3-0.6B")?)?;
    /// let gen = GenerationConfig::load(&files)?;
    /// assert!(!gen.eos_token_ids.is_empty());
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn load(files: &ModelFiles) -> Result<Self> {
        Self::from_files(files.generation_config.as_deref(), &files.config)
    }

    /// Reads `generation_config` (if any) and falls back to `config` field by field for the token ids.
    ///
    /// transformers builds the generation config from config.json when generation_config.json is absent. We
    /// also fall back per field when the file exists but omits an id: a missing eos id would let every sample
    /// run to `max_tokens`, which is worse than using the id config.json gives.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let gen_path = dir.path().join("generation_config.json");
    /// # let cfg_path = dir.path().join("config.json");
    /// std::fs::write(&gen_path, r#"{"eos_token_id": [151645, 151643], "temperature": 0.6, "top_k": 20}"#).unwrap();
    /// std::fs::write(&cfg_path, r#"{"bos_token_id": 151643, "eos_token_id": 151645}"#).unwrap();
    /// let gen = reprolm_engine::GenerationConfig::from_files(Some(&gen_path), &cfg_path).unwrap();
    /// assert_eq!(gen.eos_token_ids, [151645, 151643]);
    /// assert_eq!((gen.bos_token_id, gen.temperature, gen.top_k), (Some(151643), Some(0.6), Some(20)));
    /// ```
    pub fn from_files(generation_config: Option<&Path>, config: &Path) -> Result<Self> {
        let model = read_json(config)?;
        let model_ids = TokenIds::read(&model, config)?;
        let Some(path) = generation_config else {
            return Ok(Self {
                eos_token_ids: model_ids.eos,
                bos_token_id: model_ids.bos,
                pad_token_id: model_ids.pad,
                ..Self::default()
            });
        };
        let json = read_json(path)?;
        let ids = TokenIds::read(&json, path)?;
        let fields = Fields { json: &json, path };
        Ok(Self {
            eos_token_ids: if ids.eos.is_empty() {
                model_ids.eos
            } else {
                ids.eos
            },
            bos_token_id: ids.bos.or(model_ids.bos),
            pad_token_id: ids.pad.or(model_ids.pad),
            temperature: fields.non_negative_f64("temperature")?,
            top_p: fields.non_negative_f64("top_p")?,
            top_k: fields.u64("top_k")?.map(|k| k as usize),
            min_p: fields.non_negative_f64("min_p")?,
            do_sample: fields.bool("do_sample")?,
        })
    }
}

struct TokenIds {
    eos: Vec<u32>,
    bos: Option<u32>,
    pad: Option<u32>,
}

impl TokenIds {
    fn read(json: &Value, path: &Path) -> Result<Self> {
        let fields = Fields { json, path };
        let eos = match json.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    token_id(v).ok_or_else(|| fields.bad(&format!("eos_token_id[{i}]"), v))
                })
                .collect::<Result<_>>()?,
            Some(v) => vec![token_id(v).ok_or_else(|| fields.bad("eos_token_id", v))?],
        };
        Ok(Self {
            eos,
            bos: fields.token_id("bos_token_id")?,
            pad: fields.token_id("pad_token_id")?,
        })
    }
}

fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Typed optional fields of one JSON object; `null` reads as absent, as in transformers.
struct Fields<'a> {
    json: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    fn bad(&self, field: &str, got: &Value) -> Error {
        let reason = match field {
            f if f.contains("token_id") => {
                format!("expected a token id (a non-negative integer), got {got}")
            }
            "do_sample" => format!("expected true or false, got {got}"),
            "top_k" => format!("expected a non-negative integer, got {got}"),
            _ => format!("expected a non-negative number, got {got}"),
        };
        Error::BadField {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            reason,
        }
    }

    fn token_id(&self, field: &str) -> Result<Option<u32>> {
        self.get(field)
            .map(|v| token_id(v).ok_or_else(|| self.bad(field, v)))
            .transpose()
    }

    fn u64(&self, field: &str) -> Result<Option<u64>> {
        self.get(field)
            .map(|v| v.as_u64().ok_or_else(|| self.bad(field, v)))
            .transpose()
    }

    fn non_negative_f64(&self, field: &str) -> Result<Option<f64>> {
        self.get(field)
            .map(|v| {
                v.as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| self.bad(field, v))
            })
            .transpose()
    }

    fn bool(&self, field: &str) -> Result<Option<bool>> {
        self.get(field)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(field, v)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn qwen3_style_file_with_list_eos() {
        let dir = tempfile::tempdir().unwrap();
        let gen = write(
            dir.path(),
            "generation_config.json",
            r#"{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"}"#,
        );
        let cfg = write(
            dir.path(),
            "config.json",
            r#"{"eos_token_id": 151645, "bos_token_id": 151643}"#,
        );
        let g = GenerationConfig::from_files(Some(&gen), &cfg).unwrap();
        assert_eq!(
            g,
            GenerationConfig {
                eos_token_ids: vec![151645, 151643],
                bos_token_id: Some(151643),
                pad_token_id: Some(151643),
                temperature: Some(0.6),
                top_p: Some(0.95),
                top_k: Some(20),
                min_p: None,
                do_sample: Some(true),
            }
        );
    }

    #[test]
    fn falls_back_to_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "config.json",
            r#"{"eos_token_id": [128001, 128008], "bos_token_id": 128000}"#,
        );
        let g = GenerationConfig::from_files(None, &cfg).unwrap();
        assert_eq!(
            (g.eos_token_ids, g.bos_token_id, g.temperature),
            (vec![128001, 128008], Some(128000), None)
        );
        // A file without ids takes them from config.json; one with null eos too.
        let gen = write(
            dir.path(),
            "generation_config.json",
            r#"{"eos_token_id": null, "temperature": 0.7}"#,
        );
        let g = GenerationConfig::from_files(Some(&gen), &cfg).unwrap();
        assert_eq!(
            (g.eos_token_ids, g.temperature),
            (vec![128001, 128008], Some(0.7))
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "config.json", "{}");
        for (text, field) in [
            (r#"{"eos_token_id": "2"}"#, "field `eos_token_id`"),
            (r#"{"eos_token_id": [1, -2]}"#, "field `eos_token_id[1]`"),
            (r#"{"top_k": 2.5}"#, "field `top_k`"),
            (r#"{"temperature": -1}"#, "field `temperature`"),
            (r#"{"do_sample": "yes"}"#, "field `do_sample`"),
        ] {
            let gen = write(dir.path(), "generation_config.json", text);
            let err = GenerationConfig::from_files(Some(&gen), &cfg)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("generation_config.json") && err.contains(field),
                "{text}: {err}"
            );
        }
        let gen = write(dir.path(), "generation_config.json", "{not json");
        let err = GenerationConfig::from_files(Some(&gen), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("generation_config.json: invalid JSON"),
            "{err}"
        );
    }
}
