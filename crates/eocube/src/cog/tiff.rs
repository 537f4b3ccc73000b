//! TIFF header bytes → the IFDs a COG reader needs, parsed by eocube itself.
//!
//! Owns: the TIFF and BigTIFF container in either byte order — the file header, the IFD chain
//! and each IFD's entries — and the decoding of the tags `cog` uses into an [`Ifd`]: image and
//! tile (or strip) geometry, tile offsets and byte counts, bits per sample, sample format,
//! samples per pixel, compression, predictor, photometric interpretation, planar configuration,
//! NewSubfileType (overviews and masks), GDAL_NODATA, the GeoKey directory (with its references
//! into GeoDoubleParams and GeoAsciiParams) and ModelPixelScale / ModelTiepoint /
//! ModelTransformation. Must not touch: I/O (the caller fetches bytes; [`parse`] says how many
//! more it needs), pixel data and codecs (`decode`), or what the tags mean for a read window
//! (georeferencing maths, level choice, supported data types: `mod.rs`).
//!
//! Every byte is untrusted, and the parser must be safe under `panic = "abort"` (where
//! `catch_unwind` cannot help) and under fuzzing:
//! - no indexing or slicing that can panic (`get` everywhere; the lints below deny the rest),
//!   and no arithmetic that can overflow (checked, on `u64`);
//! - every count is bounded by the bytes present before anything is allocated from it: a value
//!   is decoded only once all its bytes are in memory, so a value of `count` items never
//!   allocates more than the header bytes already read;
//! - every offset is checked against the file size (a value or IFD past the end is
//!   [`TiffError::PastEnd`], which `cog` reports as a truncated file), IFD cycles are found,
//!   and the IFD count, entries per IFD and bytes per value are capped;
//! - every defect is a [`TiffError`] variant naming the IFD, the tag and what is wrong; `cog`
//!   adds the href.
//!
//! Tags that eocube does not read are skipped without decoding their values (an unknown field
//! type on such a tag is skipped too, as libtiff does), but their values must still lie inside
//! the file: a value past its end means a cut file.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::cast_possible_truncation
)]

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

/// At most this many IFDs (a COG has one per level plus masks; 64 levels is 2^64 pixels wide).
const MAX_IFDS: usize = 64;
/// At most this many entries per IFD (GDAL writes about 20).
const MAX_ENTRIES: u64 = 512;
/// No single tag value may be larger than this (2 M tile offsets of 8 bytes fit).
const MAX_VALUE_BYTES: u64 = 16 << 20;

/// The tags eocube reads.
pub(crate) mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const ROWS_PER_STRIP: u16 = 278;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const PLANAR_CONFIGURATION: u16 = 284;
    pub const PREDICTOR: u16 = 317;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SAMPLE_FORMAT: u16 = 339;
    pub const MODEL_PIXEL_SCALE: u16 = 33550;
    pub const MODEL_TIEPOINT: u16 = 33922;
    pub const MODEL_TRANSFORMATION: u16 = 34264;
    pub const GEO_KEY_DIRECTORY: u16 = 34735;
    pub const GEO_DOUBLE_PARAMS: u16 = 34736;
    pub const GEO_ASCII_PARAMS: u16 = 34737;
    pub const GDAL_NODATA: u16 = 42113;
}

/// GeoKeys eocube reads (GeoTIFF 1.1 section 7).
mod geokey {
    pub const RASTER_TYPE: u16 = 1025;
    pub const GEOGRAPHIC_TYPE: u16 = 2048;
    pub const PROJECTED_TYPE: u16 = 3072;
}

