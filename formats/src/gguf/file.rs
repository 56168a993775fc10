//! The parsed file: one validating walk, then lazy zero-copy access.

use core::fmt;

use super::cursor::Cursor;
use super::error::{GgufError, Item, Name};
use super::tensor::{place, read_info, TensorInfo};
use super::value::{read_value, skip_value, value_type, ArrayView, Check, Value, ValueType};
use super::{ALIGNMENT_KEY, ARCHITECTURE_KEY, DEFAULT_ALIGNMENT, MAGIC};

mod iter;

pub use iter::{Metadata, Tensors};

/// Bytes of the fixed header: magic, version, tensor count, metadata count.
const HEADER_LEN: usize = 4 + 4 + 8 + 8;

/// A GGUF file (version 2 or 3, little-endian) borrowed from a byte slice.
///
/// [`Gguf::parse`] walks the whole header once and checks everything (see the
/// module docs); afterwards every accessor re-reads the bytes lazily and
/// cannot fail on them. Nothing is copied and nothing is allocated.
#[derive(Clone, Copy)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    version: u32,
    tensor_count: u64,
    kv_count: u64,
    /// Offset of the first metadata entry.
    kv_start: usize,
    /// Offset of the first tensor info.
    tensors_start: usize,
    /// Offset of the data section (aligned).
    data_start: u64,
    alignment: u32,
}

impl<'a> Gguf<'a> {
    /// Parse and validate a whole GGUF file.
    ///
    /// Checks: the magic; version 2 or 3 (1 and big-endian files are refused
    /// with their own errors); every metadata entry (UTF-8 key, known value
    /// type, lengths inside the file, UTF-8 strings, booleans 0 or 1, arrays
    /// nested at most [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH) deep);
    /// `general.alignment` a `u32` power of two (default 32); every tensor
    /// info (UTF-8 name, at most four dimensions, a type lode reads, rows of
    /// whole blocks, sizes without overflow); and every tensor's data aligned,
    /// after the previous tensor's data, and inside the file.
    ///
    /// Work is linear in the file's header bytes: no count is trusted beyond
    /// what the remaining bytes could hold.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        let mut c = Cursor::at(bytes, 0);
        let header = |e: GgufError| e.within(Item::Header);

        let magic: [u8; 4] = c.array().map_err(header)?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32().map_err(header)?;
        check_version(version)?;
        let tensor_count = c.u64().map_err(header)?;
        let kv_count = c.u64().map_err(header)?;
        debug_assert_eq!(c.pos(), HEADER_LEN);
        let kv_start = c.pos();

        // Metadata: validate each entry fully, watching for the alignment.
        // Lookups return the first entry of a key, so only the first
        // `general.alignment` counts here too.
        let mut alignment = None;
        for index in 0..kv_count {
            let (key, ty) = read_key_and_type(&mut c, index)?;
            let item = Item::KeyValue {
                index,
                key: Some(Name::new(key)),
            };
            if key == ALIGNMENT_KEY && alignment.is_none() {
                let mut v = c;
                let value = read_value(&mut v, ty, 0, Check::Full).map_err(|e| e.within(item))?;
                alignment = Some(parse_alignment(value)?);
            }
            skip_value(&mut c, ty, 0, Check::Full).map_err(|e| e.within(item))?;
        }
        let alignment = alignment.unwrap_or(DEFAULT_ALIGNMENT);

        // Tensor infos, first pass: structure, types and sizes.
        let tensors_start = c.pos();
        for index in 0..tensor_count {
            read_info(&mut c, index)?;
        }

        // The data section starts at the next multiple of the alignment.
        let data_start = align_up(c.pos() as u64, alignment).ok_or(GgufError::Truncated {
            offset: c.pos() as u64,
            item: Item::Header,
        })?;

        // Second pass: place each tensor's data now that the section is known.
        let file = Gguf {
            bytes,
            version,
            tensor_count,
            kv_count,
            kv_start,
            tensors_start,
            data_start,
            alignment,
        };
        let mut c = Cursor::at(bytes, tensors_start);
        let mut previous_end = 0u64;
        for index in 0..tensor_count {
            let raw = read_info(&mut c, index)?;
            let info = place(raw, data_start, alignment, bytes.len() as u64, previous_end)?;
            previous_end = raw.rel_offset.saturating_add(info.len_bytes);
        }
        Ok(file)
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Alignment of the data section and of every tensor's data.
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// The model's identity: the CRC-32C of the file's metadata and tensor
    /// table (everything before the data), so an image, a trace or a pruned
    /// image can be matched to the file it came from. The tensor data is
    /// left out: hashing ~100 MB on every command would cost more than it
    /// protects, and the table already pins every tensor's name, shape,
    /// type and offset.
    pub fn fingerprint(&self) -> u64 {
        let bytes = self.bytes();
        let end = usize::try_from(self.data_offset()).unwrap_or(usize::MAX);
        u64::from(crate::checksum::crc32c(
            bytes.get(..end.min(bytes.len())).unwrap_or(bytes),
        ))
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_start
    }

    /// Number of metadata entries.
    pub fn metadata_count(&self) -> u64 {
        self.kv_count
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> u64 {
        self.tensor_count
    }

    /// Every metadata entry in file order.
    pub fn metadata(&self) -> Metadata<'a> {
        Metadata {
            cursor: Cursor::at(self.bytes, self.kv_start),
            remaining: self.kv_count,
        }
    }

