//! Finding a model's files: in a local directory, in the Hugging Face cache, or by downloading through hf-hub.
//!
//! Resolution only locates files; parsing them is left to [`Tokenizer`](crate::Tokenizer),
//! [`ChatTemplate`](crate::ChatTemplate), [`GenerationConfig`](crate::GenerationConfig) and the model code.
//! The cache is read first so a model downloaded once runs offline, and a Hub run that is offline gets an error
//! naming the first file that is not cached rather than a network timeout.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::digest::{sha256_file, FileDigest};
use crate::error::{Error, Result};
use crate::source::ModelSource;

/// Single-file weights, tried first as transformers does.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of sharded weights: `weight_map` maps each tensor name to its shard file.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// Whether resolution may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubAccess {
    /// Use the cache, download what it lacks.
    Online,
    /// Use the cache only (`HF_HUB_OFFLINE=1`).
    Offline,
}

/// Where the Hub cache is and whether the network may be used.
///
/// [`ResolveOptions::from_env`] reads the variables `huggingface_hub` reads, so a cache filled by
/// `huggingface-cli download` or by transformers is found.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The hub cache directory, holding `models--owner--name/`.
    pub hub_cache: PathBuf,
    /// Whether missing files may be downloaded.
    pub hub_access: HubAccess,
    /// The Hub endpoint (`HF_ENDPOINT`); `None` means <https://huggingface.co>.
    pub endpoint: Option<String>,
    /// An access token (`HF_TOKEN`) for gated or private repositories; `None` falls back to the cache's token
    /// file, as hf-hub does.
    pub token: Option<String>,
    /// Draw download progress bars on stderr.
    pub show_progress: bool,
}

impl ResolveOptions {
    /// Reads `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN`.
    ///
    /// ```
    /// let opts = reprolm_engine::ResolveOptions::from_env();
    /// assert!(opts.hub_cache.ends_with("hub") || std::env::var_os("HF_HUB_CACHE").is_some());
    /// ```
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`ResolveOptions::from_env`] with the environment given as a lookup, so tests need not mutate the
    /// process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let hub_cache = if let Some(dir) = var("HF_HUB_CACHE") {
            PathBuf::from(dir)
        } else if let Some(home) = var("HF_HOME") {
            PathBuf::from(home).join("hub")
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            PathBuf::from(xdg).join("huggingface").join("hub")
        } else {
            Cache::default().path().clone()
        };
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v));
        Self {
            hub_cache,
            hub_access: if offline {
                HubAccess::Offline
            } else {
                HubAccess::Online
            },
            endpoint: var("HF_ENDPOINT"),
            token: var("HF_TOKEN"),
            show_progress: true,
        }
    }
}

/// `huggingface_hub`'s reading of boolean variables.
fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// The files of one model, all present on local disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What was asked for.
    pub source: ModelSource,
    /// The commit the Hub files come from; `None` for a local directory.
    pub commit: Option<String>,
    /// config.json.
    pub config: PathBuf,
    /// model.safetensors, or the shards named in model.safetensors.index.json sorted by file name.
    pub weights: Vec<PathBuf>,
    /// model.safetensors.index.json when the weights are sharded.
    pub weights_index: Option<PathBuf>,
    /// tokenizer.json.
    pub tokenizer: PathBuf,
    /// tokenizer_config.json (special tokens, chat template), when present.
    pub tokenizer_config: Option<PathBuf>,
    /// generation_config.json (eos ids, default sampling parameters), when present.
    pub generation_config: Option<PathBuf>,
    /// chat_template.jinja, which takes priority over tokenizer_config.json's template, when present.
    pub chat_template_file: Option<PathBuf>,
}

impl ModelFiles {
    /// Locates every file with [`ResolveOptions::from_env`].
    ///
    /// ```no_run
    /// use reprolm_engine::{ModelFiles, ModelSource};
    /// let files = ModelFiles::resolve(&ModelSource::parse("Qwen/Qwen3-0.6B")?)?;
    /// println!("{} weight files at commit {:?}", files.weights.len(), files.commit);
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn resolve(source: &ModelSource) -> Result<Self> {
        Self::resolve_with(source, &ResolveOptions::from_env())
    }