/// A tag number, displayed with its name when eocube knows it: `TileOffsets (324)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag(pub u16);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            tag::NEW_SUBFILE_TYPE => "NewSubfileType",
            tag::IMAGE_WIDTH => "ImageWidth",
            tag::IMAGE_LENGTH => "ImageLength",
            tag::BITS_PER_SAMPLE => "BitsPerSample",
            tag::COMPRESSION => "Compression",
            tag::PHOTOMETRIC => "PhotometricInterpretation",
            tag::STRIP_OFFSETS => "StripOffsets",
            tag::SAMPLES_PER_PIXEL => "SamplesPerPixel",
            tag::ROWS_PER_STRIP => "RowsPerStrip",
            tag::STRIP_BYTE_COUNTS => "StripByteCounts",
            tag::PLANAR_CONFIGURATION => "PlanarConfiguration",
            tag::PREDICTOR => "Predictor",
            tag::TILE_WIDTH => "TileWidth",
            tag::TILE_LENGTH => "TileLength",
            tag::TILE_OFFSETS => "TileOffsets",
            tag::TILE_BYTE_COUNTS => "TileByteCounts",
            tag::SAMPLE_FORMAT => "SampleFormat",
            tag::MODEL_PIXEL_SCALE => "ModelPixelScale",
            tag::MODEL_TIEPOINT => "ModelTiepoint",
            tag::MODEL_TRANSFORMATION => "ModelTransformation",
            tag::GEO_KEY_DIRECTORY => "GeoKeyDirectory",
            tag::GEO_DOUBLE_PARAMS => "GeoDoubleParams",
            tag::GEO_ASCII_PARAMS => "GeoAsciiParams",
            tag::GDAL_NODATA => "GDAL_NODATA",
            t => return write!(f, "tag {t}"),
        };
        write!(f, "{name} ({})", self.0)
    }
}

/// The part of the file a [`TiffError::PastEnd`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Header,
    Ifd { offset: u64 },
    Value { ifd: u64, tag: Tag },
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Header => write!(f, "the TIFF header"),
            Part::Ifd { offset } => write!(f, "the IFD at offset {offset}"),
            Part::Value { ifd, tag } => write!(f, "the value of {tag} in the IFD at offset {ifd}"),
        }
    }
}

/// What is wrong with a GeoKey directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GeoKeyDefect {
    #[error("{0} values, fewer than the 4 of its header")]
    Short(u64),
    #[error("version {version}.{revision}, expected 1.1")]
    Version { version: u16, revision: u16 },
    #[error("{announced} keys announced, room for {room}")]
    KeyCount { announced: u16, room: u64 },
    #[error("key {key} points to values {start}..{end} of {location}, which is missing or has only {len}")]
    OutOfRange { key: u16, location: Tag, start: u64, end: u64, len: u64 },
    #[error("key {key} is stored in {location}; expected a SHORT in the directory itself")]
    NotInline { key: u16, location: Tag },
}

/// Why header bytes were refused. [`TiffError::kind`] sorts them for `cog`, which adds the href.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TiffError {
    #[error("it starts with bytes {head:02x?}, not \"II\" or \"MM\"")]
    ByteOrder { head: Vec<u8> },
    #[error("TIFF version {0}, expected 42 (TIFF) or 43 (BigTIFF)")]
    Version(u16),
    #[error("BigTIFF header with offset size {size} and reserved field {reserved}, expected 8 and 0")]
    BigTiffHeader { size: u16, reserved: u16 },
    #[error("{part} extends to byte {end} but the file has only {file_size} bytes")]
    PastEnd { part: Part, end: u64, file_size: u64 },
    #[error("the file has no image (first IFD offset is 0)")]
    NoImage,
    #[error("IFD offset {0} points into the file header")]
    IfdInHeader(u64),
    #[error("the IFD chain loops back to offset {0}")]
    Cycle(u64),
    #[error("more than {MAX_IFDS} IFDs")]
    TooManyIfds,
    #[error("IFD at offset {ifd} has {count} entries, expected 1 to {MAX_ENTRIES}")]
    EntryCount { ifd: u64, count: u64 },
    #[error("IFD at offset {ifd}: {tag} has unknown field type {typ}")]
    FieldType { ifd: u64, tag: Tag, typ: u16 },
    #[error("IFD at offset {ifd}: {tag} has an absurd count {count} (more than {MAX_VALUE_BYTES} bytes)")]
    AbsurdCount { ifd: u64, tag: Tag, count: u64 },
    #[error("IFD at offset {ifd} lacks the required {tag}")]
    Missing { ifd: u64, tag: Tag },
    #[error("IFD at offset {ifd}: {tag} has {count} values, expected {expected}")]
    Count { ifd: u64, tag: Tag, count: u64, expected: &'static str },
    #[error("IFD at offset {ifd}: {tag} is of field type {typ}, expected {expected}")]
    Type { ifd: u64, tag: Tag, typ: u16, expected: &'static str },
    #[error("IFD at offset {ifd}: {tag} is {value}, more than {max}")]
    Range { ifd: u64, tag: Tag, value: u64, max: u64 },
    #[error("IFD at offset {ifd}: {tag} is not ASCII text")]
    Text { ifd: u64, tag: Tag },
    #[error("IFD at offset {ifd}: GeoKeyDirectory: {defect}")]
    GeoKeys { ifd: u64, defect: GeoKeyDefect },
}

/// How `cog` reports a [`TiffError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not a TIFF at all (byte order mark, version).
    NotTiff,
    /// The structure points past the end of the file: bytes are missing.
    Truncated,
    /// The structure is inconsistent.
    Malformed,
}

