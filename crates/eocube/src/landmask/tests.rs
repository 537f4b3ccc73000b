use std::time::Instant;

use super::geom::{Box2, Pt, horizontal_crossing, ring_contains, segment_dist2};
use super::*;

/// The embedded mask, decoded once for all the tests of this module.
fn mask() -> &'static LandMask {
    static MASK: std::sync::OnceLock<LandMask> = std::sync::OnceLock::new();
    MASK.get_or_init(|| LandMask::embedded().unwrap())
}

/// The default-grid chunk (1/3 degree, edges on multiples of 1/3) containing (lon, lat).
fn chunk_at(lon: f64, lat: f64) -> [f64; 4] {
    let (w, s) = ((lon * 3.0).floor() / 3.0, (lat * 3.0).floor() / 3.0);
    [w, s, w + 1.0 / 3.0, s + 1.0 / 3.0]
}

fn land_chunk(lon: f64, lat: f64) -> bool {
    let [w, s, e, n] = chunk_at(lon, lat);
    mask().intersects_box(w, s, e, n, DEFAULT_BUFFER_DEG)
}

fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(f64, f64)> {
    vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
}

/// The same predicate with no index: every segment and every ring of the data.
fn intersects_reference(m: &LandMask, footprint: &[(f64, f64)], buffer: f64) -> bool {
    let ring: Vec<Pt> = footprint.iter().map(|&(x, y)| [x, y]).collect();
    let fbox = Box2::of_points(ring.iter().copied());
    let bbox = fbox.expand(buffer);
    let n = ring.len();
    let segments = m.ring_starts.windows(2).flat_map(|w| (w[0] as usize)..(w[1] as usize - 1));
    let mut crossings = 0usize;
    for s in segments {
        let (a, b) = (m.vertices[s], m.vertices[s + 1]);
        // The box test only skips segments that cannot be within the buffer (saves time in debug).
        if bbox.overlaps_segment(a, b)
            && (0..n).any(|i| segment_dist2(ring[i], ring[(i + 1) % n], a, b) <= buffer * buffer)
        {
            return true;
        }
        if fbox.contains(a) && ring_contains(&ring, a) {
            return true;
        }
        if let Some(x) = horizontal_crossing(a, b, ring[0][1])
            && x > ring[0][0]
        {
            crossings += 1;
        }
    }
    crossings % 2 == 1
}

/// splitmix64: deterministic samples without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

#[test]
fn embedded_asset_decodes_once_with_expected_sizes() {
    let t = Instant::now();
    let m = LandMask::from_bytes(EMBEDDED_ASSET).unwrap();
    eprintln!("decode + index: {:?}, {:?}", t.elapsed(), m.stats());
    let stats = m.stats();
    assert_eq!(stats.polygons, 4061);
    assert_eq!(stats.rings, 4067);
    assert_eq!(stats.vertices, 404_901);
    assert!(EMBEDDED_ASSET.len() < 1 << 20, "asset is {} bytes", EMBEDDED_ASSET.len());
}

#[test]
fn known_land_and_ocean_chunks() {
    assert!(land_chunk(-50.0, -12.0), "central Brazil");
    assert!(land_chunk(10.0, 50.0), "Germany");
    assert!(land_chunk(0.0, -80.0), "Antarctic interior");
    assert!(land_chunk(30.0, -89.9), "next to the South Pole");
    assert!(!land_chunk(-30.0, 0.0), "mid-Atlantic at 0 N, 30 W");
    assert!(!land_chunk(-140.0, -40.0), "South Pacific");
    assert!(!land_chunk(-150.0, 30.0), "North Pacific");
    assert!(!land_chunk(80.0, -20.0), "Indian Ocean");
}

#[test]
fn small_islands_survive() {
    for (name, lon, lat) in [
        ("Saint Helena", -5.71, -15.96),
        // Pitcairn Island itself; (-128.32, -25.07), sometimes quoted for Pitcairn, is open sea.
        ("Pitcairn", -130.10, -25.07),
        ("Henderson Island", -128.32, -24.37),
        ("Tristan da Cunha", -12.28, -37.11),
        ("Bermuda", -64.75, 32.31),
        ("Ascension", -14.36, -7.94),
    ] {
        assert!(land_chunk(lon, lat), "{name}");
        // And not because of a neighbour: the chunk two chunks west is open ocean.
        assert!(!land_chunk(lon - 2.0 / 3.0, lat), "ocean west of {name}");
    }
}

