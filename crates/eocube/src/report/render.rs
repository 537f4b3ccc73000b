//! The run report page: one self-contained HTML file with inline SVG and inline CSS (no script,
//! nothing fetched), so it opens anywhere and can be mailed or archived as is.
//!
//! Sections: a timeline (one `<rect class="task" data-index=I>` per task over its span, its
//! attempts drawn as `class="attempt"` segments on it; x: seconds since the run's first start,
//! y: task index; colour: outcome), tasks running at once (a step line), a histogram of job
//! durations, retries and failures, totals of bytes and requests read, and the cost. Every string
//! taken from the records is escaped.

use std::fmt::Write;

use super::cost::{Cost, PRICES_AS_OF, PRICES_SOURCE};
use super::{RunReport, TaskLine, TaskOutcome};

/// Writing into a `String` cannot fail.
macro_rules! w {
    ($($t:tt)*) => {{ let _ = write!($($t)*); }};
}

const DONE: &str = "#2a9d8f";
const RETRIED: &str = "#e9a23b";
const FAILED: &str = "#d1495b";
/// An attempt that failed and was retried.
const LOST: &str = "#8d99ae";
const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const HISTOGRAM_BINS: usize = 20;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(outcome: TaskOutcome) -> &'static str {
    match outcome {
        TaskOutcome::Done => DONE,
        TaskOutcome::Retried => RETRIED,
        TaskOutcome::Failed => FAILED,
    }
}

/// A round step for about `target` ticks over `range`: 1, 2 or 5 times a power of ten.
fn tick_step(range: f64, target: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// Seconds, bytes, dollars as people read them.
pub fn seconds_text(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!("{}h{:02}m", (s / 3600.0).floor(), ((s % 3600.0) / 60.0).floor())
    }
}

