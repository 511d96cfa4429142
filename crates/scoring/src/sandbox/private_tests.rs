//! Decoding LiveCodeBench's compressed `private_test_cases` field.
//!
//! The release stores private tests as `base64(zlib(pickle(json_text)))`, where the pickle
//! holds one Python `str`. Only the handful of pickle opcodes that serialise a single string
//! are accepted, so no arbitrary object is ever constructed from the file.

use std::io::Read;

use base64::Engine;

/// The JSON text inside a compressed `private_test_cases` value.
pub(crate) fn decode(field: &str) -> Result<String, String> {
    let zipped = base64::engine::general_purpose::STANDARD
        .decode(field.trim().as_bytes())
        .map_err(|e| format!("not base64: {e}"))?;
    let mut pickled = Vec::new();
    flate2::read::ZlibDecoder::new(zipped.as_slice())
        .read_to_end(&mut pickled)
        .map_err(|e| format!("not zlib data: {e}"))?;
    unpickle_str(&pickled)
}

/// Reads a pickle (protocols 2-5) whose only object is a `str`.
fn unpickle_str(b: &[u8]) -> Result<String, String> {
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = b.get(*i..*i + n).ok_or("truncated pickle")?;
        *i += n;
        Ok(s)
    };
    let le = |s: &[u8]| {
        s.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    };
    let mut value = None;
    loop {
        let op = *take(&mut i, 1)?.first().expect("one byte");
        match op {
            0x80 => i += 1, // PROTO n
            0x95 => i += 8, // FRAME len
            0x94 => {}      // MEMOIZE
            b'q' => i += 1, // BINPUT
            b'r' => i += 4, // LONG_BINPUT
            0x8c | b'X' | 0x8d if value.is_none() => {
                let width = match op {
                    0x8c => 1, // SHORT_BINUNICODE
                    b'X' => 4, // BINUNICODE
                    _ => 8,    // BINUNICODE8
                };
                let len = le(take(&mut i, width)?) as usize;
                let text = take(&mut i, len)?;
                value = Some(String::from_utf8(text.to_vec()).map_err(|_| "string is not UTF-8")?);
            }
            b'.' => return value.ok_or_else(|| "pickle holds no string".to_string()),
            other => {
                return Err(format!(
                    "unsupported pickle opcode {other:#04x} (expected a single str)"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with: base64.b64encode(zlib.compress(pickle.dumps(json.dumps(
    //   [{"input": "1\n", "output": "2\n", "testtype": "stdin"}])))) on Python 3.11 (protocol 4).
    const SAMPLE: &str =
        "eJxrYJlqwwABPRbR1UqZeQWlJUpWCkqGMXlKOgpK+aUlUAEjiEBJanFJSWVBKkiouCQlM0+pNnaKHgCVCRRG";

    #[test]
    fn decodes_the_release_format() {
        let json = decode(SAMPLE).unwrap();
        assert_eq!(
            json,
            r#"[{"input": "1\n", "output": "2\n", "testtype": "stdin"}]"#
        );
    }

    #[test]
    fn rejects_other_pickles_and_garbage() {
        // pickle.dumps([1]) (protocol 2): a list, not a str.
        assert!(unpickle_str(b"\x80\x02]q\x00K\x01a.")
            .unwrap_err()
            .contains("opcode"));
        assert!(unpickle_str(b"\x80\x02X\x05\x00\x00\x00ab")
            .unwrap_err()
            .contains("truncated"));
        assert!(decode("%%%").unwrap_err().contains("base64"));
        assert!(decode("aGVsbG8=").unwrap_err().contains("zlib"));
        // Protocol 2/3 use BINUNICODE with BINPUT.
        assert_eq!(
            unpickle_str(b"\x80\x03X\x02\x00\x00\x00hiq\x00.").unwrap(),
            "hi"
        );
    }
}
