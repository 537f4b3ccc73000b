//! Compressed tile bytes → pixels: decompression (none, DEFLATE, LZW, ZSTD), byte order,
//! predictors 2 and 3, and the copy of each tile's useful part into the output window.
//!
//! CPU only, no I/O. Tiles are decompressed into one reused, typed scratch buffer whose size is
//! known exactly (libdeflate wants that), DEFLATE tiles only down to the window's last row, then
//! only the rows and columns the window needs are fixed up (byte swap, predictor) and copied.

use super::{CogError, DataType};

/// Compression schemes we decode (TIFF tag 259 values in the comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// 1
    None,
    /// 8 (Adobe) and 32946 (old-style)
    Deflate,
    /// 5
    Lzw,
    /// 50000
    Zstd,
}

impl Compression {
    pub(crate) fn from_tag(v: u16) -> Option<Compression> {
        Some(match v {
            1 => Compression::None,
            5 => Compression::Lzw,
            8 | 32946 => Compression::Deflate,
            50000 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Human name of a TIFF compression code, for error messages.
pub(crate) fn compression_name(v: u16) -> &'static str {
    match v {
        1 => "none",
        2 => "CCITT RLE",
        3 => "CCITT Group 3",
        4 => "CCITT Group 4",
        5 => "LZW",
        6 | 7 => "JPEG",
        8 | 32946 => "DEFLATE",
        32773 => "PackBits",
        34887 => "LERC",
        34925 => "LZMA",
        50000 => "ZSTD",
        50001 => "WebP",
        50002 => "JPEG-XL",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Predictor {
    None,
    Horizontal,
    Float,
}

/// How the tiles of one level are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    pub compression: Compression,
    pub predictor: Predictor,
    pub dtype: DataType,
    pub big_endian: bool,
}

/// Reusable decompressor state for one decode call (one per thread when decoding in a pool).
pub(crate) struct Decoders {
    inflater: libdeflater::Decompressor,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoders {
    pub(crate) fn new() -> Self {
        Decoders { inflater: libdeflater::Decompressor::new(), zstd: None }
    }

    /// Decompresses `src` into `dst` and returns how many bytes were written. `dst` has the exact
    /// size of a full tile, so a larger stream is an error and a shorter one is reported.
    ///
    /// Only the first `needed` bytes are wanted (the rows of the tile above the window's bottom
    /// edge): a DEFLATE stream is inflated only that far (see [`inflate_prefix`]) and reports
    /// `needed` bytes written, so what lies past them, a stream too long for a tile included, is
    /// not looked at; the other codecs decode the whole tile.
    pub(crate) fn decompress(
        &mut self,
        c: Compression,
        src: &[u8],
        dst: &mut [u8],
        needed: usize,
    ) -> Result<usize, String> {
        match c {
            Compression::None => {
                let n = src.len().min(dst.len());
                dst[..n].copy_from_slice(&src[..n]);
                Ok(n)
            }
            Compression::Deflate => {
                inflate_prefix(&mut self.inflater, src, dst, needed).map_err(|e| format!("DEFLATE: {e}"))
            }
            Compression::Lzw => lzw(src, dst),
            Compression::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("ZSTD: {e}"))?);
                }
                match self.zstd.as_mut() {
                    Some(z) => z.decompress_to_buffer(src, dst).map_err(|e| format!("ZSTD: {e}")),
                    None => Err("ZSTD: no decompressor".into()),
                }
            }
        }
    }
}

/// Room past the bytes wanted that a partial inflate leaves: the longest run libdeflate writes
/// or refuses whole, a stored block (65,535 bytes; a match is at most 258).
const INFLATE_SPILL: usize = 1 << 16;

/// Inflates `src` (zlib or raw DEFLATE) into `dst`, stopping once its first `needed` bytes are
/// out; returns the bytes written (`needed` when it stopped early).
///
/// Why: a window's bottom edge crosses its last row of tiles, and a DEFLATE stream can be
/// stopped where the rows below the window begin (not skipped to where the rows of a window's
/// right edge do: rows are whole in the stream). How: libdeflate is given `needed` +
/// [`INFLATE_SPILL`] bytes of room. It writes its output front to back and refuses a literal,
/// match or stored block that would not fit before writing any of it, so when it reports
/// insufficient space, everything before the symbol it refused (which starts past `needed`) is
/// written and correct. That is how libdeflate works, not a promise of its API:
/// `partial_inflate_equals_the_full_inflate_up_to_what_is_needed` pins it, on tiles of every
/// kind of block, with the version in Cargo.lock. The stopped stream's checksum (zlib's adler32,
/// at its end) is not read.
fn inflate_prefix(
    inflater: &mut libdeflater::Decompressor,
    src: &[u8],
    dst: &mut [u8],
    needed: usize,
) -> Result<usize, libdeflater::DecompressionError> {
    // GDAL writes zlib streams; some writers emit raw deflate. Tell them apart by the zlib
    // header (CM = 8 and the FCHECK multiple of 31).
    let zlib = matches!(src, [a, b, ..] if a & 0x0f == 8 && (u16::from(*a) << 8 | u16::from(*b)) % 31 == 0);
    let room = needed.saturating_add(INFLATE_SPILL).min(dst.len());
    let out = &mut dst[..room];
    let r = if zlib { inflater.zlib_decompress(src, out) } else { inflater.deflate_decompress(src, out) };
    match r {
        Err(libdeflater::DecompressionError::InsufficientSpace) if room < dst.len() => Ok(needed),
        r => r,
    }
}

/// TIFF LZW: MSB-first codes, 8-bit symbols, the early code-size switch of libtiff.
fn lzw(src: &[u8], dst: &mut [u8]) -> Result<usize, String> {
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let (mut inp, mut written) = (src, 0usize);
    loop {
        let out = dst.get_mut(written..).unwrap_or(&mut []);
        let res = dec.decode_bytes(inp, out);
        written += res.consumed_out;
        inp = inp.get(res.consumed_in..).unwrap_or(&[]);
        match res.status {
            Ok(weezl::LzwStatus::Done) => return Ok(written),
            Ok(weezl::LzwStatus::NoProgress) => return Ok(written),
            Ok(weezl::LzwStatus::Ok) => {
                // A full output buffer ends the tile even when the stream has no end code.
                if written >= dst.len() || (res.consumed_in == 0 && res.consumed_out == 0) {
                    return Ok(written);
                }
            }
            Err(e) => return Err(format!("LZW: {e}")),
        }
    }
}

/// A pixel type we decode into.
pub(crate) trait Sample: bytemuck::Pod + Default + Send + 'static {
    /// Whether `wrapping_add` is exact integer arithmetic (any order of additions gives the same
    /// bits), unlike f32's.
    const INTEGER: bool;
    fn swap(self) -> Self;
    fn wrapping_add(self, o: Self) -> Self;
    fn from_f64(v: f64) -> Self;
    /// `out[i] = acc + src[0] + .. + src[i]` by `wrapping_add`, for `i` below the shorter
    /// length: predictor 2 undone over a run.
    #[inline]
    fn running_sum(out: &mut [Self], src: &[Self], acc: Self) {
        super::prefix::scalar(out, src, acc)
    }
}

