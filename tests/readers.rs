//! Every reader people use opens every cube (issue 13, item 5): the reader matrix.
//!
//! Five small cubes are built once by the real `eocube build` (e2e archive, `--items`, no STAC
//! server, `--overviews`): Zarr v2 and v3 in EPSG:4326 and in EPSG:32618, and an Icechunk
//! repository. Their data chunks are decoded here (zstd, little-endian uint16) into the values
//! every reader must see. Then each reader stack opens each cube its row names, one Python process
//! per (stack, cube) (`tests/py/readers.py`), and checks values (raw and CF-decoded), coordinates,
//! time labels, bands, CRS, scale/offset and the pyramid levels; a cell that a reader cannot open
//! must fail the way the table says. The table in docs/cube.md ("Readers") is rendered from
//! [`MATRIX`] and checked here, so the two cannot drift apart.
//!
//! The stacks live in separate venvs (they pin conflicting versions): `.venv` (zarr-python 3,
//! GDAL 3.10 through rasterio, icechunk-python 1.x) and `.venv-readers/{zarr2,icechunk2}`, all
//! made by `scripts/setup.sh`. icechunk-python 2.x needs Python >= 3.12: where setup found none
//! it wrote `.venv-readers/icechunk2.unavailable`, and that stack is skipped with its reason.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

/// A set of reader libraries people install together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Zarr2,
    Zarr3,
    Gdal310,
    Gdal312,
    Icechunk1,
    Icechunk2,
}

impl Stack {
    /// The name `tests/py/readers.py` takes.
    fn name(self) -> &'static str {
        match self {
            Stack::Zarr2 => "zarr2",
            Stack::Zarr3 => "zarr3",
            Stack::Gdal310 => "gdal310",
            Stack::Gdal312 => "gdal312",
            Stack::Icechunk1 => "icechunk1",
            Stack::Icechunk2 => "icechunk2",
        }
    }

    /// What the stack is, for the table.
    fn label(self) -> &'static str {
        match self {
            Stack::Zarr2 => "the 2024 stack: zarr-python 2.17, numcodecs 0.12, xarray 2024.6, rioxarray 0.15",
            Stack::Zarr3 => "zarr-python 3.1, xarray 2026.9, rioxarray 0.19",
            Stack::Gdal310 => "GDAL 3.10 Zarr driver, rasterio 1.4 wheel",
            Stack::Gdal312 => "GDAL 3.12 Zarr driver, rasterio 1.5 wheel, Python 3.12",
            Stack::Icechunk1 => "icechunk-python 1.1, zarr-python 3.1, xarray 2026.9",
            Stack::Icechunk2 => "icechunk-python 2.3, zarr-python 3.4, xarray 2026.9, Python 3.12",
        }
    }

    /// The venv whose Python runs the stack (relative to the repository).
    fn venv(self) -> &'static str {
        match self {
            Stack::Zarr2 => ".venv-readers/zarr2",
            Stack::Gdal312 | Stack::Icechunk2 => ".venv-readers/py312",
            Stack::Zarr3 | Stack::Gdal310 | Stack::Icechunk1 => ".venv",
        }
    }

    /// The stack's Python, or why it is missing on this machine (then the stack is skipped).
    fn python(self) -> Result<PathBuf, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(self.venv()).join("bin/python");
        if python.is_file() {
            return Ok(python);
        }
        let unavailable = root.join(self.venv()).with_extension("unavailable");
        match std::fs::read_to_string(&unavailable) {
            Ok(reason) => Err(reason.trim().to_string()),
            Err(_) => panic!("{} is missing: run scripts/setup.sh (it makes the reader venvs)", python.display()),
        }
    }
}

/// The formats of cube eocube writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    V2,
    V3,
    Icechunk,
}

