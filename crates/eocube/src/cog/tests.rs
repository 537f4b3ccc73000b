//! Unit tests of the COG reader on hand-made TIFFs (no fixtures, no servers).

use super::tiff::tests::{Entries, TiffBuilder, ascii, minimal_ifd};
use super::*;

#[test]
fn epsg_from_geokeys() {
    assert_eq!(epsg_from_keys(Some(32633), None), Ok(32633));
    assert_eq!(epsg_from_keys(Some(32633), Some(4326)), Ok(32633));
    assert_eq!(epsg_from_keys(None, Some(4326)), Ok(4326));
    assert_eq!(epsg_from_keys(Some(0), Some(4326)), Ok(4326));
    assert!(epsg_from_keys(Some(32767), None).unwrap_err().contains("user-defined"));
    assert!(epsg_from_keys(None, Some(32767)).unwrap_err().contains("user-defined"));
    assert!(epsg_from_keys(None, None).is_err());
}

#[test]
fn affine_from_tiepoint_scale_transformation_and_pixel_is_point() {
    let tie = [0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0];
    let scale = [10.0, 10.0, 0.0];
    let a = affine_from_tags(None, Some(&tie), Some(&scale), Some(1)).unwrap();
    assert_eq!(a, Affine::new(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0));
    // A tiepoint at pixel (2, 3) rather than the corner.
    let tie2 = [2.0, 3.0, 0.0, 500020.0, 3999970.0, 0.0];
    assert_eq!(affine_from_tags(None, Some(&tie2), Some(&scale), None).unwrap(), a);
    // PixelIsPoint: the tiepoint is a pixel centre, so the corner is half a pixel up-left.
    let p = affine_from_tags(None, Some(&tie), Some(&scale), Some(2)).unwrap();
    assert_eq!(p, Affine::new(10.0, 0.0, 499995.0, 0.0, -10.0, 4000005.0));
    // ModelTransformation wins, rotation terms kept.
    let m = [2.0, 0.5, 0.0, 100.0, 0.25, -2.0, 0.0, 200.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let t = affine_from_tags(Some(&m), Some(&tie), Some(&scale), None).unwrap();
    assert_eq!(t, Affine::new(2.0, 0.5, 100.0, 0.25, -2.0, 200.0));
    assert!(affine_from_tags(None, None, None, None).is_err());
    assert!(affine_from_tags(None, Some(&tie), Some(&[0.0, 10.0]), None).is_err(), "zero scale is degenerate");
    assert!(affine_from_tags(Some(&m[..6]), None, None, None).is_err());
}

/// A 40 x 20 uint16 image in 16 x 16 tiles (3 x 2 tiles), pixel value `row * 1000 + col`,
/// encoded with `compression` / `predictor`, in the given byte order.
fn test_tiff(big_endian: bool, compression: u16, predictor: u16) -> (Vec<u8>, Vec<u16>) {
    let (w, h, t) = (40usize, 20usize, 16usize);
    let truth: Vec<u16> = (0..h * w).map(|i| ((i / w) * 1000 + i % w) as u16).collect();
    let mut tiles = Vec::new();
    for ty in 0..2 {
        for tx in 0..3 {
            let mut vals = vec![0u16; t * t];
            for r in 0..t {
                for c in 0..t {
                    let (y, x) = (ty * t + r, tx * t + c);
                    if y < h && x < w {
                        vals[r * t + c] = truth[y * w + x];
                    }
                }
            }
            if predictor == 2 {
                for r in 0..t {
                    for c in (1..t).rev() {
                        vals[r * t + c] = vals[r * t + c].wrapping_sub(vals[r * t + c - 1]);
                    }
                }
            }
            let raw: Vec<u8> =
                vals.iter().flat_map(|v| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }).collect();
            let enc = match compression {
                1 => raw,
                8 | 32946 => {
                    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
                    let mut z = vec![0; c.zlib_compress_bound(raw.len())];
                    let n = c.zlib_compress(&raw, &mut z).unwrap();
                    z.truncate(n);
                    z
                }
                5 => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8).encode(&raw).unwrap(),
                50000 => zstd::bulk::compress(&raw, 3).unwrap(),
                _ => raw,
            };
            tiles.push(enc);
        }
    }
    // First pass to learn where the tail (tile data) starts; offsets do not change its length.
    let mk = |offsets: Vec<u64>| {
        let mut ifd =
            minimal_ifd(w as u64, h as u64, t as u64, offsets, tiles.iter().map(|x| x.len() as u64).collect());
        ifd.iter_mut().find(|e| e.0 == 259).unwrap().2 = vec![u64::from(compression)];
        ifd.push((317, 3, vec![u64::from(predictor)]));
        ifd.push((42113, 2, b"0\0".iter().map(|&b| u64::from(b)).collect()));
        ifd.sort_by_key(|e| e.0);
        let mut b = TiffBuilder::new(big_endian);
        b.ifds.push(ifd);
        b.tail = tiles.concat();
        b.build()
    };
    let (_, tail_at) = mk(vec![0; 6]);
    let mut offsets = vec![];
    let mut at = tail_at as u64;
    for t in &tiles {
        offsets.push(at);
        at += t.len() as u64;
    }
    (mk(offsets).0, truth)
}

