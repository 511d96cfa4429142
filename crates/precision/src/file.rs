//! Policy files: custom policies written in TOML, and [`PrecisionPolicy::resolve`], which takes a
//! preset name or a file path as a user types it.
//!
//! A policy file names every component, so that reading it tells the whole story:
//!
//! ```toml
//! version = 1                 # optional; 1 is the only version so far
//! name = "bf16-f32-kv"        # optional; defaults to the file name without `.toml`
//! linear_storage = "bf16"
//! matmul_compute = "bf16"
//! activations = "bf16"
//! embedding = "bf16"
//! norm = "f32"
//! rope = "bf16"
//! attention = "bf16"
//! kv_cache = "f32"
//! lm_head = "bf16"
//! logits = "bf16"
//! ```
//!
//! A file that only changes a few components must say what the others are by naming a preset:
//! `base = "bf16"` fills every component not listed from that preset. A file with neither `base`
//! nor every component is an error listing the missing keys: a silent default would make two
//! runs with "the same" file differ after a default changes.

use crate::policy::{dtype_name, parse_dtype, Component, PrecisionPolicy, PRESETS};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// The policy file format version this crate writes and reads.
pub const POLICY_FILE_VERSION: i64 = 1;

const META_KEYS: [&str; 3] = ["version", "name", "base"];

