//! SHA-256 of model files, for run manifests.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The digest of one file as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    /// The file name as the model repository names it (e.g. `model-00001-of-00004.safetensors`).
    pub file: String,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Hashes a file in 1 MiB chunks, so multi-gigabyte shards never sit in memory.
///
/// Symlinks are followed: in the Hub cache the snapshot entries point at content-addressed blobs.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("x");
/// std::fs::write(&path, b"abc").unwrap();
/// let d = reprolm_engine::sha256_file(&path).unwrap();
/// assert_eq!(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!((d.file.as_str(), d.bytes), ("x", 3));
/// ```
pub fn sha256_file(path: &Path) -> Result<FileDigest> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut reader, &mut hasher).map_err(io_err)?;
    Ok(FileDigest {
        file: file_name(path),
        sha256: hex(&hasher.finalize()),
        bytes,
    })
}

/// SHA-256 of bytes already in memory, as lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || PathBuf::from(path).display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
