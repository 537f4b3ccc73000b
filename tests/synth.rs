//! The synthetic archive's COGs opened with GDAL (rasterio in the project's venv): CRS,
//! transform, nodata, overview count and pixels equal to what eocube wrote. Fails (never skips)
//! without the venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;
use eocube_synth::{SynthSpec, generate};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CHECK: &str = r#"
import json, sys
import numpy as np
import rasterio
cases = json.load(open(sys.argv[1]))
for c in cases:
    with rasterio.open(c["path"]) as ds:
        assert ds.crs.to_epsg() == c["epsg"], (c["path"], ds.crs)
        assert list(ds.transform)[:6] == c["transform"], (c["path"], ds.transform)
        assert ds.nodata == 0, ds.nodata
        assert ds.dtypes[0] == c["dtype"], ds.dtypes
        assert len(ds.overviews(1)) == c["overviews"], (c["path"], ds.overviews(1))
        a = ds.read(1)
    raw = np.fromfile(c["raw"], dtype=c["dtype"]).reshape(a.shape)
    assert (a == raw).all(), c["path"]
    for k in range(1, c["overviews"] + 1):
        with rasterio.open(c["path"], overview_level=k - 1) as o:
            assert o.read(1).shape == tuple(c["level_shapes"][k]), (c["path"], k)
print("all checks passed:", len(cases), "files")
"#;

#[test]
fn gdal_reads_the_synthetic_cogs_as_written() {
    let python = root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh (or scripts/setup.sh) to create the venv",
        python.display()
    );
    let dir = std::env::temp_dir().join(format!("eocube-synth-gdal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = SynthSpec {
        end: NaiveDate::from_ymd_opt(2023, 6, 1).unwrap(),
        scene_px: 1098,
        bands: vec!["red".into()],
        ..SynthSpec::demo()
    };
    let archive = generate(&spec, &dir).unwrap();
    assert!(archive.scenes >= 2);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fetcher = eocube::cog::Fetcher::new(eocube::cog::FetchConfig::default());
    let mut cases = Vec::new();
    for item in archive.items.iter().take(4) {
        for key in ["red", "scl"] {
            let path = dir.join(item["assets"][key]["href"].as_str().unwrap());
            let cog = rt.block_on(fetcher.open(path.to_str().unwrap())).unwrap();
            let l0 = &cog.levels()[0];
            let win = eocube::PixelWindow { row: 0, col: 0, height: l0.height, width: l0.width };
            let data = rt.block_on(cog.read_window(0, win)).unwrap().data;
            let raw = path.with_extension("raw");
            std::fs::write(&raw, data.to_le_bytes()).unwrap();
            let t = item["assets"][key]["proj:transform"].clone();
            cases.push(serde_json::json!({
                "path": path, "raw": raw,
                "epsg": item["properties"]["proj:epsg"],
                "transform": t,
                "dtype": if key == "scl" { "uint8" } else { "uint16" },
                "overviews": cog.levels().len() - 1,
                "level_shapes": cog.levels().iter().map(|l| [l.height, l.width]).collect::<Vec<_>>(),
            }));
        }
    }
    let cases_path = dir.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = Command::new(&python).arg("-c").arg(CHECK).arg(&cases_path).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rasterio check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    remove(&dir);
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
