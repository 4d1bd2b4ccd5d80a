//! The results table: printed, and written as Markdown and JSON, with the
//! per-round figures behind every ratio and the scaling plot.

use std::path::Path;

use serde::Serialize;

use crate::rounds::{Comparison, Scaling};
use crate::stats::Spread;

/// One measured figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub ours: f64,
    /// What it is compared with, and that baseline's value.
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// ours / baseline: for interleaved figures, the median of the
    /// per-round ratios.
    pub ratio: Option<f64>,
    /// The smallest and largest per-round ratio (interleaved figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_max: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

/// What a ratio is judged against.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// ours / baseline at least this (higher is better).
    AtLeast(f64),
    /// ours / baseline at most this (lower is better).
    AtMost(f64),
    /// No target.
    Nothing,
}

impl Figure {
    /// A figure where higher is better, with a minimum ratio to reach.
    pub fn higher(
        name: &str,
        unit: &str,
        ours: f64,
        baseline_name: &str,
        baseline: f64,
        min_ratio: f64,
    ) -> Self {
        let ratio = ours / baseline;
        Figure {
            name: name.into(),
            unit: unit.into(),
            ours,
            baseline_name: Some(baseline_name.into()),
            baseline: Some(baseline),
            ratio: Some(ratio),
            ratio_min: None,
            ratio_max: None,
            target: format!("≥ {:.0}% of baseline", min_ratio * 100.0),
            met: Some(ratio >= min_ratio),
        }
    }

    /// A figure compared with a baseline but with no target of its own.
    pub fn compared(name: &str, unit: &str, ours: f64, baseline_name: &str, baseline: f64) -> Self {
        Figure {
            target: "—".into(),
            met: None,
            ..Self::higher(name, unit, ours, baseline_name, baseline, 0.0)
        }
    }

    /// An interleaved figure: the medians of ours and of the baseline over
    /// the rounds, and the median per-round ratio with its range.
    pub fn interleaved(
        name: &str,
        unit: &str,
        ours: f64,
        baseline_name: &str,
        baseline: f64,
        ratio: Spread,
        bound: Bound,
    ) -> Self {
        let (target, met) = match bound {
            Bound::AtLeast(r) => (
                format!("≥ {:.0}% of baseline", r * 100.0),
                Some(ratio.median >= r),
            ),
            Bound::AtMost(r) => (format!("≤ {r}× baseline"), Some(ratio.median <= r)),
            Bound::Nothing => ("—".into(), None),
        };
        Figure {
            name: name.into(),
            unit: unit.into(),
            ours,
            baseline_name: Some(baseline_name.into()),
            baseline: Some(baseline),
            ratio: Some(ratio.median),
            ratio_min: Some(ratio.min),
            ratio_max: Some(ratio.max),
            target,
            met: if ratio.median.is_finite() { met } else { None },
        }
    }

    /// A figure reported on its own (a latency beside its throughput row).
    pub fn plain(name: &str, unit: &str, ours: f64) -> Self {
        Figure {
            name: name.into(),
            unit: unit.into(),
            ours,
            baseline_name: None,
            baseline: None,
            ratio: None,
            ratio_min: None,
            ratio_max: None,
            target: "—".into(),
            met: None,
        }
    }

    /// A figure with an absolute bound (lower is better).
    pub fn at_most(
        name: &str,
        unit: &str,
        ours: f64,
        bound: f64,
        baseline: Option<(&str, f64)>,
    ) -> Self {
        Figure {
            name: name.into(),
            unit: unit.into(),
            ours,
            baseline_name: baseline.map(|b| b.0.to_string()),
            baseline: baseline.map(|b| b.1),
            ratio: baseline.map(|b| ours / b.1),
            ratio_min: None,
            ratio_max: None,
            target: format!("≤ {bound} {unit}"),
            met: Some(ours <= bound),
        }
    }

    /// A figure with an absolute bound (higher is better).
    pub fn at_least(name: &str, unit: &str, ours: f64, bound: f64) -> Self {
        Figure {
            target: format!("≥ {bound} {unit}"),
            met: Some(ours >= bound),
            ..Self::plain(name, unit, ours)
        }
    }
}

/// How the interleaved figures were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub round_seconds: f64,
    pub warmup_seconds: f64,
    pub clients: usize,
}

/// The session-establishment ceiling computed from the criterion
/// micro-benchmarks: a TLS 1.3 handshake (both sides, in memory) against
/// the same plus steps 3 to 6 (both sides, without TLS).
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub tls_handshake_us: f64,
    pub steps_3_to_6_us: f64,
    /// tls / (tls + steps): the largest rate of sessions over bare TLS
    /// handshakes when both are bound by the same CPU.
    pub ratio: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cores: usize,
    pub date: String,
    pub settings: Settings,
    pub figures: Vec<Figure>,
    /// Every interleaved comparison, round by round.
    pub comparisons: Vec<Comparison>,
    pub scaling: Vec<Scaling>,
    pub ceiling: Option<Ceiling>,
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.0}%", x * 100.0)
    } else {
        "—".into()
    }
}

