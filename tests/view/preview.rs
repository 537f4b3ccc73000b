//! `eocube preview`: the quicklook PNG checked against the cube read by xarray (every map pixel
//! is the stretched reflectance, fill is grey), with a bbox, one band through a colormap, an
//! expression, and the refusals (a bbox outside the cube, a band the cube lacks).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common;

/// The e2e cube (red, green, blue), built once for these tests.
fn cube() -> &'static Path {
    static CUBE: OnceLock<PathBuf> = OnceLock::new();
    CUBE.get_or_init(|| {
        let cube = common::scratch_dir("preview-cube").join("e2e.zarr");
        let items = common::e2e_dir().join("items-local.json");
        common::eocube_build_ok(&common::e2e_items_build_args(&cube, &items, &["--quiet"]));
        cube
    })
}

fn preview(args: &[&str]) -> std::process::Output {
    let mut a = vec!["preview".to_string(), cube().display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    common::run_eocube(&a)
}

/// Compares the figure's map with xarray's values: prints `agree`, the share of checked map
/// pixels equal to the expected colour within 1 level.
const CHECK: &str = r#"
import sys, json
import numpy as np, xarray as xr
from PIL import Image
cube, png, t = sys.argv[1], sys.argv[2], int(sys.argv[3])
img = np.asarray(Image.open(png).convert("RGBA")).astype(int)
da = xr.open_zarr(cube)["rgb_median"].isel(time=t).sel(band=["red", "green", "blue"]).values  # (y, x, 3)
ny, nx, _ = da.shape
LEFT, TOP = 84, 34
assert img.shape[0] >= TOP + ny and img.shape[1] >= LEFT + nx, (img.shape, da.shape)
m = img[TOP:TOP + ny, LEFT:LEFT + nx, :3]
fill = np.isnan(da).any(axis=2)
want = np.where(fill[..., None], np.array([224, 224, 224]), np.floor(np.clip(da / 0.3, 0, 1) * 255 + 0.5))
# Leave out the scale bar's corner (bottom left) and the frame.
keep = np.ones((ny, nx), bool)
keep[ny - 45:, :200] = False
ok = (np.abs(m - want) <= 1).all(axis=2)[keep]
title = img[:TOP, LEFT:LEFT + 200, :3]
labels = img[TOP + ny:, LEFT:LEFT + nx, :3]
print(json.dumps({"agree": float(ok.mean()), "fill": float(fill.mean()),
                  "title_ink": int((title < 100).all(axis=2).sum()), "label_ink": int((labels < 100).all(axis=2).sum())}))
"#;

fn check(png: &Path, t: usize) -> serde_json::Value {
    let out = common::run_python(
        CHECK,
        &[&cube().display().to_string(), &png.display().to_string(), &t.to_string()],
        "preview check",
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn the_quicklook_map_is_the_cube_stretched_with_labels_around_it() {
    let dir = common::scratch_dir("preview-default");
    let png = dir.join("q.png");
    let out = preview(&["--time", "2023-06", "-o", &png.display().to_string()]);
    common::assert_ok(&out, &["preview".into()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"), "{}", String::from_utf8_lossy(&out.stdout));
    let r = check(&png, 1);
    println!("preview vs xarray: {r}");
    assert!(r["agree"].as_f64().unwrap() >= 0.999, "{r}");
    assert!(r["title_ink"].as_u64().unwrap() > 50 && r["label_ink"].as_u64().unwrap() > 50, "text was drawn: {r}");
}

#[test]
fn a_bbox_a_colormap_and_an_expression_draw_and_bad_input_is_refused() {
    let dir = common::scratch_dir("preview-options");
    let size = |p: &Path| -> (u32, u32) {
        let b = std::fs::read(p).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
    };
    let full = dir.join("full.png");
    common::assert_ok(&preview(&["-o", &full.display().to_string()]), &[]);
    let m = common::e2e_manifest();
    let b = &m["bbox"];
    let (west, south, east, north) =
        (b[0].as_f64().unwrap(), b[1].as_f64().unwrap(), b[2].as_f64().unwrap(), b[3].as_f64().unwrap());
    let half = dir.join("half.png");
    let bbox = [west.to_string(), south.to_string(), ((west + east) / 2.0).to_string(), north.to_string()];
    let mut args = vec!["--bbox".to_string()];
    args.extend(bbox.iter().cloned());
    args.extend(["-o".to_string(), half.display().to_string()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    common::assert_ok(&preview(&a), &[]);
    assert!(size(&half).0 < size(&full).0, "half the bbox, a narrower figure: {:?} {:?}", size(&half), size(&full));
    let one = dir.join("one.png");
    common::assert_ok(
        &preview(&["--bands", "red", "--colormap", "viridis", "--size", "100", "-o", &one.display().to_string()]),
        &[],
    );
    let ndvi = dir.join("ndvi.png");
    common::assert_ok(
        &preview(&[
            "--expression",
            "(green-red)/(green+red)",
            "--colormap",
            "rdylgn",
            "-o",
            &ndvi.display().to_string(),
        ]),
        &[],
    );
    let bad = [
        (vec!["--bbox", "10", "10", "11", "11"], "does not overlap the cube"),
        (vec!["--bands", "swir99"], "--bands"),
        (vec!["--time", "May"], "--time"),
        (vec!["--size", "3"], "--size 3"),
    ];
    for (args, want) in bad {
        let out = preview(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