/// The ring with a vertex nearest to (lon, lat).
fn ring_near(m: &LandMask, lon: f64, lat: f64) -> Vec<Pt> {
    let (mut best, mut best_d) = (0, f64::INFINITY);
    for r in 0..m.ring_starts.len() - 1 {
        for v in &m.vertices[m.ring_starts[r] as usize..m.ring_starts[r + 1] as usize] {
            let d = (v[0] - lon).hypot(v[1] - lat);
            if d < best_d {
                (best, best_d) = (r, d);
            }
        }
    }
    m.vertices[m.ring_starts[best] as usize..m.ring_starts[best + 1] as usize].to_vec()
}

#[test]
fn buffer_is_a_distance_from_the_coast() {
    // Place chunks due west of the westernmost vertex of real coasts: every vertex of that ring
    // lies east of it, so the gap is exactly the offset (other land is much farther away).
    for (name, lon, lat) in [("Saint Helena", -5.71, -15.96), ("South America at Punta Parinas", -81.3, -4.6)] {
        let ring = ring_near(mask(), lon, lat);
        let west = ring.iter().copied().fold([f64::INFINITY, 0.0], |a, v| if v[0] < a[0] { v } else { a });
        let third = 1.0 / 3.0;
        for (offset, expected) in [(0.0, true), (0.005, true), (0.0099, true), (0.0101, false), (0.05, false)] {
            let east = west[0] - offset;
            let chunk = square(east - third, west[1] - third / 2.0, east, west[1] + third / 2.0);
            assert_eq!(mask().intersects(&chunk, DEFAULT_BUFFER_DEG), expected, "{name}: chunk {offset} deg west");
            // A sliver 0.001 degree wide, the same way.
            let sliver = square(east - 0.001, west[1] - 0.0005, east, west[1] + 0.0005);
            assert_eq!(mask().intersects(&sliver, DEFAULT_BUFFER_DEG), expected, "{name}: sliver {offset} deg west");
        }
    }
}

#[test]
fn islet_inside_a_footprint_counts_without_buffer() {
    // No buffer, island strictly inside: only the ring-inside-footprint test can find it.
    let [w, s, e, n] = chunk_at(-5.71, -15.96);
    assert!(mask().intersects(&square(w, s, e, n), 0.0));
}

#[test]
fn index_agrees_with_brute_force_on_random_footprints() {
    let m = mask();
    let mut rng = Rng(20_261_123);
    let (mut land, mut total) = (0, 0);
    let mut check = |fp: Vec<(f64, f64)>, what: &str| {
        let fast = m.intersects(&fp, DEFAULT_BUFFER_DEG);
        let slow = intersects_reference(m, &fp, DEFAULT_BUFFER_DEG);
        assert_eq!(fast, slow, "{what} {fp:?}");
        total += 1;
        land += usize::from(fast);
    };
    // Default-grid chunks anywhere (mostly the fast path) ...
    for _ in 0..1000 {
        let [w, s, e, n] = chunk_at(rng.range(-180.0, 179.6), rng.range(-85.0, 84.0));
        check(square(w, s, e, n), "uniform chunk");
    }
    // ... chunks near coasts (the exact path), picked around random land vertices ...
    for _ in 0..800 {
        let v = m.vertices[(rng.next() * m.vertices.len() as f64) as usize];
        let [w, s, e, n] = chunk_at(
            (v[0] + rng.range(-0.4, 0.4)).clamp(-180.0, 179.6),
            (v[1] + rng.range(-0.4, 0.4)).clamp(-89.0, 89.0),
        );
        check(square(w, s, e, n), "coastal chunk");
    }
    // ... and rotated quadrilaterals of many sizes, as a projected CRS's chunk would be.
    for _ in 0..200 {
        let v = m.vertices[(rng.next() * m.vertices.len() as f64) as usize];
        let (cx, cy) = (v[0] + rng.range(-0.3, 0.3), v[1] + rng.range(-0.3, 0.3));
        let (size, angle) = (rng.range(0.001, 1.0), rng.range(0.0, std::f64::consts::PI));
        let fp: Vec<(f64, f64)> = (0..4)
            .map(|k| {
                let a = angle + k as f64 * std::f64::consts::FRAC_PI_2;
                ((cx + size * a.cos()).clamp(-180.0, 180.0), (cy + size * a.sin()).clamp(-90.0, 90.0))
            })
            .collect();
        check(fp, "rotated quad");
    }
    eprintln!("cross-check: {total} footprints agree, {land} touch land");
    assert!(land > 300 && land < total - 300, "sample should mix land and ocean: {land}/{total}");
}

#[test]
fn point_containment_matches_even_odd_over_all_rings() {
    let m = mask();
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let (x, y) = (rng.range(-180.0, 180.0), rng.range(-89.9, 89.9));
        let mut inside = false;
        for w in m.ring_starts.windows(2) {
            for s in (w[0] as usize)..(w[1] as usize - 1) {
                if let Some(xc) = horizontal_crossing(m.vertices[s], m.vertices[s + 1], y)
                    && xc > x
                {
                    inside = !inside;
                }
            }
        }
        assert_eq!(m.contains_point(x, y), inside, "({x}, {y})");
    }
}

