//! Locating model files: local directories, sharded weights, and a Hub id resolved from a Hugging Face cache
//! laid out as `huggingface_hub` lays it out, offline.

use std::path::{Path, PathBuf};

use reprolm_engine::{
    sha256_file, GenerationConfig, HubAccess, ModelFiles, ModelSource, ResolveOptions, Tokenizer,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn tiny_tokenizer() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chat_templates/tokenizer.json"
    ))
    .unwrap()
}

/// A complete single-file model directory.
fn model_dir(dir: &Path) {
    write(
        dir,
        "config.json",
        r#"{"architectures": ["Qwen2ForCausalLM"], "eos_token_id": 2, "bos_token_id": 1}"#,
    );
    write(dir, "model.safetensors", "weights");
    write(dir, "tokenizer.json", &tiny_tokenizer());
    write(
        dir,
        "tokenizer_config.json",
        r#"{"eos_token": "<|im_end|>", "chat_template": "{{ messages[0].content }}"}"#,
    );
}

fn local(dir: &Path) -> ModelSource {
    ModelSource::parse(dir.to_str().unwrap()).unwrap()
}

fn offline(cache: &Path) -> ResolveOptions {
    ResolveOptions {
        hub_cache: cache.to_path_buf(),
        hub_access: HubAccess::Offline,
        endpoint: None,
        token: None,
        show_progress: false,
    }
}

#[test]
fn local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    model_dir(tmp.path());
    let files = ModelFiles::resolve(&local(tmp.path())).unwrap();
    assert_eq!(files.config, tmp.path().join("config.json"));
    assert_eq!(files.weights, [tmp.path().join("model.safetensors")]);
    assert_eq!(files.weights_index, None);
    assert_eq!(files.tokenizer, tmp.path().join("tokenizer.json"));
    assert_eq!(
        files.tokenizer_config,
        Some(tmp.path().join("tokenizer_config.json"))
    );
    assert_eq!(
        (
            files.generation_config.as_ref(),
            files.chat_template_file.as_ref(),
            files.commit.as_ref()
        ),
        (None, None, None)
    );

    // The lead's four lines work on it.
    let tok = Tokenizer::from_file(&files.tokenizer).unwrap();
    assert!(tok.vocab_size() > 0);
    let gen = GenerationConfig::load(&files).unwrap();
    assert_eq!((gen.eos_token_ids, gen.bos_token_id), (vec![2], Some(1)));

    let digests = files.weight_sha256().unwrap();
    assert_eq!(digests.len(), 1);
    // sha256("weights")
    assert_eq!(
        digests[0].sha256,
        "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c"
    );
    assert_eq!(
        (digests[0].file.as_str(), digests[0].bytes),
        ("model.safetensors", 7)
    );
}

#[test]
fn sharded_weights_in_index_order() {
    let tmp = tempfile::tempdir().unwrap();
    model_dir(tmp.path());
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    write(
        tmp.path(),
        "model.safetensors.index.json",
        r#"{"metadata": {"total_size": 10},
            "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors",
                           "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                           "model.norm.weight": "model-00002-of-00002.safetensors"}}"#,
    );
    write(tmp.path(), "model-00001-of-00002.safetensors", "one");
    let err = ModelFiles::resolve(&local(tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("model file `model-00002-of-00002.safetensors` not found in")
            && err.contains("model.safetensors.index.json lists it"),
        "{err}"
    );
    write(tmp.path(), "model-00002-of-00002.safetensors", "two");
    let files = ModelFiles::resolve(&local(tmp.path())).unwrap();
    assert_eq!(
        files.weights,
        [
            tmp.path().join("model-00001-of-00002.safetensors"),
            tmp.path().join("model-00002-of-00002.safetensors")
        ]
    );
    assert_eq!(
        files.weights_index,
        Some(tmp.path().join("model.safetensors.index.json"))
    );
    let names: Vec<String> = files
        .weight_sha256()
        .unwrap()
        .into_iter()
        .map(|d| d.file)
        .collect();
    assert_eq!(
        names,
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
}

#[test]
fn missing_files_are_named_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    model_dir(tmp.path());
    let dir = tmp.path().display().to_string();

    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    write(tmp.path(), "tokenizer.model", "sentencepiece");
    let err = ModelFiles::resolve(&local(tmp.path()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "model file `tokenizer.json` not found in {dir}; only the fast-tokenizer file tokenizer.json is \
             supported (save the tokenizer with transformers to make it)"
        )
    );

    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    write(tmp.path(), "pytorch_model.bin", "pickle");
    let err = ModelFiles::resolve(&local(tmp.path()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "model file `model.safetensors` not found in {dir}; found only pytorch_model.bin weights: convert them \
             to safetensors"
        )
    );

    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let err = ModelFiles::resolve(&local(tmp.path()))
        .unwrap_err()
        .to_string();
    assert_eq!(err, format!("model file `config.json` not found in {dir}"));
}

/// `models--owner--name/{blobs, refs/main, snapshots/<commit>/...}`, snapshot entries symlinked to blobs as
/// huggingface_hub does on Unix.
fn fake_hub_cache(cache: &Path, repo: &str, with_tokenizer: bool) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let staged = tempfile::tempdir().unwrap();
    model_dir(staged.path());
    write(
        staged.path(),
        "generation_config.json",
        r#"{"eos_token_id": [7, 8], "temperature": 0.6}"#,
    );
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(staged.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name == "tokenizer.json" && !with_tokenizer {
            continue;
        }
        let blob = write(
            &repo_dir.join("blobs"),
            &format!("blob-{name}"),
            &std::fs::read_to_string(entry.path()).unwrap(),
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, snapshot.join(&name)).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, snapshot.join(&name)).unwrap();
    }
    write(&repo_dir, "refs/main", COMMIT);
    snapshot
}