    /// Locates every file, downloading what the cache lacks unless `opts` says offline.
    pub fn resolve_with(source: &ModelSource, opts: &ResolveOptions) -> Result<Self> {
        match source {
            ModelSource::Local(dir) => {
                let mut store = DirStore {
                    dir: dir.clone(),
                    location: dir.display().to_string(),
                    hint: String::new(),
                };
                collect(source, &mut store)
            }
            ModelSource::Hub { repo, revision } => resolve_hub(source, repo, revision, opts),
        }
    }

    /// SHA-256 of every weight file, in [`ModelFiles::weights`] order, for the run manifest.
    ///
    /// Reads every byte of every shard (64 GB for a 32B model in bf16), so call it once per run.
    pub fn weight_sha256(&self) -> Result<Vec<FileDigest>> {
        self.weights.iter().map(|p| sha256_file(p)).collect()
    }
}

/// A place files are looked up in.
trait Store {
    /// The file's local path, fetching it if needed; `None` when the model has no such file.
    fn fetch(&mut self, name: &str) -> Result<Option<PathBuf>>;
    /// Whether the model has the file, without fetching it.
    fn has(&mut self, name: &str) -> Result<bool>;
    /// Where we looked, for error messages.
    fn location(&self) -> String;
    /// How to fix a missing file, starting with "; ", or empty.
    fn hint(&self) -> String;
    /// The commit the files belong to.
    fn commit(&self) -> Option<String>;
}

/// A local directory: a model directory or a cached Hub snapshot.
struct DirStore {
    dir: PathBuf,
    location: String,
    hint: String,
}

impl Store for DirStore {
    fn fetch(&mut self, name: &str) -> Result<Option<PathBuf>> {
        let path = self.dir.join(name);
        Ok(path.is_file().then_some(path))
    }
    fn has(&mut self, name: &str) -> Result<bool> {
        Ok(self.dir.join(name).is_file())
    }
    fn location(&self) -> String {
        self.location.clone()
    }
    fn hint(&self) -> String {
        self.hint.clone()
    }
    fn commit(&self) -> Option<String> {
        None
    }
}

/// A cached snapshot is a directory store that knows its commit.
struct SnapshotStore {
    dir: DirStore,
    commit: String,
}

impl Store for SnapshotStore {
    fn fetch(&mut self, name: &str) -> Result<Option<PathBuf>> {
        self.dir.fetch(name)
    }
    fn has(&mut self, name: &str) -> Result<bool> {
        self.dir.has(name)
    }
    fn location(&self) -> String {
        self.dir.location()
    }
    fn hint(&self) -> String {
        self.dir.hint()
    }
    fn commit(&self) -> Option<String> {
        Some(self.commit.clone())
    }
}

/// The Hub through hf-hub's blocking client; files land in the same cache [`SnapshotStore`] reads.
struct OnlineStore {
    api_repo: ApiRepo,
    repo: String,
    revision: String,
    cache_repo_dir: PathBuf,
    commit: String,
    siblings: BTreeSet<String>,
}

