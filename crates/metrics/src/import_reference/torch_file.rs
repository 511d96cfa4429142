//! Reading a 2-D tensor saved with `torch.save(tensor, path)`.
//!
//! Such a file is a zip archive holding `<archive>/data.pkl` (a pickle whose object is a call to
//! `torch._utils._rebuild_tensor_v2` with a persistent-id reference to a storage) and `<archive>/data/<key>`
//! (the storage's raw little-endian bytes). Only what `torch.save` of one plain tensor writes is understood:
//! a small pickle subset, `LongStorage` or `FloatStorage`, a row-major layout. Anything else is reported as an
//! error naming the file, rather than guessed at, because a silently misread tensor would corrupt every
//! metric computed from it. (General pickle crates stop at the persistent-id opcode torch relies on, and
//! candle's reader only looks inside dictionaries, so this small walker is kept here.)

use std::io::Read;
use std::path::Path;

use crate::error::{io_err, Error, Result};

/// The element types the reference code saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDType {
    /// `torch.int64` (`LongStorage`): token ids.
    I64,
    /// `torch.float32` (`FloatStorage`): logprobs.
    F32,
}

impl TorchDType {
    fn size(self) -> usize {
        match self {
            TorchDType::I64 => 8,
            TorchDType::F32 => 4,
        }
    }
}

/// A 2-D tensor read from a `.pt` file, values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor2 {
    /// An int64 tensor.
    I64 {
        /// `[rows, cols]`.
        shape: [usize; 2],
        /// `rows * cols` values.
        data: Vec<i64>,
    },
    /// A float32 tensor.
    F32 {
        /// `[rows, cols]`.
        shape: [usize; 2],
        /// `rows * cols` values.
        data: Vec<f32>,
    },
}

impl Tensor2 {
    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        match self {
            Tensor2::I64 { shape, .. } | Tensor2::F32 { shape, .. } => *shape,
        }
    }
}

/// Read the tensor a `torch.save(tensor, path)` call wrote; it must be 2-D and int64 or float32.
///
/// ```no_run
/// # use reprolm_metrics::import_reference::{read_torch_tensor, Tensor2};
/// let t = read_torch_tensor("problem_0_math500_token_ids_bs_8_bfloat16_max_tokens_32768.pt".as_ref())?;
/// assert_eq!(t.shape()[1], 5);
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn read_torch_tensor(path: &Path) -> Result<Tensor2> {
    let bad = |reason: String| Error::TorchFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(format!(
            "not a torch.save zip archive (truncated or another format?): {e}"
        ))
    })?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| bad("the archive holds no data.pkl".into()))?;
    let prefix = pkl_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    let pkl = read_entry(&mut zip, &pkl_name).map_err(|e| bad(format!("{pkl_name}: {e}")))?;
    let object = Unpickler::new(&pkl)
        .run()
        .map_err(|e| bad(format!("{pkl_name}: {e}")))?;
    let spec = TensorSpec::from_object(object).map_err(|e| bad(format!("{pkl_name}: {e}")))?;
    let data_name = format!("{prefix}data/{}", spec.key);
    let bytes = read_entry(&mut zip, &data_name).map_err(|e| bad(format!("{data_name}: {e}")))?;
    spec.decode(&bytes)
        .map_err(|e| bad(format!("{data_name}: {e}")))
}

fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
) -> std::result::Result<Vec<u8>, String> {
    let mut entry = zip
        .by_name(name)
        .map_err(|e| format!("missing from the archive: {e}"))?;
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut out)
        .map_err(|e| format!("unreadable (truncated?): {e}"))?;
    Ok(out)
}

/// What the pickle says about the tensor.
#[derive(Debug)]
struct TensorSpec {
    dtype: TorchDType,
    key: String,
    storage_numel: usize,
    offset: usize,
    shape: [usize; 2],
    stride: [usize; 2],
}