#[test]
fn hub_id_resolves_offline_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = fake_hub_cache(cache.path(), "owner/name", true);
    let opts = offline(cache.path());

    let files =
        ModelFiles::resolve_with(&ModelSource::parse("owner/name").unwrap(), &opts).unwrap();
    assert_eq!(files.commit.as_deref(), Some(COMMIT));
    assert_eq!(files.config, snapshot.join("config.json"));
    assert_eq!(files.weights, [snapshot.join("model.safetensors")]);
    assert_eq!(
        files.generation_config,
        Some(snapshot.join("generation_config.json"))
    );
    assert_eq!(
        GenerationConfig::load(&files).unwrap().eos_token_ids,
        [7, 8]
    );
    // Hashing follows the symlink to the blob; the digest keeps the repository's file name.
    let digest = &files.weight_sha256().unwrap()[0];
    let blob = sha256_file(
        &cache
            .path()
            .join("models--owner--name/blobs/blob-model.safetensors"),
    )
    .unwrap();
    assert_eq!(
        (digest.file.as_str(), &digest.sha256, digest.bytes),
        ("model.safetensors", &blob.sha256, 7)
    );

    // A commit hash needs no ref.
    let by_commit = ModelSource::parse(&format!("owner/name@{COMMIT}")).unwrap();
    assert_eq!(
        ModelFiles::resolve_with(&by_commit, &opts).unwrap().config,
        snapshot.join("config.json")
    );
}

#[test]
fn offline_hub_errors_name_file_repo_and_fix() {
    let cache = tempfile::tempdir().unwrap();
    fake_hub_cache(cache.path(), "owner/name", false);
    let opts = offline(cache.path());

    let err = ModelFiles::resolve_with(&ModelSource::parse("owner/name").unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("model file `tokenizer.json` not found in Hub repository owner/name@main (cached snapshot"), "{err}");
    assert!(
        err.contains("HF_HUB_OFFLINE is set")
            && err.contains("huggingface-cli download owner/name"),
        "{err}"
    );

    let err = ModelFiles::resolve_with(&ModelSource::parse("owner/other@v2").unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("model file `config.json` not found in Hub repository owner/other@v2 (nothing cached under")
            && err.contains("models--owner--other")
            && err.contains("HF_HUB_OFFLINE is set"),
        "{err}"
    );
}

#[test]
fn online_resolution_reports_hub_errors_with_the_repo() {
    // Nothing listens on port 9 of localhost: the connection is refused at once, no real network is touched.
    let cache = tempfile::tempdir().unwrap();
    let opts = ResolveOptions {
        hub_access: HubAccess::Online,
        endpoint: Some("http://127.0.0.1:9".into()),
        ..offline(cache.path())
    };
    let err = ModelFiles::resolve_with(&ModelSource::parse("owner/name@dev").unwrap(), &opts)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, reprolm_engine::Error::Hub { .. }), "{msg}");
    assert!(
        msg.starts_with("hub owner/name@dev:") && msg.contains("HF_HUB_OFFLINE=1"),
        "{msg}"
    );
}

#[test]
fn a_base_model_has_no_chat_template_and_load_says_so() {
    use reprolm_engine::ChatTemplate;
    let tmp = tempfile::tempdir().unwrap();
    model_dir(tmp.path());
    let files = ModelFiles::resolve(&ModelSource::Local(tmp.path().to_path_buf())).unwrap();
    assert!(ChatTemplate::find(&files).unwrap().is_some());
    write(
        tmp.path(),
        "tokenizer_config.json",
        r#"{"eos_token": "<|im_end|>", "chat_template": null}"#,
    );
    assert!(ChatTemplate::find(&files).unwrap().is_none());
    let err = ChatTemplate::load(&files).unwrap_err().to_string();
    assert!(err.contains("field `chat_template`: absent"), "{err}");
    write(tmp.path(), "chat_template.jinja", "{{ bos_token }}");
    let files = ModelFiles::resolve(&ModelSource::Local(tmp.path().to_path_buf())).unwrap();
    assert!(
        ChatTemplate::find(&files).unwrap().is_some(),
        "chat_template.jinja wins"
    );
}