impl TiffError {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            TiffError::ByteOrder { .. } | TiffError::Version(_) | TiffError::BigTiffHeader { .. } => Kind::NotTiff,
            TiffError::PastEnd { .. } => Kind::Truncated,
            _ => Kind::Malformed,
        }
    }
}

/// The outcome of one parse of the bytes we have.
#[derive(Debug)]
pub(crate) enum Parse {
    Done(Header),
    /// The structure continues past the bytes we have: fetch up to `end` and parse again.
    NeedMore {
        end: u64,
    },
}

/// A parsed TIFF header: every IFD of the chain, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub big_endian: bool,
    pub bigtiff: bool,
    pub ifds: Vec<Ifd>,
}

/// One IFD, with the TIFF defaults filled in for absent optional tags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ifd {
    /// Where the IFD is in the file (names it in messages).
    pub offset: u64,
    /// 0 when absent; bit 0: reduced resolution (an overview), bit 2: a transparency mask.
    pub new_subfile_type: u32,
    pub image_width: u32,
    pub image_height: u32,
    /// The first value (one per sample); 1 when absent.
    pub bits_per_sample: u16,
    /// The first value; 1 (unsigned integer) when absent.
    pub sample_format: u16,
    /// 1 when absent.
    pub samples_per_pixel: u16,
    /// 1 (none) when absent.
    pub compression: u16,
    /// 1 (none) when absent.
    pub predictor: u16,
    pub photometric: Option<u16>,
    /// 1 (chunky) when absent.
    pub planar_configuration: u16,
    pub tile_width: Option<u32>,
    pub tile_height: Option<u32>,
    pub tile_offsets: Option<Vec<u64>>,
    pub tile_byte_counts: Option<Vec<u64>>,
    pub strip_offsets: Option<Vec<u64>>,
    pub strip_byte_counts: Option<Vec<u64>>,
    pub rows_per_strip: Option<u32>,
    /// GDAL_NODATA up to its first NUL.
    pub gdal_nodata: Option<String>,
    pub geo_keys: Option<GeoKeys>,
    pub model_pixel_scale: Option<Vec<f64>>,
    pub model_tiepoint: Option<Vec<f64>>,
    pub model_transformation: Option<Vec<f64>>,
}

impl Ifd {
    /// True for a transparency mask (GDAL's internal masks: NewSubfileType bit 2, photometric 4).
    pub(crate) fn is_mask(&self) -> bool {
        self.new_subfile_type & 4 != 0 || self.photometric == Some(4)
    }

    /// True for a reduced-resolution image (an overview, or a mask's overview).
    pub(crate) fn is_reduced(&self) -> bool {
        self.new_subfile_type & 1 != 0
    }
}

/// The GeoKeys eocube reads; all other keys are checked for sound references and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GeoKeys {
    pub projected_type: Option<u16>,
    pub geographic_type: Option<u16>,
    /// 1 RasterPixelIsArea, 2 RasterPixelIsPoint.
    pub raster_type: Option<u16>,
}