impl PrecisionPolicy {
    /// Parses a policy file's text. `origin` names it in errors (a path, or `<policy string>`),
    /// and becomes the default name without its directory and `.toml` suffix.
    ///
    /// ```
    /// use reprolm_precision::{Component, PrecisionPolicy};
    /// use candle_core::DType;
    ///
    /// let p = PrecisionPolicy::from_toml_str("base = \"bf16\"\nkv_cache = \"f32\"\n", "kv32.toml")?;
    /// assert_eq!(p.name, "kv32");
    /// assert_eq!(p.dtype(Component::KvCache), DType::F32);
    /// assert_eq!(p.dtype(Component::Attention), DType::BF16);
    ///
    /// let err = PrecisionPolicy::from_toml_str("base = \"bf16\"\nkv_cahce = \"f32\"\n", "kv32.toml");
    /// assert!(err.unwrap_err().to_string().starts_with("kv32.toml:2: `kv_cahce`"));
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| Error::PolicyFile {
                origin: origin.to_string(),
                reason: format!("not a valid policy file: {}", e.to_string().trim_end()),
            })?;
        let line_of = |k: &Spanned<String>| text[..k.span().start].matches('\n').count() + 1;
        let key_err = |k: &Spanned<String>, reason: String| Error::PolicyKey {
            origin: origin.to_string(),
            line: line_of(k),
            key: k.get_ref().clone(),
            reason,
        };
        let string_value = |k: &Spanned<String>, v: &Spanned<toml::Value>| -> Result<String> {
            match v.get_ref() {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(key_err(
                    k,
                    format!("expected a string, got {}", other.type_str()),
                )),
            }
        };

        let mut name = None;
        let mut name_key = None;
        let mut base = None;
        let mut given: BTreeMap<Component, candle_core::DType> = BTreeMap::new();
        for (k, v) in &table {
            match k.get_ref().as_str() {
                "version" => match v.get_ref() {
                    toml::Value::Integer(POLICY_FILE_VERSION) => {}
                    other => {
                        return Err(key_err(
                            k,
                            format!(
                                "unknown policy file version {other}; this reprolm reads version {POLICY_FILE_VERSION}"
                            ),
                        ))
                    }
                },
                "name" => {
                    let n = string_value(k, v)?;
                    if n.trim().is_empty() {
                        return Err(key_err(k, "must not be empty".into()));
                    }
                    name = Some(n);
                    name_key = Some(k);
                }
                "base" => {
                    let b = string_value(k, v)?;
                    let preset = PrecisionPolicy::preset(&b)
                        .map_err(|e| key_err(k, e.to_string()))?;
                    base = Some(preset);
                }
                key => {
                    let Some(c) = Component::from_key(key) else {
                        let known: Vec<&str> = META_KEYS
                            .into_iter()
                            .chain(Component::ALL.iter().map(|c| c.key()))
                            .collect();
                        return Err(key_err(
                            k,
                            format!("unknown key; known keys: {}", known.join(", ")),
                        ));
                    };
                    let s = string_value(k, v)?;
                    let d = parse_dtype(key, &s).map_err(|_| {
                        key_err(
                            k,
                            format!("unknown dtype `{s}`; expected one of bf16, f16, f32, f64"),
                        )
                    })?;
                    given.insert(c, d);
                }
            }
        }

        let mut policy = match base {
            Some(p) => p,
            None => {
                let missing: Vec<&str> = Component::ALL
                    .iter()
                    .filter(|c| !given.contains_key(c))
                    .map(|c| c.key())
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::PolicyFile {
                        origin: origin.to_string(),
                        reason: format!(
                            "missing components {}; name every component, or add `base = \"<preset>\"` \
                             (one of {}) to take the rest from a preset",
                            missing.join(", "),
                            PRESETS.join(", ")
                        ),
                    });
                }
                PrecisionPolicy::fp32()
            }
        };
        for (c, d) in given {
            policy.set(c, d);
        }
        policy.name = name.unwrap_or_else(|| default_name(origin));
        // Runs are grouped and compared by policy name: a preset's name on another table would pool
        // different numerics as one configuration.
        if let Some(preset) = crate::policy::preset_name(&policy.name) {
            let reference = PrecisionPolicy::preset(preset)?;
            let differs: Vec<String> = Component::ALL
                .iter()
                .filter(|c| policy.dtype(**c) != reference.dtype(**c))
                .map(|c| {
                    format!(
                        "{} is {} here, {} in {preset}",
                        c.key(),
                        crate::policy::dtype_name(policy.dtype(*c)),
                        crate::policy::dtype_name(reference.dtype(*c))
                    )
                })
                .collect();
            if !differs.is_empty() {
                let reason = format!(
                    "`{}` is the name of a preset whose table differs ({}); give this policy its own name",
                    policy.name,
                    differs.join(", ")
                );
                return Err(match name_key {
                    Some(k) => key_err(k, reason),
                    None => Error::PolicyFile {
                        origin: origin.to_string(),
                        reason: format!("the file name gives the policy its name: {reason}"),
                    },
                });
            }
        }
        Ok(policy)
    }

    /// Reads a policy file (see [`from_toml_str`](Self::from_toml_str) for the format).
    ///
    /// ```no_run
    /// let p = reprolm_precision::PrecisionPolicy::from_toml_file("policies/kv32.toml")?;
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// A preset name (`bf16`, `layercast`, ...) or the path of a `.toml` policy file: what a user
    /// passes to `--policy`. Presets win, so a file must end in `.toml` (or contain a path
    /// separator) to be read as one.
    ///
    /// ```
    /// let p = reprolm_precision::PrecisionPolicy::resolve("fp32-head")?;
    /// assert_eq!(p.name, "fp32-head");
    /// assert!(reprolm_precision::PrecisionPolicy::resolve("fp8").is_err());
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if crate::policy::preset_name(name_or_path).is_some() {
            return Self::preset(name_or_path);
        }
        let looks_like_file = name_or_path.ends_with(".toml")
            || name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/');
        if looks_like_file {
            return Self::from_toml_file(name_or_path);
        }
        Err(Error::NotAPolicy {
            got: name_or_path.to_string(),
            known: PRESETS.to_vec(),
        })
    }

    /// The policy as a complete policy file (every component, no `base`), which
    /// [`from_toml_str`](Self::from_toml_str) reads back to an equal policy. Manifests and
    /// `reprolm policies --toml` print this, so a run's policy can be replayed from its record.
    ///
    /// ```
    /// use reprolm_precision::PrecisionPolicy;
    /// let lc = PrecisionPolicy::preset("layercast")?;
    /// let back = PrecisionPolicy::from_toml_str(&lc.to_toml_string(), "x.toml")?;
    /// assert_eq!(back, lc);
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn to_toml_string(&self) -> String {
        let mut out = format!(
            "version = {POLICY_FILE_VERSION}\nname = {}\n",
            toml::Value::String(self.name.clone())
        );
        for c in Component::ALL {
            out.push_str(&format!(
                "{} = \"{}\"\n",
                c.key(),
                dtype_name(self.dtype(c))
            ));
        }
        out
    }
}

