//! The cube on disk read back by xarray (DESIGN §8 acceptance): small cubes in v3 and v2, one
//! geographic and one projected, checked by `tests/py/read_cube.py` in the project's venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;
use eocube::store::{Cube, CubeLayout, DEFAULT_VARIABLE, Finished, Job, ZarrFormat};
use eocube::time::days_since_epoch;
use eocube::{Affine, Crs, GeoBox, Shape};
use serde_json::json;

const CS: usize = 64;
/// Jobs never written: their chunks must read as fill.
const UNWRITTEN: [(usize, usize, usize); 2] = [(1, 0, 1), (2, 2, 0)];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("test-store").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

fn dates() -> Vec<NaiveDate> {
    ["2024-01-01", "2024-02-01", "2024-03-01"].iter().map(|d| d.parse().unwrap()).collect()
}

/// 150 x 100 px: 3 x 2 chunks of 64 px, the last row (22 px) and column (36 px) clipped.
fn layout(epsg: u32, format: ZarrFormat) -> CubeLayout {
    let crs = Crs::from_epsg(epsg).unwrap();
    let affine = if crs.is_geographic() {
        let r = 1.0 / 3600.0;
        // Edges on multiples of r (edge anchoring): 266400 r = 74 degrees, 146700 r = 40.75.
        Affine::north_up(-266_400.0 * r, 146_700.0 * r, r, r)
    } else {
        Affine::north_up(583_960.0, 4_507_520.0, 10.0, 10.0)
    };
    CubeLayout {
        geobox: GeoBox::new(crs, affine, Shape { ny: 150, nx: 100 }),
        chunk_size: CS,
        times: dates().into_iter().map(days_since_epoch).collect(),
        bands: vec!["red".into(), "green".into(), "blue".into()],
        variable: DEFAULT_VARIABLE.into(),
        zarr_format: format,
        attrs: json!({"collection": "sentinel-2-l2a", "epsg": epsg}),
        values: eocube::store::DataValues::default(),
    }
}

/// The value of pixel (row, col) of band b in bin t, never 0 (the fill); read_cube.py has the same.
fn value(t: usize, row: usize, col: usize, b: usize) -> u16 {
    (1 + (t * 1000 + row * 7 + col * 3 + b * 101) % 60000) as u16
}

/// One runtime for the store calls (the store API is async).
fn block<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    });
    RT.block_on(f)
}

fn build(dir: &Path, layout: &CubeLayout) -> Cube {
    let cube = block(Cube::create(dir, layout)).unwrap();
    let grid = layout.geobox.chunks(CS).unwrap();
    let nb = layout.bands.len();
    for t in 0..layout.times.len() {
        for chunk in grid.iter() {
            if UNWRITTEN.contains(&(t, chunk.iy, chunk.ix)) {
                continue;
            }
            let (rows, cols) = (chunk.geobox.shape.ny, chunk.geobox.shape.nx);
            assert_eq!(cube.chunk_shape(chunk.iy, chunk.ix), Some((rows, cols)));
            let mut data = Vec::with_capacity(rows * cols * nb);
            for r in 0..rows {
                for c in 0..cols {
                    for b in 0..nb {
                        data.push(value(t, chunk.row_offset + r, chunk.col_offset + c, b));
                    }
                }
            }
            let job = Job { t, iy: chunk.iy, ix: chunk.ix };
            let receipt = block(cube.write_chunk(job, &data, (rows, cols))).unwrap();
            let record = json!({"job": job, "valid_pixels": rows * cols});
            block(cube.record(vec![Finished { job, receipt: Some(receipt), record }])).unwrap();
        }
    }
    block(cube.finish()).unwrap();
    cube
}