fn write_tmp(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

fn expected_window(truth: &[u16], w: usize, h: usize, win: PixelWindow, fill: u16) -> Vec<u16> {
    let mut out = vec![fill; win.height * win.width];
    for r in 0..win.height {
        for c in 0..win.width {
            let (y, x) = (win.row + r as i64, win.col + c as i64);
            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                out[r * win.width + c] = truth[y as usize * w + x as usize];
            }
        }
    }
    out
}

#[test]
fn header_of_a_hand_made_tiff() {
    let (bytes, _) = test_tiff(false, 8, 2);
    let h = parse_header_bytes(&bytes).unwrap();
    assert_eq!(h.crs.epsg(), 32633);
    assert_eq!(h.dtype, DataType::U16);
    assert_eq!(h.nodata, Some(0.0));
    assert_eq!(h.levels.len(), 1);
    let l = &h.levels[0];
    assert_eq!((l.width, l.height, l.tile_width, l.tile_height), (40, 20, 16, 16));
    assert_eq!(l.affine, Affine::new(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0));
}

#[tokio::test]
async fn windows_of_every_codec_and_byte_order_match_the_truth() {
    let dir = crate::scratch::ScratchDir::new("cog-codecs");
    let fetcher = Fetcher::new(FetchConfig::default());
    let windows = [
        PixelWindow { row: 0, col: 0, height: 20, width: 40 },
        PixelWindow { row: 3, col: 14, height: 10, width: 5 },
        PixelWindow { row: -5, col: 30, height: 12, width: 20 },
        PixelWindow { row: 15, col: -3, height: 10, width: 50 },
    ];
    for be in [false, true] {
        for (comp, pred) in [(1, 1), (8, 1), (8, 2), (32946, 2), (5, 2), (50000, 2), (50000, 1)] {
            let (bytes, truth) = test_tiff(be, comp, pred);
            let href = write_tmp(&dir, &format!("t-{be}-{comp}-{pred}.tif"), &bytes);
            let cog = fetcher.open(&href).await.unwrap();
            assert_eq!(cog.stats().requests, 1, "header in one request");
            for win in windows {
                let r = cog.read_window(0, win).await.unwrap();
                let RasterData::U16(got) = r.data else { panic!("u16 expected") };
                assert_eq!(got, expected_window(&truth, 40, 20, win, 0), "be {be} comp {comp} pred {pred} {win:?}");
                assert_eq!(r.geobox.shape, Shape { ny: win.height, nx: win.width });
            }
            // Entirely outside: no I/O.
            let before = cog.stats();
            let f = cog.fetch_window(0, PixelWindow { row: 100, col: 0, height: 4, width: 4 }).await.unwrap();
            assert_eq!(f.stats(), RequestStats::default());
            assert_eq!(cog.stats(), before);
            assert!(matches!(cog.read_window(1, windows[0]).await, Err(CogError::NoSuchLevel { .. })));
        }
    }
}

#[tokio::test]
async fn one_window_coalesces_its_tiles() {
    let dir = crate::scratch::ScratchDir::new("cog-coalesce");
    let (bytes, _) = test_tiff(false, 8, 2);
    let href = write_tmp(&dir, "coalesce.tif", &bytes);
    let cog = Fetcher::new(FetchConfig::default()).open(&href).await.unwrap();
    let f = cog.fetch_window(0, PixelWindow { row: 0, col: 0, height: 20, width: 40 }).await.unwrap();
    assert_eq!(f.stats().requests, 1, "six adjacent tiles, one request");
    let cfg = FetchConfig { coalesce_gap: 0, ..FetchConfig::default() };
    let cog = Fetcher::new(cfg).open(&href).await.unwrap();
    // Tiles (0,0) and (0,2) are not adjacent in the file: two requests without a gap allowance.
    let f = cog.fetch_window(0, PixelWindow { row: 0, col: 0, height: 4, width: 40 }).await.unwrap();
    assert_eq!(f.stats().requests, 1, "tiles 0,1,2 are contiguous");
    let f = cog.fetch_window(0, PixelWindow { row: 10, col: 0, height: 10, width: 4 }).await.unwrap();
    assert_eq!(f.stats().requests, 2, "tiles 0 and 3 are apart");
}

