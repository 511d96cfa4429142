//! Hub datasets through the local Hugging Face cache.
//!
//! A file already in the cache is used as it is, without asking the Hub whether it changed: runs must
//! not depend on network state. With `HF_HUB_OFFLINE` set, a file missing from the cache is an error
//! that says so; otherwise it is downloaded once into the cache. The cache is `HF_HUB_CACHE`, else
//! `HF_HOME/hub`, else `~/.cache/huggingface/hub` (the Python library's order).

use std::path::PathBuf;

use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Files of one revision of a Hub dataset repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubDataset {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` by default.
    pub revision: String,
    /// Paths inside the repository, read in this order.
    pub files: Vec<String>,
}

impl HubDataset {
    /// Files of `repo` at `main`.
    pub fn new(repo: &str, files: &[&str]) -> Self {
        HubDataset {
            repo: repo.into(),
            revision: "main".into(),
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// Whether the user asked for no network (`HF_HUB_OFFLINE` = 1 / true / yes / on).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The cache directory in use.
pub fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => Cache::new(PathBuf::from(dir)),
        None => Cache::from_env(),
    }
}

/// Local paths of the dataset's files, in the order listed.
pub fn resolve(h: &HubDataset) -> Result<Vec<PathBuf>> {
    resolve_in(&cache(), offline(), h)
}

pub(crate) fn resolve_in(cache: &Cache, offline: bool, h: &HubDataset) -> Result<Vec<PathBuf>> {
    let repo = Repo::with_revision(h.repo.clone(), RepoType::Dataset, h.revision.clone());
    let err = |file: &str, reason: String| Error::Hub {
        repo: h.repo.clone(),
        revision: h.revision.clone(),
        file: file.into(),
        reason,
    };
    let mut out = Vec::with_capacity(h.files.len());
    for file in &h.files {
        if let Some(p) = cached(cache, &repo, h, file) {
            out.push(p);
            continue;
        }
        if offline {
            return Err(err(
                file,
                format!(
                    "not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set; fetch it once online, or give a local path",
                    cache.path().display()
                ),
            ));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
            .with_progress(false)
            .build()
            .map_err(|e| err(file, e.to_string()))?;
        let p = api
            .repo(repo.clone())
            .get(file)
            .map_err(|e| err(file, format!("download failed: {e}")))?;
        out.push(p);
    }
    Ok(out)
}

/// The cached file, by ref (branch/tag) or, for a commit hash, straight from its snapshot.
fn cached(cache: &Cache, repo: &Repo, h: &HubDataset, file: &str) -> Option<PathBuf> {
    if let Some(p) = cache.repo(repo.clone()).get(file) {
        return Some(p);
    }
    let is_commit = h.revision.len() == 40 && h.revision.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit {
        let p = cache
            .path()
            .join(repo.folder_name())
            .join("snapshots")
            .join(&h.revision)
            .join(file);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Lays out a cache the way `huggingface_hub` does: refs/main holds the commit, the file lives
    /// under snapshots/<commit>/.
    fn fake_cache(dir: &std::path::Path) -> Cache {
        let repo = dir.join("datasets--org--bench");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::write(repo.join("refs/main"), commit).unwrap();
        fs::create_dir_all(repo.join("snapshots").join(commit).join("data")).unwrap();
        fs::write(
            repo.join("snapshots").join(commit).join("data/test.jsonl"),
            "{\"q\": 1}\n",
        )
        .unwrap();
        Cache::new(dir.to_path_buf())
    }

    #[test]
    fn cached_files_resolve_offline() {
        let dir = tempfile::tempdir().unwrap();
        let cache = fake_cache(dir.path());
        let got = resolve_in(
            &cache,
            true,
            &HubDataset::new("org/bench", &["data/test.jsonl"]),
        )
        .unwrap();
        assert!(got[0].ends_with("data/test.jsonl") && got[0].exists());
        let by_commit = HubDataset {
            repo: "org/bench".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            files: vec!["data/test.jsonl".into()],
        };
        assert_eq!(resolve_in(&cache, true, &by_commit).unwrap(), got);
    }

    #[test]
    fn offline_miss_says_offline_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = fake_cache(dir.path());
        let e = resolve_in(
            &cache,
            true,
            &HubDataset::new("org/bench", &["test2.jsonl"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("org/bench") && e.contains("test2.jsonl") && e.contains("HF_HUB_OFFLINE"),
            "{e}"
        );
    }
}
