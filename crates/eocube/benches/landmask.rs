//! Land-mask figures: decoding the embedded asset, and planning South America at the default grid
//! (EPSG:4326, 1/3600 degree, 1200-px chunks: 144 x 207 = 29,808 chunks of 1/3 degree), one thread.
//!
//! Run: `cargo bench --bench landmask`. Reports min and median of several repetitions; nothing
//! here is asserted (the unit tests in `src/landmask/tests.rs` check the answers).

use std::time::{Duration, Instant};

use eocube::landmask::{DEFAULT_BUFFER_DEG, EMBEDDED_ASSET, LandMask};

const REPS: usize = 9;

fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn plan_south_america(mask: &LandMask) -> usize {
    let third = 1.0 / 3.0;
    let mut kept = 0;
    for iy in 0..207 {
        for ix in 0..144 {
            let (west, north) = (-82.0 + ix as f64 * third, 13.0 - iy as f64 * third);
            kept += usize::from(mask.intersects_box(west, north - third, west + third, north, DEFAULT_BUFFER_DEG));
        }
    }
    kept
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A row of the index is built the first time a question reaches it: time the load alone,
    // a first plan (building the rows it reaches), and the index of every row.
    let (mut decode, mut first_plan, mut all_rows) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let mask = LandMask::from_bytes(EMBEDDED_ASSET)?;
        decode.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(plan_south_america(&mask));
        first_plan.push(t.elapsed());
        let mask = LandMask::from_bytes(EMBEDDED_ASSET)?;
        let t = Instant::now();
        std::hint::black_box(mask.stats());
        all_rows.push(t.elapsed());
    }
    let mask = &LandMask::embedded()?;
    let s = mask.stats();
    let (dmin, dmed) = min_median(decode);
    let (fmin, fmed) = min_median(first_plan);
    let (amin, amed) = min_median(all_rows);
    println!(
        "asset: {} bytes; {} polygons, {} rings, {} vertices, {} index entries",
        EMBEDDED_ASSET.len(),
        s.polygons,
        s.rings,
        s.vertices,
        s.index_entries
    );
    println!("decode (rows indexed on first use): min {dmin:?}, median {dmed:?}");
    println!("index of all 720 rows: min {amin:?}, median {amed:?}");
    println!("South America, first plan on a fresh mask (its rows indexed on the way): min {fmin:?}, median {fmed:?}");

    let mut plan = Vec::new();
    let mut kept = 0;
    for _ in 0..REPS {
        let t = Instant::now();
        kept = std::hint::black_box(plan_south_america(mask));
        plan.push(t.elapsed());
    }
    let (pmin, pmed) = min_median(plan);
    println!("South America, 29808 chunks: {kept} kept; min {pmin:?}, median {pmed:?} (one thread)");
    Ok(())
}