#[tokio::test]
async fn window_bytes_are_the_bytes_a_fetch_without_gaps_reads() {
    let dir = crate::scratch::ScratchDir::new("cog-window-bytes");
    let (bytes, _) = test_tiff(false, 8, 2);
    let href = write_tmp(&dir, "window-bytes.tif", &bytes);
    let cog = Fetcher::new(FetchConfig { coalesce_gap: 0, ..FetchConfig::default() }).open(&href).await.unwrap();
    let windows = [
        PixelWindow { row: 0, col: 0, height: 20, width: 40 },
        PixelWindow { row: 10, col: 0, height: 10, width: 4 },
        PixelWindow { row: -5, col: 30, height: 8, width: 20 },
    ];
    for win in windows {
        let expected = cog.window_bytes(0, win).unwrap();
        assert!(expected > 0, "{win:?}");
        assert_eq!(cog.fetch_window(0, win).await.unwrap().stats().bytes, expected, "{win:?}");
    }
    assert_eq!(cog.window_bytes(0, PixelWindow { row: 100, col: 0, height: 4, width: 4 }).unwrap(), 0, "outside");
    assert!(matches!(cog.window_bytes(9, windows[0]), Err(CogError::NoSuchLevel { .. })));
}

#[tokio::test]
async fn a_header_read_once_is_not_fetched_again_by_the_same_fetcher() {
    let dir = crate::scratch::ScratchDir::new("cog-header-cache");
    let (bytes, truth) = test_tiff(false, 8, 2);
    let href = write_tmp(&dir, "header-cache.tif", &bytes);
    let fetcher = Fetcher::new(FetchConfig::default());
    let first = fetcher.open(&href).await.unwrap();
    assert_eq!(first.stats().requests, 1);
    let again = fetcher.clone().open(&href).await.unwrap();
    assert_eq!(again.stats().requests, 0, "the header comes from the cache; clones share it");
    assert_eq!((again.file_size(), again.levels().len()), (first.file_size(), first.levels().len()));
    let win = PixelWindow { row: 2, col: 5, height: 12, width: 30 };
    let RasterData::U16(got) = again.read_window(0, win).await.unwrap().data else { panic!("u16 expected") };
    assert_eq!(got, expected_window(&truth, 40, 20, win, 0), "a window of a cached header's COG");
    assert_eq!(again.stats().requests, 1, "its own requests only: the window's");
    let other = Fetcher::new(FetchConfig::default()).open(&href).await.unwrap();
    assert_eq!(other.stats().requests, 1, "another fetcher reads the header itself");
    // A file that failed to open is not remembered.
    let bad = write_tmp(&dir, "header-cache-bad.tif", b"not a tiff");
    assert!(fetcher.open(&bad).await.is_err());
    std::fs::write(&bad, &bytes).unwrap();
    assert_eq!(fetcher.open(&bad).await.unwrap().stats().requests, 1);
}

