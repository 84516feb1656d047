//! The Markdown report: a header with the date, the machine and the command, then one section
//! per benchmark (a target, a table, and PASS/MISS per criterion).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One benchmark's part of the report.
#[derive(Debug, Default)]
pub struct Section {
    pub title: String,
    /// What the issue asks for, in words.
    pub target: String,
    /// Column names, then rows of cells.
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Each criterion of the target: met or not, and the figures that decide it.
    pub verdicts: Vec<(bool, String)>,
    pub notes: Vec<String>,
    /// Set when the benchmark could not run to the end.
    pub error: Option<String>,
    pub took: Duration,
}

impl Section {
    pub fn new(title: &str, target: &str, header: &[&str]) -> Section {
        Section {
            title: title.to_owned(),
            target: target.to_owned(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            ..Section::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn verdict(&mut self, met: bool, text: String) {
        self.verdicts.push((met, text));
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "## {}\n", self.title);
        let _ = writeln!(out, "Target: {}\n", self.target);
        if !self.rows.is_empty() {
            let _ = writeln!(out, "| {} |", self.header.join(" | "));
            let _ = writeln!(out, "|{}", self.header.iter().map(|_| "---|").collect::<String>());
            for row in &self.rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
            out.push('\n');
        }
        for (met, text) in &self.verdicts {
            let _ = writeln!(out, "- **{}**: {text}", if *met { "PASS" } else { "MISS" });
        }
        if let Some(err) = &self.error {
            let _ = writeln!(out, "- **ERROR** (the benchmark did not finish): {err}");
        }
        if !self.verdicts.is_empty() || self.error.is_some() {
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        let _ = writeln!(out, "_Section took {:.1} s._\n", self.took.as_secs_f64());
    }
}

/// The whole report.
pub fn render(argv: &[String], quick: bool, sections: &[Section], took: Duration) -> String {
    let mut out = String::new();
    out.push_str("# bproc-rs benchmarks\n\n");
    let _ = writeln!(out, "- Date: {} UTC", utc_now());
    let _ = writeln!(out, "- Machine: {} CPUs (nproc), kernel {}, CPU {}", nproc(), kernel(), cpu_model());
    let _ = writeln!(
        out,
        "- Command: `bash x.sh bench`, which runs `{}`{}",
        argv.join(" "),
        if quick { " (quick mode: few runs, small sizes)" } else { "" }
    );
    let _ = writeln!(out, "- Whole run took {:.1} s.", took.as_secs_f64());
    out.push_str(
        "\nThe machine is shared and small: absolute times are noisy, the ratios between commands \
         measured side by side in the same run are what counts. Compared commands are run \
         interleaved (one of each per round) so drift hits them alike. Times are wall clock from \
         spawn to exit as seen by the bench, with stdin, stdout and stderr on /dev/null unless \
         the benchmark moves data. Percentiles are nearest-rank; MB = 10^6 bytes.\n\n",
    );
    for s in sections {
        s.render(&mut out);
    }
    out
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
}

/// What `uname -r` prints.
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", t / 3600, t % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
