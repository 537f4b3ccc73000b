//! The run report (issue 10, part 4): `eocube report` on a real build of the e2e archive (test
//! nginx + test STAC API), the page opened in headless Chromium (Debian `chromium`, installed by
//! scripts/setup.sh): the screenshot is not blank and the timeline has one mark per task. And
//! `eocube plan --estimate`, with where its figures come from.
//!
//! Without Chromium these tests fail, they never skip.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// 3 x 2 chunks x 3 months, every bin of a chunk in one task: 6 tasks of 3 jobs.
const EXTRA: [&str; 8] = ["--resampling", "nearest", "--chunk-size", "128", "--jobs-per-task", "3", "--workers", "2"];
const JOBS: usize = 18;
const TASKS: usize = 6;

fn chromium() -> PathBuf {
    let found = ["chromium", "/usr/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()));
    found.unwrap_or_else(|| panic!("no chromium: run scripts/setup.sh (section 7 installs Debian's chromium)"))
}

fn ok(args: &[String]) -> String {
    let out = common::run_eocube(args);
    common::assert_ok(&out, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest run id of the local cube at `cube` and its record.
fn newest_run(cube: &Path) -> Value {
    let mut runs: Vec<String> = std::fs::read_dir(cube.join("_eocube/runs"))
        .expect("the cube has runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    let run = runs.pop().expect("a run");
    serde_json::from_slice(&std::fs::read(cube.join("_eocube/runs").join(&run).join("run.json")).expect("run.json"))
        .expect("run.json parses")
}

/// Headless Chromium's screenshot of `page`, as (distinct colours, share of the commonest).
fn screenshot_colours(page: &Path, png: &Path) -> (usize, f64) {
    let url = format!("file://{}", page.canonicalize().expect("the page exists").display());
    let profile = png.with_extension("profile");
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1400,1800", &url])
        .output()
        .unwrap_or_else(|e| panic!("running chromium: {e}"));
    assert!(png.is_file(), "chromium wrote no screenshot ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let script = "import sys\nfrom PIL import Image\nim = Image.open(sys.argv[1]).convert('RGB')\n\
                  counts = sorted((c for c, _ in im.getcolors(maxcolors=1 << 24)), reverse=True)\n\
                  print(len(counts), counts[0] / (im.width * im.height), im.width, im.height)";
    let text = common::run_python(script, &[&png.display().to_string()], "decoding the screenshot");
    let mut f = text.split_whitespace();
    let colours: usize = f.next().and_then(|v| v.parse().ok()).expect("colour count");
    let commonest: f64 = f.next().and_then(|v| v.parse().ok()).expect("commonest share");
    println!("screenshot {}: {colours} colours, commonest {:.1} %; {text}", png.display(), 100.0 * commonest);
    (colours, commonest)
}

#[test]
fn the_report_page_draws_one_mark_per_task_and_is_not_blank_in_chromium() {
    let dir = common::scratch_dir("report-page");
    let cube = dir.join("cube.zarr");
    let mut args = common::e2e_build_args(&cube, &EXTRA);
    args.push("--quiet".into());
    let stdout = ok(&args);
    assert!(stdout.contains(&format!("{JOBS} jobs: {JOBS} done now")), "{stdout}");
    let run = newest_run(&cube);
    assert_eq!(run["tasks"], TASKS);
    let id = run["id"].as_str().expect("run id").to_string();

    // Every line of the run is stamped with it, its worker, attempt, times and memory.
    for l in common::report_lines(&cube) {
        assert_eq!(l["run"], id.as_str(), "{l}");
        assert_eq!(l["attempt"], 1, "{l}");
        // The local executor runs every task in the build's own process: `host:pid`.
        assert!(
            l["worker"].as_str().is_some_and(|w| w.rsplit(':').next().is_some_and(|p| p.parse::<u32>().is_ok())),
            "{l}"
        );
        let (a, b) = (l["started"].as_f64().expect("started"), l["ended"].as_f64().expect("ended"));
        assert!(a > 1.7e9 && b >= a, "unix seconds, in order: {l}");
        assert!(l["peak_rss_mb"].as_f64().is_some_and(|m| m > 1.0), "{l}");
    }

    let page = dir.join("report.html");
    let report_args: Vec<String> =
        ["report", &cube.display().to_string(), "-o", &page.display().to_string()].map(String::from).to_vec();
    let stdout = ok(&report_args);
    assert!(stdout.contains(&format!("wrote {}", page.display())), "{stdout}");
    assert!(stdout.contains(&format!("run {id}: {TASKS} tasks, {JOBS} jobs (0 failed, 0 retries)")), "{stdout}");
    assert!(stdout.contains("GB-s at 2048 MB") && stdout.contains(&format!("{TASKS} requests")), "{stdout}");

    let html = std::fs::read_to_string(&page).expect("the page");
    assert_eq!(html.matches(r#"class="task""#).count(), TASKS, "one timeline mark per task");
    let indices: BTreeSet<u32> = html
        .split(r#"class="task" data-index=""#)
        .skip(1)
        .map(|s| s.split('"').next().and_then(|i| i.parse().ok()).expect("a task index"))
        .collect();
    assert_eq!(indices, (0..TASKS as u32).collect(), "each task index once");
    assert!(html.matches(r#"class="attempt""#).count() >= TASKS);
    for section in ["id=\"timeline\"", "id=\"concurrency\"", "id=\"histogram\"", "id=\"cost\"", "as of 2026-12"] {
        assert!(html.contains(section), "the page has no {section}");
    }
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "nothing fetched");

    // The page as a browser draws it: not blank, with the outcome colours on a fair share of it.
    let (colours, commonest) = screenshot_colours(&page, &dir.join("report.png"));
    assert!(colours >= 2, "a blank screenshot: {colours} colour");
    assert!(commonest < 0.97, "the screenshot is {:.1} % one colour: nearly blank", 100.0 * commonest);

    // --run names the run; another run id is refused with a message naming it.
    let again = ok(&[report_args.clone(), vec!["--run".into(), id.clone()]].concat());
    assert!(again.contains(&format!("run {id}:")), "{again}");
    let out = common::run_eocube(&[report_args, vec!["--run".into(), "nope".into()]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run nope"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plan_estimate_predicts_tasks_wall_and_cost_and_says_where_its_figures_come_from() {
    let args: Vec<String> = [
        "plan",
        "--bbox",
        "-73.43",
        "42.72",
        "-71.47",
        "45.02",
        "--start",
        "2020-01-01",
        "--end",
        "2023-12-31",
        "--estimate",
        "--parallel",
        "100",
        "--jobs-per-task",
        "4",
        "--memory-mb",
        "1024",
        "--price-gb-s",
        "0.00001",
    ]
    .map(String::from)
    .to_vec();
    let stdout = ok(&args);
    assert!(stdout.contains("jobs:        2016"), "{stdout}");
    assert!(stdout.contains("estimate:    504 tasks of 4 jobs, 100 at once"), "{stdout}");
    assert!(stdout.contains("at 1024 MB + 504 requests"), "{stdout}");
    assert!(stdout.contains("scripts/bench-build.sh") && stdout.contains("1.8 s wall per 1200x1200"), "{stdout}");
    assert!(stdout.contains("$0.00001/GB-s") && stdout.contains("as of 2026-12"), "{stdout}");
}