/// Byte-order-aware reads that return `None` past the end of the buffer, never panic.
#[derive(Clone, Copy)]
struct Bytes<'a> {
    buf: &'a [u8],
    big_endian: bool,
}

impl Bytes<'_> {
    fn slice(&self, at: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.buf.get(start..end)
    }
    fn array<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        self.slice(at, N as u64)?.try_into().ok()
    }
    fn u8(&self, at: u64) -> Option<u8> {
        self.array::<1>(at).map(|[b]| b)
    }
    fn u16(&self, at: u64) -> Option<u16> {
        let b = self.array(at)?;
        Some(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&self, at: u64) -> Option<u32> {
        let b = self.array(at)?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    fn u64(&self, at: u64) -> Option<u64> {
        let b = self.array(at)?;
        Some(if self.big_endian { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
    /// A classic (4-byte) or BigTIFF (8-byte) offset or count.
    fn word(&self, at: u64, bigtiff: bool) -> Option<u64> {
        if bigtiff { self.u64(at) } else { self.u32(at).map(u64::from) }
    }
}

/// Bytes per value of a field type; `None` for types TIFF 6 and BigTIFF do not define.
fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,              // BYTE ASCII SBYTE UNDEFINED
        3 | 8 => 2,                      // SHORT SSHORT
        4 | 9 | 11 | 13 => 4,            // LONG SLONG FLOAT IFD
        5 | 10 | 12 | 16 | 17 | 18 => 8, // RATIONAL SRATIONAL DOUBLE LONG8 SLONG8 IFD8
        _ => return None,
    })
}

/// True for the tags [`decode_ifd`] reads: an unknown field type is an error only on these.
fn is_read(t: u16) -> bool {
    matches!(
        t,
        tag::NEW_SUBFILE_TYPE
            | tag::IMAGE_WIDTH
            | tag::IMAGE_LENGTH
            | tag::BITS_PER_SAMPLE
            | tag::COMPRESSION
            | tag::PHOTOMETRIC
            | tag::STRIP_OFFSETS
            | tag::SAMPLES_PER_PIXEL
            | tag::ROWS_PER_STRIP
            | tag::STRIP_BYTE_COUNTS
            | tag::PLANAR_CONFIGURATION
            | tag::PREDICTOR
            | tag::TILE_WIDTH
            | tag::TILE_LENGTH
            | tag::TILE_OFFSETS
            | tag::TILE_BYTE_COUNTS
            | tag::SAMPLE_FORMAT
            | tag::MODEL_PIXEL_SCALE
            | tag::MODEL_TIEPOINT
            | tag::MODEL_TRANSFORMATION
            | tag::GEO_KEY_DIRECTORY
            | tag::GEO_DOUBLE_PARAMS
            | tag::GEO_ASCII_PARAMS
            | tag::GDAL_NODATA
    )
}

/// One IFD entry as laid out in the file.
#[derive(Debug, Clone)]
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    /// Where the value bytes are (inline in the entry or out of line), inside the file but
    /// perhaps not yet in memory.
    value: Range<u64>,
}

/// The file layout constants of classic TIFF and BigTIFF.
#[derive(Clone, Copy)]
struct Layout {
    bigtiff: bool,
    /// Bytes of the file header.
    header: u64,
    /// Bytes of an IFD's entry count.
    count: u64,
    /// Bytes of one entry.
    entry: u64,
    /// Bytes of an offset (the next-IFD pointer, an out-of-line value's offset) and of the
    /// inline value field.
    word: u64,
}

const CLASSIC: Layout = Layout { bigtiff: false, header: 8, count: 2, entry: 12, word: 4 };
const BIG: Layout = Layout { bigtiff: true, header: 16, count: 8, entry: 20, word: 8 };

