//! Text to token ids and back, through the `tokenizers` crate that transformers' fast tokenizers also use.

use std::path::{Path, PathBuf};

use crate::digest::sha256_hex;
use crate::error::{Error, Result};

/// Whether encoding runs the tokenizer's post-processor, which adds BOS (Llama, DeepSeek-R1) or nothing (Qwen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialTokens {
    /// Add them: `tokenizer(text)` in transformers.
    Add,
    /// Leave them out: what `apply_chat_template` does, since the chat template already wrote BOS.
    Skip,
}

/// Whether decoding keeps special tokens such as `<|im_end|>` in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeSpecialTokens {
    /// Keep them, to see exactly what the model produced.
    Keep,
    /// Drop them (`skip_special_tokens=True`), for text handed to scoring.
    Skip,
}

/// A tokenizer.json with the hash that identifies it in manifests.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    sha256: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads tokenizer.json; the file is read once and hashed from the same bytes it is parsed from.
    ///
    /// ```
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates/tokenizer.json");
    /// use reprolm_engine::{DecodeSpecialTokens, SpecialTokens, Tokenizer};
    /// let tok = Tokenizer::from_file(path)?;
    /// let ids = tok.encode("<|im_start|>user\nhi", SpecialTokens::Skip)?;
    /// assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
    /// assert_eq!(tok.decode(&ids, DecodeSpecialTokens::Keep)?, "<|im_start|>user\nhi");
    /// assert_eq!(tok.sha256().len(), 64);
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("cannot load: {e}"),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
        })
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str, special: SpecialTokens) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, special == SpecialTokens::Add)
            .map_err(|e| self.error(format!("encoding {} bytes of text: {e}", text.len())))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32], special: DecodeSpecialTokens) -> Result<String> {
        self.inner
            .decode(ids, special == DecodeSpecialTokens::Skip)
            .map_err(|e| self.error(format!("decoding {} ids: {e}", ids.len())))
    }

    /// The id of a token string, added tokens included.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer can produce, added tokens included. The model's embedding table may be
    /// larger (padded to a multiple of 64 or 128).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Lower-case hex SHA-256 of tokenizer.json, for the run manifest.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The tokenizer.json this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying `tokenizers` tokenizer, for what this wrapper does not cover (e.g. streaming decode).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn error(&self, reason: String) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Tokenizer {
        Tokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chat_templates/tokenizer.json"
        ))
        .unwrap()
    }

    #[test]
    fn add_prepends_bos_and_skip_does_not() {
        let tok = fixture();
        let bos = tok.token_to_id("<|begin_of_text|>").unwrap();
        let skip = tok.encode("What is 1 + 1?", SpecialTokens::Skip).unwrap();
        let add = tok.encode("What is 1 + 1?", SpecialTokens::Add).unwrap();
        assert_eq!(add[0], bos);
        assert_eq!(&add[1..], &skip[..]);
        assert_eq!(tok.id_to_token(bos).as_deref(), Some("<|begin_of_text|>"));
    }

    #[test]
    fn decode_can_drop_special_tokens() {
        let tok = fixture();
        let ids = tok
            .encode("<|im_start|>user\nhi<|im_end|>", SpecialTokens::Skip)
            .unwrap();
        assert_eq!(
            tok.decode(&ids, DecodeSpecialTokens::Skip).unwrap(),
            "user\nhi"
        );
        assert!(tok.vocab_size() >= 400);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{}").unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("cannot load"),
            "{err}"
        );
        let err = Tokenizer::from_file(dir.path().join("absent.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.json"), "{err}");
    }
}
