//! The `eocube` command line: parses arguments, calls the library, reports errors with context.
// The Lambda runtime's future around the whole task pipeline is deeper than rustc's default
// query depth allows when its layout is computed.
#![recursion_limit = "256"]

mod demo;
mod errors;
#[cfg(feature = "lambda")]
mod lambda;
mod malloc;
mod progress;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use eocube::cog::{FetchConfig, Fetcher};
use eocube::spec::{Resolution, SpecInput};

#[derive(Parser)]
#[command(
    name = "eocube",
    version,
    about = "Turn piles of satellite scenes into analysis-ready Zarr datacubes",
    args_override_self = true
)]
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
    /// Print the plan of a cube without touching the network: grid, chunks, land chunks kept,
    /// time bins, jobs and an output size bound.
    ///
    /// Example: eocube plan --bbox -73.43 42.72 -71.47 45.02 --start 2020-01-01 --end 2023-12-31
    Plan {
        #[command(flatten)]
        spec: Box<SpecArgs>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Also predict the run: tasks, wall time at --parallel, Lambda GB-seconds and cost, from
        /// per-job figures measured on the synthetic archive (printed with the estimate).
        #[arg(long, conflicts_with = "json")]
        estimate: bool,
        /// With --estimate: tasks run at once (Lambda's default account limit is 1000).
        #[arg(long, default_value_t = 1000, requires = "estimate")]
        parallel: usize,
        /// With --estimate: jobs per task, as `eocube build --jobs-per-task`.
        #[arg(long, default_value_t = 1, requires = "estimate")]
        jobs_per_task: usize,
        #[command(flatten)]
        prices: PriceArgs,
    },
    /// Write a run's report as one self-contained HTML page (inline SVG, nothing fetched): a
    /// timeline of every task, tasks running at once, job durations, retries and failures, bytes
    /// and requests read, and what the run costs on AWS Lambda (GB-seconds and requests times
    /// prices dated in the page; --price-gb-s and --price-request override them).
    ///
    /// Example: eocube report vermont.zarr -o vermont-run.html
    Report {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// The run to report (default: the newest; `eocube status OUT` lists them).
        #[arg(long)]
        run: Option<String>,
        /// Where to write the page.
        #[arg(short = 'o', long = "output", default_value = "report.html")]
        output: std::path::PathBuf,
        #[command(flatten)]
        prices: PriceArgs,
    },
    /// Build a cube: search the scenes of every (time bin, chunk), read, warp, mask, reduce and
    /// write them into a Zarr cube. Running it again with the same flags resumes: jobs in the
    /// cube's ledger are skipped. Ctrl-C stops cleanly.
    ///
    /// Example: eocube build --bbox -73.43 42.72 -71.47 45.02 --start 2020-01-01 --end 2023-12-31 --out vermont.zarr
    Build {
        #[command(flatten)]
        spec: Box<SpecArgs>,
        #[command(flatten)]
        run: RunArgs,
        /// When every job is done, also write the overview pyramid (as `eocube overviews`)
        /// before the cube is published (Icechunk: in the same commit).
        #[arg(long)]
        overviews: bool,
    },
    /// Write the overview pyramid of a finished cube: levels at 2x steps down to one 512-px
    /// tile, one uint16 array per band with 512 x 512 chunks, in the group `pyramid` beside the
    /// data (docs/cube.md, "Pyramid"). Averages valid pixels only. Running it again rewrites the
    /// same bytes. In an Icechunk repository: one new commit on the branch.
    ///
    /// Example: eocube overviews vermont.zarr
    Overviews {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// Tiles in work at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Icechunk repository: the branch holding the cube.
        #[arg(long, default_value = "main")]
        branch: String,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Draw a quicklook PNG of one time step: the map in the cube's own CRS with a title,
    /// coordinate ticks, a scale bar and (one band or an expression) a colour bar. Reads the
    /// finest pyramid level that fits --size. Same parameters as the tiles of `eocube serve`.
    ///
    /// Example: eocube preview vermont.zarr --time 2024-05 -o quicklook.png
    Preview {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// The PNG to write.
        #[arg(long, short = 'o', default_value = "quicklook.png")]
        output: std::path::PathBuf,
        /// The time step: a label (2024-05), a date (nearest step) or #INDEX; default the latest.
        #[arg(long)]
        time: Option<String>,
        /// Only this part, in lon/lat: WEST SOUTH EAST NORTH.
        #[arg(long, num_args = 4, value_names = ["WEST", "SOUTH", "EAST", "NORTH"], allow_negative_numbers = true)]
        bbox: Option<Vec<f64>>,
        /// Three bands as red, green, blue, or one band (default: the first three).
        #[arg(long)]
        bands: Option<String>,
        /// Stretch in reflectance: LO,HI once or per band (default 0,0.3).
        #[arg(long)]
        rescale: Option<String>,
        /// Colormap of one band or an expression (e.g. viridis, rdylgn).
        #[arg(long)]
        colormap: Option<String>,
        /// Band maths, e.g. "(nir-red)/(nir+red)".
        #[arg(long)]
        expression: Option<String>,
        /// Longest side of the map, in pixels.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Icechunk repository: a snapshot, tag or branch (default main).
        #[arg(long)]
        version: Option<String>,
    },
    /// The whole pipeline offline: write a small synthetic Sentinel-2 archive (two UTM zones,
    /// clouds, SCL, same-day overlaps), serve it on 127.0.0.1 through an in-process STAC API,
    /// build a monthly median cube from it and print how to open it. No network, no Python.
    ///
    /// Example: eocube demo
    Demo {
        /// Directory for the archive and the cube (a previous demo there is replaced).
        #[arg(long, default_value = "eocube-demo")]
        out: std::path::PathBuf,
        /// Jobs run at once (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// AWS Lambda: package this binary as the function (docs/engines.md, "AWS Lambda").
    #[cfg(feature = "lambda")]
    Lambda {
        #[command(subcommand)]
        command: LambdaCommand,
    },
    /// Serve a synthetic archive (from `eocube synth`) on 127.0.0.1 as a STAC API with
    /// range-capable file serving, until Ctrl-C: for builds and benchmarks over real HTTP.
    ///
    /// Example: eocube serve-archive /tmp/s2 --port 8088
    ServeArchive {
        /// The archive directory (holds items.json).
        dir: std::path::PathBuf,
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serve cubes on a map: tiles (PNG, WebP, JPEG), TileJSON, OGC API - Tiles, WMTS for QGIS,
    /// the pixel time series, a catalog page and a map page, until Ctrl-C. Read-only; only the
    /// cubes named here; binds 127.0.0.1 unless --addr says otherwise (docs/serve.md).
    ///
    /// A CUBE is any location `eocube build --out` accepts, or ID=LOCATION; its id is otherwise
    /// the last path component without `.zarr`. In URLs `ID@VERSION` pins an Icechunk snapshot
    /// (cached for ever), tag or branch (looked up again every 10 s).
    ///
    /// Example: eocube serve vermont.zarr demo=icechunk:///data/repo --addr 127.0.0.1:8080
    Serve {
        /// The cubes: LOCATION or ID=LOCATION.
        #[arg(required = true, value_name = "CUBE")]
        cubes: Vec<String>,
        /// Address and port to listen on (port 0: any free port). Anything but 127.0.0.1 or ::1
        /// lets other machines in: use --token then.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Let pages of this origin (e.g. http://localhost:3000, or *) read the server's answers
        /// (CORS). Off by default.
        #[arg(long, value_name = "ORIGIN")]
        cors: Option<String>,
        /// Require this token on every request (Authorization: Bearer TOKEN or ?token=TOKEN);
        /// default: the EOCUBE_SERVE_TOKEN environment variable, if set (kept out of `ps`).
        #[arg(long)]
        token: Option<String>,
        /// Memory for decoded chunks, in MB (an LRU shared by all cubes).
        #[arg(long, default_value_t = 512, value_name = "MB")]
        cache_mb: usize,
        /// Pixels one tile may read from a level, per band: past it the answer is 413 with the
        /// advice to build overviews (`eocube overviews`).
        #[arg(long, default_value_t = eocube::serve::tms::DEFAULT_MAX_PIXELS, value_name = "N")]
        max_pixels: usize,
        /// Seconds one request may take before it is answered 503.
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        timeout: f64,
        /// Seconds a branch (or tag) URL stays resolved to one snapshot (its Cache-Control
        /// max-age); then the branch is looked up again.
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        branch_ttl: u64,
    },
    /// Grow a cube's time axis to a later end date and compute only what is new (the last old
    /// bin again if the old end cut it short). Settings come from the cube itself.
    ///
    /// Example: eocube extend vermont.zarr --end 2024-06-30
    Extend {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// The new last day, inclusive (YYYY-MM-DD).
        #[arg(long)]
        end: String,
        /// Jobs run at once (default: as the build was run).
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Report a cube's jobs: done, failed (in the last run that tried them) and pending.
    ///
    /// Example: eocube status vermont.zarr
    Status {
        /// The cube (the --out of `eocube build`).
        out: std::path::PathBuf,
        /// Icechunk output: the target branch of the build.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one task of a stored run: what every array task of `eocube build --executor
    /// slurm|kubernetes|batch` runs. Writes the task's chunks and its result file
    /// (`_eocube/runs/RUN/results/INDEX.json`); credentials come from this process's environment.
    ///
    /// The index is --index, else the first of EOCUBE_TASK_INDEX, SLURM_ARRAY_TASK_ID,
    /// AWS_BATCH_JOB_ARRAY_INDEX, JOB_COMPLETION_INDEX; --index-offset is added.
    /// Exit codes: 0 done, 75 failed but worth a retry, 65 failed for good (do not retry).
    ///
    /// Example: eocube worker s3://bucket/cube.zarr --run 20261202T101500-3f2a --index 7
    Worker {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// The run id (`eocube status OUT` lists them).
        #[arg(long)]
        run: String,
        /// The task index (default: from the engine's environment variable).
        #[arg(long)]
        index: Option<u32>,
        /// Added to the index: engines whose arrays are split start each part at 0.
        #[arg(long, default_value_t = 0)]
        index_offset: u32,
    },
    /// Merge the results of a run's tasks into the cube (the ledger; for Icechunk one commit),
    /// publish it when every job is done, and list missing and failed tasks with the command
    /// that reruns them; exits non-zero until the cube is complete. `eocube build --detach` leaves
    /// this to you.
    ///
    /// Example: eocube collect s3://bucket/cube.zarr
    Collect {
        /// The cube (the --out of `eocube build`).
        out: String,
        /// The run to collect (default: the newest).
        #[arg(long)]
        run: Option<String>,
        /// Icechunk output: the target branch of the build.
        #[arg(long, default_value = "main")]
        branch: String,
    },
    /// Abandon an unfinished build in an Icechunk repository: delete its build branch
    /// (`eocube.<build-id>`). The target branch is not touched.
    ///
    /// Example: eocube abort icechunk:///data/repo
    Abort {
        /// The repository (icechunk:///path or icechunk+s3://bucket/prefix).
        out: String,
        /// The target branch of the build to abandon.
        #[arg(long, default_value = "main")]
        branch: String,
    },
    /// List the versions of a cube in an Icechunk repository, newest first: snapshot id, time
    /// and message.
    ///
    /// Example: eocube log icechunk:///data/repo
    Log {
        /// The repository (icechunk:///path or icechunk+s3://bucket/prefix).
        out: String,
        /// The branch to list.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Print the versions as JSON.
        #[arg(long)]
        json: bool,
        /// Also list the commits builds made on their build branches (template, checkpoints).
        #[arg(long)]
        all: bool,
    },
    /// Write a synthetic Sentinel-2 L2A archive (COGs + STAC items) with a known true surface,
    /// for offline demos and benchmarks; see docs/synth.md.
    ///
    /// Example: eocube synth --out /tmp/s2 --bbox -72.06 44.02 -71.94 44.1 --start 2023-06-01 --end 2023-07-31
    Synth {
        /// Output directory (must not exist or be empty).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Region in degrees: west south east north (default: the demo region, -72.06 44.02 -71.94 44.1).
        #[arg(long, num_args = 4, value_names = ["W", "S", "E", "N"], allow_negative_numbers = true)]
        bbox: Option<Vec<f64>>,
        /// First day, YYYY-MM-DD (default 2023-06-01).
        #[arg(long)]
        start: Option<String>,
        /// Last day, inclusive, YYYY-MM-DD (default 2023-07-31).
        #[arg(long)]
        end: Option<String>,
        /// 10 m pixels per side of a scene, even, at most 10980 (real tiles; default 1098).
        #[arg(long, allow_negative_numbers = true)]
        scene_px: Option<i64>,
        /// COG tile size (default 1024 for scenes over 4096 px, else 512).
        #[arg(long)]
        tile_px: Option<usize>,
        /// Reflectance bands, comma-separated (default red,green,blue); SCL is always written.
        #[arg(long, value_delimiter = ',')]
        bands: Option<Vec<String>>,
        /// Days between passes (default 6).
        #[arg(long)]
        revisit_days: Option<u32>,
        /// Seed of clouds, swath edges and timestamps (default 42).
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// How a build runs; none of this changes the cube's bytes.
/// What a run is priced with (`eocube report`, `eocube plan --estimate`).
#[derive(clap::Args)]
struct PriceArgs {
    /// Memory per task in MB, billed as configured (default: the run's, when it ran on Lambda,
    /// else 2048).
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Dollars per GB-second (default: AWS Lambda x86_64 us-east-1, dated in the output).
    #[arg(long)]
    price_gb_s: Option<f64>,
    /// Dollars per request, i.e. per task attempt (default: $0.20 per million = 0.0000002).
    #[arg(long)]
    price_request: Option<f64>,
}

impl PriceArgs {
    /// The prices and memory to use; `run_memory` is what the run itself fixed.
    fn resolve(&self, run_memory: Option<u32>) -> anyhow::Result<(eocube::report::cost::Prices, u32)> {
        use eocube::report::cost::{DEFAULT_MEMORY_MB, LAMBDA_X86_64};
        let price = |flag: &str, v: Option<f64>, default: f64| match v {
            Some(p) if !(p.is_finite() && p >= 0.0) => anyhow::bail!("{flag} {p}: give a price of 0 or more dollars"),
            Some(p) => Ok(p),
            None => Ok(default),
        };
        let prices = eocube::report::cost::Prices {
            gb_second: price("--price-gb-s", self.price_gb_s, LAMBDA_X86_64.gb_second)?,
            request: price("--price-request", self.price_request, LAMBDA_X86_64.request)?,
        };
        let memory = self.memory_mb.or(run_memory).unwrap_or(DEFAULT_MEMORY_MB);
        if memory == 0 {
            anyhow::bail!("--memory-mb 0: give the memory each task has, e.g. 2048");
        }
        Ok((prices, memory))
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seconds one attempt of one job may take.
    #[arg(long, default_value_t = 90.0, value_name = "SECS")]
    timeout: f64,
    /// Attempts after the first for transient failures (network, throttling, timeouts).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Leave out scenes that fail permanently (404, corrupt TIFF, missing band), with a warning
    /// in the run report, instead of failing their jobs.
    #[arg(long)]
    skip_bad_scenes: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Icechunk output: the branch that receives the finished cube.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Icechunk output: tag the finished cube with this name.
    #[arg(long)]
    tag: Option<String>,
    /// Icechunk output: commit to the build branch every N done jobs...
    #[arg(long, default_value_t = 100, value_name = "N")]
    commit_every: usize,
    /// ...or every M minutes, whichever comes first.
    #[arg(long, default_value_t = 2.0, value_name = "M")]
    commit_minutes: f64,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Who runs the tasks.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecutorName {
    /// This process, --workers tasks at once.
    Local,
    /// Slurm job arrays running `eocube worker` (submitted with sbatch from this machine).
    Slurm,
    /// Kubernetes Indexed Jobs (through kubectl; --emit writes the manifests instead).
    #[cfg(feature = "kubernetes")]
    Kubernetes,
    /// AWS Batch array jobs (through the AWS API; --emit writes the requests instead).
    #[cfg(feature = "batch")]
    Batch,
    #[cfg(feature = "lambda")]
    Lambda,
}

#[cfg(feature = "lambda")]
#[derive(Subcommand)]
enum LambdaCommand {
    /// Write the function's zip (`bootstrap` = the eocube binary) for the provided.al2023 runtime
    /// and print the `aws lambda create-function` command. The binary must need no newer glibc
    /// than Amazon Linux 2023's (2.34): build a static one for the target (see the error).
    ///
    /// Example: eocube lambda package --binary target/x86_64-unknown-linux-musl/release/eocube
    Package {
        /// The zip to write.
        #[arg(short, long, default_value = "eocube-lambda.zip")]
        output: std::path::PathBuf,
        /// The function's architecture.
        #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "arm64"])]
        arch: String,
        /// The eocube binary to package (default: this one).
        #[arg(long, value_name = "PATH", conflicts_with = "build")]
        binary: Option<std::path::PathBuf>,
        /// Build it first with the installed toolchain: a static, stripped release binary for the
        /// architecture (`cargo build --release --target <arch>-unknown-linux-musl`), run in the
        /// eocube source tree given (default: the current directory).
        #[arg(long, value_name = "SOURCE", num_args = 0..=1, default_missing_value = ".")]
        build: Option<std::path::PathBuf>,
    },
}

/// Where and how the tasks run (docs/engines.md).
#[derive(clap::Args)]
struct EngineArgs {
    /// Who runs the tasks.
    #[arg(long, value_enum, default_value = "local")]
    executor: ExecutorName,
    /// Engines: tasks at once (Slurm's --array=...%P); default no limit.
    #[arg(long, value_name = "P")]
    max_parallel: Option<u32>,
    /// Jobs per task: fewer, longer tasks where an engine's start-up is dear.
    #[arg(long, default_value_t = 1, value_name = "K")]
    jobs_per_task: usize,
    /// Submit the tasks and return; `eocube collect OUT` finishes the build.
    #[arg(long)]
    detach: bool,
    /// The eocube binary the tasks run (default: this one; give the cluster's install).
    #[arg(long, value_name = "PATH")]
    worker_bin: Option<std::path::PathBuf>,
    /// Slurm: the partition of the tasks.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm: the time limit of one task (sbatch --time, e.g. 30 or 1:00:00).
    #[arg(long, value_name = "LIMIT")]
    time: Option<String>,
    /// Slurm: the memory of one task (sbatch --mem, e.g. 4G).
    #[arg(long)]
    mem: Option<String>,
    /// Slurm: one more sbatch option, e.g. --sbatch-arg=--account=geo (repeatable).
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Slurm: the folder for the scripts and task logs, seen by every node
    /// (default eocube-slurm/RUN under the current directory).
    #[arg(long, value_name = "DIR")]
    slurm_dir: Option<std::path::PathBuf>,
    /// Kubernetes, Batch: write the manifests (SubmitJob requests) to FILE and submit nothing.
    #[arg(long, value_name = "FILE")]
    emit: Option<std::path::PathBuf>,
    /// Kubernetes: the container image with eocube inside.
    #[arg(long)]
    image: Option<String>,
    /// Kubernetes: the namespace of the Jobs (default: kubectl's).
    #[arg(long)]
    namespace: Option<String>,
    /// Kubernetes: a Secret whose keys become the workers' environment (credentials).
    #[arg(long)]
    secret: Option<String>,
    /// Kubernetes: the service account of the pods (workload identity).
    #[arg(long)]
    service_account: Option<String>,
    /// Kubernetes: the CPU request of a pod (e.g. 1 or 500m).
    #[arg(long)]
    cpu: Option<String>,
    /// Batch: the job queue.
    #[arg(long)]
    job_queue: Option<String>,
    /// Batch: the job definition (a container job with eocube in its image).
    #[arg(long)]
    job_definition: Option<String>,
    /// Lambda: the function (name, ARN or NAME:ALIAS) made from `eocube lambda package`.
    #[arg(long)]
    function: Option<String>,
}

/// The cube settings; a TOML file given with --config uses the same names (with _ for -), and
/// flags override it.
#[derive(clap::Args)]
struct SpecArgs {
    /// TOML file with any of the settings below.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Region in degrees: west south east north.
    #[arg(long, num_args = 4, value_names = ["W", "S", "E", "N"], allow_negative_numbers = true)]
    bbox: Option<Vec<f64>>,
    /// First day (YYYY-MM-DD).
    #[arg(long)]
    start: Option<String>,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long)]
    end: Option<String>,
    /// Time bin length: nM (months, default 1M), nD (days) or nY (years).
    #[arg(long)]
    time_step: Option<String>,
    /// Target CRS as EPSG:<code> (default EPSG:4326).
    #[arg(long)]
    crs: Option<String>,
    /// Pixel size in CRS units; fractions allowed (default 1/3600 degree, or 30 for projected CRSs).
    #[arg(long, allow_negative_numbers = true)]
    resolution: Option<String>,
    /// Chunk size in pixels (default 1200).
    #[arg(long, allow_negative_numbers = true)]
    chunk_size: Option<i64>,
    /// Bands, comma-separated: Earth Search names or band numbers (default red,green,blue).
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<String>>,
    /// STAC collection (default: the catalog's Sentinel-2 L2A collection, sentinel-2-c1-l2a on
    /// Earth Search v1).
    #[arg(long)]
    collection: Option<String>,
    /// A catalog by name, which sets the defaults of --stac-url and --collection:
    /// earth-search (default), earth-search-v0, cdse, planetary-computer (signs COG requests
    /// with SAS tokens). Without it, a --stac-url of one of these is recognised.
    #[arg(long)]
    catalog: Option<String>,
    /// STAC API root (default: the catalog's, Earth Search v1).
    #[arg(long)]
    stac_url: Option<String>,
    /// Planetary Computer: the SAS token API, asked GET <url>/<collection>
    /// (default https://planetarycomputer.microsoft.com/api/sas/v1/token).
    #[arg(long, value_name = "URL")]
    sas_token_url: Option<String>,
    /// A local STAC item collection file to use instead of an API.
    #[arg(long, value_name = "FILE")]
    items: Option<std::path::PathBuf>,
    /// Skip scenes with more cloud cover than this percentage.
    #[arg(long, allow_negative_numbers = true)]
    cloud_cover_max: Option<f64>,
    /// default, seed, or valid SCL classes such as 4,5,6,7,11.
    #[arg(long)]
    mask: Option<String>,
    /// Grow the bad-pixel mask by this many pixels.
    #[arg(long)]
    mask_dilation: Option<u32>,
    /// nearest, bilinear (default) or average.
    #[arg(long)]
    resampling: Option<String>,
    /// How the observations of a time bin become values: median (default), mean, min, max, std,
    /// count, geomedian, or quantiles:Q1,Q2,... (e.g. quantiles:0.1,0.5,0.9; a `quantile` dim).
    #[arg(long)]
    reducer: Option<String>,
    /// Also store `valid_count`, the number of valid observations of each pixel and time bin.
    #[arg(long)]
    with_count: bool,
    /// Spectral indices computed per observation before the reducer, each stored as its own
    /// variable <index>_<reducer> (e.g. ndvi_max): built-ins ndvi, ndwi, nbr, ndmi, ndbi, savi,
    /// or name=expression over reflectance, e.g. 'evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1)'.
    /// Comma-separated (commas inside parentheses stay in the expression); may be repeated.
    #[arg(long, value_name = "INDICES")]
    index: Vec<String>,
    /// Data variable name (default rgb_<reducer> for red,green,blue, else the reducer's name).
    #[arg(long)]
    variable: Option<String>,
    /// Zarr format, 2 or 3 (default 3).
    #[arg(long)]
    zarr_format: Option<u8>,
    /// Output cube.
    #[arg(long)]
    out: Option<String>,
    /// Jobs run at once (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds a request (COG read, catalog search, cube write) may receive nothing before it is
    /// abandoned and retried; a slow but steady answer is never cut (default 5; a catalog search,
    /// which computes its page before answering, gets four times this).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    request_timeout: Option<f64>,
    /// Keep chunks with no land too.
    #[arg(long)]
    all_chunks: bool,
    /// Publish the cube even when no scene is found (a cube of fill); without it such a build
    /// is refused, or left unpublished with exit status 1.
    #[arg(long)]
    allow_empty: bool,
}

impl SpecArgs {
    fn input(self) -> anyhow::Result<SpecInput> {
        let file = match &self.config {
            Some(path) => SpecInput::from_toml_file(path)?,
            None => SpecInput::default(),
        };
        let resolution = match &self.resolution {
            Some(r) => Some(r.parse::<Resolution>().map_err(|e| anyhow::anyhow!("--resolution {r}: {e}"))?),
            None => None,
        };
        let flags = SpecInput {
            bbox: self.bbox,
            start: self.start,
            end: self.end,
            time_step: self.time_step,
            crs: self.crs,
            resolution,
            chunk_size: self.chunk_size,
            bands: self.bands,
            collection: self.collection,
            catalog: self.catalog,
            stac_url: self.stac_url,
            sas_token_url: self.sas_token_url,
            items: self.items,
            cloud_cover_max: self.cloud_cover_max,
            mask: self.mask,
            mask_dilation: self.mask_dilation,
            resampling: self.resampling,
            reducer: self.reducer,
            with_count: self.with_count.then_some(true),
            index: (!self.index.is_empty()).then_some(self.index),
            variable: self.variable,
            zarr_format: self.zarr_format,
            out: self.out,
            workers: self.workers,
            request_timeout: self.request_timeout,
            all_chunks: self.all_chunks.then_some(true),
            allow_empty: self.allow_empty.then_some(true),
        };
        Ok(file.overridden_by(flags))
    }
}

fn main() -> ExitCode {
    malloc::tune();
    #[cfg(feature = "lambda")]
    if lambda::started_as_function() {
        return lambda::serve();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", errors::render(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let done = match cli.command {
        Command::Info { href } => runtime.block_on(info(&href)),
        Command::Plan { spec, json, estimate, parallel, jobs_per_task, prices } => {
            plan(*spec, json, estimate.then_some((parallel, jobs_per_task, prices)))
        }
        Command::Report { out, run, output, prices } => {
            runtime.block_on(report(&out, run.as_deref(), &output, &prices))
        }
        Command::Build { spec, run, overviews } => runtime.block_on(build(*spec, run, overviews)),
        Command::Overviews { out, jobs, branch, quiet } => runtime.block_on(overviews(&out, jobs, &branch, quiet)),
        Command::Preview { out, output, time, bbox, bands, rescale, colormap, expression, size, version } => {
            let params = [
                ("time", time),
                ("bands", bands),
                ("rescale", rescale),
                ("colormap", colormap),
                ("expression", expression),
            ];
            runtime.block_on(preview(&out, &output, &params, bbox, size, version))
        }
        Command::Extend { out, end, workers, run } => runtime.block_on(extend(&out, &end, workers, run)),
        Command::Status { out, branch, json } => runtime.block_on(status(&out, &branch, json)),
        Command::Worker { out, run, index, index_offset } => {
            return Ok(runtime.block_on(worker(&out, &run, index, index_offset)));
        }
        Command::Collect { out, run, branch } => runtime.block_on(collect(&out, run.as_deref(), &branch)),
        Command::Abort { out, branch } => runtime.block_on(abort(&out, &branch)),
        Command::Log { out, branch, json, all } => runtime.block_on(log(&out, &branch, json, all)),
        Command::Synth { out, bbox, start, end, scene_px, tile_px, bands, revisit_days, seed } => {
            synth(&out, bbox, start, end, scene_px, tile_px, bands, revisit_days, seed)
        }
        Command::Serve { cubes, addr, cors, token, cache_mb, max_pixels, timeout, branch_ttl } => {
            let limits = ServeLimits { cache_mb, max_pixels, timeout, branch_ttl };
            runtime.block_on(serve(&cubes, addr, cors, token, limits))
        }
        Command::ServeArchive { dir, port } => runtime.block_on(serve_archive(&dir, port)),
        Command::Demo { out, workers, quiet } => runtime.block_on(demo(&out, workers, quiet)),
        #[cfg(feature = "lambda")]
        Command::Lambda { command: LambdaCommand::Package { output, arch, binary, build } } => {
            lambda::package(&output, &arch, binary.as_deref(), build.as_deref())
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `eocube worker`: the exit code is the engine's signal (0 done, 75 retry, 65 do not retry).
async fn worker(out: &str, run: &str, index: Option<u32>, offset: u32) -> ExitCode {
    use eocube::executor::array::{EXIT_PERMANENT, EXIT_RETRY};
    let code = |c: i32| ExitCode::from(u8::try_from(c).unwrap_or(1));
    let loc = match eocube::store::OutLocation::parse(out) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}", errors::render(&e.into()));
            return code(EXIT_PERMANENT);
        }
    };
    let index = match eocube::worker::task_index(index, offset, |k| std::env::var(k).ok()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return code(EXIT_PERMANENT);
        }
    };
    let opts = eocube::worker::WorkerOptions { fetch: FetchConfig::from_env() };
    match eocube::worker::run_stored_task(&loc, run, index, &opts).await {
        Ok(result) => {
            let done = result.jobs.iter().filter(|j| j.record.outcome == eocube::executor::Outcome::Done).count();
            eprintln!("task {index}: {done} of {} jobs done ({:?})", result.jobs.len(), result.exit);
            for j in result.jobs.iter().filter(|j| j.record.error.is_some()) {
                let job = j.record.job;
                eprintln!("  job t={} iy={} ix={}: {}", job.t, job.iy, job.ix, j.record.error.as_deref().unwrap_or(""));
            }
            code(result.exit.code())
        }
        Err(e) => {
            eprintln!("error: task {index} of run {run}: {e}");
            code(if e.is_transient() { EXIT_RETRY } else { EXIT_PERMANENT })
        }
    }
}

async fn collect(out: &str, run: Option<&str>, branch: &str) -> anyhow::Result<()> {
    use eocube::executor::array::ranges_text;
    let icechunk = eocube::store::IcechunkOptions { branch: branch.to_string(), ..Default::default() };
    let r = eocube::build::collect(out, run, &icechunk, &land_test).await?;
    println!(
        "run {}: {} tasks, {} results; {} jobs recorded done, {} failed",
        r.run, r.tasks, r.results, r.recorded_done, r.failed_jobs
    );
    if !r.missing.is_empty() {
        println!("tasks without a result ({}): {}", r.missing.len(), ranges_text(&r.missing));
    }
    if !r.failed.is_empty() {
        println!("tasks that failed ({}): {}", r.failed.len(), ranges_text(&r.failed));
    }
    for i in r.missing.iter().chain(&r.failed).take(5) {
        println!("  rerun one: eocube worker {out} --run {} --index {i}", r.run);
    }
    if let (false, Some(empty)) = (r.complete, &r.empty) {
        anyhow::bail!(
            "empty: {empty}; every chunk of {out} would be fill, so it is not published; rerun the build with \
             --allow-empty to publish it as it is"
        );
    }
    if !r.complete {
        anyhow::bail!(
            "not complete: {} jobs still to do; rerun them all with the same `eocube build` (it resumes) or the \
             commands above, then `eocube collect {out}` again",
            r.pending
        );
    }
    println!("complete: every job is done and the cube is published");
    Ok(())
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

/// `eocube report`: the page, where it went and a one-line summary.
async fn report(out: &str, run: Option<&str>, output: &std::path::Path, prices: &PriceArgs) -> anyhow::Result<()> {
    use eocube::report::render::{dollars_text, seconds_text};
    let cube = eocube::store::Cube::open(out).await?;
    let report = eocube::report::read(&cube, run).await?;
    let (prices, memory_mb) = prices.resolve(report.memory_mb)?;
    let cost = eocube::report::cost::Cost::of_run(&report, memory_mb, prices);
    let page = eocube::report::render::html(&report, &cost);
    std::fs::write(output, page).with_context(|| format!("-o {}: cannot write the page", output.display()))?;
    println!("wrote {}", output.display());
    println!(
        "run {}: {} tasks, {} jobs ({} failed, {} retries), wall {}, {:.1} GB-s at {memory_mb} MB, {} requests, {}; {} request retries",
        report.run,
        report.tasks.len(),
        report.jobs.len(),
        report.failures().count(),
        report.retries(),
        seconds_text(report.wall_seconds()),
        cost.gb_seconds,
        cost.requests,
        dollars_text(cost.dollars()),
        report.request_retries()
    );
    Ok(())
}

/// `eocube plan --estimate`: the prediction under the plan, with where its figures come from.
fn print_estimate(
    plan: &eocube::plan::Plan,
    parallel: usize,
    jobs_per_task: usize,
    prices: &PriceArgs,
) -> anyhow::Result<()> {
    use eocube::report::cost::{EstimateInput, MEASURED_SOURCE, PRICES_AS_OF, PRICES_SOURCE, estimate};
    use eocube::report::render::{dollars_text, seconds_text};
    if parallel == 0 || jobs_per_task == 0 {
        anyhow::bail!("--parallel and --jobs-per-task: give at least 1");
    }
    let (prices, memory_mb) = prices.resolve(None)?;
    let days: i64 = plan.bins.iter().map(|b| (b.end_exclusive - b.start).num_days()).sum();
    let input = EstimateInput {
        jobs: plan.jobs().count(),
        chunk_px: plan.spec.chunk_size,
        bin_days: days as f64 / plan.bins.len().max(1) as f64,
        jobs_per_task,
        parallel,
        memory_mb,
        prices,
    };
    let e = estimate(&input);
    println!("estimate:    {} tasks of {jobs_per_task} jobs, {parallel} at once", e.tasks);
    println!(
        "  per job:   {:.2} s wall ({} px chunk, {:.0}-day bins), peak {:.0}-{:.0} MB",
        e.job_seconds, input.chunk_px, input.bin_days, e.figures.peak_rss_mb.0, e.figures.peak_rss_mb.1
    );
    println!(
        "  wall:      {} (waves of {parallel} tasks of {})",
        seconds_text(e.wall_seconds),
        seconds_text(e.task_seconds)
    );
    println!(
        "  Lambda:    {:.0} GB-s at {memory_mb} MB + {} requests = {} (if no job found a scene: {})",
        e.cost.gb_seconds,
        e.cost.requests,
        dollars_text(e.cost.dollars()),
        dollars_text(e.floor_cost.dollars())
    );
    println!("  figures:   {MEASURED_SOURCE}");
    println!(
        "  prices:    ${}/GB-s, ${}/request: AWS Lambda as of {PRICES_AS_OF}, {PRICES_SOURCE} (override: --price-gb-s, --price-request)",
        prices.gb_second, prices.request
    );
    Ok(())
}

fn plan(args: SpecArgs, json: bool, estimate: Option<(usize, usize, PriceArgs)>) -> anyhow::Result<()> {
    let spec = args.input()?.validate()?;
    let t0 = std::time::Instant::now();
    let plan = eocube::plan::Plan::new(&spec, &land_test)?;
    let s = plan.summary();
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("grid:        {} x {} px (rows x cols) in {}", s.grid.ny, s.grid.nx, s.crs);
    println!("chunks:      {} x {} of {} px = {}", s.chunk_grid.ny, s.chunk_grid.nx, s.chunk_size, s.chunks_total);
    if spec.all_chunks {
        println!("kept:        {} (--all-chunks)", s.chunks_kept);
    } else {
        println!("kept:        {} with land ({:.1} s to test)", s.chunks_kept, t0.elapsed().as_secs_f64());
    }
    println!("time bins:   {} ({} .. {}, step {})", s.time_bins, s.first_bin, s.last_bin, spec.time_step);
    println!("jobs:        {}", s.jobs);
    println!(
        "output:      at most {:.2} GB before compression ({} bands, uint16)",
        s.bytes_uncompressed as f64 / 1e9,
        s.bands
    );
    if let Some((parallel, jobs_per_task, prices)) = estimate {
        print_estimate(&plan, parallel, jobs_per_task, &prices)?;
    }
    Ok(())
}

async fn build(args: SpecArgs, run: RunArgs, overviews: bool) -> anyhow::Result<()> {
    let input = args.input()?;
    let settings = input.run_settings()?;
    let spec = input.validate()?;
    // Before any client is made: every store and catalog of this process takes it.
    eocube::cloud::ClientConfig::current().with_request_timeout(settings.request_timeout).make_current();
    let mut opts = build_options(settings.workers, &run)?;
    opts.out = settings.out;
    opts.allow_empty = settings.allow_empty;
    let icechunk = icechunk_options(&run)?;
    let pyramid =
        eocube::pyramid::PyramidOptions { jobs: settings.workers.max(1), progress: progress::pyramid(run.quiet) };
    let report = eocube::build::build_with_overviews(
        &spec,
        &opts,
        &icechunk,
        overviews.then_some(&pyramid),
        &land_test,
        ctrl_c(),
    )
    .await?;
    if let Some(p) = &report.pyramid {
        print_pyramid(p);
    }
    print_report(&report, &run.branch)
}

/// `eocube overviews`.
async fn overviews(out: &str, jobs: Option<usize>, branch: &str, quiet: bool) -> anyhow::Result<()> {
    if jobs == Some(0) {
        anyhow::bail!("--jobs 0: give at least 1 tile at once");
    }
    let loc = eocube::store::OutLocation::parse(out)?;
    let opts = eocube::pyramid::PyramidOptions {
        jobs: jobs.unwrap_or_else(default_workers),
        progress: progress::pyramid(quiet),
    };
    let summary = eocube::pyramid::overviews(&loc, branch, &opts).await?;
    print_pyramid(&summary);
    match &loc {
        eocube::store::OutLocation::Icechunk(_) => println!("committed to {branch} of {loc}"),
        _ => println!("open a level in Python: xr.open_zarr(\"{out}\", group=\"pyramid/1\")"),
    }
    Ok(())
}

/// `eocube preview`: the flags become serve's query, so both read them the same way.
async fn preview(
    out: &str,
    output: &std::path::Path,
    params: &[(&str, Option<String>)],
    bbox: Option<Vec<f64>>,
    size: usize,
    version: Option<String>,
) -> anyhow::Result<()> {
    use eocube::serve::quicklook::{PreviewError, PreviewRequest};
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let query = eocube::serve::params::Query::parse(Some(&q.finish()))?;
    let bbox = match bbox.as_deref() {
        Some(&[w, s, e, n]) => Some(eocube::Bbox::new_lonlat(w, s, e, n).context("--bbox")?),
        _ => None,
    };
    if !(16..=16384).contains(&size) {
        anyhow::bail!("--size {size}: give 16 to 16384 pixels");
    }
    let loc = eocube::store::OutLocation::parse(out)?;
    let version = version.map_or(eocube::store::view::VersionRef::Default, eocube::store::view::VersionRef::Named);
    let view =
        eocube::store::view::CubeView::open(&loc, &version, eocube::store::view::ChunkCache::new(256 << 20)).await?;
    let req = PreviewRequest { query, bbox, max_px: size };
    let png = eocube::serve::quicklook::preview(&view, &req).await.map_err(|e| match e {
        // Name the flag, not the URL parameter it stands for.
        PreviewError::Param(p) => anyhow::anyhow!("--{} {:?}: {}", p.param, p.value, p.fix),
        e => e.into(),
    })?;
    std::fs::write(output, &png).with_context(|| format!("cannot write {}", output.display()))?;
    println!("wrote {} ({} KB); open it in any image viewer", output.display(), png.len() / 1024);
    Ok(())
}

/// The summary line of a pyramid build.
fn print_pyramid(p: &eocube::pyramid::PyramidSummary) {
    let shapes: Vec<String> = p.shapes.iter().map(|(ny, nx)| format!("{ny}x{nx}")).collect();
    let beside = if p.tiles_while_jobs_ran > 0 {
        format!(" ({} of {} tiles while the jobs ran)", p.tiles_while_jobs_ran, p.tiles)
    } else {
        String::new()
    };
    println!(
        "overviews: {} levels ({}), {} chunks written, {} all-fill left out, {:.1} MB, {:.1} s{beside}",
        p.levels,
        shapes.join(", "),
        p.chunks_written,
        p.chunks_empty,
        p.bytes as f64 / 1e6,
        p.seconds
    );
}

/// How a build uses an Icechunk repository, from the flags.
fn icechunk_options(run: &RunArgs) -> anyhow::Result<eocube::store::IcechunkOptions> {
    if run.commit_every == 0 {
        anyhow::bail!("--commit-every 0: give at least 1 job between commits");
    }
    let m = run.commit_minutes;
    if !(m.is_finite() && m > 0.0 && m <= 24.0 * 60.0) {
        anyhow::bail!("--commit-minutes {m}: give minutes between 0 and 1440 (e.g. 0.5 or 10)");
    }
    Ok(eocube::store::IcechunkOptions {
        branch: run.branch.clone(),
        tag: run.tag.clone(),
        commit_every_jobs: run.commit_every,
        commit_every: std::time::Duration::from_secs_f64(m * 60.0),
    })
}

/// How a build runs, from the flags.
fn build_options(workers: usize, run: &RunArgs) -> anyhow::Result<eocube::build::BuildOptions> {
    use eocube::executor::RunOptions;
    if !(run.timeout.is_finite() && run.timeout > 0.0) {
        anyhow::bail!("--timeout {}: must be a positive number of seconds, e.g. 90", run.timeout);
    }
    Ok(eocube::build::BuildOptions {
        out: None,
        run: RunOptions {
            workers,
            timeout: std::time::Duration::from_secs_f64(run.timeout),
            retries: run.retries,
            ..RunOptions::default()
        },
        executor: executor_choice(&run.engine)?,
        jobs_per_task: run.engine.jobs_per_task,
        skip_bad_scenes: run.skip_bad_scenes,
        allow_empty: false,
        watcher: progress::watcher(run.quiet),
        fetch: FetchConfig::from_env(),
        detach: run.engine.detach,
    })
}

/// What every container engine takes from the flags.
#[cfg(any(feature = "kubernetes", feature = "batch"))]
fn remote(e: &EngineArgs) -> eocube::build::Remote {
    eocube::build::Remote {
        worker_bin: e.worker_bin.as_ref().map_or_else(|| "eocube".to_string(), |b| b.display().to_string()),
        max_parallel: e.max_parallel.unwrap_or(0),
        emit: e.emit.clone(),
    }
}

/// The executor the flags name; engine flags given to another executor are refused.
fn executor_choice(e: &EngineArgs) -> anyhow::Result<eocube::build::ExecutorChoice> {
    use eocube::build::ExecutorChoice;
    use eocube::executor::slurm::SlurmOptions;
    if e.jobs_per_task == 0 {
        anyhow::bail!("--jobs-per-task 0: give at least 1");
    }
    // Each engine flag and the executors it is for.
    let name = e.executor;
    let flags: [(&str, bool, &[&str]); 17] = [
        ("--max-parallel", e.max_parallel.is_some(), &["slurm", "kubernetes", "batch", "lambda"]),
        ("--worker-bin", e.worker_bin.is_some(), &["slurm", "kubernetes", "batch"]),
        ("--detach", e.detach, &["slurm", "kubernetes", "batch"]),
        ("--partition", e.partition.is_some(), &["slurm"]),
        ("--time", e.time.is_some(), &["slurm"]),
        ("--mem", e.mem.is_some(), &["slurm", "kubernetes"]),
        ("--sbatch-arg", !e.sbatch_args.is_empty(), &["slurm"]),
        ("--slurm-dir", e.slurm_dir.is_some(), &["slurm"]),
        ("--emit", e.emit.is_some(), &["kubernetes", "batch"]),
        ("--image", e.image.is_some(), &["kubernetes"]),
        ("--namespace", e.namespace.is_some(), &["kubernetes"]),
        ("--secret", e.secret.is_some(), &["kubernetes"]),
        ("--service-account", e.service_account.is_some(), &["kubernetes"]),
        ("--cpu", e.cpu.is_some(), &["kubernetes"]),
        ("--job-queue", e.job_queue.is_some(), &["batch"]),
        ("--job-definition", e.job_definition.is_some(), &["batch"]),
        ("--function", e.function.is_some(), &["lambda"]),
    ];
    let this = clap::ValueEnum::to_possible_value(&name).map(|v| v.get_name().to_string()).unwrap_or_default();
    for (flag, given, executors) in flags {
        if given && !executors.contains(&this.as_str()) {
            anyhow::bail!(
                "{flag} is for --executor {}, not {this}{}",
                executors.join("|"),
                if this == "local" { " (local tasks: --workers)" } else { "" }
            );
        }
    }
    match name {
        ExecutorName::Local => Ok(ExecutorChoice::Local),
        #[cfg(feature = "kubernetes")]
        ExecutorName::Kubernetes => {
            use eocube::executor::kubernetes::KubernetesOptions;
            let image = e.image.clone().ok_or_else(|| {
                anyhow::anyhow!("--executor kubernetes needs --image: the container image with eocube inside")
            })?;
            Ok(ExecutorChoice::Kubernetes {
                opts: KubernetesOptions {
                    image,
                    namespace: e.namespace.clone(),
                    secret: e.secret.clone(),
                    service_account: e.service_account.clone(),
                    cpu: e.cpu.clone(),
                    memory: e.mem.clone(),
                    ..KubernetesOptions::default()
                },
                remote: remote(e),
            })
        }
        #[cfg(feature = "batch")]
        ExecutorName::Batch => {
            use eocube::executor::batch::BatchOptions;
            let need = |v: &Option<String>, flag: &str| {
                v.clone().ok_or_else(|| anyhow::anyhow!("--executor batch needs {flag}"))
            };
            Ok(ExecutorChoice::Batch {
                opts: BatchOptions {
                    job_queue: need(&e.job_queue, "--job-queue")?,
                    job_definition: need(&e.job_definition, "--job-definition")?,
                    attempts: 1,
                    env: Vec::new(),
                    timeout_seconds: None,
                },
                remote: remote(e),
            })
        }
        #[cfg(feature = "lambda")]
        ExecutorName::Lambda => {
            use eocube::executor::lambda::{DEFAULT_MAX_PARALLEL, LambdaOptions};
            let function = e.function.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "--executor lambda needs --function: the function made from `eocube lambda package` (its name or ARN)"
                )
            })?;
            Ok(ExecutorChoice::Lambda {
                opts: LambdaOptions { function, max_parallel: e.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL) },
            })
        }
        ExecutorName::Slurm => {
            if let Some(bin) = &e.worker_bin
                && !bin.is_absolute()
            {
                anyhow::bail!("--worker-bin {}: give an absolute path (the tasks run on other nodes)", bin.display());
            }
            Ok(ExecutorChoice::Slurm {
                opts: SlurmOptions {
                    partition: e.partition.clone(),
                    time: e.time.clone(),
                    mem: e.mem.clone(),
                    sbatch_args: e.sbatch_args.clone(),
                    worker_bin: e.worker_bin.clone(),
                    log_dir: e.slurm_dir.clone(),
                    ..SlurmOptions::default()
                },
                max_parallel: e.max_parallel.unwrap_or(0),
            })
        }
    }
}

/// `" (N more not read: their solar day was already covered)"`, or nothing for none.
fn covered_text(covered: usize) -> String {
    if covered == 0 {
        String::new()
    } else {
        format!(" ({covered} more not read: their solar day was already covered)")
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The end of a build on stdout/stderr; exit 130 when interrupted, an error when jobs failed.
fn print_report(report: &eocube::build::BuildReport, branch: &str) -> anyhow::Result<()> {
    let s = &report.summary;
    let out = report.out.display();
    for w in &report.warnings {
        eprintln!("warning: {w}; --allow-empty given: building it anyway");
    }
    if let Some(d) = &report.detached {
        if d.emitted {
            println!(
                "run {}: {} jobs ({} done before) written for {} to {}; nothing was submitted",
                d.run,
                s.not_run,
                s.already_done,
                d.executor,
                d.path.display()
            );
            match d.executor {
                "kubernetes" => println!("submit:  kubectl apply -f {}", d.path.display()),
                _ => println!(
                    "submit:  jq -c '.[]' {} | while read -r j; do aws batch submit-job --cli-input-json \"$j\"; done",
                    d.path.display()
                ),
            }
        } else if d.engine_jobs.is_empty() {
            println!("submitted run {}: {} jobs ({} done before) to {}", d.run, s.not_run, s.already_done, d.executor);
        } else {
            println!(
                "submitted run {}: {} jobs ({} done before) as Slurm job(s) {}; task logs in {}",
                d.run,
                s.not_run,
                s.already_done,
                d.engine_jobs.join(", "),
                d.path.display()
            );
            println!("watch:   squeue -j {}", d.engine_jobs.join(","));
        }
        println!("finish:  eocube collect {out} --run {}", d.run);
        return Ok(());
    }
    println!(
        "{} jobs: {} done now, {} done before, {} failed, {} not run; {} scenes{}, {:.1} MB in {} requests, {} retries, {} request retries, {:.1} s",
        s.jobs,
        s.done,
        s.already_done,
        s.failed,
        s.not_run,
        s.scenes,
        covered_text(s.scenes_covered),
        s.bytes as f64 / 1e6,
        s.requests,
        s.retries,
        s.request_retries,
        s.seconds
    );
    if let Some(line) = &report.engine {
        println!("{line}");
    }
    for f in s.failures.iter().take(10) {
        eprintln!(
            "failed: job t={} iy={} ix={}: {}",
            f.job.t,
            f.job.iy,
            f.job.ix,
            f.error.as_deref().unwrap_or("unknown error")
        );
    }
    if s.failures.len() > 10 {
        eprintln!("... and {} more failures: `eocube status {out}` lists them", s.failures.len() - 10);
    }
    if s.interrupted {
        eprintln!("interrupted: run the same command again to resume ({} jobs left)", s.jobs - s.already_done - s.done);
        std::process::exit(130);
    }
    if s.failed > 0 {
        anyhow::bail!(
            "{} of {} jobs failed; run the same command again to retry them (done jobs are kept); `eocube status {out}` lists them",
            s.failed,
            s.jobs
        );
    }
    if let Some(empty) = &report.empty {
        if !report.complete {
            anyhow::bail!(
                "empty: {empty}; every chunk of {out} would be fill, so it is not published. Check --collection, --bbox, \
                 --start/--end, --bands and --cloud-cover-max against the catalog, or rerun with --allow-empty to publish \
                 it as it is (the jobs are kept)"
            );
        }
        eprintln!("warning: empty: {empty}; the cube is all fill (published: --allow-empty)");
    }
    println!("cube: {out} (complete)");
    println!("open it in Python:");
    println!("  import xarray as xr");
    if let Some(path) = out.to_string().strip_prefix("icechunk://") {
        println!("  import icechunk");
        println!("  repo = icechunk.Repository.open(icechunk.local_filesystem_storage(\"{path}\"))");
        println!("  ds = xr.open_zarr(repo.readonly_session(\"{branch}\").store, consolidated=False)");
    } else if let Some(rest) = out.to_string().strip_prefix("icechunk+s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        println!("  import icechunk");
        println!("  storage = icechunk.s3_storage(bucket=\"{bucket}\", prefix=\"{prefix}\", from_env=True)");
        println!(
            "  ds = xr.open_zarr(icechunk.Repository.open(storage).readonly_session(\"{branch}\").store, consolidated=False)"
        );
    } else if out.to_string().starts_with("az://") || out.to_string().starts_with("azure://") {
        println!("  # through adlfs (pip install adlfs); give the account as for eocube:");
        println!("  ds = xr.open_zarr(\"{out}\", storage_options={{\"account_name\": ..., \"account_key\": ...}})");
    } else if out.to_string().starts_with("gs://") || out.to_string().starts_with("gcs://") {
        println!("  # through gcsfs (pip install gcsfs), with the same Google credentials");
        println!("  ds = xr.open_zarr(\"{out}\")");
    } else {
        println!("  ds = xr.open_zarr(\"{out}\")");
    }
    Ok(())
}

async fn extend(out: &str, end: &str, workers: Option<usize>, run: RunArgs) -> anyhow::Result<()> {
    let new_end = chrono::NaiveDate::parse_from_str(end.trim(), "%Y-%m-%d")
        .map_err(|e| anyhow::anyhow!("--end {end}: not a date ({e}); give YYYY-MM-DD, e.g. 2024-06-30"))?;
    let opts = build_options(workers.unwrap_or_else(default_workers), &run)?;
    let icechunk = icechunk_options(&run)?;
    let report = eocube::build::extend(out, new_end, workers, &opts, &icechunk, &land_test, ctrl_c()).await?;
    print_report(&report, &run.branch)
}

async fn demo(out: &std::path::Path, workers: Option<usize>, quiet: bool) -> anyhow::Result<()> {
    use eocube::executor::RunOptions;
    let t0 = std::time::Instant::now();
    let opts = eocube::build::BuildOptions {
        out: None,
        run: RunOptions { workers: workers.unwrap_or(2), ..RunOptions::default() },
        executor: eocube::build::ExecutorChoice::Local,
        jobs_per_task: 1,
        skip_bad_scenes: false,
        allow_empty: false,
        watcher: progress::watcher(quiet),
        fetch: FetchConfig::default(),
        detach: false,
    };
    let r = demo::run(out, workers, &opts, &land_test, ctrl_c()).await?;
    let s = &r.build.summary;
    println!(
        "archive: {} ({} scenes in UTM zones {:?}, {} files, {:.1} MB) written in {:.1} s",
        r.dir.join("archive").display(),
        r.archive.scenes,
        r.archive.zones,
        r.archive.files,
        r.archive.bytes as f64 / 1e6,
        r.synth_seconds
    );
    println!(
        "build:   {} jobs ({} failed) from {} scenes{}, {:.1} MB in {} HTTP range requests, {:.1} s",
        s.jobs,
        s.failed,
        s.scenes,
        covered_text(s.scenes_covered),
        s.bytes as f64 / 1e6,
        s.requests,
        r.build_seconds
    );
    if s.interrupted {
        anyhow::bail!("interrupted; run `eocube demo` again to start over");
    }
    if !r.build.complete {
        anyhow::bail!("{} jobs failed; `eocube status {}` lists them", s.failed, r.cube.display());
    }
    let cube = r.cube.display();
    println!("cube:    {cube} ({:.1} s in all)", t0.elapsed().as_secs_f64());
    println!();
    println!("Open it in Python (xarray, zarr>=3):");
    println!("  import xarray as xr");
    println!("  ds = xr.open_zarr(\"{cube}\")");
    println!("and look at the first month (matplotlib):");
    println!("  ds.rgb_median.isel(time=0).plot.imshow(rgb=\"band\", robust=True)");
    println!();
    // A picture without Python: the quicklook of the first month, and the map server.
    let png = r.dir.join("quicklook.png");
    let first = [("time", Some("#0".to_string()))];
    preview(&cube.to_string(), &png, &first, None, 1024, None).await?;
    println!("Look at it on a map (time slider, pixel time series; Ctrl-C stops):");
    println!("  eocube serve {cube}     # then open http://127.0.0.1:8080/cubes/cube/map");
    Ok(())
}

async fn serve_archive(dir: &std::path::Path, port: u16) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join("items.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("{}: cannot read the archive's items (is {} an `eocube synth` output?)", path.display(), dir.display())
    })?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let items = doc
        .get("features")
        .and_then(|f| f.as_array())
        .cloned()
        .with_context(|| format!("{}: not a STAC item collection (no `features`)", path.display()))?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server = eocube_synth::server::ArchiveServer::start_on(addr, dir.to_path_buf(), items, Vec::new()).await?;
    println!("STAC API: {}", server.url());
    println!(
        "build from it: eocube build --stac-url {} --bbox W S E N --start .. --end .. --out cube.zarr",
        server.url()
    );
    println!("Ctrl-C stops the server.");
    let _ = std::io::stdout().flush();
    server.serve_until(ctrl_c()).await;
    Ok(())
}

/// The bounds of `eocube serve`.
struct ServeLimits {
    cache_mb: usize,
    max_pixels: usize,
    timeout: f64,
    branch_ttl: u64,
}

/// `eocube serve`: checks the flags, opens every cube, prints the URLs and serves until Ctrl-C.
async fn serve(
    cubes: &[String],
    addr: std::net::SocketAddr,
    cors: Option<String>,
    token: Option<String>,
    limits: ServeLimits,
) -> anyhow::Result<()> {
    use std::io::Write;
    let ServeLimits { cache_mb, max_pixels, timeout, branch_ttl } = limits;
    if let Some(o) = &cors {
        let ok = o == "*"
            || ((o.starts_with("http://") || o.starts_with("https://"))
                && !o.trim_start_matches("http://").trim_start_matches("https://").contains('/')
                && o.bytes().all(|b| b.is_ascii_graphic()));
        if !ok {
            anyhow::bail!(
                "--cors {o:?}: give an origin such as http://localhost:3000 (scheme, host, port; no path) or *"
            );
        }
    }
    let token = token.or_else(|| std::env::var("EOCUBE_SERVE_TOKEN").ok()).filter(|t| !t.is_empty());
    if let Some(t) = &token
        && !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        anyhow::bail!("--token: use letters, digits and - . _ ~ only (it travels in URLs)");
    }
    let timeout = std::time::Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--timeout {timeout}: give a number of seconds greater than 0"))?;
    if cache_mb == 0 || max_pixels == 0 {
        anyhow::bail!("--cache-mb and --max-pixels must be greater than 0");
    }
    let opts = eocube::serve::ServeOptions {
        addr,
        cors,
        token: token.clone(),
        cache_bytes: cache_mb.saturating_mul(1 << 20),
        max_pixels,
        timeout,
        branch_ttl: std::time::Duration::from_secs(branch_ttl),
        ..Default::default()
    };
    let args = eocube::serve::cube_args(cubes)?;
    let server = eocube::serve::Server::open(args, opts).await.context("cannot start the server")?;
    let ids = server.ids();
    let listening = server.bind().await?;
    let base = format!("http://{}", listening.local_addr());
    let query = token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
    println!("eocube serve: {} cube(s) on {base} (read-only; Ctrl-C stops)", ids.len());
    println!("catalog: {base}/{query}");
    for id in &ids {
        println!("  {id}: {base}/cubes/{id}/map{query}");
    }
    if !addr.ip().is_loopback() && token.is_none() {
        eprintln!("warning: --addr {addr} is reachable from other machines and there is no --token");
    }
    let _ = std::io::stdout().flush();
    listening.serve_until(ctrl_c()).await.context("the server stopped")?;
    Ok(())
}

/// Completes on Ctrl-C; never, if the handler cannot be installed (run to the end instead).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn status(out: &std::path::Path, branch: &str, json: bool) -> anyhow::Result<()> {
    let s = eocube::build::status(out, branch, &land_test).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("jobs: {}", s.jobs);
    println!("done: {}", s.done);
    println!("pending: {}", s.pending);
    println!("failed: {}", s.failed);
    let unfinished = match &s.empty {
        Some(_) => "no (every job is done but none found data: rerun the build with --allow-empty to publish it)",
        None => "no (run eocube build again to finish it)",
    };
    println!("complete: {}", if s.complete { "yes" } else { unfinished });
    if let Some(empty) = &s.empty {
        println!("empty: {empty}");
    }
    for (job, error) in s.failures.iter().take(10) {
        println!("  failed job t={} iy={} ix={}: {error}", job.t, job.iy, job.ix);
    }
    for r in &s.runs {
        println!(
            "run {}: {} executor, {} tasks, {} jobs, started {}; {} retries, {} request retries",
            r.id, r.executor, r.tasks, r.jobs, r.created, r.retries, r.request_retries
        );
    }
    Ok(())
}

