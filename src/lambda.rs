//! The binary as an AWS Lambda function (`provided.al2023`): started with no arguments under
//! Lambda's Runtime API, it answers invocations with [`eocube::executor::lambda::handle`].
//!
//! Credentials are the function's role (the standard environment Lambda sets); nothing secret
//! is in an event.

use std::process::ExitCode;

use eocube::cog::FetchConfig;
use eocube::executor::lambda::{Answer, Invocation, handle};
use eocube::worker::WorkerOptions;
use lambda_runtime::{LambdaEvent, service_fn};

/// Variables the Runtime API client needs; it panics without them, so they are checked first.
const REQUIRED: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Lambda starts `bootstrap` with no arguments and `AWS_LAMBDA_RUNTIME_API` set; a person never
/// does both (no arguments prints the help).
pub fn started_as_function() -> bool {
    std::env::args_os().len() == 1 && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Serves invocations until Lambda stops the process.
pub fn serve() -> ExitCode {
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|k| std::env::var_os(k).is_none()).collect();
    if !missing.is_empty() {
        eprintln!(
            "error: started as a Lambda function, but {} {} not set; Lambda sets them: run `eocube` with a \
             command anywhere else",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = WorkerOptions { fetch: FetchConfig::from_env() };
    let handler = service_fn(move |event: LambdaEvent<Invocation>| {
        let opts = opts.clone();
        async move { Ok::<Answer, lambda_runtime::Error>(handle(event.payload, &opts).await) }
    });
    match runtime.block_on(lambda_runtime::run_concurrent(handler)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the Lambda runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Memory and timeout the printed command suggests: a full-size chunk-month peaks at 216-260 MB
/// and takes about 1.8 s on two cores (docs/engines.md); Lambda gives one vCPU per 1,769 MB, so
/// 2,048 MB buys the CPU rather than the memory, and 300 s leaves room for slow archives.
const SUGGESTED_MEMORY_MB: u32 = 2048;
const SUGGESTED_TIMEOUT_S: u32 = 300;

/// `eocube lambda package`.
pub fn package(
    output: &std::path::Path,
    arch: &str,
    binary: Option<&std::path::Path>,
    build: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use eocube::executor::lambda::package::{self, Arch};
    let arch: Arch = arch.parse().map_err(|e: String| anyhow::anyhow!("--arch {e}"))?;
    let binary = match (binary, build) {
        (Some(b), _) => b.to_path_buf(),
        (None, Some(source)) => build_static(source, arch)?,
        (None, None) => std::env::current_exe().context("this program's path (give --binary)")?,
    };
    let size = package::package(&binary, arch, output)?;
    println!("wrote {} ({:.1} MB): bootstrap = {}", output.display(), size as f64 / 1e6, binary.display());
    println!("create the function (a role that may read the archive and write the cube, docs/engines.md):");
    println!("  {}", package::create_function_command(output, size, arch, SUGGESTED_MEMORY_MB, SUGGESTED_TIMEOUT_S));
    println!("then build with:  eocube build ... --out s3://BUCKET/cube.zarr --executor lambda --function eocube");
    Ok(())
}

/// `cargo build` of a static, stripped eocube for `arch` in the source tree `source`; the path of
/// the binary it made.
fn build_static(
    source: &std::path::Path,
    arch: eocube::executor::lambda::package::Arch,
) -> anyhow::Result<std::path::PathBuf> {
    let manifest = source.join("Cargo.toml");
    let is_eocube = std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("name = \"eocube-cli\""));
    if !is_eocube {
        anyhow::bail!(
            "--build {}: not the eocube source tree (no Cargo.toml of eocube-cli there); give the directory of a \
             clone of eocube, or package a built binary with --binary",
            source.display()
        );
    }
    let target = arch.musl_target();
    let args = ["build", "--release", "--bin", "eocube", "--target", target, "--config", "profile.release.strip=true"];
    eprintln!(
        "building: cargo {} (in {}; needs `rustup target add {target}` and musl-tools)",
        args.join(" "),
        source.display()
    );
    let status = std::process::Command::new("cargo")
        .args(args)
        .current_dir(source)
        .status()
        .map_err(|e| anyhow::anyhow!("--build: cannot run cargo ({e}); install Rust with rustup"))?;
    if !status.success() {
        anyhow::bail!(
            "--build: cargo build failed ({status}); for a missing target: `rustup target add {target}`, and on Debian \
             `apt-get install musl-tools` for the C parts"
        );
    }
    Ok(source.join("target").join(target).join("release").join("eocube"))
}