    /// The value of `key` (the first entry with that key), if present.
    ///
    /// A linear scan that skips other values by their lengths: cheap even
    /// past the vocabulary arrays.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        let mut c = Cursor::at(self.bytes, self.kv_start);
        for _ in 0..self.kv_count {
            let k = c.string().ok()?;
            let ty = value_type(&mut c).ok()?;
            if k == key {
                return read_value(&mut c, ty, 0, Check::Lengths).ok();
            }
            skip_value(&mut c, ty, 0, Check::Lengths).ok()?;
        }
        None
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<Value<'a>, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: Name::new(key),
        })
    }

    /// An integer of any width that fits a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self.require(key)?;
        match v.as_u32() {
            Some(x) => Ok(x),
            None => Err(int_error(key, v, "does not fit in a u32")),
        }
    }

    /// An integer of any width that fits a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        match v.as_u64() {
            Some(x) => Ok(x),
            None => Err(int_error(key, v, "is negative")),
        }
    }

    /// An `f32` value.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| wrong_type(key, "an f32", v))
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| wrong_type(key, "a bool", v))
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&'a str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "a string", v))
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<ArrayView<'a>, GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, "an array", v))
    }

    /// `general.architecture`, if present and a string.
    pub fn architecture(&self) -> Option<&'a str> {
        self.get(ARCHITECTURE_KEY).and_then(|v| v.as_str())
    }

    /// Every tensor in file order (which is also data order).
    pub fn tensors(&self) -> Tensors<'a> {
        Tensors {
            cursor: Cursor::at(self.bytes, self.tensors_start),
            remaining: self.tensor_count,
            index: 0,
            file: *self,
            previous_end: 0,
        }
    }

    /// The first tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorInfo<'a>> {
        self.tensors().find(|t| t.name == name)
    }

    /// The data of `info`, which must describe a tensor of this file.
    /// [`GgufError::TensorOutOfBounds`] for an info whose extent is not
    /// inside the file (one built by hand or taken from another file).
    pub fn data(&self, info: &TensorInfo<'_>) -> Result<&'a [u8], GgufError> {
        let out = || GgufError::TensorOutOfBounds {
            tensor: Name::new(info.name),
            offset: info.offset,
            len: info.len_bytes,
            file_len: self.bytes.len() as u64,
        };
        let start = usize::try_from(info.offset).map_err(|_| out())?;
        let len = usize::try_from(info.len_bytes).map_err(|_| out())?;
        let end = start.checked_add(len).ok_or_else(out)?;
        self.bytes.get(start..end).ok_or_else(out)
    }
}

/// Summarised: printing a model's bytes helps no one.
impl fmt::Debug for Gguf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("len", &self.bytes.len())
            .field("version", &self.version)
            .field("metadata", &self.kv_count)
            .field("tensors", &self.tensor_count)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_start)
            .finish()
    }
}

impl<'a> Gguf<'a> {
    /// The bytes of row `row` (the `row`-th run of `dims[0]` elements) of
    /// `info`: what an embedding lookup or a per-neuron read needs.
    /// [`GgufError::RowOutOfRange`] past the last row.
    pub fn row_data(&self, info: &TensorInfo<'_>, row: u64) -> Result<&'a [u8], GgufError> {
        let rows = info.dims.rows().unwrap_or(0);
        let out = GgufError::RowOutOfRange {
            tensor: Name::new(info.name),
            row,
            rows,
        };
        if row >= rows {
            return Err(out);
        }
        let n = info.row_bytes();
        let start = row.checked_mul(n).ok_or(out)?;
        let data = self.data(info)?;
        let start = usize::try_from(start).map_err(|_| out)?;
        let end = start
            .checked_add(usize::try_from(n).map_err(|_| out)?)
            .ok_or(out)?;
        data.get(start..end).ok_or(out)
    }
}

fn check_version(version: u32) -> Result<(), GgufError> {
    match version {
        2 | 3 => Ok(()),
        // A small version read with the wrong byte order lands in the high
        // 16 bits and leaves the low ones zero; a big-endian file.
        v if v & 0xffff == 0 && v.swap_bytes() != 0 => Err(GgufError::ByteOrder { version: v }),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

/// Read an entry's key and value type, attributing errors to the entry.
fn read_key_and_type<'a>(
    c: &mut Cursor<'a>,
    index: u64,
) -> Result<(&'a str, ValueType), GgufError> {
    let key = c
        .string()
        .map_err(|e| e.within(Item::KeyValue { index, key: None }))?;
    let ty = value_type(c).map_err(|e| {
        e.within(Item::KeyValue {
            index,
            key: Some(Name::new(key)),
        })
    })?;
    Ok((key, ty))
}

fn parse_alignment(value: Value<'_>) -> Result<u32, GgufError> {
    match value {
        Value::U32(a) if a.is_power_of_two() => Ok(a),
        Value::U32(a) => Err(GgufError::BadAlignment { alignment: a }),
        other => Err(wrong_type(ALIGNMENT_KEY, "a u32", other)),
    }
}

fn align_up(x: u64, alignment: u32) -> Option<u64> {
    let a = u64::from(alignment);
    x.checked_next_multiple_of(a)
}

fn wrong_type(key: &str, expected: &'static str, found: Value<'_>) -> GgufError {
    GgufError::WrongType {
        key: Name::new(key),
        expected,
        found: found.value_type(),
    }
}

/// The error for an integer request: out of range if the value is an
/// integer, wrong type otherwise.
fn int_error(key: &str, v: Value<'_>, reason: &'static str) -> GgufError {
    use ValueType as T;
    match v.value_type() {
        T::U8 | T::I8 | T::U16 | T::I16 | T::U32 | T::I32 | T::U64 | T::I64 => {
            GgufError::BadValue {
                key: Name::new(key),
                reason,
            }
        }
        _ => wrong_type(key, "an integer", v),
    }
}