pub fn bytes_text(b: u64) -> String {
    let b = b as f64;
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

pub fn dollars_text(d: f64) -> String {
    if d >= 1.0 { format!("${d:.2}") } else { format!("${d:.6}") }
}

/// The x axis of a chart over `[0, span]` seconds, `height` px below its top at `y0`.
fn time_axis(out: &mut String, span: f64, y: f64) {
    let scale = (WIDTH - LEFT - RIGHT) / span.max(1e-9);
    w!(out, r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#555"/>"##, WIDTH - RIGHT);
    let step = tick_step(span, 8.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let x = LEFT + t * scale;
        w!(out, r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="#555"/>"##, y + 4.0);
        w!(out, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, y + 16.0, trim_number(t));
        t += step;
    }
    w!(out, r#"<text x="{}" y="{}" text-anchor="end">seconds since the first start</text>"#, WIDTH - RIGHT, y + 32.0);
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The timeline: one `rect.task` per task (empty when it has no recorded times).
pub fn timeline(report: &RunReport) -> String {
    let mut out = String::new();
    let Some((t0, t1)) = report.span() else {
        return "<p>No task has recorded times.</p>".into();
    };
    let span = (t1 - t0).max(1e-9);
    let n = report.tasks.len();
    let row = (640.0 / n as f64).clamp(2.0, 18.0);
    let bar = (row * 0.8).max(1.0);
    let height = row * n as f64 + 50.0;
    let scale = (WIDTH - LEFT - RIGHT) / span;
    w!(
        out,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}">"#
    );
    let label_every = (12.0 / row).ceil().max(1.0) as usize;
    for (i, task) in report.tasks.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        if i % label_every == 0 {
            w!(out, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + bar, task.index);
        }
        let (x, wd) = task.span().map_or((LEFT, 0.0), |(a, b)| (LEFT + (a - t0) * scale, ((b - a) * scale).max(1.0)));
        w!(
            out,
            r#"<rect class="task" data-index="{}" data-outcome="{}" x="{x:.2}" y="{y:.2}" width="{wd:.2}" height="{bar:.2}" fill="{}" fill-opacity="0.35"><title>{}</title></rect>"#,
            task.index,
            task.outcome.label(),
            colour(task.outcome),
            escape(&task_title(task)),
        );
        let last = task.attempts.last().map(|a| a.attempt);
        for a in &task.attempts {
            let fill = if Some(a.attempt) == last { colour(task.outcome) } else { LOST };
            let ax = LEFT + (a.start - t0) * scale;
            let aw = ((a.end - a.start) * scale).max(1.0);
            w!(
                out,
                r#"<rect class="attempt" x="{ax:.2}" y="{y:.2}" width="{aw:.2}" height="{bar:.2}" fill="{fill}"><title>task {} attempt {}: {:.2} s</title></rect>"#,
                task.index,
                a.attempt,
                a.end - a.start
            );
        }
    }
    time_axis(&mut out, span, 10.0 + row * n as f64 + 4.0);
    out.push_str("</svg>");
    out
}

fn task_title(t: &TaskLine) -> String {
    let span = t.span().map_or("no times recorded".to_string(), |(a, b)| format!("{:.2} s", b - a));
    let peak = t.peak_rss_mb.map_or(String::new(), |m| format!(", peak {m:.0} MB"));
    format!(
        "task {}: {}, {} jobs ({} failed), {} attempts, {span}, on {}{peak}",
        t.index,
        t.outcome.label(),
        t.jobs,
        t.failed_jobs,
        t.attempts_made,
        if t.workers.is_empty() { "?".to_string() } else { t.workers.join(", ") }
    )
}

/// Tasks running at once over time, as a step line.
pub fn concurrency(report: &RunReport) -> String {
    let steps = report.concurrency();
    let Some((t0, t1)) = report.span() else { return String::new() };
    let span = (t1 - t0).max(1e-9);
    let peak = steps.iter().map(|s| s.1).max().unwrap_or(0).max(1) as f64;
    let (top, plot) = (10.0, 160.0);
    let scale = (WIDTH - LEFT - RIGHT) / span;
    let y = |n: usize| top + plot - n as f64 / peak * plot;
    let mut out = String::new();
    let height = top + plot + 50.0;
    w!(
        out,
        r#"<svg id="concurrency" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    let mut points = String::new();
    let mut prev = 0usize;
    for &(t, n) in &steps {
        let x = LEFT + t * scale;
        w!(points, "{x:.2},{:.2} {x:.2},{:.2} ", y(prev), y(n));
        prev = n;
    }
    w!(points, "{:.2},{:.2}", WIDTH - RIGHT, y(prev));
    w!(out, r##"<polyline points="{points}" fill="none" stroke="{DONE}" stroke-width="2"/>"##);
    for n in [0, peak as usize] {
        w!(out, r#"<text x="{}" y="{:.1}" text-anchor="end">{n}</text>"#, LEFT - 6.0, y(n) + 4.0);
    }
    time_axis(&mut out, span, top + plot + 4.0);
    out.push_str("</svg>");
    out
}

/// A histogram of job durations in [`HISTOGRAM_BINS`] equal bins from 0 to the longest.
pub fn histogram(report: &RunReport) -> String {
    let seconds = report.job_seconds();
    let longest = seconds.iter().copied().fold(0.0, f64::max).max(1e-3);
    let width = longest / HISTOGRAM_BINS as f64;
    let mut counts = [0usize; HISTOGRAM_BINS];
    for s in &seconds {
        counts[((s / width) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (top, plot) = (10.0, 160.0);
    let bar = (WIDTH - LEFT - RIGHT) / HISTOGRAM_BINS as f64;
    let height = top + plot + 50.0;
    let mut out = String::new();
    w!(
        out,
        r#"<svg id="histogram" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    for (i, &c) in counts.iter().enumerate() {
        let h = c as f64 / most * plot;
        let (lo, hi) = (i as f64 * width, (i + 1) as f64 * width);
        w!(
            out,
            r##"<rect class="bin" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="#457b9d"><title>{c} jobs of {lo:.2}-{hi:.2} s</title></rect>"##,
            LEFT + i as f64 * bar + 1.0,
            top + plot - h,
            bar - 2.0,
        );
    }
    w!(out, r#"<text x="{}" y="{}" text-anchor="end">{most}</text>"#, LEFT - 6.0, top + 10.0);
    w!(out, r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#555"/>"##, top + plot, WIDTH - RIGHT);
    for i in (0..=HISTOGRAM_BINS).step_by(4) {
        w!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + i as f64 * bar,
            top + plot + 16.0,
            trim_number(i as f64 * width)
        );
    }
    w!(out, r#"<text x="{}" y="{}" text-anchor="end">job duration, seconds</text>"#, WIDTH - RIGHT, top + plot + 34.0);
    out.push_str("</svg>");
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}svg{display:block}svg text{font-size:11px;fill:#333}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
td.n{text-align:right}.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}\
.empty{padding:16px;background:#f4f4f4;border:1px solid #ddd}";

/// The whole page.
pub fn html(report: &RunReport, cost: &Cost) -> String {
    let mut out = String::new();
    let title = format!("eocube run {}", report.run);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    w!(
        out,
        "<h1>{}</h1><p>executor <b>{}</b>, written {}, {} tasks planned</p>\n",
        escape(&title),
        escape(&report.executor),
        escape(&report.created),
        report.planned_tasks
    );
    if report.tasks.is_empty() {
        w!(
            out,
            "<p class=\"empty\">Nothing to show: run {} has no job records yet (not started, still running on a \
             detached engine, or its cube was made before runs were stamped). `eocube collect` records a detached \
             run's results.</p>\n</body></html>\n",
            escape(&report.run)
        );
        return out;
    }
    let jobs = report.jobs.len();
    let failures: Vec<_> = report.failures().collect();
    let peak = report
        .tasks
        .iter()
        .filter_map(|t| t.peak_rss_mb)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    w!(
        out,
        "<p id=\"summary\">{} tasks ({} attempts), {jobs} jobs: {} done, {} failed, {} retries, {} request retries; \
         wall {}; at most {} tasks at once; read {} in {} requests; peak worker memory {}</p>\n",
        report.tasks.len(),
        report.attempts(),
        jobs - failures.len(),
        failures.len(),
        report.retries(),
        report.request_retries(),
        seconds_text(report.wall_seconds()),
        report.peak_concurrency(),
        bytes_text(report.bytes()),
        report.requests(),
        peak.map_or("not recorded".to_string(), |m| format!("{m:.0} MB")),
    );
    w!(
        out,
        "<h2>Timeline</h2><p class=\"key\">one row per task, over its first start to last end; solid: its \
         attempts<span style=\"background:{DONE}\"></span>done<span style=\"background:{RETRIED}\"></span>done after \
         retries<span style=\"background:{FAILED}\"></span>failed<span style=\"background:{LOST}\"></span>an attempt \
         that was retried</p>\n{}\n",
        timeline(report)
    );
    w!(out, "<h2>Tasks running at once</h2>\n{}\n", concurrency(report));
    w!(out, "<h2>Job durations</h2>\n{}\n", histogram(report));
    out.push_str("<h2>Retries and failures</h2>\n");
    let retried: Vec<_> = report.jobs.iter().filter(|j| !j.retried_errors.is_empty() || j.error.is_some()).collect();
    if retried.is_empty() {
        out.push_str("<p>No job was retried and none failed.</p>\n");
    } else {
        out.push_str("<table id=\"failures\"><tr><th>job (t, iy, ix)</th><th>outcome</th><th>retries</th><th>request retries</th><th>error</th><th>errors retried</th></tr>\n");
        for j in retried {
            w!(
                out,
                "<tr><td>{}, {}, {}</td><td>{:?}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>\n",
                j.job.t,
                j.job.iy,
                j.job.ix,
                j.outcome,
                j.retries,
                j.request_retries,
                escape(j.error.as_deref().unwrap_or("")),
                j.retried_errors.iter().map(|e| escape(e)).collect::<Vec<_>>().join("<br>")
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Read</h2>\n<table id=\"read\">");
    w!(out, "<tr><td>bytes</td><td class=\"n\">{} ({})</td></tr>", report.bytes(), bytes_text(report.bytes()));
    w!(out, "<tr><td>range requests</td><td class=\"n\">{}</td></tr>", report.requests());
    w!(
        out,
        "<tr><td>request attempts failed and sent again</td><td class=\"n\">{}</td></tr>",
        report.request_retries()
    );
    let scenes: usize = report.jobs.iter().map(|j| j.stats.scenes).sum();
    let covered: usize = report.jobs.iter().map(|j| j.stats.scenes_covered).sum();
    w!(out, "<tr><td>scenes used</td><td class=\"n\">{scenes}</td></tr>");
    w!(
        out,
        "<tr><td>scenes not read (their solar day already covered the chunk)</td><td class=\"n\">{covered}</td></tr></table>\n"
    );
    let p = cost.prices;
    w!(
        out,
        "<h2>Cost on AWS Lambda</h2>\n<table id=\"cost\"><tr><td>compute</td><td class=\"n\">{:.1} GB-s ({} MB x busy \
         seconds of every attempt) x ${} = {}</td></tr><tr><td>requests</td><td class=\"n\">{} (one per task attempt) \
         x ${} = {}</td></tr><tr><th>total</th><th>{}</th></tr></table>\n<p>Prices: AWS Lambda as of {PRICES_AS_OF}, \
         {PRICES_SOURCE}, unless overridden (--price-gb-s, --price-request). This is what the same tasks would bill on \
         Lambda, whatever engine ran them.</p>\n",
        cost.gb_seconds,
        cost.memory_mb,
        p.gb_second,
        dollars_text(cost.compute_dollars()),
        cost.requests,
        p.request,
        dollars_text(cost.request_dollars()),
        dollars_text(cost.dollars()),
    );
    if report.unreadable > 0 {
        w!(out, "<p>{} report lines of this run could not be read and are left out.</p>\n", report.unreadable);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::cost::LAMBDA_X86_64;
    use super::super::tests::{line, stored, values};
    use super::*;
    use crate::executor::Outcome;

    fn page(report: &RunReport) -> String {
        html(report, &Cost::of_run(report, 2048, LAMBDA_X86_64))
    }

    #[test]
    fn seven_tasks_make_seven_task_marks_with_their_indices() {
        let lines: Vec<_> = (0..7).map(|t| line("r1", t, 100.0 + t as f64, 102.0 + t as f64)).collect();
        let r = RunReport::from_lines(&stored(7, 1), &values(&lines));
        let html = page(&r);
        assert_eq!(html.matches(r#"class="task""#).count(), 7);
        for i in 0..7 {
            assert_eq!(html.matches(&format!(r#"data-index="{i}""#)).count(), 1, "task {i}");
        }
        assert_eq!(html.matches(r#"class="bin""#).count(), HISTOGRAM_BINS);
        assert!(!html.contains("src=") && !html.contains("href="), "nothing fetched");
    }

    #[test]
    fn an_empty_run_is_a_page_that_says_there_is_nothing_to_show() {
        let html = page(&RunReport::from_lines(&stored(3, 1), &[]));
        assert!(html.contains("Nothing to show"), "{html}");
        assert!(!html.contains("<svg"));
    }

    #[test]
    fn strings_from_the_records_are_escaped() {
        let mut bad = line("r1", 0, 0.0, 1.0);
        bad.outcome = Outcome::Failed;
        bad.error = Some("<script>alert('x')</script> & \"more\"".into());
        bad.worker = Some("<img onerror=x>".into());
        let mut run = stored(1, 1);
        run.record.executor = "<b>local</b>".into();
        let html = page(&RunReport::from_lines(&run, &values(&[bad])));
        assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<b>local"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"));
    }

    #[test]
    fn a_task_without_times_still_has_its_mark() {
        let mut lost = line("r1", 1, 0.0, 0.0);
        (lost.started, lost.ended) = (None, None);
        let lines = values(&[line("r1", 0, 5.0, 6.0), lost]);
        let html = timeline(&RunReport::from_lines(&stored(2, 1), &lines));
        assert_eq!(html.matches(r#"class="task""#).count(), 2);
        assert_eq!(html.matches(r#"class="attempt""#).count(), 1);
    }

    #[test]
    fn ticks_are_round_and_numbers_read_well() {
        assert_eq!(tick_step(100.0, 8.0), 20.0);
        assert_eq!(tick_step(7.0, 8.0), 1.0);
        assert_eq!(tick_step(0.0, 8.0), 1.0);
        assert_eq!(seconds_text(75.0), "1m15s");
        assert_eq!(bytes_text(2_500_000), "2.5 MB");
        assert_eq!(dollars_text(0.5), "$0.500000");
    }
}
