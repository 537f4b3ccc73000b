//! The `eocube` command line: parses arguments, calls the library, reports errors with context.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use eocube::cog::{FetchConfig, Fetcher};

#[derive(Parser)]
#[command(name = "eocube", version, about = "Turn piles of satellite scenes into analysis-ready Zarr datacubes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a Cloud-Optimized GeoTIFF: CRS, transform, data type, nodata, every level.
    ///
    /// HREF is a local path, an http(s):// URL or an s3://bucket/key URL. S3 requests are
    /// signed when AWS credentials are in the environment and unsigned otherwise;
    /// AWS_ENDPOINT_URL selects an S3-compatible server.
    ///
    /// Example: eocube info s3://sentinel-cogs/sentinel-s2-l2a-cogs/18/T/XP/2023/6/S2A_18TXP_20230610_0_L2A/B04.tif
    Info {
        /// Path or URL of the COG.
        href: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Info { href } => runtime.block_on(info(&href)),
    }
}

async fn info(href: &str) -> anyhow::Result<()> {
    let fetcher = Fetcher::new(FetchConfig::from_env());
    // The library error already names the href and the reason.
    let cog = fetcher.open(href).await?;
    let full = cog.geobox(0).context("the file has no image")?;
    let a = full.affine;
    println!("href:      {}", cog.href());
    println!("crs:       {}", cog.crs());
    println!("size:      {} x {} px (width x height)", full.shape.nx, full.shape.ny);
    println!("transform: [{}, {}, {}, {}, {}, {}]", a.a, a.b, a.c, a.d, a.e, a.f);
    let b = full.bbox();
    println!("bbox:      {} {} {} {} (W S E N, {})", b.west, b.south, b.east, b.north, cog.crs().units());
    println!("dtype:     {:?}", cog.dtype());
    println!("nodata:    {}", cog.nodata().map_or("none".to_string(), |v| v.to_string()));
    println!("levels:");
    for l in cog.levels() {
        let (rx, ry) = l.affine.resolution();
        println!(
            "  {:>2}: {:>6} x {:<6} px  tiles {:>4} x {:<4}  resolution {rx} x {ry}",
            l.index, l.width, l.height, l.tile_width, l.tile_height
        );
    }
    let s = cog.stats();
    println!("read:      {} requests, {} bytes for the header", s.requests, s.bytes);
    Ok(())
}
