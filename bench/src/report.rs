//! The results table: printed, and written as Markdown and JSON.

use std::path::Path;

use serde::Serialize;

/// One measured figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub ours: f64,
    /// What it is compared with, and that baseline's value.
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// ours / baseline (or baseline / ours where lower is better).
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
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

    /// A figure reported on its own (a latency beside its throughput row).
    pub fn plain(name: &str, unit: &str, ours: f64) -> Self {
        Figure {
            name: name.into(),
            unit: unit.into(),
            ours,
            baseline_name: None,
            baseline: None,
            ratio: None,
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
            target: format!("≤ {bound} {unit}"),
            met: Some(ours <= bound),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cores: usize,
    pub date: String,
    pub figures: Vec<Figure>,
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

impl Report {
    /// The table in Markdown (also what is printed).
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Benchmark, {} ({} cores; every baseline measured in the same run)\n\n",
            self.date, self.cores
        );
        out.push_str("| figure | ours | baseline | baseline value | ratio | target | met |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for f in &self.figures {
            out.push_str(&format!(
                "| {} | {} {} | {} | {} | {} | {} | {} |\n",
                f.name,
                num(f.ours),
                f.unit,
                f.baseline_name.as_deref().unwrap_or("—"),
                f.baseline.map(num).unwrap_or_else(|| "—".into()),
                f.ratio
                    .map(|r| format!("{:.0}%", r * 100.0))
                    .unwrap_or_else(|| "—".into()),
                f.target,
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "—",
                }
            ));
        }
        out
    }

    /// Prints the table and writes `latest.md` and `latest.json` in `dir`.
    pub fn publish(&self, dir: &Path) -> anyhow::Result<()> {
        let md = self.markdown();
        println!("{md}");
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.md"), &md)?;
        std::fs::write(dir.join("latest.json"), serde_json::to_string_pretty(self)?)?;
        eprintln!("wrote {}/latest.md and latest.json", dir.display());
        Ok(())
    }
}
