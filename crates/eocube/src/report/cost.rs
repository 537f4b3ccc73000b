//! What a run costs on AWS Lambda, measured after it ([`Cost::of_run`]) or predicted before it
//! ([`estimate`]). The prices and the per-job figures are constants here and nowhere else, with
//! their date and where they come from; the CLI's `--price-gb-s`, `--price-request` override the
//! prices.

use super::RunReport;

/// Lambda's two charges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Dollars per GB-second of configured memory.
    pub gb_second: f64,
    /// Dollars per invocation.
    pub request: f64,
}

/// AWS Lambda, x86_64, us-east-1, first pricing tier: $0.0000166667 per GB-s, $0.20 per 1M
/// requests.
pub const LAMBDA_X86_64: Prices = Prices { gb_second: 0.000_016_666_7, request: 0.000_000_2 };
/// AWS Lambda, arm64 (Graviton), us-east-1, first tier: $0.0000133334 per GB-s, same requests.
pub const LAMBDA_ARM64: Prices = Prices { gb_second: 0.000_013_333_4, request: 0.000_000_2 };
/// When [`LAMBDA_X86_64`] and [`LAMBDA_ARM64`] were read off the price page.
pub const PRICES_AS_OF: &str = "2026-12";
pub const PRICES_SOURCE: &str = "aws.amazon.com/lambda/pricing (us-east-1, first tier)";
/// Memory per task when neither the run nor the user says: Lambda memory is configured, and billed
/// as configured, not as used; 2048 MB also buys about 1.2 vCPU.
pub const DEFAULT_MEMORY_MB: u32 = 2048;

/// The cost of a run (or of its estimate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub memory_mb: u32,
    pub gb_seconds: f64,
    /// Invocations: one per task attempt.
    pub requests: u64,
    pub prices: Prices,
}

impl Cost {
    pub fn new(busy_seconds: f64, requests: u64, memory_mb: u32, prices: Prices) -> Cost {
        // `+ 0.0`: the sum of no seconds is -0.0, which would print as "-0.0 GB-s".
        let gb_seconds = (busy_seconds + 0.0) * f64::from(memory_mb) / 1024.0;
        Cost { memory_mb, gb_seconds, requests, prices }
    }

    /// The run's attempts as Lambda would bill them: the seconds each task attempt ran times
    /// `memory_mb`, one request per attempt.
    pub fn of_run(report: &RunReport, memory_mb: u32, prices: Prices) -> Cost {
        let busy: f64 = report.tasks.iter().map(|t| t.busy_seconds()).sum();
        Cost::new(busy, report.attempts(), memory_mb, prices)
    }

    pub fn compute_dollars(&self) -> f64 {
        self.gb_seconds * self.prices.gb_second
    }

    pub fn request_dollars(&self) -> f64 {
        self.requests as f64 * self.prices.request
    }

    pub fn dollars(&self) -> f64 {
        self.compute_dollars() + self.request_dollars()
    }
}

/// Per-job figures measured on the synthetic archive, which [`estimate`] scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobFigures {
    /// Wall seconds of one job over a full-size chunk (`chunk_px` square) and one month.
    pub seconds_per_chunk_month: f64,
    pub chunk_px: usize,
    /// A job whose search finds no scene: the search and an empty write.
    pub empty_job_seconds: f64,
    /// Peak resident memory of a worker, lowest and highest seen, MB.
    pub peak_rss_mb: (f64, f64),
}

/// Measured by the project's benchmark (`scripts/bench-build.sh`: one full chunk-month of 26
/// full-size synthetic scenes, 13 solar days in 2 UTM zones, served over local HTTP) on a 2-core
/// machine: a 1200 x 1200 px chunk-month takes ~1.8 s wall and peaks at 216-260 MB; a job with no
/// scene ~40 ms.
pub const MEASURED: JobFigures =
    JobFigures { seconds_per_chunk_month: 1.8, chunk_px: 1200, empty_job_seconds: 0.04, peak_rss_mb: (216.0, 260.0) };
pub const MEASURED_SOURCE: &str = "scripts/bench-build.sh on the synthetic archive (26 full-size scenes, 13 solar \
                                   days, 2 UTM zones, over local HTTP), 2-core machine: 1.8 s wall per 1200x1200 px \
                                   chunk-month, peak 216-260 MB; 40 ms for a job with no scene";