#[test]
fn validation_errors_on_hand_made_headers() {
    let (good, _) = test_tiff(false, 8, 2);
    // Truncated anywhere in the header or the tile data: typed, never a panic.
    for cut in [0, 1, 7, 8, 20, 60, good.len() / 2, good.len() - 1] {
        let r = parse_header_bytes(&good[..cut]);
        assert!(
            matches!(r, Err(CogError::Truncated { .. } | CogError::TileOutOfBounds { .. } | CogError::NotTiff { .. })),
            "cut {cut}: {r:?}"
        );
    }
    assert!(matches!(parse_header_bytes(b"\x89PNG\r\n\x1a\n0000000000"), Err(CogError::NotTiff { .. })));

    let build = |edit: &dyn Fn(&mut Entries)| {
        let mut ifd = minimal_ifd(40, 20, 16, vec![100; 6], vec![10; 6]);
        edit(&mut ifd);
        ifd.sort_by_key(|e| e.0);
        let mut b = TiffBuilder::new(false);
        b.ifds.push(ifd);
        b.tail = vec![0; 200];
        b.build().0
    };
    assert!(parse_header_bytes(&build(&|_| {})).is_ok());
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 324).unwrap().2 = vec![1 << 30; 6]));
    assert!(matches!(e, Err(CogError::TileOutOfBounds { tile: 0, .. })), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 324).unwrap().2 = vec![100; 4]));
    assert!(matches!(e, Err(CogError::Malformed { ref reason, .. }) if reason.contains("4 tile offsets")), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 259).unwrap().2 = vec![7]));
    assert!(matches!(e, Err(CogError::Unsupported { ref what, .. }) if what.contains("JPEG")), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.push((317, 3, vec![3]))));
    assert!(matches!(e, Err(CogError::Unsupported { .. })), "float predictor on u16: {e:?}");
    let e = parse_header_bytes(&build(&|i| i.push((317, 3, vec![9]))));
    assert!(matches!(e, Err(CogError::Unsupported { ref what, .. }) if what.contains("predictor 9")), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.retain(|e| e.0 != 34735)));
    assert!(matches!(e, Err(CogError::Georef { ref reason, .. }) if reason.contains("GeoKeyDirectory")), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 34735).unwrap().2[11] = 32767));
    assert!(matches!(e, Err(CogError::Georef { ref reason, .. }) if reason.contains("user-defined")), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 277).unwrap().2 = vec![3]));
    assert!(matches!(e, Err(CogError::Unsupported { .. })), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 258).unwrap().2 = vec![12]));
    assert!(matches!(e, Err(CogError::Unsupported { .. })), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.iter_mut().find(|e| e.0 == 322).unwrap().2 = vec![0]));
    assert!(matches!(e, Err(CogError::Malformed { .. })), "{e:?}");
    let e = parse_header_bytes(&build(&|i| i.retain(|e| e.0 != 325)));
    assert!(matches!(e, Err(CogError::Malformed { .. })), "{e:?}");
}

#[test]
fn overviews_and_masks_are_told_apart() {
    let mut b = TiffBuilder::new(false);
    b.ifds.push(minimal_ifd(40, 20, 16, vec![300; 6], vec![1; 6]));
    let mut ov = minimal_ifd(20, 10, 16, vec![300; 2], vec![1; 2]);
    ov.retain(|e| e.0 < 33550);
    ov.push((254, 4, vec![1]));
    ov.sort_by_key(|e| e.0);
    let mut mask = ov.clone();
    mask.iter_mut().find(|e| e.0 == 254).unwrap().2 = vec![5];
    b.ifds.push(mask);
    let mut ov2 = minimal_ifd(10, 5, 16, vec![300; 1], vec![1; 1]);
    ov2.retain(|e| e.0 < 33550);
    ov2.push((254, 4, vec![1]));
    ov2.sort_by_key(|e| e.0);
    b.ifds.push(ov);
    b.ifds.push(ov2);
    b.tail = vec![0; 400];
    let (bytes, _) = b.build();
    let h = parse_header_bytes(&bytes).unwrap();
    let dims: Vec<_> = h.levels.iter().map(|l| (l.index, l.width, l.height)).collect();
    assert_eq!(dims, vec![(0, 40, 20), (1, 20, 10), (2, 10, 5)]);
    assert_eq!(h.levels[1].affine, Affine::new(20.0, 0.0, 500000.0, 0.0, -20.0, 4000000.0));
    assert_eq!(h.levels[2].affine.a, 40.0);
}