macro_rules! int_sample {
    ($t:ty $(, $running_sum:expr)?) => {
        impl Sample for $t {
            const INTEGER: bool = true;
            #[inline]
            fn swap(self) -> Self {
                self.swap_bytes()
            }
            #[inline]
            fn wrapping_add(self, o: Self) -> Self {
                <$t>::wrapping_add(self, o)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            $(
                #[inline]
                fn running_sum(out: &mut [Self], src: &[Self], acc: Self) {
                    $running_sum(out, src, acc)
                }
            )?
        }
    };
}
int_sample!(u8, super::prefix::running_sum_u8);
int_sample!(u16, super::prefix::running_sum_u16);
// The same bits as u16 (two's complement wraps alike).
int_sample!(i16, |out: &mut [i16], src: &[i16], acc: i16| super::prefix::running_sum_u16(
    bytemuck::cast_slice_mut(out),
    bytemuck::cast_slice(src),
    acc as u16
));

impl Sample for f32 {
    const INTEGER: bool = false;
    #[inline]
    fn swap(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
    #[inline]
    fn wrapping_add(self, o: Self) -> Self {
        self + o
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// Undoes horizontal differencing (predictor 2) on one row, in native byte order.
#[inline]
pub(crate) fn undo_horizontal<T: Sample>(row: &mut [T]) {
    let mut acc = match row.first() {
        Some(&v) => v,
        None => return,
    };
    for v in row.iter_mut().skip(1) {
        acc = acc.wrapping_add(*v);
        *v = acc;
    }
}

/// Undoes the floating-point predictor (3) on one row of `width` f32 values stored as bytes:
/// byte-wise differencing over the row, whose bytes are grouped by significance (most
/// significant plane first, whatever the file's byte order). Leaves native-endian f32 bytes.
pub(crate) fn undo_float_row(row: &mut [u8], scratch: &mut Vec<u8>) {
    let width = row.len() / 4;
    scratch.clear();
    scratch.extend_from_slice(row);
    let mut acc = 0u8;
    for b in scratch.iter_mut() {
        acc = acc.wrapping_add(*b);
        *b = acc;
    }
    let (p0, rest) = scratch.split_at(width);
    let (p1, rest) = rest.split_at(width);
    let (p2, p3) = rest.split_at(width);
    for (i, out) in row.chunks_exact_mut(4).enumerate() {
        let v = f32::from_be_bytes([p0[i], p1[i], p2[i], p3[i]]);
        out.copy_from_slice(&v.to_ne_bytes());
    }
}

/// Where one tile lands in the output window.
pub(crate) struct Placement {
    /// Tile size in pixels (strips: image width x rows per strip).
    pub tile_w: usize,
    pub tile_h: usize,
    /// Rows of this tile that hold image data (the last strip may be shorter).
    pub valid_rows: usize,
    /// Rows `r0..r1` and columns `c0..c1` of the tile to copy.
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
    /// Output row and column of the tile's `(r0, c0)`.
    pub out_row: usize,
    pub out_col: usize,
}

/// Decodes one tile and copies its useful part into `out` (row-major, `out_w` wide).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_tile<T: Sample>(
    dec: &mut Decoders,
    codec: &Codec,
    src: &[u8],
    p: &Placement,
    tile_buf: &mut Vec<T>,
    scratch: &mut Vec<u8>,
    out: &mut [T],
    out_w: usize,
) -> Result<(), String> {
    let n = p.tile_w * p.tile_h;
    if tile_buf.len() != n {
        tile_buf.clear();
        tile_buf.resize(n, T::default());
    }
    let size = std::mem::size_of::<T>();
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(tile_buf.as_mut_slice());
    // Rows we touch must have been written (edge tiles are full size in GDAL COGs; the last strip
    // of a stripped file may stop at the image edge).
    let needed = p.r1 * p.tile_w * size;
    let written = dec.decompress(codec.compression, src, bytes, needed)?;
    if written < needed {
        return Err(format!(
            "decompressed to {written} bytes, expected at least {needed} ({} x {} px of {size} bytes)",
            p.tile_w, p.valid_rows
        ));
    }
    let native = codec.big_endian == cfg!(target_endian = "big") || size == 1;
    for r in p.r0..p.r1 {
        let row = &mut tile_buf[r * p.tile_w..(r + 1) * p.tile_w];
        let o = (p.out_row + r - p.r0) * out_w + p.out_col;
        if let (Predictor::Horizontal, true, true) = (codec.predictor, native, T::INTEGER) {
            // Only columns c0..c1 are kept, so the differences before c0 count only by their sum
            // (wrapping: any order, so it vectorises) and the running sum over c0..c1 goes
            // straight into the window: a third less work than undoing the whole row and copying.
            let acc = row[..p.c0].iter().fold(T::default(), |a, &v| a.wrapping_add(v));
            T::running_sum(&mut out[o..o + (p.c1 - p.c0)], &row[p.c0..p.c1], acc);
            continue;
        }
        match codec.predictor {
            Predictor::Float => {
                let rb: &mut [u8] = bytemuck::cast_slice_mut(row);
                undo_float_row(rb, scratch);
            }
            Predictor::Horizontal => {
                if codec.big_endian != cfg!(target_endian = "big") && size > 1 {
                    row.iter_mut().for_each(|v| *v = v.swap());
                }
                undo_horizontal(row);
            }
            Predictor::None => {
                if codec.big_endian != cfg!(target_endian = "big") && size > 1 {
                    row[p.c0..p.c1].iter_mut().for_each(|v| *v = v.swap());
                }
            }
        }
        out[o..o + (p.c1 - p.c0)].copy_from_slice(&row[p.c0..p.c1]);
    }
    Ok(())
}

pub(crate) fn check_codec(codec: &Codec, href: &str) -> Result<(), CogError> {
    let bad = |what: String| Err(CogError::Unsupported { href: href.to_string(), what });
    match (codec.predictor, codec.dtype) {
        (Predictor::Float, DataType::F32) | (Predictor::None, _) => Ok(()),
        (Predictor::Horizontal, DataType::U8 | DataType::U16 | DataType::I16) => Ok(()),
        (p, d) => bad(format!("predictor {p:?} with data type {d:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizontal_predictor_known_arrays() {
        let mut a: Vec<u8> = vec![10, 1, 1, 255, 2];
        undo_horizontal(&mut a);
        assert_eq!(a, vec![10, 11, 12, 11, 13]);
        let mut b: Vec<u16> = vec![1000, 65535, 2, 0];
        undo_horizontal(&mut b);
        assert_eq!(b, vec![1000, 999, 1001, 1001]);
        let mut c: Vec<i16> = vec![-5, -3, 10];
        undo_horizontal(&mut c);
        assert_eq!(c, vec![-5, -8, 2]);
    }

    /// Encodes a row with the floating-point predictor as libtiff does.
    fn float_encode(vals: &[f32]) -> Vec<u8> {
        let w = vals.len();
        let mut planes = vec![0u8; 4 * w];
        for (i, v) in vals.iter().enumerate() {
            for (k, b) in v.to_be_bytes().iter().enumerate() {
                planes[k * w + i] = *b;
            }
        }
        let mut out = planes.clone();
        for i in (1..out.len()).rev() {
            out[i] = planes[i].wrapping_sub(planes[i - 1]);
        }
        out
    }

    #[test]
    fn float_predictor_round_trip() {
        let vals = [0.0f32, 1.5, -2.25, 1e-7, f32::MAX, 3.0, f32::NAN];
        let mut row = float_encode(&vals);
        let mut scratch = vec![];
        undo_float_row(&mut row, &mut scratch);
        let back: Vec<f32> = row.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
        for (a, b) in vals.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    fn payload() -> Vec<u8> {
        (0..4096u32).map(|i| ((i * 7) % 251) as u8 / 3).collect()
    }

    /// `data` compressed by libdeflate at `level`: as a zlib stream and as raw DEFLATE.
    fn zlib_and_raw(data: &[u8], level: libdeflater::CompressionLvl) -> [Vec<u8>; 2] {
        let mut c = libdeflater::Compressor::new(level);
        let mut z = vec![0; c.zlib_compress_bound(data.len())];
        let n = c.zlib_compress(data, &mut z).unwrap();
        z.truncate(n);
        let mut raw = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut raw).unwrap();
        raw.truncate(n);
        [z, raw]
    }

    #[test]
    fn deflate_round_trips_zlib_and_raw() {
        let data = payload();
        let [z, raw] = zlib_and_raw(&data, libdeflater::CompressionLvl::default());
        let mut d = Decoders::new();
        for src in [&z, &raw] {
            let mut out = vec![0u8; data.len()];
            assert_eq!(d.decompress(Compression::Deflate, src, &mut out, data.len()).unwrap(), data.len());
            assert_eq!(out, data);
        }
        // Garbage is an error, not a panic.
        let mut out = vec![0u8; data.len()];
        assert!(d.decompress(Compression::Deflate, &[0x78, 0x9c, 1, 2, 3], &mut out, data.len()).is_err());
    }

    /// 300 KB of each kind of DEFLATE content: incompressible (stored blocks), noisy 16-bit
    /// samples like real reflectance (dynamic Huffman, short matches), long repeats (258-byte
    /// matches) and a short run (one fixed-Huffman block).
    fn streams() -> Vec<(&'static str, Vec<u8>)> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random: Vec<u8> = (0..300_000).map(|_| next() as u8).collect();
        let noisy: Vec<u8> =
            (0..150_000u64).flat_map(|i| ((1000 + (i % 1024) + (next() % 200)) as u16).to_le_bytes()).collect();
        let repeats: Vec<u8> = (0..300_000u32).map(|i| (i % 37) as u8 * (1 + (i / 20_000 % 3) as u8)).collect();
        let short: Vec<u8> = b"eocube".repeat(9);
        vec![("random", random), ("noisy", noisy), ("repeats", repeats), ("short", short)]
    }

    #[test]
    fn partial_inflate_equals_the_full_inflate_up_to_what_is_needed() {
        let mut inflater = libdeflater::Decompressor::new();
        for (name, data) in streams() {
            for level in [0, 1, 6, 12] {
                let [z, raw] = zlib_and_raw(&data, libdeflater::CompressionLvl::new(level).unwrap());
                let len = data.len();
                let mut wants = vec![0, 1, 257, 258, 259, 4095, 65_535, 65_536, 65_537, 100_001, 234_567];
                wants.extend([len / 2, len.saturating_sub(INFLATE_SPILL + 1), len.saturating_sub(1), len]);
                for src in [&z, &raw] {
                    for &needed in wants.iter().filter(|&&w| w <= len) {
                        // Poisoned, so bytes it did not write cannot pass for written ones.
                        let mut out = vec![0xa5u8; len];
                        let got = inflate_prefix(&mut inflater, src, &mut out, needed)
                            .unwrap_or_else(|e| panic!("{name}, level {level}, {needed} bytes: {e}"));
                        assert!(got >= needed, "{name}, level {level}: {got} bytes written, {needed} needed");
                        assert!(
                            out[..needed] == data[..needed],
                            "{name}, level {level}: the first {needed} bytes differ"
                        );
                    }
                    // A stream longer than the whole buffer is still an error.
                    if len > 0 {
                        let mut short = vec![0u8; len - 1];
                        assert!(inflate_prefix(&mut inflater, src, &mut short, len - 1).is_err(), "{name}, {level}");
                    }
                }
            }
        }
    }

    #[test]
    fn lzw_round_trip_tiff_flavour() {
        let data = payload();
        let mut enc = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
        let packed = enc.encode(&data).unwrap();
        let mut out = vec![0u8; data.len()];
        assert_eq!(lzw(&packed, &mut out).unwrap(), data.len());
        assert_eq!(out, data);
        assert!(lzw(&[0xff; 64], &mut out).is_err() || out != data);
    }

    #[test]
    fn zstd_round_trip() {
        let data = payload();
        let packed = zstd::bulk::compress(&data, 3).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut d = Decoders::new();
        assert_eq!(d.decompress(Compression::Zstd, &packed, &mut out, data.len()).unwrap(), data.len());
        assert_eq!(out, data);
        assert!(d.decompress(Compression::Zstd, &[1, 2, 3], &mut out, data.len()).is_err());
    }

    /// Every sub-window of a differenced tile, in both byte orders and both integer widths,
    /// equals the tile's values (the native path sums the columns before the window instead of
    /// undoing them).
    fn predictor_2_windows_match<T: Sample + PartialEq + std::fmt::Debug>(
        values: &[T],
        w: usize,
        h: usize,
        big_endian: bool,
        to_bytes: impl Fn(T) -> Vec<u8>,
        sub: impl Fn(T, T) -> T,
    ) {
        let mut src = vec![];
        for row in values.chunks_exact(w) {
            let mut prev = T::default();
            for &v in row {
                src.extend(to_bytes(sub(v, prev)));
                prev = v;
            }
        }
        let dtype = if std::mem::size_of::<T>() == 1 { DataType::U8 } else { DataType::U16 };
        let codec = Codec { compression: Compression::None, predictor: Predictor::Horizontal, dtype, big_endian };
        for (r0, r1) in [(0, h), (1, h - 1), (h - 1, h)] {
            for c0 in 0..w {
                for c1 in c0 + 1..=w {
                    let p = Placement { tile_w: w, tile_h: h, valid_rows: h, r0, r1, c0, c1, out_row: 0, out_col: 0 };
                    let mut out = vec![T::default(); (r1 - r0) * (c1 - c0)];
                    let (mut tb, mut sc) = (vec![], vec![]);
                    decode_tile(&mut Decoders::new(), &codec, &src, &p, &mut tb, &mut sc, &mut out, c1 - c0).unwrap();
                    let want: Vec<T> = (r0..r1).flat_map(|r| values[r * w + c0..r * w + c1].to_vec()).collect();
                    assert_eq!(out, want, "rows {r0}..{r1}, columns {c0}..{c1}, big endian {big_endian}");
                }
            }
        }
    }

    #[test]
    fn predictor_2_sub_windows_equal_the_tile_in_both_byte_orders() {
        let (w, h) = (37, 5);
        let mut x = 7u32;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            x >> 8
        };
        let wide: Vec<u16> = (0..w * h).map(|_| next() as u16).collect();
        let narrow: Vec<u8> = (0..w * h).map(|_| next() as u8).collect();
        for be in [false, true] {
            let bytes16 = |v: u16| if be { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() };
            predictor_2_windows_match(&wide, w, h, be, bytes16, u16::wrapping_sub);
            predictor_2_windows_match(&narrow, w, h, be, |v: u8| vec![v], u8::wrapping_sub);
        }
    }

    #[test]
    fn decode_tile_big_endian_predictor_2_into_window() {
        // A 4x2 u16 tile, big-endian, horizontally differenced; copy its right half, row 1.
        let vals: [[u16; 4]; 2] = [[1, 2, 3, 4], [300, 301, 302, 65535]];
        let mut src = vec![];
        for row in vals {
            let mut prev = 0u16;
            for v in row {
                src.extend_from_slice(&v.wrapping_sub(prev).to_be_bytes());
                prev = v;
            }
        }
        let codec = Codec {
            compression: Compression::None,
            predictor: Predictor::Horizontal,
            dtype: DataType::U16,
            big_endian: true,
        };
        let p = Placement { tile_w: 4, tile_h: 2, valid_rows: 2, r0: 1, r1: 2, c0: 2, c1: 4, out_row: 0, out_col: 1 };
        let mut out = vec![0u16; 3];
        let (mut tb, mut sc) = (vec![], vec![]);
        decode_tile(&mut Decoders::new(), &codec, &src, &p, &mut tb, &mut sc, &mut out, 3).unwrap();
        assert_eq!(out, vec![0, 302, 65535]);
        // Too few bytes: an error naming the sizes.
        let err = decode_tile(&mut Decoders::new(), &codec, &src[..8], &p, &mut tb, &mut sc, &mut out, 3).unwrap_err();
        assert!(err.contains("expected at least"), "{err}");
    }
}