/// South America at the default grid: 144 x 207 chunks of 1/3 degree. Timing is printed (the
/// release figure comes from `cargo bench --bench landmask`), only the count is asserted.
#[test]
fn plans_south_america() {
    let m = mask();
    let t = Instant::now();
    let mut kept = 0;
    for iy in 0..207 {
        for ix in 0..144 {
            let (w, n) = (-82.0 + ix as f64 / 3.0, 13.0 - iy as f64 / 3.0);
            kept += usize::from(m.intersects_box(w, n - 1.0 / 3.0, w + 1.0 / 3.0, n, DEFAULT_BUFFER_DEG));
        }
    }
    eprintln!("South America: {kept} of 29808 chunks kept in {:?} (test profile)", t.elapsed());
    // About 17.8 M km2 of land at up to about 1370 km2 a chunk, plus coasts and Central America.
    assert!((12_000..20_000).contains(&kept), "{kept}");
}

#[test]
fn degenerate_footprints() {
    let m = mask();
    assert!(!m.intersects(&[], DEFAULT_BUFFER_DEG));
    assert!(m.intersects(&[(f64::NAN, 0.0)], DEFAULT_BUFFER_DEG), "unjudgeable input keeps the chunk");
    assert!(m.intersects(&square(-50.0, -12.0, -49.0, -11.0), -1.0));
    // A single point is a footprint too.
    assert!(m.intersects(&[(-50.0, -12.0)], 0.0));
    assert!(!m.intersects(&[(-30.0, 0.0)], 0.0));
    // Entirely off the globe.
    assert!(!m.intersects(&square(200.0, 0.0, 201.0, 1.0), DEFAULT_BUFFER_DEG));
}

fn asset_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut z = vec![0u8; c.zlib_compress_bound(payload.len())];
    let n = c.zlib_compress(payload, &mut z).unwrap();
    let mut out = format::MAGIC.to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&z[..n]);
    out
}

fn is_corrupt(bytes: &[u8]) -> bool {
    matches!(LandMask::from_bytes(bytes), Err(LandMaskError::Corrupt { .. }))
}

#[test]
fn corrupt_assets_are_typed_errors() {
    let good = EMBEDDED_ASSET;
    for cut in [0, 5, 8, 11, 12, 13, 100, good.len() / 2, good.len() - 1] {
        assert!(is_corrupt(&good[..cut]), "truncated at {cut}");
    }
    let mut flipped = good.to_vec();
    flipped[good.len() / 2] ^= 0x40;
    assert!(is_corrupt(&flipped), "flipped byte (zlib's Adler-32 catches it)");
    let mut rng = Rng(1);
    let garbage: Vec<u8> = (0..4096).map(|_| (rng.next() * 256.0) as u8).collect();
    assert!(is_corrupt(&garbage));
    let mut with_magic = format::MAGIC.to_vec();
    with_magic.extend_from_slice(&garbage);
    assert!(is_corrupt(&with_magic));
    let mut huge = format::MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(is_corrupt(&huge), "declared size is not allocated blindly");

    // Valid zlib, bad payloads.
    let transform: Vec<u8> = [0.0036, 0.0017, -180.0, -85.0].iter().flat_map(|v: &f64| v.to_le_bytes()).collect();
    let with = |tail: &[u8]| [transform.as_slice(), tail].concat();
    assert!(!is_corrupt(&asset_with_payload(&with(&[1, 1, 1, 2, 2]))), "one one-vertex ring is valid");
    assert!(is_corrupt(&asset_with_payload(&with(&[0xff, 0xff, 0xff, 0x0f]))), "polygon count beyond the data");
    assert!(is_corrupt(&asset_with_payload(&with(&[1, 1, 0]))), "empty ring");
    assert!(is_corrupt(&asset_with_payload(&with(&[1, 1, 1, 2]))), "ring cut short");
    assert!(is_corrupt(&asset_with_payload(&with(&[1, 1, 1, 2, 2, 9]))), "trailing bytes");
    assert!(is_corrupt(&asset_with_payload(&with(&[1, 1, 1, 0xfe, 0xff, 0x7f, 2]))), "vertex off the globe");
    assert!(is_corrupt(&asset_with_payload(&[0u8; 31])), "short transform");
    let zero_scale: Vec<u8> = [0.0f64; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(is_corrupt(&asset_with_payload(&[zero_scale.as_slice(), &[0]].concat())));
}