#[test]
fn stripped_files_read_like_full_width_tiles() {
    let dir = crate::scratch::ScratchDir::new("cog-stripped");
    // 10 x 5 uint8, 2 rows per strip (3 strips, the last one row), uncompressed.
    let (w, h) = (10usize, 5usize);
    let truth: Vec<u8> = (0..w * h).map(|i| i as u8).collect();
    let mk = |offs: Vec<u64>| {
        let mut ifd = minimal_ifd(w as u64, h as u64, 0, vec![], vec![]);
        ifd.retain(|e| !matches!(e.0, 322..=325));
        ifd.iter_mut().find(|e| e.0 == 258).unwrap().2 = vec![8];
        ifd.push((273, 4, offs));
        ifd.push((278, 3, vec![2]));
        ifd.push((279, 4, vec![20, 20, 10]));
        ifd.sort_by_key(|e| e.0);
        let mut b = TiffBuilder::new(true);
        b.ifds.push(ifd);
        b.tail = truth.clone();
        b.build()
    };
    let (_, at) = mk(vec![0; 3]);
    let (bytes, _) = mk(vec![at as u64, at as u64 + 20, at as u64 + 40]);
    let hd = parse_header_bytes(&bytes).unwrap();
    assert!(hd.levels[0].is_stripped());
    let href = write_tmp(&dir, "stripped.tif", &bytes);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cog = Fetcher::new(FetchConfig::default()).open(&href).await.unwrap();
        let win = PixelWindow { row: 1, col: 2, height: 5, width: 9 };
        let r = cog.read_window(0, win).await.unwrap();
        let RasterData::U8(got) = r.data else { panic!() };
        let mut exp = vec![0u8; 45];
        for rr in 0..5 {
            for cc in 0..9 {
                let (y, x) = (1 + rr, 2 + cc);
                if y < h && x < w {
                    exp[rr * 9 + cc] = truth[y * w + x];
                }
            }
        }
        assert_eq!(got, exp);
    });
}

#[tokio::test]
async fn empty_and_tiny_local_files_are_truncated() {
    let dir = crate::scratch::ScratchDir::new("cog-tiny");
    let fetcher = Fetcher::new(FetchConfig::default());
    for (name, bytes) in [("empty.tif", &b""[..]), ("five.tif", &b"II*\0\x08"[..])] {
        let href = write_tmp(&dir, name, bytes);
        let e = fetcher.open(&href).await.unwrap_err();
        assert!(matches!(e, CogError::Truncated { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(&href), "{e}");
    }
}

/// Sparse tiles (GDAL's SPARSE_OK: offset and byte count 0) read as nodata and cost no request;
/// here in a big-endian BigTIFF.
#[tokio::test]
async fn sparse_tiles_read_as_nodata_in_a_big_endian_bigtiff() {
    let dir = crate::scratch::ScratchDir::new("cog-sparse");
    let (w, h, t) = (40usize, 20usize, 16usize);
    // 3 x 2 tiles; only tile 4 (row 1, column 1) is stored: uncompressed, every sample 7.
    let data: Vec<u8> = std::iter::repeat_n([0u8, 7], t * t).flatten().collect();
    let mk = |at: u64| {
        let (mut offsets, mut counts) = (vec![0; 6], vec![0; 6]);
        (offsets[4], counts[4]) = (at, data.len() as u64);
        let mut ifd = minimal_ifd(w as u64, h as u64, t as u64, offsets, counts);
        ifd.push((42113, 2, ascii("9")));
        ifd.sort_by_key(|e| e.0);
        let mut b = TiffBuilder::new(true);
        b.bigtiff = true;
        b.ifds.push(ifd);
        b.tail = data.clone();
        b.build()
    };
    let (_, at) = mk(0);
    let (bytes, _) = mk(at as u64);
    let href = write_tmp(&dir, "sparse.tif", &bytes);
    let cog = Fetcher::new(FetchConfig::default()).open(&href).await.unwrap();
    assert_eq!((cog.nodata(), cog.levels()[0].tile_byte_range(0, 0)), (Some(9.0), Some(0..0)));
    let r = cog.read_window(0, PixelWindow { row: 0, col: 0, height: h, width: w }).await.unwrap();
    let RasterData::U16(got) = r.data else { panic!("u16 expected") };
    for (i, v) in got.iter().enumerate() {
        let (y, x) = (i / w, i % w);
        let want = if y >= t && (t..2 * t).contains(&x) { 7 } else { 9 };
        assert_eq!(*v, want, "pixel ({y}, {x})");
    }
    assert_eq!(cog.stats().requests, 2, "the header, then the one stored tile");
}

/// The pipeline spawns reads on tokio and decodes on a thread pool: the types must allow it.
#[test]
fn cogs_and_windows_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>(_: &T) {}
    send_sync::<Cog>();
    send_sync::<Fetcher>();
    send_sync::<FetchedWindow>();
    send_sync::<CogError>();
    let fetcher = Fetcher::new(FetchConfig::default());
    let open = async move { fetcher.open("/nonexistent.tif").await };
    send(&open);
    fn read_is_send(c: &'static Cog) {
        send(&c.read_window(0, PixelWindow { row: 0, col: 0, height: 1, width: 1 }));
        send(&c.fetch_window(0, PixelWindow { row: 0, col: 0, height: 1, width: 1 }));
    }
    let _ = read_is_send;
}
