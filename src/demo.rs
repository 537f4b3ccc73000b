//! `eocube demo`: the whole pipeline offline. A synthetic Sentinel-2 archive is written by
//! eocube itself ([`eocube_synth`]), served on 127.0.0.1 by the in-process STAC API and file
//! server ([`eocube_synth::server`]), and built into a cube through the same [`eocube::build`]
//! path as a real build: STAC search over HTTP, range requests for COG tiles, two UTM zones,
//! clouds, same-day overlaps and nodata edges. No network, no Python.
//!
//! Owns: the demo's region, dates and grid, and the layout of its directory (`archive/`,
//! `cube.zarr`, a marker file). Must not touch: anything the build does.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use eocube::build::{self, BuildError, BuildOptions, BuildReport};
use eocube::grid::Bbox;
use eocube::plan::LandTest;
use eocube::spec::{Resolution, SpecError, SpecInput};
use eocube_synth::server::{ArchiveServer, ServeError};
use eocube_synth::{self as synth, SynthError, SynthSpec};

/// Marks a directory as made by `eocube demo`, so that a rerun may replace what is in it (and
/// nothing else is ever deleted).
const MARKER: &str = "eocube-demo.json";
/// The cube's region: inside the archive's tiles, across the UTM 18/19 boundary at 72° W.
pub const DEMO_BBOX: Bbox = Bbox { west: -72.05, south: 44.03, east: -71.95, north: 44.09 };
/// Small chunks so that the demo has several chunks, including clipped ones at the edges.
pub const DEMO_CHUNK_SIZE: i64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{path} exists, is not empty and was not made by `eocube demo`; give another directory with --out (nothing was changed)"
    )]
    NotADemoDir { path: PathBuf },
    #[error("{path}: {action} failed: {source}")]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Build(Box<BuildError>),
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub cube: PathBuf,
    pub archive: synth::Archive,
    pub synth_seconds: f64,
    pub build: BuildReport,
    pub build_seconds: f64,
}

/// Runs the demo in `dir` (created; a previous demo there is replaced).
pub async fn run(
    dir: &Path,
    workers: Option<usize>,
    opts: &BuildOptions,
    is_land: LandTest<'_>,
    stop: impl Future<Output = ()>,
) -> Result<DemoReport, DemoError> {
    prepare(dir)?;
    let io = |action: &'static str| {
        let path = dir.to_path_buf();
        move |source| DemoError::Io { path, action, source }
    };
    let t0 = Instant::now();
    let synth_spec = SynthSpec::demo();
    let archive_dir = dir.join("archive");
    let archive = synth::generate(&synth_spec, &archive_dir)?;
    let synth_seconds = t0.elapsed().as_secs_f64();

    let server = ArchiveServer::start(archive_dir, archive.items.clone(), Vec::new()).await?;
    let cube = dir.join("cube.zarr");
    let b = DEMO_BBOX;
    let spec = SpecInput {
        bbox: Some(vec![b.west, b.south, b.east, b.north]),
        start: Some(synth_spec.start.to_string()),
        end: Some(synth_spec.end.to_string()),
        resolution: Some(Resolution(1.0 / 3600.0)),
        chunk_size: Some(DEMO_CHUNK_SIZE),
        stac_url: Some(server.url()),
        collection: Some(synth::COLLECTION.to_string()),
        ..Default::default()
    }
    .validate()?;
    let mut opts = opts.clone();
    opts.out = Some(cube.display().to_string());
    if let Some(w) = workers {
        opts.run.workers = w;
    }
    let t0 = Instant::now();
    let report = build::build(&spec, &opts, is_land, stop).await;
    let build_seconds = t0.elapsed().as_secs_f64();
    server.shutdown().await;
    let report = report.map_err(|e| DemoError::Build(Box::new(e)))?;
    std::fs::write(
        dir.join(MARKER),
        serde_json::json!({"made_by": "eocube demo", "version": env!("CARGO_PKG_VERSION")}).to_string(),
    )
    .map_err(io("writing the marker"))?;
    Ok(DemoReport { dir: dir.to_path_buf(), cube, archive, synth_seconds, build: report, build_seconds })
}

/// Makes `dir` ready: created if missing; emptied if it holds an earlier demo; refused otherwise.
fn prepare(dir: &Path) -> Result<(), DemoError> {
    let io = |action: &'static str| {
        let path = dir.to_path_buf();
        move |source| DemoError::Io { path, action, source }
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
            if !dir.join(MARKER).is_file() {
                return Err(DemoError::NotADemoDir { path: dir.to_path_buf() });
            }
            for sub in ["archive", "cube.zarr"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(io("removing the previous demo"))?;
                }
            }
            std::fs::remove_file(dir.join(MARKER)).map_err(io("removing the previous demo"))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io("creating the directory"))
        }
        Err(e) => Err(io("reading the directory")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_creates_replaces_a_demo_and_refuses_anything_else() {
        let tmp = std::env::temp_dir().join(format!("eocube-demo-prepare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        prepare(&tmp).unwrap();
        assert!(tmp.is_dir());
        std::fs::write(tmp.join("precious.txt"), "x").unwrap();
        let e = prepare(&tmp).unwrap_err();
        assert!(e.to_string().contains("not made by `eocube demo`"), "{e}");
        assert!(tmp.join("precious.txt").is_file());
        std::fs::remove_file(tmp.join("precious.txt")).unwrap();
        std::fs::create_dir_all(tmp.join("cube.zarr/x")).unwrap();
        std::fs::write(tmp.join(MARKER), "{}").unwrap();
        prepare(&tmp).unwrap();
        assert!(!tmp.join("cube.zarr").exists() && !tmp.join(MARKER).exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