fn expectation(layout: &CubeLayout) -> serde_json::Value {
    let geographic = layout.geobox.crs.is_geographic();
    let (ydim, xdim) = if geographic { ("latitude", "longitude") } else { ("y", "x") };
    json!({
        "variable": layout.variable,
        "zarr_format": if layout.zarr_format == ZarrFormat::V3 { 3 } else { 2 },
        "ydim": ydim,
        "xdim": xdim,
        "geographic": geographic,
        "y": layout.geobox.y_coords(),
        "x": layout.geobox.x_coords(),
        "geotransform": layout.geobox.affine.to_gdal(),
        "times": dates().iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "bands": layout.bands,
        "epsg": layout.geobox.crs.epsg(),
        "chunk_size": layout.chunk_size,
        "unwritten": UNWRITTEN,
    })
}

/// Run the xarray read-back; fails (never skips) without the venv.
fn read_back(dir: &Path, layout: &CubeLayout) {
    let python = root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh (it installs xarray, zarr and rioxarray in .venv)",
        python.display()
    );
    let expect = dir.with_extension("expect.json");
    std::fs::write(&expect, serde_json::to_vec_pretty(&expectation(layout)).unwrap()).unwrap();
    let out = Command::new(&python).arg(root().join("tests/py/read_cube.py")).arg(dir).arg(&expect).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        println!("read_cube.py stderr:\n{stderr}");
    }
    assert!(out.status.success(), "read_cube.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("all checks passed"));
}

fn round_trip(name: &str, epsg: u32, format: ZarrFormat) {
    let dir = scratch(name);
    let l = layout(epsg, format);
    let cube = build(&dir, &l);
    assert_eq!(block(cube.done_jobs()).unwrap().len(), 3 * 6 - UNWRITTEN.len());
    read_back(&dir, &l);
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.with_extension("expect.json"));
}

#[test]
fn v3_geographic_cube_reads_back_in_xarray() {
    round_trip("v3-4326", 4326, ZarrFormat::V3);
}

#[test]
fn v2_geographic_cube_reads_back_in_xarray() {
    round_trip("v2-4326", 4326, ZarrFormat::V2);
}

#[test]
fn v3_projected_cube_reads_back_in_xarray() {
    round_trip("v3-32618", 32618, ZarrFormat::V3);
}

#[test]
fn v2_projected_cube_reads_back_in_xarray() {
    round_trip("v2-32618", 32618, ZarrFormat::V2);
}

/// Resume: reopen with the same layout, rewrite every chunk; every file is byte-identical.
#[test]
fn rewriting_every_chunk_gives_identical_files() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = scratch(&format!("idem-{format:?}"));
        let l = layout(4326, format);
        let cube = build(&dir, &l);
        let grid = l.geobox.chunks(CS).unwrap();
        let keys: Vec<String> = (0..3)
            .flat_map(|t| grid.iter().map(move |c| (t, c.iy, c.ix)))
            .filter(|job| !UNWRITTEN.contains(job))
            .map(|(t, iy, ix)| cube.chunk_key(t, iy, ix))
            .collect();
        let before: Vec<Vec<u8>> = keys.iter().map(|k| std::fs::read(dir.join(k)).unwrap()).collect();
        drop(cube);
        let again = dir.with_extension("again");
        let _ = std::fs::remove_dir_all(&again);
        // Same input into a fresh cube and into the reopened one.
        build(&again, &l);
        let reopened = block(Cube::open_matching(&dir, &l)).unwrap();
        assert_eq!(block(reopened.done_jobs()).unwrap().len(), keys.len());
        for chunk in grid.iter() {
            let (rows, cols) = (chunk.geobox.shape.ny, chunk.geobox.shape.nx);
            let data: Vec<u16> = (0..rows * cols * 3)
                .map(|i| value(0, chunk.row_offset + i / 3 / cols, chunk.col_offset + i / 3 % cols, i % 3))
                .collect();
            block(reopened.write_chunk(Job { t: 0, iy: chunk.iy, ix: chunk.ix }, &data, (rows, cols))).unwrap();
        }
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(&std::fs::read(dir.join(k)).unwrap(), b, "{k} changed on rewrite");
            assert_eq!(&std::fs::read(again.join(k)).unwrap(), b, "{k} differs in a second cube");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&again).unwrap();
    }
}