async fn abort(out: &str, branch: &str) -> anyhow::Result<()> {
    let loc = eocube::store::OutLocation::parse(out)?;
    let deleted = eocube::store::icechunk::abort(&loc, branch).await?;
    if deleted.is_empty() {
        println!("no unfinished build for branch {branch} in {loc}");
    }
    for b in deleted {
        println!("deleted build branch {b} ({branch} is unchanged)");
    }
    Ok(())
}

async fn log(out: &str, branch: &str, json: bool, all: bool) -> anyhow::Result<()> {
    let loc = eocube::store::OutLocation::parse(out)?;
    let versions = eocube::store::icechunk::log(&loc, branch, all).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(());
    }
    for v in versions {
        println!("{}  {}  {}", v.snapshot, v.time, v.message);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn synth(
    out: &std::path::Path,
    bbox: Option<Vec<f64>>,
    start: Option<String>,
    end: Option<String>,
    scene_px: Option<i64>,
    tile_px: Option<usize>,
    bands: Option<Vec<String>>,
    revisit_days: Option<u32>,
    seed: Option<u64>,
) -> anyhow::Result<()> {
    use eocube_synth::{SynthError, SynthSpec, generate};
    let mut spec = SynthSpec::demo();
    if let Some(b) = bbox {
        spec.bbox = match b.as_slice() {
            [w, s, e, n] => eocube::Bbox::new_lonlat(*w, *s, *e, *n).map_err(|e| anyhow::anyhow!("--bbox: {e}"))?,
            _ => anyhow::bail!("--bbox: give four numbers W S E N"),
        };
    }
    let date = |flag: &str, v: &str| {
        chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}; give a date as YYYY-MM-DD"))
    };
    if let Some(s) = start {
        spec.start = date("start", &s)?;
    }
    if let Some(e) = end {
        spec.end = date("end", &e)?;
    }
    if let Some(px) = scene_px {
        spec.scene_px = usize::try_from(px).map_err(|_| anyhow::anyhow!("--scene-px {px}: it must be positive"))?;
        spec.tile_px = if spec.scene_px > 4096 { 1024 } else { 512 };
    }
    if let Some(t) = tile_px {
        spec.tile_px = t;
    }
    if let Some(b) = bands {
        spec.bands = b;
    }
    if let Some(r) = revisit_days {
        spec.revisit_days = r;
    }
    if let Some(s) = seed {
        spec.seed = s;
    }
    let t0 = std::time::Instant::now();
    let archive = generate(&spec, out).map_err(|e| match e {
        SynthError::InvalidSpec { field, reason } => anyhow::anyhow!("--{}: {reason}", field.replace('_', "-")),
        SynthError::OutDirNotEmpty { path } => {
            anyhow::anyhow!("--out {}: exists and is not empty; give a new or empty directory", path.display())
        }
        e => e.into(),
    })?;
    let zones: Vec<String> = archive.zones.iter().map(|z| z.to_string()).collect();
    println!("wrote:   {} scenes in UTM zones {} ({} to {})", archive.scenes, zones.join(", "), spec.start, spec.end);
    println!("files:   {} ({:.1} MB) in {}", archive.files, archive.bytes as f64 / 1e6, out.display());
    println!("took:    {:.1} s", t0.elapsed().as_secs_f64());
    let b = spec.bbox;
    println!(
        "build:   eocube build --items {} --bbox {} {} {} {} --start {} --end {} --out cube.zarr",
        out.join("items-local.json").display(),
        b.west,
        b.south,
        b.east,
        b.north,
        spec.start,
        spec.end
    );
    Ok(())
}

/// The embedded land mask as the land test of one plan: decoded for it (about 0.1 s) and freed
/// with it, so a build does not hold the mask's 13 MB while it reads scenes.
fn land_test() -> Result<eocube::plan::IsLand, String> {
    let mask = eocube::landmask::LandMask::embedded().map_err(|e| e.to_string())?;
    Ok(Box::new(move |ring, buffer| mask.intersects(ring, buffer)))
}