/// What a stack does with a format.
#[derive(Clone, Copy, Debug)]
enum Cell {
    /// Opens every cube of the format and passes every check.
    Reads,
    /// Cannot open it: `says` is in what the reader prints; `why` goes into the table.
    Fails { says: &'static str, why: &'static str },
    /// The stack has no way to address such a store (no test).
    NotApplicable,
}

/// The reader matrix: per stack, the cells for Zarr v2, Zarr v3, Icechunk.
const MATRIX: [(Stack, [Cell; 3]); 6] = [
    (
        Stack::Zarr2,
        [
            Cell::Reads,
            Cell::Fails {
                says: "KeyError: '.zmetadata'",
                why: "zarr-python 2 reads Zarr v2 only (it looks for `.zmetadata` / `.zgroup`)",
            },
            Cell::NotApplicable,
        ],
    ),
    (Stack::Zarr3, [Cell::Reads, Cell::Reads, Cell::NotApplicable]),
    (
        Stack::Gdal310,
        [
            Cell::Reads,
            Cell::Fails {
                says: "Unsupported codec: bytes",
                why: "GDAL 3.10 has no `bytes` codec (\"Unsupported codec: bytes\"), so it opens no Zarr v3 array, zarr-python's own included",
            },
            Cell::NotApplicable,
        ],
    ),
    (Stack::Gdal312, [Cell::Reads, Cell::Reads, Cell::NotApplicable]),
    (Stack::Icechunk1, [Cell::NotApplicable, Cell::NotApplicable, Cell::Reads]),
    (Stack::Icechunk2, [Cell::NotApplicable, Cell::NotApplicable, Cell::Reads]),
];

/// One cube of the matrix, built once per test binary.
struct Cube {
    name: &'static str,
    format: Format,
    /// The expectation file `tests/py/readers.py` reads.
    expect: PathBuf,
}

/// The e2e build flags of every cube: 72 small jobs, nearest (exact values), with the pyramid.
const FLAGS: [&str; 6] = ["--resampling", "nearest", "--workers", "2", "--overviews", "--quiet"];
/// The geographic cubes: 360 x 216 px, in chunks of 64 with clipped edges.
const GEO: [&str; 2] = ["--chunk-size", "64"];
/// The projected cubes: 15 m in UTM 18N, 534 x 447 px, so the pyramid has a level 1.
const UTM: [&str; 6] = ["--crs", "EPSG:32618", "--resolution", "15", "--chunk-size", "128"];

/// Builds the five cubes (about 3 s), decodes their chunks and writes their expectations.
fn cubes() -> &'static [Cube] {
    static CUBES: OnceLock<Vec<Cube>> = OnceLock::new();
    CUBES.get_or_init(|| {
        let t0 = Instant::now();
        let dir = common::scratch_dir("readers");
        let items = common::e2e_dir().join("items-local.json");
        let specs: [(&'static str, Format, Vec<&str>); 5] = [
            ("v2", Format::V2, [&GEO[..], &["--zarr-format", "2"]].concat()),
            ("v3", Format::V3, GEO.to_vec()),
            ("v2-utm", Format::V2, [&UTM[..], &["--zarr-format", "2"]].concat()),
            ("v3-utm", Format::V3, UTM.to_vec()),
            ("icechunk", Format::Icechunk, GEO.to_vec()),
        ];
        let mut values: BTreeMap<&str, PathBuf> = BTreeMap::new();
        let mut out = Vec::new();
        for (name, format, extra) in specs {
            let path = dir.join(name);
            let target = match format {
                Format::Icechunk => format!("icechunk://{}", path.display()),
                _ => path.display().to_string(),
            };
            let mut flags: Vec<&str> = FLAGS.to_vec();
            flags.extend(extra);
            let args = common::e2e_items_build_args(Path::new(&target), &items, &flags);
            common::eocube_build_ok(&args);
            // The Icechunk cube has the v3 cube's spec: its chunks hold the same bytes
            // (tests/icechunk.rs checks that byte for byte), so it must read as the same values.
            let layout_of = if format == Format::Icechunk { dir.join("v3") } else { path.clone() };
            let (mut exp, raw) = expectation(&layout_of);
            let values_path = dir.join(format!("{name}.values.bin"));
            match values.get(if format == Format::Icechunk { "v3" } else { name }) {
                Some(p) => std::fs::copy(p, &values_path).map(|_| ()).expect("copying values"),
                None => std::fs::write(&values_path, &raw).expect("writing values"),
            }
            values.insert(name, values_path.clone());
            exp["kind"] = json!(match format {
                Format::V2 => "v2",
                Format::V3 => "v3",
                Format::Icechunk => "icechunk",
            });
            exp["path"] = json!(path.display().to_string());
            exp["values"] = json!(values_path.display().to_string());
            let expect = dir.join(format!("{name}.expect.json"));
            std::fs::write(&expect, serde_json::to_vec_pretty(&exp).expect("json")).expect("writing expect.json");
            out.push(Cube { name, format, expect });
        }
        // One spec, two formats: the same values.
        for (a, b) in [("v2", "v3"), ("v2-utm", "v3-utm")] {
            let (va, vb) = (std::fs::read(&values[a]).expect("values"), std::fs::read(&values[b]).expect("values"));
            assert!(va == vb, "the {a} and {b} cubes hold different values");
        }
        println!("built {} cubes in {:.1} s", out.len(), t0.elapsed().as_secs_f64());
        out
    })
}

