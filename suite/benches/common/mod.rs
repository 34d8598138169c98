//! What both bench binaries share: argument parsing, medians, the machine.
//!
//! Every figure the benches print is the median of `runs` runs (at least 5),
//! and every pool figure is printed next to a reference measured in the same
//! process, in the same run, interleaved with it, so that the noise of a
//! shared VM hits both alike and the ratio stays meaningful.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Command-line options common to the bench binaries.
///
/// `cargo bench -p pool-suite --bench NAME -- [--quick] [--runs N] [FILTER...]`: a case
/// runs if its name contains one of the filters (all run when none is given).
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    /// `--no-python`: skip the Python references (for profiling runs).
    pub no_python: bool,
    pub runs: usize,
    pub filters: Vec<String>,
}

impl Opts {
    pub fn from_args() -> Opts {
        let mut quick = false;
        let mut no_python = false;
        let mut runs = None;
        let mut filters = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => quick = true,
                "--no-python" => no_python = true,
                "--runs" => runs = args.next().and_then(|n| n.parse().ok()),
                // Passed by `cargo bench` to every bench binary.
                "--bench" => {}
                s if s.starts_with("--") => eprintln!("ignoring unknown option {s}"),
                s => filters.push(s.to_string()),
            }
        }
        // Never fewer than 5: every figure is a median of >= 5 runs.
        let runs = runs.unwrap_or(if quick { 5 } else { 7 }).max(5);
        Opts {
            quick,
            no_python,
            runs,
            filters,
        }
    }

    pub fn wants(&self, case: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| case.contains(f.as_str()))
    }

    /// `full` normally, `quick` in `--quick` mode.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

pub fn median(xs: &[f64]) -> f64 {
    assert!(!xs.is_empty());
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median of ratios, run by run: each run's pool figure is divided by the
/// reference of the same run, so slow phases of the VM cancel out.
pub fn median_ratio(a: &[f64], b: &[f64]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&r)
}

/// Spread of a sample, (max - min) / median, as a percentage.
pub fn spread_pct(xs: &[f64]) -> f64 {
    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    100.0 * (hi - lo) / median(xs)
}

pub fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// The machine, for the header of every report.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "nproc {cpus}, {model}, {:.0} GiB RAM, {rustc}",
        mem as f64 / (1 << 20) as f64
    )
}

/// The load average, to show how busy the shared machine was during a run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