impl Report {
    /// The tables in Markdown (also what is printed).
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let rounds = if self.comparisons.is_empty() {
            String::new()
        } else {
            format!(
                ", interleaved with ours in {} rounds of {} s after {} s of warm-up, {} clients; ratio: median of the per-round ratios, with min–max",
                s.rounds, s.round_seconds, s.warmup_seconds, s.clients
            )
        };
        let mut out = format!(
            "Benchmark, {} ({} cores; every baseline measured in the same run{rounds})\n\n",
            self.date, self.cores
        );
        out.push_str(
            "| figure | ours | baseline | baseline value | ratio (min–max) | target | met |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|\n");
        for f in &self.figures {
            let ratio = match (f.ratio, f.ratio_min, f.ratio_max) {
                (Some(r), Some(lo), Some(hi)) => format!("{} ({}–{})", pct(r), pct(lo), pct(hi)),
                (Some(r), _, _) => pct(r),
                _ => "—".into(),
            };
            out.push_str(&format!(
                "| {} | {} {} | {} | {} | {} | {} | {} |\n",
                f.name,
                num(f.ours),
                f.unit,
                f.baseline_name.as_deref().unwrap_or("—"),
                f.baseline.map(num).unwrap_or_else(|| "—".into()),
                ratio,
                f.target,
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "—",
                }
            ));
        }
        if !self.comparisons.is_empty() {
            out.push_str("\nThroughput and CPU per operation, median over the rounds (min–max). Server CPU: user + system time of the server process from `/proc/<pid>/stat` (for the in-process limit, of the one thread that ran it); harness CPU: the whole `pki-bench` process, the load generator.\n\n");
            out.push_str("| comparison | contender | throughput | server CPU per op (ms) | harness CPU per op (ms) | p99 (ms) |\n");
            out.push_str("|---|---|---|---|---|---|\n");
            for c in &self.comparisons {
                for (i, name) in c.contenders.iter().enumerate() {
                    let range =
                        |s: Spread| format!("{} ({}–{})", num(s.median), num(s.min), num(s.max));
                    out.push_str(&format!(
                        "| {} | {} | {} {}/s | {} | {} | {} |\n",
                        if i == 0 { c.name.as_str() } else { "" },
                        name,
                        range(c.throughput(i)),
                        c.unit,
                        range(c.cpu(i)),
                        num(c.over_rounds(|r| r[i].harness_cpu_ms_per_op).median),
                        num(c.latency(i, true).median),
                    ));
                }
            }
        }
        if let Some(c) = &self.ceiling {
            out.push_str(&format!(
                "\nSession ceiling from the criterion figures: a TLS 1.3 handshake, both sides in memory, {:.0} µs; steps 3–6, both sides without TLS, {:.0} µs; ceiling {:.0} / ({:.0} + {:.0}) = {}.\n",
                c.tls_handshake_us, c.steps_3_to_6_us, c.tls_handshake_us, c.tls_handshake_us, c.steps_3_to_6_us, pct(c.ratio)
            ));
        }
        if !self.scaling.is_empty() {
            out.push_str("\nScaling (one run per level; plot: scaling.svg)\n\n");
            out.push_str(
                "| figure | clients | throughput | p50 (ms) | p99 (ms) | server CPU per op (ms) |\n",
            );
            out.push_str("|---|---|---|---|---|---|\n");
            for s in &self.scaling {
                for p in &s.points {
                    out.push_str(&format!(
                        "| {} | {} | {} {}/s | {} | {} | {} |\n",
                        s.name,
                        p.clients,
                        num(p.figures.throughput),
                        s.unit,
                        num(p.figures.p50_ms),
                        num(p.figures.p99_ms),
                        p.figures
                            .cpu_ms_per_op
                            .map(num)
                            .unwrap_or_else(|| "—".into()),
                    ));
                }
            }
        }
        out
    }

    /// Prints the tables and writes `latest.md`, `latest.json` and (with
    /// scaling figures) `scaling.svg` in `dir`.
    pub fn publish(&self, dir: &Path) -> anyhow::Result<()> {
        let md = self.markdown();
        println!("{md}");
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.md"), &md)?;
        std::fs::write(dir.join("latest.json"), serde_json::to_string_pretty(self)?)?;
        if !self.scaling.is_empty() {
            std::fs::write(
                dir.join("scaling.svg"),
                crate::plot::scaling_svg(&self.scaling),
            )?;
        }
        eprintln!("wrote {}/latest.md and latest.json", dir.display());
        Ok(())
    }
}
