//! The one codec chain of the cube's uint16 chunks (data, `valid_count`, index variables and the
//! pyramid's levels): little-endian bytes in one zstd frame ([`super::meta::u16_codecs_v3`],
//! [`super::meta::u16_compressor_v2`]). Writing through it instead of zarrs' codec pipeline saves
//! a copy of every chunk and lets zstd compress one with several threads.
//!
//! Owns: turning values into chunk bytes and back. Must not touch: keys, metadata or I/O.

use zstd::zstd_safe::CParameter;

use super::meta::ZSTD_LEVEL;

/// Bytes per zstd job when a chunk is compressed by several threads: a 1200 x 1200 x 3 chunk
/// (8.6 MB) makes 5 jobs, where zstd's default (8 MB at level 5) makes one big and one small.
/// 512 KiB is zstd's minimum.
const JOB_BYTES: i32 = 2 << 20;

/// `values` as chunk bytes: their little-endian bytes in one zstd frame of level
/// [`ZSTD_LEVEL`], with the content size (numcodecs needs it) and no checksum.
///
/// A chunk over 512 KiB is compressed by zstd's worker threads, up to the machine's cores (at
/// most 4), in jobs of [`JOB_BYTES`]. The frame does not depend on the number of workers, as
/// `encodes_the_same_bytes_with_any_number_of_workers` checks, so the bytes depend only on
/// the values.
pub fn encode_u16(values: &[u16]) -> std::io::Result<Vec<u8>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32;
    // In memory, u16 are already little-endian bytes on every machine eocube is built for.
    if cfg!(target_endian = "little") {
        encode_bytes(bytemuck::cast_slice(values), workers)
    } else {
        encode_bytes(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), workers)
    }
}

fn encode_bytes(bytes: &[u8], workers: u32) -> std::io::Result<Vec<u8>> {
    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL as i32)?;
    zstd.include_checksum(false)?;
    zstd.include_contentsize(true)?;
    zstd.set_parameter(CParameter::NbWorkers(workers))?;
    zstd.set_parameter(CParameter::JobSize(JOB_BYTES as u32))?;
    zstd.compress(bytes)
}

/// `bytes` as zstd of `len` little-endian u16 values: the codec chain of the data variable and
/// of the pyramid levels. The output is bounded by `len`: a corrupt frame cannot allocate more.
pub(crate) fn decode_u16(bytes: &[u8], len: usize) -> std::result::Result<Vec<u16>, String> {
    let raw =
        zstd::bulk::decompress(bytes, len * 2).map_err(|e| format!("not zstd of at most {} bytes: {e}", len * 2))?;
    if raw.len() != len * 2 {
        return Err(format!("{} bytes decoded, expected {}", raw.len(), len * 2));
    }
    Ok(raw.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk-like signal: smooth with noise, so zstd has work to do in every job.
    fn values(n: usize) -> Vec<u16> {
        let mut x = 12345u32;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (1000 + (i / 7 % 3000) as u32 + (x & 63)) as u16
            })
            .collect()
    }

    #[test]
    fn encodes_the_same_bytes_with_any_number_of_workers() {
        // 6 MB: three jobs; and one under the threaded minimum.
        for n in [3_000_000, 1000] {
            let v = values(n);
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let one = encode_bytes(&bytes, 1).unwrap();
            for workers in [2, 3, 8] {
                assert!(encode_bytes(&bytes, workers).unwrap() == one, "{n} values, {workers} workers");
            }
            assert_eq!(encode_u16(&v).unwrap(), one);
            assert_eq!(decode_u16(&one, n).unwrap(), v);
            // The frame carries its content size (numcodecs allocates from it).
            assert_eq!(zstd::zstd_safe::get_frame_content_size(&one).ok().flatten(), Some(2 * n as u64));
        }
    }
}
