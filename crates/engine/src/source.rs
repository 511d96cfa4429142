//! Where a model comes from: a local directory or a Hugging Face Hub repository at a revision.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The revision used when a Hub id names none, as in `huggingface_hub`.
pub const DEFAULT_REVISION: &str = "main";

/// A model as the user named it, before any file is looked up.
///
/// Kept apart from [`ModelFiles`](crate::ModelFiles) so that a run can record what was asked for
/// (`owner/name@main`) next to what it resolved to (a commit and file hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory holding config.json, tokenizer.json and the safetensors weights.
    Local(PathBuf),
    /// A Hub model repository; `revision` is a branch, tag or commit hash.
    Hub {
        /// `owner/name` (or a bare `name` for the few legacy un-namespaced repositories).
        repo: String,
        /// Branch, tag or 40-hex commit hash.
        revision: String,
    },
}

impl ModelSource {
    /// Reads `dir` or `owner/name[@revision]`.
    ///
    /// An existing directory always wins, so a local copy laid out like a Hub id (`Qwen/Qwen3-0.6B`) is used
    /// without touching the network. Anything that looks like a path but does not exist is an error naming it,
    /// rather than a confusing Hub lookup of `./models/x`.
    ///
    /// ```
    /// use reprolm_engine::ModelSource;
    /// let src = ModelSource::parse("Qwen/Qwen3-0.6B@main").unwrap();
    /// assert_eq!(src, ModelSource::Hub { repo: "Qwen/Qwen3-0.6B".into(), revision: "main".into() });
    /// assert!(ModelSource::parse("./no/such/dir").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadModelSource {
            spec: spec.to_string(),
            reason,
        };
        if spec.trim().is_empty() {
            return Err(bad("empty model name".into()));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if path.exists() {
            return Err(bad(
                "is a file; expected a model directory (holding config.json) or a Hub id".into(),
            ));
        }
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) => (repo, Some(revision)),
            None => (spec, None),
        };
        if looks_like_path(repo) {
            return Err(bad(format!(
                "no such directory {}; a Hub id has the form owner/name[@revision]",
                path.display()
            )));
        }
        validate_repo_id(repo).map_err(bad)?;
        let revision = match revision {
            None => DEFAULT_REVISION.to_string(),
            Some("") => return Err(bad("empty revision after `@`".into())),
            Some(r) if r.chars().any(char::is_whitespace) => {
                return Err(bad(format!("revision `{r}` contains whitespace")))
            }
            Some(r) => r.to_string(),
        };
        Ok(Self::Hub {
            repo: repo.to_string(),
            revision,
        })
    }
}

impl fmt::Display for ModelSource {
    /// Prints the form [`ModelSource::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Hub { repo, revision } => write!(f, "{repo}@{revision}"),
        }
    }
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with(['/', '.', '~', '\\'])
        || s.contains('\\')
        || s.ends_with('/')
        || s.matches('/').count() > 1
        || (s.len() >= 2 && s.as_bytes()[1] == b':') // C:...
}

/// The Hub's rules for repository names, loosely: `[owner/]name`, ASCII letters, digits, `-`, `_`, `.`.
fn validate_repo_id(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    for part in &parts {
        if part.is_empty() {
            return Err(format!("`{repo}` is not a Hub id: empty owner or name"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "no such directory, and `{repo}` is not a Hub id (character {c:?} is not allowed)"
            ));
        }
        if part.contains("..") || part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err(format!(
                "`{repo}` is not a Hub id: `{part}` starts or ends with `-`/`.` or contains `..`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, revision: &str) -> ModelSource {
        ModelSource::Hub {
            repo: repo.into(),
            revision: revision.into(),
        }
    }

    #[test]
    fn hub_ids_with_and_without_revision() {
        assert_eq!(
            ModelSource::parse("Qwen/Qwen3-0.6B").unwrap(),
            hub("Qwen/Qwen3-0.6B", "main")
        );
        assert_eq!(ModelSource::parse("gpt2").unwrap(), hub("gpt2", "main"));
        assert_eq!(
            ModelSource::parse("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B@ad9f0ae0864d7fbcd1cd905e3c6c5b069cc8b562")
                .unwrap(),
            hub("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "ad9f0ae0864d7fbcd1cd905e3c6c5b069cc8b562")
        );
        // Pull-request refs contain slashes.
        assert_eq!(
            ModelSource::parse("owner/name@refs/pr/3").unwrap(),
            hub("owner/name", "refs/pr/3")
        );
        assert_eq!(hub("owner/name", "v1").to_string(), "owner/name@v1");
    }

    #[test]
    fn existing_directory_is_local_even_if_it_looks_like_an_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("owner").join("name");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = dir.to_str().unwrap();
        assert_eq!(
            ModelSource::parse(spec).unwrap(),
            ModelSource::Local(dir.clone())
        );
    }

    #[test]
    fn missing_paths_and_bad_ids_are_errors_naming_them() {
        for spec in [
            "./no-such-models/qwen",
            "/no/such/model",
            "no-such-models/qwen/3",
            "~/m",
            "no-such-models/",
        ] {
            let err = ModelSource::parse(spec).unwrap_err().to_string();
            assert!(
                err.contains(spec) && err.contains("no such directory"),
                "{spec}: {err}"
            );
        }
        for spec in ["", "owner/", "owner name/x", "a/b@", "-x/y"] {
            assert!(
                ModelSource::parse(spec).is_err(),
                "{spec:?} should be rejected"
            );
        }
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let err = ModelSource::parse(tmp.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a file"), "{err}");
    }
}