fn default_name(origin: &str) -> String {
    let file = Path::new(origin)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.to_string());
    file.strip_suffix(".toml").unwrap_or(&file).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn a_presets_name_on_another_table_is_refused() {
        // `reprolm policies layercast --toml`, unchanged, is the preset itself.
        let lc = PrecisionPolicy::preset("layercast").unwrap();
        assert_eq!(
            PrecisionPolicy::from_toml_str(&lc.to_toml_string(), "lc.toml").unwrap(),
            lc
        );
        // The same with a bf16 KV cache is another policy and may not call itself layercast.
        let text = lc
            .to_toml_string()
            .replace("kv_cache = \"f32\"", "kv_cache = \"bf16\"");
        assert!(text.contains("kv_cache = \"bf16\""), "{text}");
        let e = PrecisionPolicy::from_toml_str(&text, "my.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("my.toml:2: `name`")
                && e.contains("kv_cache is bf16 here, f32 in layercast")
                && e.contains("its own name"),
            "{e}"
        );
        // Named by its file: `bf16.toml` holding an f32 table.
        let e = PrecisionPolicy::from_toml_str("base = \"fp32\"\n", "dir/bf16.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("file name gives the policy its name"), "{e}");
        // An alias is a preset's name too.
        let e = PrecisionPolicy::from_toml_str("name = \"float32\"\nbase = \"bf16\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`float32` is the name of a preset"), "{e}");
    }

    fn full(overrides: &[(&str, &str)]) -> String {
        Component::ALL
            .iter()
            .map(|c| {
                let v = overrides
                    .iter()
                    .find(|(k, _)| *k == c.key())
                    .map_or("f32", |(_, v)| v);
                format!("{} = \"{v}\"\n", c.key())
            })
            .collect()
    }

    #[test]
    fn a_full_file_sets_every_component() {
        let p = PrecisionPolicy::from_toml_str(
            &format!(
                "name = \"mine\"\n{}",
                full(&[("kv_cache", "bf16"), ("rope", "fp16")])
            ),
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.name, "mine");
        assert_eq!(p.dtype(Component::KvCache), DType::BF16);
        assert_eq!(p.dtype(Component::Rope), DType::F16);
        assert_eq!(p.dtype(Component::Norm), DType::F32);
    }

    #[test]
    fn a_partial_file_without_base_names_the_missing_keys() {
        let err = PrecisionPolicy::from_toml_str("kv_cache = \"f32\"\n", "dir/p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dir/p.toml: missing components"), "{err}");
        assert!(
            err.contains("linear_storage") && err.contains("base ="),
            "{err}"
        );
        assert!(!err.contains("kv_cache,"), "{err}");
    }

    #[test]
    fn base_fills_the_rest_and_listed_keys_override_it() {
        let p = PrecisionPolicy::from_toml_str(
            "base = \"layercast\"\nlinear_storage = \"f16\"\n",
            "/x/lc16.toml",
        )
        .unwrap();
        assert_eq!(p.name, "lc16");
        let want = PrecisionPolicy::preset("layercast")
            .unwrap()
            .with(Component::LinearStorage, DType::F16);
        assert_eq!(p.table(), want.table());
    }

    #[test]
    fn unknown_keys_dtypes_bases_and_versions_name_the_line() {
        let cases = [
            (
                "base = \"bf16\"\n\nkv = \"f32\"\n",
                "p.toml:3: `kv`: unknown key",
            ),
            (
                "base = \"bf16\"\nnorm = \"f8\"\n",
                "p.toml:2: `norm`: unknown dtype `f8`",
            ),
            (
                "base = \"bf17\"\n",
                "p.toml:1: `base`: unknown precision policy `bf17`",
            ),
            (
                "version = 2\nbase = \"bf16\"\n",
                "p.toml:1: `version`: unknown policy file version 2",
            ),
            (
                "base = \"bf16\"\nnorm = 32\n",
                "p.toml:2: `norm`: expected a string, got integer",
            ),
        ];
        for (text, want) in cases {
            let err = PrecisionPolicy::from_toml_str(text, "p.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn malformed_toml_is_a_file_error() {
        let err = PrecisionPolicy::from_toml_str("base = bf16\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml: not a valid policy file"), "{err}");
    }

    #[test]
    fn every_preset_round_trips_through_toml() {
        for name in PRESETS {
            let p = PrecisionPolicy::preset(name).unwrap();
            let back = PrecisionPolicy::from_toml_str(&p.to_toml_string(), "x.toml").unwrap();
            assert_eq!(back, p, "{name}");
        }
    }

    #[test]
    fn resolve_reads_presets_and_files_and_rejects_the_rest() {
        let dir = std::env::temp_dir().join(format!("reprolm-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("half-kv.toml");
        std::fs::write(&path, "base = \"fp32\"\nkv_cache = \"bf16\"\n").unwrap();
        let p = PrecisionPolicy::resolve(path.to_str().unwrap()).unwrap();
        assert_eq!(p.name, "half-kv");
        assert_eq!(p.dtype(Component::KvCache), DType::BF16);
        assert_eq!(PrecisionPolicy::resolve("bf16").unwrap().name, "bf16");
        // The paper's and torch's dtype names are the uniform presets, under the preset's name.
        for (alias, preset) in crate::PRESET_ALIASES {
            let p = PrecisionPolicy::resolve(alias).unwrap();
            assert_eq!(p, PrecisionPolicy::preset(preset).unwrap(), "{alias}");
            assert_eq!(p.name, preset);
        }
        let missing = PrecisionPolicy::resolve(dir.join("nope.toml").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
        let err = PrecisionPolicy::resolve("bf8").unwrap_err().to_string();
        assert!(err.contains("`bf8`") && err.contains(".toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