impl TensorSpec {
    fn from_object(obj: Value) -> std::result::Result<TensorSpec, String> {
        let (callable, args) = match obj {
            Value::Reduce(c, a) => (*c, *a),
            other => return Err(format!("expected a saved tensor, found {}", other.kind())),
        };
        match &callable {
            Value::Global(m, n) if m == "torch._utils" && n == "_rebuild_tensor_v2" => {}
            other => {
                return Err(format!(
                    "expected torch._utils._rebuild_tensor_v2 (one saved tensor), found {}",
                    other.kind()
                ))
            }
        }
        let Value::Tuple(args) = args else {
            return Err("_rebuild_tensor_v2 arguments are not a tuple".into());
        };
        if args.len() < 4 {
            return Err(format!(
                "_rebuild_tensor_v2 has {} arguments, expected at least 4",
                args.len()
            ));
        }
        let Value::PersId(pid) = &args[0] else {
            return Err("first _rebuild_tensor_v2 argument is not a storage reference".into());
        };
        let Value::Tuple(pid) = pid.as_ref() else {
            return Err("storage reference is not a tuple".into());
        };
        let (dtype, key, numel) = match pid.as_slice() {
            [Value::Str(tag), Value::Global(m, n), Value::Str(key), _location, Value::Int(numel)]
                if tag == "storage" && m == "torch" =>
            {
                let dtype = match n.as_str() {
                    "LongStorage" => TorchDType::I64,
                    "FloatStorage" => TorchDType::F32,
                    other => return Err(format!("storage type torch.{other}; expected LongStorage (int64) or FloatStorage (float32)")),
                };
                (dtype, key.clone(), usize_of(*numel, "storage size")?)
            }
            _ => return Err(
                "storage reference is not ('storage', torch.<Type>Storage, key, location, numel)"
                    .into(),
            ),
        };
        let offset = match &args[1] {
            Value::Int(o) => usize_of(*o, "storage offset")?,
            _ => return Err("storage offset is not an integer".into()),
        };
        let dims = |v: &Value, what: &str| -> std::result::Result<[usize; 2], String> {
            match v {
                Value::Tuple(items) if items.len() == 2 => {
                    let mut out = [0; 2];
                    for (o, item) in out.iter_mut().zip(items) {
                        match item {
                            Value::Int(i) => *o = usize_of(*i, what)?,
                            _ => return Err(format!("{what} holds a non-integer")),
                        }
                    }
                    Ok(out)
                }
                Value::Tuple(items) => Err(format!(
                    "tensor has {} dimensions, expected 2 ([generated_tokens, k])",
                    items.len()
                )),
                _ => Err(format!("{what} is not a tuple")),
            }
        };
        let shape = dims(&args[2], "size")?;
        let stride = dims(&args[3], "stride")?;
        Ok(TensorSpec {
            dtype,
            key,
            storage_numel: numel,
            offset,
            shape,
            stride,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Tensor2, String> {
        let [rows, cols] = self.shape;
        let size = self.dtype.size();
        if bytes.len() < self.storage_numel * size {
            return Err(format!(
                "storage holds {} bytes, the pickle announces {} elements of {size} bytes (truncated?)",
                bytes.len(),
                self.storage_numel
            ));
        }
        let n = rows * cols;
        // Element (r, c) sits at offset + r*stride0 + c*stride1; check the furthest one is in the storage.
        if n > 0 {
            let last = self.offset + (rows - 1) * self.stride[0] + (cols - 1) * self.stride[1];
            if last >= self.storage_numel {
                return Err(format!(
                    "shape {:?} with stride {:?} and offset {} reaches past the storage's {} elements",
                    self.shape, self.stride, self.offset, self.storage_numel
                ));
            }
        }
        let at = |r: usize, c: usize| {
            let i = (self.offset + r * self.stride[0] + c * self.stride[1]) * size;
            &bytes[i..i + size]
        };
        let indices = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
        Ok(match self.dtype {
            TorchDType::I64 => Tensor2::I64 {
                shape: self.shape,
                data: indices
                    .map(|(r, c)| i64::from_le_bytes(at(r, c).try_into().expect("8 bytes")))
                    .collect(),
            },
            TorchDType::F32 => Tensor2::F32 {
                shape: self.shape,
                data: indices
                    .map(|(r, c)| f32::from_le_bytes(at(r, c).try_into().expect("4 bytes")))
                    .collect(),
            },
        })
    }
}

fn usize_of(v: i64, what: &str) -> std::result::Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} is negative ({v})"))
}

/// The pickle values a saved tensor uses.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Reduce(Box<Value>, Box<Value>),
    PersId(Box<Value>),
    Mark,
}

impl Value {
    fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict (a state_dict or several tensors, not one tensor)".into(),
            Value::Global(m, n) => format!("{m}.{n}"),
            Value::Reduce(c, _) => format!("a call to {}", c.kind()),
            Value::PersId(_) => "a storage reference".into(),
            Value::Mark => "a MARK".into(),
        }
    }
}

/// A stack machine for the opcodes of pickle protocol 2 that `torch.save` emits.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: std::collections::HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: Default::default(),
        }
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(format!("pickle ends early at byte {}", self.data.len()));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle ends inside a GLOBAL name")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> std::result::Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> std::result::Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> std::result::Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn run(mut self) -> std::result::Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not supported"));
                    }
                }
                b'.' => return self.pop(),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { u32::from(self.u8()?) } else { self.u32()? };
                    let v = self.memo.get(&i).cloned().ok_or(format!("memo {i} unset"))?;
                    self.stack.push(v);
                }
                b'(' => self.stack.push(Value::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err("APPENDS on a non-list".into()),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err("APPEND on a non-list".into()),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let Value::Dict(d) = self.top()? else {
                        return Err("SETITEM on a non-dict".into());
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())?;
                    self.stack.push(Value::Str(s.to_string()));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())?;
                    self.stack.push(Value::Str(s.to_string()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack.push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("LONG1 of {n} bytes does not fit in 64 bits"));
                    }
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut buf = [fill; 8];
                    buf[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(Value::PersId(Box::new(pid)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(Value::Reduce(Box::new(callable), Box::new(args)));
                }
                b'b' => {
                    // BUILD sets state on an object; the tensor's rebuild call never needs it.
                    self.pop()?;
                }
                0x94 => {
                    // MEMOIZE (protocol 4): memo index is the memo's current size.
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x95 => {
                    // FRAME (protocol 4): a length hint only.
                    self.take(8)?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {at} is not one torch.save writes for a tensor"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_sign_extends() {
        // PROTO 2, LONG1 2 bytes 0xff 0xff (= -1), STOP
        let v = Unpickler::new(&[0x80, 2, 0x8a, 2, 0xff, 0xff, b'.'])
            .run()
            .unwrap();
        assert_eq!(v, Value::Int(-1));
        let v = Unpickler::new(&[0x80, 2, 0x8a, 2, 0x00, 0x01, b'.'])
            .run()
            .unwrap();
        assert_eq!(v, Value::Int(256));
    }

    #[test]
    fn unknown_opcode_is_named() {
        let e = Unpickler::new(&[0x80, 2, b'Z', b'.']).run().unwrap_err();
        assert!(e.contains("0x5a") && e.contains("byte 2"), "{e}");
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let e = Unpickler::new(&[0x80, 2, b'X', 10, 0, 0, 0, b'a'])
            .run()
            .unwrap_err();
        assert!(e.contains("ends early"), "{e}");
    }
}