/// Parses the TIFF header in `buf`, the first `buf.len()` bytes of a file of `file_size` bytes.
/// IFDs and their values may lie anywhere in the file: when they lie past `buf`,
/// [`Parse::NeedMore`] says up to which byte to fetch before parsing again.
pub(crate) fn parse(buf: &[u8], file_size: u64) -> Result<Parse, TiffError> {
    let have = buf.len() as u64;
    let need = |end: u64, part: Part| {
        if end > file_size { Err(TiffError::PastEnd { part, end, file_size }) } else { Ok(Parse::NeedMore { end }) }
    };
    if have < 8 {
        // 16 bytes hold a BigTIFF header too.
        return if file_size < 8 { need(8, Part::Header) } else { Ok(Parse::NeedMore { end: file_size.min(16) }) };
    }
    let big_endian = match buf.get(0..2) {
        Some(b"II") => false,
        Some(b"MM") => true,
        _ => return Err(TiffError::ByteOrder { head: buf.iter().take(4).copied().collect() }),
    };
    let r = Bytes { buf, big_endian };
    let layout = match r.u16(2) {
        Some(42) => CLASSIC,
        Some(43) => BIG,
        v => return Err(TiffError::Version(v.unwrap_or(0))),
    };
    if have < layout.header {
        return need(layout.header, Part::Header);
    }
    if layout.bigtiff {
        let (size, reserved) = (r.u16(4).unwrap_or(0), r.u16(6).unwrap_or(0));
        if (size, reserved) != (8, 0) {
            return Err(TiffError::BigTiffHeader { size, reserved });
        }
    }
    let first = r.word(if layout.bigtiff { 8 } else { 4 }, layout.bigtiff).unwrap_or(0);
    if first == 0 {
        return Err(TiffError::NoImage);
    }
    let mut next = first;
    let mut seen = HashSet::new();
    let mut ifds = Vec::new();
    while next != 0 {
        if ifds.len() >= MAX_IFDS {
            return Err(TiffError::TooManyIfds);
        }
        if !seen.insert(next) {
            return Err(TiffError::Cycle(next));
        }
        let at = next;
        if at < layout.header {
            return Err(TiffError::IfdInHeader(at));
        }
        let part = Part::Ifd { offset: at };
        let past_end = |end: Option<u64>| TiffError::PastEnd { part, end: end.unwrap_or(u64::MAX), file_size };
        let entries_at = at.checked_add(layout.count).ok_or_else(|| past_end(None))?;
        if entries_at > have {
            return need(entries_at, part);
        }
        let n = if layout.bigtiff { r.u64(at) } else { r.u16(at).map(u64::from) }.unwrap_or(0);
        if n == 0 || n > MAX_ENTRIES {
            return Err(TiffError::EntryCount { ifd: at, count: n });
        }
        // n <= MAX_ENTRIES, so these products cannot overflow; the sums can (an offset near 2^64).
        let pointer_at = n.checked_mul(layout.entry).and_then(|b| entries_at.checked_add(b));
        let end = pointer_at.and_then(|p| p.checked_add(layout.word)).ok_or_else(|| past_end(None))?;
        if end > have {
            return need(end, part);
        }
        let mut entries = Vec::new();
        for i in 0..n {
            let e =
                i.checked_mul(layout.entry).and_then(|b| entries_at.checked_add(b)).ok_or_else(|| past_end(None))?;
            if let Some(entry) = entry(&r, layout, at, e, file_size)? {
                entries.push(entry);
            }
        }
        // Values out of line must be in memory before they are decoded.
        if let Some(end) = entries.iter().map(|e| e.value.end).max().filter(|&e| e > have) {
            return need(end, part);
        }
        ifds.push(decode_ifd(&r, at, &entries)?);
        next = pointer_at.and_then(|p| r.word(p, layout.bigtiff)).unwrap_or(0);
    }
    Ok(Parse::Done(Header { big_endian, bigtiff: layout.bigtiff, ifds }))
}

