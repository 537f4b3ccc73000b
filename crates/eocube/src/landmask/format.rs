//! Decoder for the compact land-mask asset written by `scripts/build_landmask.py`.
//!
//! Layout (little-endian): `b"EOLAND01"`, `u32` payload length, zlib(payload). The payload holds the
//! TopoJSON transform (four `f64`: scale x/y, translate x/y), a varint polygon count, and per
//! polygon a varint ring count, per ring a varint vertex count followed by zigzag-varint deltas of
//! the quantized coordinates (carried across rings). Rings are open: the closing vertex is implied.
//! Every length and count is checked against the bytes actually present, so garbage or truncated
//! input yields [`LandMaskError::Corrupt`], never a panic or a huge allocation.

use super::LandMaskError;

pub(crate) const MAGIC: &[u8; 8] = b"EOLAND01";
/// The real payload is about 0.8 MB; anything claiming more than this is not our asset.
const MAX_PAYLOAD: usize = 64 << 20;
/// Decoded coordinates may sit one quantum past the pole or the antimeridian (see the build script).
const SLACK_DEG: f64 = 0.01;

/// Rings in lon/lat, each stored closed (first vertex repeated at the end) in one flat vector.
pub(crate) struct Rings {
    pub vertices: Vec<[f64; 2]>,
    /// `ring_starts[r]..ring_starts[r + 1]` are ring r's vertices (closing vertex included).
    pub ring_starts: Vec<u32>,
    pub polygons: usize,
}

fn corrupt(reason: impl Into<String>) -> LandMaskError {
    LandMaskError::Corrupt { reason: reason.into() }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn f64(&mut self) -> Result<f64, LandMaskError> {
        let bytes = self.buf.get(self.pos..self.pos + 8).ok_or_else(|| corrupt("payload truncated in the header"))?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, LandMaskError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(|| corrupt("payload truncated inside a varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    fn zigzag(&mut self) -> Result<i64, LandMaskError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A count of items that each take at least `min_bytes` bytes: bounded by what is left.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize, LandMaskError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return Err(corrupt(format!("{what} count {n} exceeds the remaining {} bytes", self.remaining())));
        }
        Ok(n as usize)
    }
}

/// Decode the whole asset (header, zlib, payload) into rings.
pub(crate) fn decode(bytes: &[u8]) -> Result<Rings, LandMaskError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("missing the EOLAND01 header"));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[8..12]);
    let payload_len = u32::from_le_bytes(len) as usize;
    if payload_len > MAX_PAYLOAD {
        return Err(corrupt(format!("declared payload of {payload_len} bytes is implausibly large")));
    }
    let mut payload = vec![0u8; payload_len];
    let n = libdeflater::Decompressor::new()
        .zlib_decompress(&bytes[12..], &mut payload)
        .map_err(|e| corrupt(format!("zlib stream: {e}")))?;
    if n != payload_len {
        return Err(corrupt(format!("payload is {n} bytes, header says {payload_len}")));
    }
    parse_payload(&payload)
}

fn parse_payload(payload: &[u8]) -> Result<Rings, LandMaskError> {
    let mut r = Reader { buf: payload, pos: 0 };
    let (sx, sy, tx, ty) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
    if ![sx, sy, tx, ty].iter().all(|v| v.is_finite()) || sx <= 0.0 || sy <= 0.0 {
        return Err(corrupt("invalid quantization transform"));
    }
    // Each polygon needs at least its ring count (1 byte); each ring its vertex count (1 byte);
    // each vertex two varints (2 bytes).
    let polygons = r.count(1, "polygon")?;
    let mut vertices = Vec::new();
    let mut ring_starts = vec![0u32];
    let (mut qx, mut qy) = (0i64, 0i64);
    for _ in 0..polygons {
        let rings = r.count(1, "ring")?;
        for _ in 0..rings {
            let n = r.count(2, "vertex")?;
            if n == 0 {
                return Err(corrupt("empty ring"));
            }
            let first = vertices.len();
            for _ in 0..n {
                qx = qx.checked_add(r.zigzag()?).ok_or_else(|| corrupt("coordinate overflow"))?;
                qy = qy.checked_add(r.zigzag()?).ok_or_else(|| corrupt("coordinate overflow"))?;
                let lon = qx as f64 * sx + tx;
                let lat = qy as f64 * sy + ty;
                if !(lon.abs() <= 180.0 + SLACK_DEG && lat.abs() <= 90.0 + SLACK_DEG) {
                    return Err(corrupt(format!("vertex ({lon}, {lat}) outside the globe")));
                }
                vertices.push([lon, lat]);
            }
            // Store rings closed so every ring of n vertices has n segments, including a
            // one-vertex islet (a zero-length segment the distance test still sees).
            vertices.push(vertices[first]);
            let end = u32::try_from(vertices.len()).map_err(|_| corrupt("too many vertices"))?;
            ring_starts.push(end);
        }
    }
    if r.remaining() != 0 {
        return Err(corrupt(format!("{} trailing bytes after the last ring", r.remaining())));
    }
    Ok(Rings { vertices, ring_starts, polygons })
}