/// What a local cube must read as: its layout (as eocube recorded it in the group attributes) and
/// its data variable decoded from the chunk files, `(time, y, x, band)` little-endian uint16.
fn expectation(cube: &Path) -> (Value, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let c = rt.block_on(eocube::store::Cube::open(cube)).unwrap_or_else(|e| panic!("opening {}: {e}", cube.display()));
    let l = c.layout();
    let g = &l.geobox;
    let (ny, nx, nt, nb, cs) = (g.shape.ny, g.shape.nx, l.times.len(), l.bands.len(), l.chunk_size);
    let v2 = l.zarr_format == eocube::store::ZarrFormat::V2;
    let mut dn = vec![0u16; nt * ny * nx * nb];
    let mut chunks = 0;
    for t in 0..nt {
        for iy in 0..ny.div_ceil(cs) {
            for ix in 0..nx.div_ceil(cs) {
                let key = if v2 { format!("{t}.{iy}.{ix}.0") } else { format!("c/{t}/{iy}/{ix}/0") };
                let Ok(bytes) = std::fs::read(cube.join(&l.variable).join(key)) else { continue };
                let raw = zstd::decode_all(&bytes[..]).expect("a zstd chunk");
                assert_eq!(raw.len(), cs * cs * nb * 2, "a whole chunk (edge chunks are padded)");
                chunks += 1;
                for r in 0..cs.min(ny - iy * cs) {
                    for col in 0..cs.min(nx - ix * cs) {
                        for b in 0..nb {
                            let i = (r * cs + col) * nb + b;
                            let v = u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]);
                            dn[((t * ny + iy * cs + r) * nx + ix * cs + col) * nb + b] = v;
                        }
                    }
                }
            }
        }
    }
    assert!(chunks > 0, "{} has no data chunk", cube.display());
    let (ydim, xdim) = if g.crs.is_geographic() { ("latitude", "longitude") } else { ("y", "x") };
    let levels = match std::fs::read_dir(cube.join("pyramid")) {
        Ok(d) => d.flatten().filter(|e| e.path().is_dir()).count(),
        Err(_) => 0,
    };
    assert!(levels > 0, "{} has no pyramid", cube.display());
    let times: Vec<String> = l
        .times
        .iter()
        .map(|d| {
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(*d as u64)).to_string()
        })
        .collect();
    let exp = json!({
        "variable": l.variable,
        "ydim": ydim,
        "xdim": xdim,
        "geographic": g.crs.is_geographic(),
        "y": g.y_coords(),
        "x": g.x_coords(),
        "geotransform": g.affine.to_gdal(),
        "times": times,
        "bands": l.bands,
        "epsg": g.crs.epsg(),
        "chunk_size": cs,
        "spec": l.attrs,
        "pyramid": (0..levels).map(|level| json!({"level": level})).collect::<Vec<_>>(),
    });
    (exp, dn.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Runs `tests/py/readers.py` for one (stack, cube); returns whether it passed and what it printed.
fn read(python: &Path, stack: Stack, cube: &Cube) -> (bool, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let t0 = Instant::now();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/py/readers.py"))
        .arg(stack.name())
        .arg(&cube.expect)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let passed = out.status.success() && text.contains("all checks passed");
    println!(
        "{} x {}: {} in {:.1} s",
        stack.name(),
        cube.name,
        if passed { "reads" } else { "fails" },
        t0.elapsed().as_secs_f64()
    );
    (passed, text)
}

/// Every cube of the stack's row, as the matrix says.
fn check_stack(stack: Stack) {
    let python = match stack.python() {
        Ok(p) => p,
        Err(reason) => {
            println!("SKIPPED {}: {reason}", stack.name());
            return;
        }
    };
    let cells = MATRIX.iter().find(|(s, _)| *s == stack).expect("a row").1;
    let mut failures = Vec::new();
    for cube in cubes() {
        let cell = cells[match cube.format {
            Format::V2 => 0,
            Format::V3 => 1,
            Format::Icechunk => 2,
        }];
        match cell {
            Cell::NotApplicable => {}
            Cell::Reads => {
                let (ok, text) = read(&python, stack, cube);
                if !ok {
                    failures.push(format!("{} cannot read {}:\n{text}", stack.name(), cube.name));
                }
            }
            Cell::Fails { says, .. } => {
                let (ok, text) = read(&python, stack, cube);
                if ok || !text.contains(says) {
                    failures.push(format!(
                        "{} x {}: the matrix says it fails with {says:?}; it {}:\n{text}",
                        stack.name(),
                        cube.name,
                        if ok { "passed (update MATRIX and docs/cube.md)" } else { "failed otherwise" }
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn zarr_python_2_17_with_numcodecs_0_12() {
    check_stack(Stack::Zarr2);
}

#[test]
fn zarr_python_3() {
    check_stack(Stack::Zarr3);
}

#[test]
fn gdal_3_10_zarr_driver_through_rasterio() {
    check_stack(Stack::Gdal310);
}

#[test]
fn gdal_3_12_zarr_driver_through_rasterio() {
    check_stack(Stack::Gdal312);
}

#[test]
fn icechunk_python_1() {
    check_stack(Stack::Icechunk1);
}

#[test]
fn icechunk_python_2() {
    check_stack(Stack::Icechunk2);
}

/// The table of docs/cube.md "Readers", rendered from [`MATRIX`].
fn table() -> String {
    let cell = |c: Cell| match c {
        Cell::Reads => "yes".to_string(),
        Cell::Fails { why, .. } => format!("no: {why}"),
        Cell::NotApplicable => "n/a".to_string(),
    };
    let mut t = String::from("| reader | Zarr v2 | Zarr v3 | Icechunk |\n|---|---|---|---|\n");
    for (stack, cells) in MATRIX {
        t += &format!(
            "| {} (`{}`) | {} | {} | {} |\n",
            stack.label(),
            stack.name(),
            cell(cells[0]),
            cell(cells[1]),
            cell(cells[2])
        );
    }
    t
}

#[test]
fn the_readers_table_in_docs_is_the_matrix() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/cube.md");
    let doc = std::fs::read_to_string(&path).expect("docs/cube.md");
    let want = table();
    assert!(
        doc.contains(&want),
        "docs/cube.md \"Readers\" must hold this table (from MATRIX in tests/readers.rs):\n{want}"
    );
}