/// Reads the entry at `e` of the IFD at `ifd`: `None` for an entry of an unknown field type on a
/// tag eocube does not read. Its value range may extend past the buffer, not past the file.
fn entry(r: &Bytes, layout: Layout, ifd: u64, e: u64, file_size: u64) -> Result<Option<Entry>, TiffError> {
    // The caller checked that the whole entry is in the buffer; these reads cannot fail, but a
    // failure would only read as zeros.
    let field = |off: u64| e.saturating_add(off);
    let tag = r.u16(e).unwrap_or(0);
    let typ = r.u16(field(2)).unwrap_or(0);
    let count = r.word(field(4), layout.bigtiff).unwrap_or(0);
    let value_field = field(if layout.bigtiff { 12 } else { 8 });
    let Some(size) = type_size(typ) else {
        return if is_read(tag) { Err(TiffError::FieldType { ifd, tag: Tag(tag), typ }) } else { Ok(None) };
    };
    let len = match count.checked_mul(size) {
        Some(len) if len <= MAX_VALUE_BYTES => len,
        _ => return Err(TiffError::AbsurdCount { ifd, tag: Tag(tag), count }),
    };
    let start = if len <= layout.word { value_field } else { r.word(value_field, layout.bigtiff).unwrap_or(0) };
    let part = Part::Value { ifd, tag: Tag(tag) };
    match start.checked_add(len) {
        Some(end) if end <= file_size => Ok(Some(Entry { tag, typ, count, value: start..end })),
        end => Err(TiffError::PastEnd { part, end: end.unwrap_or(u64::MAX), file_size }),
    }
}

/// Decodes the values of one IFD's entries (all in memory by now).
struct Values<'a> {
    r: Bytes<'a>,
    ifd: u64,
    entries: &'a [Entry],
}

/// The unsigned integer field types: BYTE, SHORT, LONG, IFD, LONG8, IFD8.
const UINT_TYPES: &str = "an unsigned integer type (BYTE, SHORT, LONG or LONG8)";