/// What [`estimate`] needs to know about a plan and its run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateInput {
    pub jobs: usize,
    pub chunk_px: usize,
    /// Mean days per time bin.
    pub bin_days: f64,
    pub jobs_per_task: usize,
    /// Tasks run at once.
    pub parallel: usize,
    pub memory_mb: u32,
    pub prices: Prices,
}

/// A prediction of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub tasks: usize,
    pub job_seconds: f64,
    pub task_seconds: f64,
    /// Waves of `parallel` tasks, each as long as a full task.
    pub wall_seconds: f64,
    pub cost: Cost,
    /// The same if no job found a scene (the floor: the plan does not know where scenes are).
    pub floor_cost: Cost,
    pub figures: JobFigures,
}

/// Predicts a run from [`MEASURED`]: a job's time scales with its chunk's area and its bin's
/// length (reads and the median are per pixel and per scene; scenes come every few days). Every
/// job is counted as full, so the figures are an upper bound for sparse areas; `floor_cost` is
/// the bound from below.
pub fn estimate(input: &EstimateInput) -> Estimate {
    let f = MEASURED;
    let area = (input.chunk_px as f64 / f.chunk_px as f64).powi(2);
    let months = input.bin_days.max(0.0) / (365.25 / 12.0);
    let job_seconds = f.seconds_per_chunk_month * area * months;
    let per_task = input.jobs_per_task.max(1);
    let tasks = input.jobs.div_ceil(per_task);
    let task_seconds = job_seconds * per_task.min(input.jobs.max(1)) as f64;
    let waves = tasks.div_ceil(input.parallel.max(1));
    let jobs = input.jobs as f64;
    Estimate {
        tasks,
        job_seconds,
        task_seconds,
        wall_seconds: waves as f64 * task_seconds,
        cost: Cost::new(jobs * job_seconds, tasks as u64, input.memory_mb, input.prices),
        floor_cost: Cost::new(jobs * f.empty_job_seconds, tasks as u64, input.memory_mb, input.prices),
        figures: f,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{line, stored, values};
    use super::*;

    #[test]
    fn a_run_costs_its_busy_seconds_times_memory_and_one_request_per_attempt() {
        let mut retried = line("r1", 1, 20.0, 30.0);
        retried.attempt = 2;
        retried.retries = 1;
        let lines = values(&[line("r1", 0, 0.0, 10.0), line("r1", 1, 0.0, 10.0), retried]);
        let r = RunReport::from_lines(&stored(2, 1), &lines);
        let c = Cost::of_run(&r, 2048, LAMBDA_X86_64);
        assert_eq!(c.gb_seconds, 60.0, "30 s busy (the wait between attempts is not) x 2 GB");
        assert_eq!(c.requests, 3);
        assert!((c.dollars() - (60.0 * 0.000_016_666_7 + 3.0 * 0.2e-6)).abs() < 1e-12);
    }

    #[test]
    fn the_estimate_scales_the_measured_chunk_month_and_counts_waves() {
        let prices = Prices { gb_second: 1.0, request: 0.5 };
        let input = EstimateInput {
            jobs: 10,
            chunk_px: 600,
            bin_days: 365.25 / 12.0,
            jobs_per_task: 2,
            parallel: 2,
            memory_mb: 1024,
            prices,
        };
        let e = estimate(&input);
        assert!((e.job_seconds - 0.45).abs() < 1e-9, "a quarter of the area: {}", e.job_seconds);
        assert_eq!(e.tasks, 5);
        assert!((e.task_seconds - 0.9).abs() < 1e-9);
        assert!((e.wall_seconds - 2.7).abs() < 1e-9, "3 waves of 2: {}", e.wall_seconds);
        assert!((e.cost.gb_seconds - 4.5).abs() < 1e-9);
        assert!((e.cost.dollars() - (4.5 + 2.5)).abs() < 1e-9);
        assert!(e.floor_cost.gb_seconds < e.cost.gb_seconds);
        assert_eq!(estimate(&EstimateInput { jobs: 0, ..input }).tasks, 0);
    }
}
