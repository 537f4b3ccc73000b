//! TIFF header bytes → validated IFDs.
//!
//! Two passes over the header bytes held in memory:
//! 1. [`walk`], our own small structural check of the IFD chain. async-tiff 0.4 trusts its input:
//!    it panics on an unknown field type, an ASCII value without a NUL, a short GeoKey directory,
//!    a missing required tag, and it sizes `Vec`s from counts read in the file. `walk` checks
//!    every precondition those code paths rely on, finds cycles, bounds every count by the bytes
//!    present, and tells the caller how many header bytes it still needs (IFDs may sit anywhere).
//! 2. async-tiff's `ImageFileDirectoryReader` parses each IFD the walk accepted, from memory.
//!    It runs under `catch_unwind` as a second line of defence; a panic there is a bug in `walk`.

use std::collections::HashSet;
use std::ops::Range;

use async_tiff::ImageFileDirectory;
use async_tiff::error::{AsyncTiffError, AsyncTiffResult};
use async_tiff::metadata::{ImageFileDirectoryReader, MetadataFetch};
use async_tiff::reader::Endianness;
use async_tiff::tags::{PhotometricInterpretation, Type};
use bytes::Bytes;

/// At most this many IFDs (a COG has one per level plus masks; 64 levels is 2^64 pixels wide).
const MAX_IFDS: usize = 64;
/// At most this many entries per IFD (GDAL writes about 20).
const MAX_TAGS: u64 = 512;
/// No single tag value may be larger than this (1 M tile offsets of 8 bytes fit).
const MAX_VALUE_BYTES: u64 = 16 << 20;

const TAG_IMAGE_WIDTH: u16 = 256;
const TAG_IMAGE_LENGTH: u16 = 257;
const TAG_BITS_PER_SAMPLE: u16 = 258;
const TAG_PHOTOMETRIC: u16 = 262;
const TAG_SAMPLES_PER_PIXEL: u16 = 277;
const TAG_X_RESOLUTION: u16 = 282;
const TAG_Y_RESOLUTION: u16 = 283;
pub(crate) const TAG_PREDICTOR: u16 = 317;
const TAG_GEO_KEY_DIRECTORY: u16 = 34735;
const TAG_GEO_DOUBLE_PARAMS: u16 = 34736;
const TAG_GEO_ASCII_PARAMS: u16 = 34737;

/// Why the header bytes were refused. The caller adds the href.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HeaderProblem {
    /// Not a TIFF at all (magic bytes, version).
    NotTiff(String),
    /// The structure points past the end of the file.
    Truncated(String),
    /// The structure is inconsistent.
    Malformed(String),
}

/// One IFD entry as laid out in the file.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub tag: u16,
    pub typ: u16,
    pub count: u64,
    /// Where the value bytes are (inline in the entry or out of line).
    pub value: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawIfd {
    pub offset: u64,
    pub entries: Vec<RawEntry>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    pub big_endian: bool,
    pub bigtiff: bool,
    pub ifds: Vec<RawIfd>,
}

/// The outcome of one walk over the bytes we have.
#[derive(Debug)]
pub(crate) enum Walk {
    Done(RawHeader),
    /// The structure continues past the bytes we have: fetch up to `end` and walk again.
    NeedMore {
        end: u64,
    },
}