impl Values<'_> {
    /// The entry of `t`; the last one when a tag repeats (as libtiff and async-tiff did).
    fn find(&self, t: u16) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.tag == t)
    }

    /// The value bytes of `e`, all in memory (the caller made sure of it).
    fn bytes(&self, e: &Entry) -> Result<&[u8], TiffError> {
        let len = e.value.end.saturating_sub(e.value.start);
        self.r.slice(e.value.start, len).ok_or(TiffError::PastEnd {
            part: Part::Value { ifd: self.ifd, tag: Tag(e.tag) },
            end: e.value.end,
            file_size: self.r.buf.len() as u64,
        })
    }

    /// Every value of an unsigned integer tag; `count` values fit in the buffer, so the
    /// allocation is bounded by the header bytes read.
    fn uints(&self, e: &Entry) -> Result<Vec<u64>, TiffError> {
        let bytes = self.bytes(e)?;
        let r = Bytes { buf: bytes, big_endian: self.r.big_endian };
        let read: fn(&Bytes, u64) -> Option<u64> = match e.typ {
            1 => |r, i| r.u8(i).map(u64::from),
            3 => |r, i| r.u16(i.checked_mul(2)?).map(u64::from),
            4 | 13 => |r, i| r.u32(i.checked_mul(4)?).map(u64::from),
            16 | 18 => |r, i| r.u64(i.checked_mul(8)?),
            typ => return Err(TiffError::Type { ifd: self.ifd, tag: Tag(e.tag), typ, expected: UINT_TYPES }),
        };
        let mut out = Vec::with_capacity(usize::try_from(e.count).unwrap_or(0).min(bytes.len()));
        for i in 0..e.count {
            // Cannot fail: count * size bytes are present.
            out.push(read(&r, i).ok_or(TiffError::Count {
                ifd: self.ifd,
                tag: Tag(e.tag),
                count: e.count,
                expected: "as many as its bytes hold",
            })?);
        }
        Ok(out)
    }

    fn uint_list(&self, t: u16) -> Result<Option<Vec<u64>>, TiffError> {
        self.find(t).map(|e| self.uints(e)).transpose()
    }

    /// The single value of an unsigned integer tag, at most `max`.
    fn uint(&self, t: u16, max: u64) -> Result<Option<u64>, TiffError> {
        let Some(e) = self.find(t) else { return Ok(None) };
        let values = self.uints(e)?;
        let &[v] = values.as_slice() else {
            return Err(TiffError::Count { ifd: self.ifd, tag: Tag(t), count: e.count, expected: "1" });
        };
        if v > max {
            return Err(TiffError::Range { ifd: self.ifd, tag: Tag(t), value: v, max });
        }
        Ok(Some(v))
    }

    fn u16(&self, t: u16) -> Result<Option<u16>, TiffError> {
        Ok(self.uint(t, u16::MAX.into())?.and_then(|v| u16::try_from(v).ok()))
    }

    fn u32(&self, t: u16) -> Result<Option<u32>, TiffError> {
        Ok(self.uint(t, u32::MAX.into())?.and_then(|v| u32::try_from(v).ok()))
    }

    fn required_u32(&self, t: u16) -> Result<u32, TiffError> {
        self.u32(t)?.ok_or(TiffError::Missing { ifd: self.ifd, tag: Tag(t) })
    }

    /// The first of a per-sample SHORT tag (BitsPerSample, SampleFormat).
    fn first_u16(&self, t: u16) -> Result<Option<u16>, TiffError> {
        let Some(e) = self.find(t) else { return Ok(None) };
        let first = self.uints(e)?.first().copied();
        let Some(v) = first else {
            return Err(TiffError::Count { ifd: self.ifd, tag: Tag(t), count: 0, expected: "at least 1" });
        };
        u16::try_from(v).map(Some).map_err(|_| TiffError::Range {
            ifd: self.ifd,
            tag: Tag(t),
            value: v,
            max: u16::MAX.into(),
        })
    }

    /// Every value of a DOUBLE tag.
    fn doubles(&self, t: u16) -> Result<Option<Vec<f64>>, TiffError> {
        let Some(e) = self.find(t) else { return Ok(None) };
        if e.typ != 12 {
            return Err(TiffError::Type { ifd: self.ifd, tag: Tag(t), typ: e.typ, expected: "DOUBLE" });
        }
        let bytes = self.bytes(e)?;
        Ok(Some(
            bytes
                .chunks_exact(8)
                .filter_map(|c| {
                    let b: [u8; 8] = c.try_into().ok()?;
                    Some(if self.r.big_endian { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) })
                })
                .collect(),
        ))
    }

    /// An ASCII tag up to its first NUL (a missing terminator is tolerated).
    fn ascii(&self, t: u16) -> Result<Option<String>, TiffError> {
        let Some(e) = self.find(t) else { return Ok(None) };
        if e.typ != 2 {
            return Err(TiffError::Type { ifd: self.ifd, tag: Tag(t), typ: e.typ, expected: "ASCII" });
        }
        let bytes = self.bytes(e)?;
        let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        match std::str::from_utf8(text) {
            Ok(s) if s.is_ascii() => Ok(Some(s.to_string())),
            _ => Err(TiffError::Text { ifd: self.ifd, tag: Tag(t) }),
        }
    }
}

/// Decodes the tags eocube reads from one IFD's entries.
fn decode_ifd(r: &Bytes, ifd: u64, entries: &[Entry]) -> Result<Ifd, TiffError> {
    let v = Values { r: *r, ifd, entries };
    Ok(Ifd {
        offset: ifd,
        new_subfile_type: v.u32(tag::NEW_SUBFILE_TYPE)?.unwrap_or(0),
        image_width: v.required_u32(tag::IMAGE_WIDTH)?,
        image_height: v.required_u32(tag::IMAGE_LENGTH)?,
        bits_per_sample: v.first_u16(tag::BITS_PER_SAMPLE)?.unwrap_or(1),
        sample_format: v.first_u16(tag::SAMPLE_FORMAT)?.unwrap_or(1),
        samples_per_pixel: v.u16(tag::SAMPLES_PER_PIXEL)?.unwrap_or(1),
        compression: v.u16(tag::COMPRESSION)?.unwrap_or(1),
        predictor: v.u16(tag::PREDICTOR)?.unwrap_or(1),
        photometric: v.u16(tag::PHOTOMETRIC)?,
        planar_configuration: v.u16(tag::PLANAR_CONFIGURATION)?.unwrap_or(1),
        tile_width: v.u32(tag::TILE_WIDTH)?,
        tile_height: v.u32(tag::TILE_LENGTH)?,
        tile_offsets: v.uint_list(tag::TILE_OFFSETS)?,
        tile_byte_counts: v.uint_list(tag::TILE_BYTE_COUNTS)?,
        strip_offsets: v.uint_list(tag::STRIP_OFFSETS)?,
        strip_byte_counts: v.uint_list(tag::STRIP_BYTE_COUNTS)?,
        rows_per_strip: v.u32(tag::ROWS_PER_STRIP)?,
        gdal_nodata: v.ascii(tag::GDAL_NODATA)?,
        geo_keys: geo_keys(&v)?,
        model_pixel_scale: v.doubles(tag::MODEL_PIXEL_SCALE)?,
        model_tiepoint: v.doubles(tag::MODEL_TIEPOINT)?,
        model_transformation: v.doubles(tag::MODEL_TRANSFORMATION)?,
    })
}