impl OnlineStore {
    fn connect(repo: &str, revision: &str, opts: &ResolveOptions) -> Result<Self> {
        let hub_err = |e: hf_hub::api::sync::ApiError| {
            Error::Hub {
            repo: format!("{repo}@{revision}"),
            reason: format!(
                "{e}; set HF_TOKEN for gated or private repositories, or HF_HUB_OFFLINE=1 to use only the cache"
            ),
        }
        };
        let mut builder = ApiBuilder::from_cache(Cache::new(opts.hub_cache.clone()))
            .with_progress(opts.show_progress);
        if let Some(endpoint) = &opts.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if opts.token.is_some() {
            builder = builder.with_token(opts.token.clone());
        }
        let api: Api = builder.build().map_err(hub_err)?;
        let api_repo = api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let info = api_repo.info().map_err(hub_err)?;
        Ok(Self {
            api_repo,
            repo: repo.to_string(),
            revision: revision.to_string(),
            cache_repo_dir: opts.hub_cache.join(repo_folder(repo)),
            commit: info.sha,
            siblings: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }
}

impl Store for OnlineStore {
    fn fetch(&mut self, name: &str) -> Result<Option<PathBuf>> {
        if !self.siblings.contains(name) {
            return Ok(None);
        }
        // Reuse a file of this very commit if an earlier run cached it; hf-hub's own cache check follows the
        // ref, which may still point at an older commit.
        let cached = self
            .cache_repo_dir
            .join("snapshots")
            .join(&self.commit)
            .join(name);
        if cached.is_file() {
            return Ok(Some(cached));
        }
        let path = self.api_repo.download(name).map_err(|e| Error::Hub {
            repo: format!("{}@{}", self.repo, self.revision),
            reason: format!("downloading {name}: {e}"),
        })?;
        Ok(Some(path))
    }
    fn has(&mut self, name: &str) -> Result<bool> {
        Ok(self.siblings.contains(name))
    }
    fn location(&self) -> String {
        format!(
            "Hub repository {}@{} (commit {})",
            self.repo, self.revision, self.commit
        )
    }
    fn hint(&self) -> String {
        String::new()
    }
    fn commit(&self) -> Option<String> {
        Some(self.commit.clone())
    }
}

/// `models--owner--name`, the cache folder of a model repository.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cached snapshot for `revision`: `refs/<revision>` names the commit, or the revision is a commit itself.
fn cached_snapshot(cache: &Path, repo: &str, revision: &str) -> Option<(PathBuf, String)> {
    let repo_dir = cache.join(repo_folder(repo));
    let commit = match std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        Ok(s) => s.trim().to_string(),
        Err(_) if is_commit_hash(revision) => revision.to_string(),
        Err(_) => return None,
    };
    let dir = repo_dir.join("snapshots").join(&commit);
    dir.is_dir().then_some((dir, commit))
}

fn resolve_hub(
    source: &ModelSource,
    repo: &str,
    revision: &str,
    opts: &ResolveOptions,
) -> Result<ModelFiles> {
    let offline_hint = format!(
        "; HF_HUB_OFFLINE is set (or offline was requested): download the model on a machine with network \
         access into the Hugging Face cache {} (e.g. `huggingface-cli download {repo} --revision {revision}`), \
         or use a local model directory",
        opts.hub_cache.display()
    );
    if let Some((dir, commit)) = cached_snapshot(&opts.hub_cache, repo, revision) {
        let location = format!(
            "Hub repository {repo}@{revision} (cached snapshot {})",
            dir.display()
        );
        let hint = if opts.hub_access == HubAccess::Offline {
            offline_hint.clone()
        } else {
            String::new()
        };
        let mut store = SnapshotStore {
            dir: DirStore {
                dir,
                location,
                hint,
            },
            commit,
        };
        match collect(source, &mut store) {
            Err(Error::MissingFile { .. }) if opts.hub_access == HubAccess::Online => {}
            done => return done,
        }
    } else if opts.hub_access == HubAccess::Offline {
        return Err(Error::MissingFile {
            file: "config.json".into(),
            location: format!(
                "Hub repository {repo}@{revision} (nothing cached under {})",
                opts.hub_cache.join(repo_folder(repo)).display()
            ),
            hint: offline_hint,
        });
    }
    let mut store = OnlineStore::connect(repo, revision, opts)?;
    let files = collect(source, &mut store)?;
    record_ref(&opts.hub_cache, repo, revision, &store.commit);
    Ok(files)
}

/// Points `refs/<revision>` at the commit just downloaded, as `huggingface_hub` does, so the next offline run
/// finds this snapshot. A failure only costs a later download, so it is not an error.
fn record_ref(cache: &Path, repo: &str, revision: &str, commit: &str) {
    if is_commit_hash(revision) {
        return;
    }
    let path = cache.join(repo_folder(repo)).join("refs").join(revision);
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(path, commit);
}

fn missing(store: &dyn Store, file: &str, extra_hint: &str) -> Error {
    Error::MissingFile {
        file: file.to_string(),
        location: store.location(),
        hint: format!("{extra_hint}{}", store.hint()),
    }
}

fn require(store: &mut dyn Store, name: &str, extra_hint: &str) -> Result<PathBuf> {
    store
        .fetch(name)?
        .ok_or_else(|| missing(store, name, extra_hint))
}

fn collect(source: &ModelSource, store: &mut dyn Store) -> Result<ModelFiles> {
    let config = require(store, "config.json", "")?;
    let (weights, weights_index) = if let Some(single) = store.fetch(WEIGHTS_FILE)? {
        (vec![single], None)
    } else if let Some(index) = store.fetch(WEIGHTS_INDEX_FILE)? {
        let shards = shards_from_index(&index)?;
        let hint = format!("; {} lists it", index.display());
        let weights = shards
            .iter()
            .map(|s| require(store, s, &hint))
            .collect::<Result<Vec<_>>>()?;
        (weights, Some(index))
    } else {
        let hint =
            if store.has("pytorch_model.bin")? || store.has("pytorch_model.bin.index.json")? {
                "; found only pytorch_model.bin weights: convert them to safetensors"
            } else {
                "; no model.safetensors.index.json either"
            };
        return Err(missing(store, WEIGHTS_FILE, hint));
    };
    let tokenizer_hint = if store.has("tokenizer.model")? || store.has("vocab.json")? {
        "; only the fast-tokenizer file tokenizer.json is supported (save the tokenizer with transformers to make it)"
    } else {
        ""
    };
    let tokenizer = require(store, "tokenizer.json", tokenizer_hint)?;
    Ok(ModelFiles {
        source: source.clone(),
        commit: store.commit(),
        config,
        weights,
        weights_index,
        tokenizer,
        tokenizer_config: store.fetch("tokenizer_config.json")?,
        generation_config: store.fetch("generation_config.json")?,
        chat_template_file: store.fetch("chat_template.jinja")?,
    })
}

/// Reads and parses a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The distinct shard files of an index, sorted (`model-00001-of-00004.safetensors` first).
fn shards_from_index(index: &Path) -> Result<Vec<String>> {
    let bad = |field: String, reason: &str| Error::BadField {
        path: index.to_path_buf(),
        field,
        reason: reason.into(),
    };
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("weight_map".into(), "missing or not an object"))?;
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map.{tensor}"), "expected a file name"))?;
        let relative = Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if file.is_empty() || !relative {
            return Err(bad(
                format!("weight_map.{tensor}"),
                "expected a file name inside the model directory",
            ));
        }
        shards.insert(file.to_string());
    }
    if shards.is_empty() {
        return Err(bad("weight_map".into(), "lists no tensors"));
    }
    Ok(shards.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_pairs(pairs: &[(&str, &str)]) -> ResolveOptions {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResolveOptions::from_vars(|k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn env_precedence_follows_huggingface_hub() {
        let o = from_pairs(&[("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c")]);
        assert_eq!(o.hub_cache, PathBuf::from("/c"));
        let o = from_pairs(&[("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(o.hub_cache, PathBuf::from("/h/hub"));
        let o = from_pairs(&[("XDG_CACHE_HOME", "/x")]);
        assert_eq!(o.hub_cache, PathBuf::from("/x/huggingface/hub"));
        assert_eq!(o.hub_access, HubAccess::Online);
        for on in ["1", "true", "YES", "on"] {
            assert_eq!(
                from_pairs(&[("HF_HUB_OFFLINE", on)]).hub_access,
                HubAccess::Offline,
                "{on}"
            );
        }
        let o = from_pairs(&[("HF_HUB_OFFLINE", "0"), ("HF_TOKEN", "t")]);
        assert_eq!(
            (o.hub_access, o.token.as_deref()),
            (HubAccess::Online, Some("t"))
        );
    }

    #[test]
    fn index_shards_are_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join(WEIGHTS_INDEX_FILE);
        std::fs::write(
            &index,
            r#"{"metadata": {}, "weight_map": {"a": "m-00002-of-00002.safetensors",
                "b": "m-00001-of-00002.safetensors", "c": "m-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            shards_from_index(&index).unwrap(),
            [
                "m-00001-of-00002.safetensors",
                "m-00002-of-00002.safetensors"
            ]
        );
        std::fs::write(&index, r#"{"weight_map": {"a": "../escape.safetensors"}}"#).unwrap();
        let err = shards_from_index(&index).unwrap_err().to_string();
        assert!(
            err.contains("weight_map.a") && err.contains("inside the model directory"),
            "{err}"
        );
        std::fs::write(&index, r#"{"metadata": {}}"#).unwrap();
        let err = shards_from_index(&index).unwrap_err().to_string();
        assert!(err.contains("field `weight_map`"), "{err}");
    }
}
