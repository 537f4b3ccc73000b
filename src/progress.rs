//! What `eocube build` shows while it runs, on stderr: a redrawn one-line bar on a terminal,
//! one plain line per ended job otherwise (logs, CI), or nothing. The library's
//! [`eocube::executor::Observer`], drawn.

use std::io::Write;
use std::time::Instant;

use eocube::executor::{JobRecord, Observer, Outcome, Summary, Watcher};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// One line per job.
    Lines,
    Quiet,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn detect() -> ProgressMode {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() { ProgressMode::Bar } else { ProgressMode::Lines }
    }
}

/// What the CLI watches a run with: nothing with `--quiet`, else a bar on a terminal and lines
/// elsewhere.
pub fn watcher(quiet: bool) -> Watcher {
    if quiet { Watcher::default() } else { Watcher::new(Progress::new(ProgressMode::detect())) }
}

/// Progress reporting for one run.
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    started: Instant,
    drawn: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        Progress { mode, started: Instant::now(), drawn: false, last_draw: None }
    }

    fn start(&mut self, s: &Summary) {
        self.started = Instant::now();
        if self.mode == ProgressMode::Quiet {
            return;
        }
        let mut msg = format!("{} jobs", s.jobs);
        if s.already_done > 0 {
            msg.push_str(&format!(", {} already done (resuming), {} to run", s.already_done, s.not_run));
        }
        eprintln!("{msg}");
        if self.mode == ProgressMode::Bar {
            self.draw(s, true);
        }
    }

    fn ended(&mut self, s: &Summary, r: &JobRecord) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Lines => eprintln!("{}", line(s, r)),
            ProgressMode::Bar => {
                if r.outcome == Outcome::Failed {
                    // Failures stay on screen above the bar.
                    self.clear();
                    eprintln!("{}", line(s, r));
                }
                self.draw(s, false);
            }
        }
    }

    fn finish(&mut self, s: &Summary) {
        if self.mode == ProgressMode::Bar {
            self.draw(s, true);
            eprintln!();
            self.drawn = false;
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }

    fn draw(&mut self, s: &Summary, force: bool) {
        // At most 10 redraws a second: thousands of tiny jobs must not flood the terminal.
        if !force && self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 100) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let total = s.jobs.max(1);
        let finished = s.already_done + s.done + s.failed;
        let width = 24;
        let filled = finished * width / total;
        let ran = s.done + s.failed;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if ran > 0 && s.not_run > 0 {
            format!("ETA {}", duration(elapsed / ran as f64 * s.not_run as f64))
        } else {
            String::new()
        };
        let failed = if s.failed > 0 { format!("  {} failed", s.failed) } else { String::new() };
        eprint!(
            "\r\x1b[2K[{}{}] {finished}/{} jobs  {} scenes  {:.1} MB read{failed}  {}  {eta}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            s.jobs,
            s.scenes,
            s.bytes as f64 / 1e6,
            duration(elapsed),
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }
}

impl Observer for Progress {
    fn started(&mut self, s: &Summary) {
        self.start(s);
    }

    fn job_ended(&mut self, s: &Summary, r: &JobRecord) {
        self.ended(s, r);
    }

    fn finished(&mut self, s: &Summary) {
        self.finish(s);
    }
}

fn line(s: &Summary, r: &JobRecord) -> String {
    let finished = s.already_done + s.done + s.failed;
    let head = format!("[{finished}/{}] job t={} iy={} ix={}", s.jobs, r.job.t, r.job.iy, r.job.ix);
    let mut retries = if r.retries > 0 { format!(", {} retries", r.retries) } else { String::new() };
    if r.request_retries > 0 {
        retries.push_str(&format!(", {} request retries", r.request_retries));
    }
    match r.outcome {
        Outcome::Done => format!(
            "{head} done: {} scenes{}, {} solar days, {:.1} MB in {} requests, {:.2} s{retries}",
            r.stats.scenes,
            match r.stats.scenes_covered {
                0 => String::new(),
                n => format!(" (+{n} not read, day covered)"),
            },
            r.stats.solar_days,
            r.stats.bytes as f64 / 1e6,
            r.stats.requests,
            r.seconds
        ),
        Outcome::Failed => {
            format!("{head} FAILED{retries}: {}", r.error.as_deref().unwrap_or("unknown error"))
        }
    }
}

/// What `eocube overviews` (and `build --overviews`) shows while the levels are written: a
/// redrawn line on a terminal, one line per finished level otherwise, or nothing.
pub fn pyramid(quiet: bool) -> Option<eocube::pyramid::ProgressFn> {
    if quiet {
        return None;
    }
    let bar = ProgressMode::detect() == ProgressMode::Bar;
    let started = Instant::now();
    let last = std::sync::Mutex::new(None::<Instant>);
    Some(std::sync::Arc::new(move |p: &eocube::pyramid::Progress| {
        let end = p.done == p.total;
        let text = format!(
            "overviews: {}/{} tiles of {} levels  {}",
            p.done,
            p.total,
            p.levels,
            duration(started.elapsed().as_secs_f64())
        );
        if bar {
            let mut last = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if end || last.is_none_or(|t| t.elapsed().as_millis() >= 100) {
                *last = Some(Instant::now());
                eprint!("\r\x1b[2K{text}");
                if end {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            }
        } else if end {
            eprintln!("{text}");
        }
    }))
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eocube::plan::Job;

    #[test]
    fn durations_and_lines_read_well() {
        assert_eq!(duration(5.4), "5s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3725.0), "1h02m");
        let s = Summary { jobs: 10, done: 3, ..Default::default() };
        let r =
            JobRecord { retries: 5, ..JobRecord::failed(Job { t: 0, iy: 1, ix: 2 }, "x.tif: not found".into(), 1.0) };
        assert_eq!(line(&s, &r), "[3/10] job t=0 iy=1 ix=2 FAILED, 5 retries: x.tif: not found");
    }
}