/// The GeoKey directory (GeoTIFF 1.1 section 7.1): a header `[1, 1, minor, n]`, then `n` keys
/// `[id, location, count, value]` where location 0 means the value is the SHORT itself and
/// GeoDoubleParams / GeoAsciiParams mean `count` values from index `value` of that tag. Every
/// reference must land inside its tag; the three keys eocube reads must be inline SHORTs.
fn geo_keys(v: &Values) -> Result<Option<GeoKeys>, TiffError> {
    let Some(dir) = v.uint_list(tag::GEO_KEY_DIRECTORY)? else { return Ok(None) };
    let defect = |defect| TiffError::GeoKeys { ifd: v.ifd, defect };
    let mut shorts = Vec::with_capacity(dir.len());
    for value in dir {
        let s = u16::try_from(value).map_err(|_| TiffError::Range {
            ifd: v.ifd,
            tag: Tag(tag::GEO_KEY_DIRECTORY),
            value,
            max: u16::MAX.into(),
        })?;
        shorts.push(s);
    }
    let mut quads = shorts.chunks_exact(4);
    let Some(&[version, revision, _minor, announced]) = quads.next() else {
        return Err(defect(GeoKeyDefect::Short(shorts.len() as u64)));
    };
    if (version, revision) != (1, 1) {
        return Err(defect(GeoKeyDefect::Version { version, revision }));
    }
    let room = quads.len() as u64;
    if u64::from(announced) > room {
        return Err(defect(GeoKeyDefect::KeyCount { announced, room }));
    }
    let doubles = v.find(tag::GEO_DOUBLE_PARAMS).map(|e| e.count);
    let ascii = v.find(tag::GEO_ASCII_PARAMS).map(|e| e.count);
    let mut keys = GeoKeys::default();
    for quad in quads.take(usize::from(announced)) {
        let &[key, location, count, value] = quad else { continue };
        let len = match location {
            0 => None,
            tag::GEO_DOUBLE_PARAMS => Some(doubles),
            tag::GEO_ASCII_PARAMS => Some(ascii),
            // Another tag of the IFD: allowed by the spec, unused by GDAL and by eocube.
            _ => None,
        };
        if let Some(len) = len {
            let (start, end) = (u64::from(value), u64::from(value).saturating_add(u64::from(count)));
            if len.is_none_or(|len| end > len) {
                let location = Tag(location);
                return Err(defect(GeoKeyDefect::OutOfRange { key, location, start, end, len: len.unwrap_or(0) }));
            }
        }
        let slot = match key {
            geokey::PROJECTED_TYPE => &mut keys.projected_type,
            geokey::GEOGRAPHIC_TYPE => &mut keys.geographic_type,
            geokey::RASTER_TYPE => &mut keys.raster_type,
            _ => continue,
        };
        if location != 0 {
            return Err(defect(GeoKeyDefect::NotInline { key, location: Tag(location) }));
        }
        *slot = Some(value);
    }
    Ok(Some(keys))
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]
pub(crate) mod tests;