/// Byte-order-aware reads that never panic.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        let at = usize::try_from(at).ok()?;
        let s = self.buf.get(at..at.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn u16(&self, at: u64) -> Option<u16> {
        let b = self.bytes::<2>(at)?;
        Some(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&self, at: u64) -> Option<u32> {
        let b = self.bytes::<4>(at)?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    fn u64(&self, at: u64) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(if self.big_endian { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
    /// Value `i` of an entry as an unsigned integer (BYTE, SHORT, LONG, LONG8 and their IFD kinds).
    fn uint(&self, e: &RawEntry, i: u64) -> Option<u64> {
        let base = e.value.start as u64;
        match e.typ {
            1 | 7 => self.bytes::<1>(base + i).map(|b| u64::from(b[0])),
            3 => self.u16(base + 2 * i).map(u64::from),
            4 | 13 => self.u32(base + 4 * i).map(u64::from),
            16 | 18 => self.u64(base + 8 * i),
            _ => None,
        }
    }
}

fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

fn tag_name(tag: u16) -> String {
    match tag {
        TAG_IMAGE_WIDTH => "ImageWidth".into(),
        TAG_IMAGE_LENGTH => "ImageLength".into(),
        TAG_BITS_PER_SAMPLE => "BitsPerSample".into(),
        TAG_PHOTOMETRIC => "PhotometricInterpretation".into(),
        TAG_SAMPLES_PER_PIXEL => "SamplesPerPixel".into(),
        TAG_GEO_KEY_DIRECTORY => "GeoKeyDirectory".into(),
        TAG_GEO_ASCII_PARAMS => "GeoAsciiParams".into(),
        TAG_GEO_DOUBLE_PARAMS => "GeoDoubleParams".into(),
        t => format!("tag {t}"),
    }
}

/// Walks the IFD chain in `buf` (the first `buf.len()` bytes of a file of `file_size` bytes).
pub(crate) fn walk(buf: &[u8], file_size: u64) -> Result<Walk, HeaderProblem> {
    let have = buf.len() as u64;
    if have < 8 {
        return if file_size < 8 {
            Err(HeaderProblem::Truncated(format!("the file is only {file_size} bytes long, too short for a TIFF")))
        } else {
            Ok(Walk::NeedMore { end: 16 })
        };
    }
    let big_endian = match buf.get(0..2) {
        Some(b"II") => false,
        Some(b"MM") => true,
        _ => {
            let head: Vec<u8> = buf.iter().take(4).copied().collect();
            return Err(HeaderProblem::NotTiff(format!("it starts with bytes {head:02x?}, not \"II\" or \"MM\"")));
        }
    };
    let r = Reader { buf, big_endian };
    let (bigtiff, first_ifd) = match r.u16(2) {
        Some(42) => (false, r.u32(4).map(u64::from)),
        Some(43) => {
            if have < 16 {
                return need(16, file_size, "BigTIFF header");
            }
            if r.u16(4) != Some(8) || r.u16(6) != Some(0) {
                return Err(HeaderProblem::NotTiff("BigTIFF header with an offset size other than 8".into()));
            }
            (true, r.u64(8))
        }
        v => return Err(HeaderProblem::NotTiff(format!("TIFF version {v:?}, expected 42 (TIFF) or 43 (BigTIFF)"))),
    };
    let mut next = first_ifd.unwrap_or(0);
    if next == 0 {
        return Err(HeaderProblem::Malformed("the file has no image (first IFD offset is 0)".into()));
    }
    let (count_size, entry_size, ptr_size): (u64, u64, u64) = if bigtiff { (8, 20, 8) } else { (2, 12, 4) };
    let header_len = if bigtiff { 16 } else { 8 };
    let mut seen = HashSet::new();
    let mut ifds = Vec::new();
    while next != 0 {
        if ifds.len() >= MAX_IFDS {
            return Err(HeaderProblem::Malformed(format!("more than {MAX_IFDS} IFDs")));
        }
        if !seen.insert(next) {
            return Err(HeaderProblem::Malformed(format!("the IFD chain loops back to offset {next}")));
        }
        let at = next;
        if at < header_len {
            return Err(HeaderProblem::Malformed(format!("IFD offset {at} points into the file header")));
        }
        let Some(count_end) = at.checked_add(count_size) else {
            return Err(HeaderProblem::Malformed(format!("IFD offset {at} overflows")));
        };
        if count_end > have {
            return need(count_end, file_size, "an IFD");
        }
        let n = if bigtiff { r.u64(at) } else { r.u16(at).map(u64::from) }.unwrap_or(0);
        if n == 0 || n > MAX_TAGS {
            return Err(HeaderProblem::Malformed(format!("IFD at offset {at} has {n} entries")));
        }
        let end = count_end + n * entry_size + ptr_size;
        if end > have {
            return need(end, file_size, "an IFD");
        }
        let mut entries = Vec::with_capacity(n as usize);
        for i in 0..n {
            let e = count_end + i * entry_size;
            entries.push(entry(&r, e, bigtiff, file_size)?);
        }
        let ifd = RawIfd { offset: at, entries };
        check_ifd(&r, &ifd, bigtiff)?;
        // Values out of line must be in memory before async-tiff reads them.
        if let Some(end) = ifd.entries.iter().map(|e| e.value.end as u64).max().filter(|&e| e > have) {
            return need(end, file_size, "tag values");
        }
        next = if bigtiff { r.u64(end - 8) } else { r.u32(end - 4).map(u64::from) }.unwrap_or(0);
        ifds.push(ifd);
    }
    Ok(Walk::Done(RawHeader { big_endian, bigtiff, ifds }))
}

fn need(end: u64, file_size: u64, what: &str) -> Result<Walk, HeaderProblem> {
    if end > file_size {
        Err(HeaderProblem::Truncated(format!("{what} extends to byte {end} but the file has only {file_size} bytes")))
    } else {
        Ok(Walk::NeedMore { end })
    }
}

/// Reads and checks one IFD entry at `e`. Value ranges may extend past `have` (not past the file).
fn entry(r: &Reader, e: u64, bigtiff: bool, file_size: u64) -> Result<RawEntry, HeaderProblem> {
    let malformed = |m: String| Err(HeaderProblem::Malformed(m));
    let (tag, typ) = (r.u16(e).unwrap_or(0), r.u16(e + 2).unwrap_or(0));
    let count = if bigtiff { r.u64(e + 4) } else { r.u32(e + 4).map(u64::from) }.unwrap_or(0);
    let field = if bigtiff { e + 12 } else { e + 8 };
    let field_len = if bigtiff { 8 } else { 4 };
    let Some(size) = type_size(typ) else {
        return malformed(format!("{} has unknown field type {typ}", tag_name(tag)));
    };
    if Type::from_u16(typ).is_none() {
        return malformed(format!("{} has unknown field type {typ}", tag_name(tag)));
    }
    let len = match count.checked_mul(size) {
        Some(l) if l <= MAX_VALUE_BYTES => l,
        _ => return malformed(format!("{} has an absurd count {count}", tag_name(tag))),
    };
    let start = if len <= field_len {
        field
    } else {
        let off = if bigtiff { r.u64(field) } else { r.u32(field).map(u64::from) }.unwrap_or(0);
        match off.checked_add(len) {
            Some(end) if end <= file_size => off,
            _ => {
                return Err(HeaderProblem::Truncated(format!(
                    "the value of {} ({len} bytes at offset {off}) lies past the end of the file ({file_size} bytes)",
                    tag_name(tag)
                )));
            }
        }
    };
    let value = start as usize..(start + len) as usize;
    // async-tiff panics on ASCII values that are inline and not NUL-terminated 7-bit text.
    if typ == 2 && len <= field_len {
        let bytes = r.buf.get(value.clone()).unwrap_or(&[]);
        let ok = if count == 1 { bytes.first() == Some(&0) } else { bytes.is_ascii() && bytes.ends_with(&[0]) };
        if !ok {
            return malformed(format!("{} is a short ASCII value without a terminating NUL", tag_name(tag)));
        }
    }
    // async-tiff accepts only a single RATIONAL for the resolutions (anything else: unreachable!).
    if matches!(tag, TAG_X_RESOLUTION | TAG_Y_RESOLUTION) && !(typ == 5 && count == 1) {
        return malformed(format!("resolution tag {tag} must be one RATIONAL"));
    }
    Ok(RawEntry { tag, typ, count, value })
}

impl RawIfd {
    pub(crate) fn get(&self, tag: u16) -> Option<&RawEntry> {
        self.entries.iter().rev().find(|e| e.tag == tag)
    }
}

/// First value of an integer tag, read from the raw bytes (async-tiff maps unknown enum values
/// such as predictor 4 to "absent", which would silently mis-decode).
pub(crate) fn raw_uint(buf: &[u8], big_endian: bool, ifd: &RawIfd, tag: u16) -> Option<u64> {
    let e = ifd.get(tag)?;
    if e.count == 0 {
        return None;
    }
    Reader { buf, big_endian }.uint(e, 0)
}

/// The checks that depend on several entries of one IFD (all values are in memory by now or
/// the caller will fetch them; checks that need value bytes run only when they are present).
fn check_ifd(r: &Reader, ifd: &RawIfd, bigtiff: bool) -> Result<(), HeaderProblem> {
    let malformed = |m: String| Err(HeaderProblem::Malformed(m));
    for tag in [TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_BITS_PER_SAMPLE, TAG_PHOTOMETRIC, TAG_SAMPLES_PER_PIXEL] {
        match ifd.get(tag) {
            None => return malformed(format!("IFD at offset {} lacks the required {}", ifd.offset, tag_name(tag))),
            Some(e) if e.count == 0 => {
                return malformed(format!("IFD at offset {} has an empty {}", ifd.offset, tag_name(tag)));
            }
            Some(_) => {}
        }
    }
    if ifd.entries.iter().any(|e| e.value.end > r.buf.len()) {
        // Values still to be fetched; the caller walks again once they are here.
        return Ok(());
    }
    // async-tiff unwraps PhotometricInterpretation::from_u16.
    let photometric = ifd.get(TAG_PHOTOMETRIC).and_then(|e| r.uint(e, 0));
    if photometric.and_then(|p| u16::try_from(p).ok()).and_then(PhotometricInterpretation::from_u16).is_none() {
        return malformed(format!("unknown PhotometricInterpretation {photometric:?}"));
    }
    check_geokeys(r, ifd, bigtiff)
}

/// The GeoKey directory must have a valid header, whole key entries, and every reference into
/// GeoAsciiParams / GeoDoubleParams must land inside them (async-tiff indexes them unchecked).
fn check_geokeys(r: &Reader, ifd: &RawIfd, bigtiff: bool) -> Result<(), HeaderProblem> {
    let malformed = |m: &str| Err(HeaderProblem::Malformed(format!("GeoKeyDirectory: {m}")));
    let Some(dir) = ifd.get(TAG_GEO_KEY_DIRECTORY) else { return Ok(()) };
    if !matches!(dir.typ, 1 | 3 | 4 | 7 | 13 | 16 | 18) {
        // async-tiff refuses other types with an error, not a panic.
        return Ok(());
    }
    let keys: Vec<u64> = (0..dir.count).filter_map(|i| r.uint(dir, i)).collect();
    let [version, revision, _, n, ..] = keys[..] else {
        return malformed("fewer than 4 values");
    };
    if version != 1 || revision != 1 {
        return malformed(&format!("version {version}.{revision}, expected 1.1"));
    }
    if 4 + 4 * n > keys.len() as u64 {
        return malformed(&format!("{n} keys announced, room for {}", keys.len() / 4 - 1));
    }
    let ascii = ascii_params(r, ifd, bigtiff);
    let doubles = ifd.get(TAG_GEO_DOUBLE_PARAMS).map(|e| e.count);
    for k in keys.chunks_exact(4).skip(1).take(n as usize) {
        let &[_, location, count, offset] = k else { continue };
        let (count, offset) = (count as usize, offset as usize);
        match location as u16 {
            TAG_GEO_ASCII_PARAMS => match &ascii {
                Some(s) if s.get(offset..offset + count).is_some() => {}
                Some(_) => return malformed("a key points outside GeoAsciiParams"),
                None => return malformed("a key points into a missing or unreadable GeoAsciiParams"),
            },
            TAG_GEO_DOUBLE_PARAMS => match doubles {
                Some(len) if (offset + count.max(1)) as u64 <= len => {}
                _ => return malformed("a key points outside GeoDoubleParams"),
            },
            _ => {}
        }
    }
    Ok(())
}

/// GeoAsciiParams exactly as async-tiff will decode it (so slicing checks match its slicing).
fn ascii_params(r: &Reader, ifd: &RawIfd, bigtiff: bool) -> Option<String> {
    let e = ifd.get(TAG_GEO_ASCII_PARAMS)?;
    if e.typ != 2 || e.count == 0 {
        return None;
    }
    let bytes = r.buf.get(e.value.clone())?;
    let inline = (e.value.len() as u64) <= if bigtiff { 8 } else { 4 };
    if e.count == 1 {
        Some(String::new())
    } else if inline {
        std::str::from_utf8(bytes).ok().map(|s| s.trim_matches(char::from(0)).to_string())
    } else {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(bytes.get(..end)?).into_owned())
    }
}

/// Header bytes in memory, served to async-tiff; reads past the end are errors, not panics.
#[derive(Debug)]
struct MemFetch(Bytes);

#[async_trait::async_trait]
impl MetadataFetch for MemFetch {
    async fn fetch(&self, range: Range<u64>) -> AsyncTiffResult<Bytes> {
        let len = self.0.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(AsyncTiffError::EndOfFile(
                range.end.saturating_sub(range.start),
                len.saturating_sub(range.start),
            ));
        }
        Ok(self.0.slice(range.start as usize..range.end as usize))
    }
}

/// Parses every IFD `walk` accepted, with async-tiff, from memory.
pub(crate) fn parse_ifds(buf: &Bytes, raw: &RawHeader) -> Result<Vec<ImageFileDirectory>, HeaderProblem> {
    let fetch = MemFetch(buf.clone());
    let endianness = if raw.big_endian { Endianness::BigEndian } else { Endianness::LittleEndian };
    let offsets: Vec<u64> = raw.ifds.iter().map(|i| i.offset).collect();
    let bigtiff = raw.bigtiff;
    let parse = async {
        let mut out = Vec::with_capacity(offsets.len());
        for off in offsets {
            let reader = ImageFileDirectoryReader::open(&fetch, off, bigtiff, endianness).await?;
            out.push(reader.read(&fetch).await?);
        }
        Ok::<_, AsyncTiffError>(out)
    };
    // Everything is in memory, so the future never waits: block_on returns at once even when
    // called from inside a runtime.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures::executor::block_on(parse)));
    match result {
        Ok(Ok(ifds)) => Ok(ifds),
        Ok(Err(e)) => Err(HeaderProblem::Malformed(format!("cannot parse the IFD: {e}"))),
        Err(_) => Err(HeaderProblem::Malformed("the TIFF parser rejected the IFD structure".into())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// IFD entries of [`TiffBuilder`]: `(tag, type, values)`.
    pub(crate) type Entries = Vec<(u16, u16, Vec<u64>)>;

    /// A minimal little- or big-endian classic TIFF writer for tests: entries `(tag, type, values)`
    /// with values as u64 written at the type's size.
    pub(crate) struct TiffBuilder {
        pub big_endian: bool,
        pub ifds: Vec<Entries>,
        pub tail: Vec<u8>,
    }

    impl TiffBuilder {
        pub(crate) fn new(big_endian: bool) -> Self {
            TiffBuilder { big_endian, ifds: vec![], tail: vec![] }
        }

        fn put(&self, out: &mut Vec<u8>, v: u64, size: usize) {
            let b = v.to_be_bytes();
            let be = &b[8 - size..];
            if self.big_endian {
                out.extend_from_slice(be);
            } else {
                out.extend(be.iter().rev());
            }
        }

        /// Serialises: header, then each IFD followed by its out-of-line values, then `tail`.
        /// Returns the bytes and the offset where `tail` starts.
        pub(crate) fn build(&self) -> (Vec<u8>, usize) {
            let mut out = if self.big_endian { b"MM".to_vec() } else { b"II".to_vec() };
            self.put(&mut out, 42, 2);
            self.put(&mut out, 8, 4);
            let mut ifd_ptr_pos = 4;
            for ifd in &self.ifds {
                let at = out.len();
                let p = ifd_ptr_pos;
                let mut tmp = vec![];
                self.put(&mut tmp, at as u64, 4);
                out[p..p + 4].copy_from_slice(&tmp);
                self.put(&mut out, ifd.len() as u64, 2);
                let values_at = at + 2 + 12 * ifd.len() + 4;
                let mut values = vec![];
                for (tag, typ, vals) in ifd {
                    let size = type_size(*typ).unwrap_or(2) as usize;
                    self.put(&mut out, *tag as u64, 2);
                    self.put(&mut out, *typ as u64, 2);
                    self.put(&mut out, vals.len() as u64, 4);
                    let mut bytes = vec![];
                    for &v in vals {
                        if *typ == 5 {
                            self.put(&mut bytes, v, 4);
                            self.put(&mut bytes, 1, 4);
                        } else {
                            self.put(&mut bytes, v, size);
                        }
                    }
                    if bytes.len() <= 4 {
                        bytes.resize(4, 0);
                        out.extend_from_slice(&bytes);
                    } else {
                        self.put(&mut out, (values_at + values.len()) as u64, 4);
                        values.extend_from_slice(&bytes);
                        if values.len() % 2 == 1 {
                            values.push(0);
                        }
                    }
                }
                ifd_ptr_pos = out.len();
                self.put(&mut out, 0, 4);
                out.extend_from_slice(&values);
            }
            let tail_at = out.len();
            out.extend_from_slice(&self.tail);
            (out, tail_at)
        }
    }

    pub(crate) fn minimal_ifd(
        w: u64,
        h: u64,
        tile: u64,
        offsets: Vec<u64>,
        counts: Vec<u64>,
    ) -> Vec<(u16, u16, Vec<u64>)> {
        vec![
            (256, 3, vec![w]),
            (257, 3, vec![h]),
            (258, 3, vec![16]),
            (259, 3, vec![1]),
            (262, 3, vec![1]),
            (277, 3, vec![1]),
            (322, 3, vec![tile]),
            (323, 3, vec![tile]),
            (324, 4, offsets),
            (325, 4, counts),
            (339, 3, vec![1]),
            (33550, 12, vec![10f64.to_bits(), 10f64.to_bits(), 0]),
            (33922, 12, vec![0, 0, 0, 500000f64.to_bits(), 4000000f64.to_bits(), 0]),
            (34735, 3, vec![1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633]),
        ]
    }

    fn walk_all(buf: &[u8]) -> Result<RawHeader, HeaderProblem> {
        match walk(buf, buf.len() as u64)? {
            Walk::Done(h) => Ok(h),
            Walk::NeedMore { end } => panic!("need more up to {end} with the whole file"),
        }
    }

    #[test]
    fn walks_a_valid_header_both_byte_orders() {
        for be in [false, true] {
            let mut b = TiffBuilder::new(be);
            b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
            let (buf, _) = b.build();
            let h = walk_all(&buf).unwrap();
            assert_eq!(h.big_endian, be);
            assert_eq!(h.ifds.len(), 1);
            let ifds = parse_ifds(&Bytes::from(buf.clone()), &h).unwrap();
            assert_eq!(ifds[0].image_width(), 20);
            assert_eq!(ifds[0].tile_offsets().unwrap().len(), 4);
            assert_eq!(raw_uint(&buf, be, &h.ifds[0], TAG_IMAGE_WIDTH), Some(20));
        }
    }

    #[test]
    fn asks_for_more_bytes_when_the_ifd_is_beyond_the_buffer() {
        let mut b = TiffBuilder::new(false);
        b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
        let (buf, _) = b.build();
        match walk(&buf[..40], buf.len() as u64).unwrap() {
            Walk::NeedMore { end } => assert!(end > 40 && end <= buf.len() as u64),
            Walk::Done(_) => panic!("cannot be done with 40 bytes"),
        }
    }

    #[test]
    fn refuses_garbage_truncation_and_cycles() {
        assert!(matches!(walk(b"GIF89a\0\0\0\0\0\0", 12), Err(HeaderProblem::NotTiff(_))));
        assert!(matches!(walk(b"II*\0", 4), Err(HeaderProblem::Truncated(_))));
        assert!(matches!(walk(b"II\x2b\0\x08\0\0\0", 100), Ok(Walk::NeedMore { .. })));
        assert!(matches!(walk(b"II\x2c\0\x08\0\0\0", 8), Err(HeaderProblem::NotTiff(_))));
        let mut b = TiffBuilder::new(false);
        b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
        let (mut buf, _) = b.build();
        // Truncated in the middle of the IFD.
        assert!(matches!(walk(&buf[..30], 30), Err(HeaderProblem::Truncated(_))));
        // Next-IFD pointer back to the first IFD: a cycle.
        let n = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        let p = 8 + 2 + 12 * n;
        buf[p..p + 4].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(walk(&buf, buf.len() as u64), Err(HeaderProblem::Malformed(m)) if m.contains("loops")));
    }

    #[test]
    fn refuses_entries_that_would_panic_async_tiff() {
        type Edit = Box<dyn Fn(&mut Entries)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("unknown type", Box::new(|i| i[0].1 = 99)),
            ("missing width", Box::new(|i| i.retain(|e| e.0 != 256))),
            ("missing photometric", Box::new(|i| i.retain(|e| e.0 != 262))),
            ("bad photometric", Box::new(|i| i[4].2 = vec![77])),
            ("geokeys short", Box::new(|i| i[13].2 = vec![1, 1, 0])),
            ("geokeys count", Box::new(|i| i[13].2 = vec![1, 1, 0, 9, 1024, 0, 1, 1])),
            ("geokeys version", Box::new(|i| i[13].2 = vec![2, 1, 0, 0])),
            ("geo ascii missing", Box::new(|i| i[13].2 = vec![1, 1, 0, 1, 1026, 34737, 5, 0])),
            ("geo double outside", Box::new(|i| i[13].2 = vec![1, 1, 0, 1, 2057, 34736, 1, 3])),
            ("inline ascii without nul", Box::new(|i| i.push((305, 2, vec![65, 66])))),
            ("one-char ascii", Box::new(|i| i.push((305, 2, vec![65])))),
            ("resolution as short", Box::new(|i| i.push((282, 3, vec![72])))),
        ];
        for (name, edit) in cases {
            let mut ifd = minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]);
            edit(&mut ifd);
            ifd.sort_by_key(|e| e.0);
            let mut b = TiffBuilder::new(false);
            b.ifds.push(ifd);
            let (buf, _) = b.build();
            let r = walk(&buf, buf.len() as u64);
            assert!(matches!(r, Err(HeaderProblem::Malformed(_))), "{name}: {r:?}");
        }
    }

    #[test]
    fn a_value_past_the_end_of_the_file_is_truncation() {
        let mut b = TiffBuilder::new(false);
        b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
        let (buf, _) = b.build();
        let cut = buf.len() - 10;
        assert!(matches!(walk(&buf[..cut], cut as u64), Err(HeaderProblem::Truncated(_))));
    }
}
