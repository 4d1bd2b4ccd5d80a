//! The scaling plot, as a small hand-written SVG: throughput and p99
//! latency against the number of concurrent clients (log scale), one line
//! per figure.

use std::fmt::Write;

use crate::rounds::Scaling;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 50.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The SVG document for `series`.
pub fn scaling_svg(series: &[Scaling]) -> String {
    let width = 2.0 * PANEL_W;
    let height = PANEL_H + 30.0 + 22.0 * series.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    panel(&mut svg, series, 0.0, "throughput (operations/s)", |p| {
        p.figures.throughput
    });
    panel(&mut svg, series, PANEL_W, "p99 latency (ms)", |p| {
        p.figures.p99_ms
    });
    for (i, s) in series.iter().enumerate() {
        let y = PANEL_H + 20.0 + 22.0 * i as f64;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="2"/><text x="{tx}" y="{ty}">{name} ({unit}/s)</text>"#,
            x1 = MARGIN_L,
            x2 = MARGIN_L + 30.0,
            tx = MARGIN_L + 38.0,
            ty = y + 4.0,
            name = escape(&s.name),
            unit = escape(&s.unit),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One panel at horizontal offset `x0`: `value` of every point against
/// log2(clients).
fn panel(
    svg: &mut String,
    series: &[Scaling],
    x0: f64,
    title: &str,
    value: impl Fn(&crate::rounds::ScalePoint) -> f64,
) {
    let clients: Vec<usize> = {
        let mut c: Vec<usize> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.clients))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let (lo, hi) = (
        (*clients.first().unwrap_or(&1) as f64).log2(),
        (*clients.last().unwrap_or(&2) as f64).log2().max(1.0),
    );
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(&value))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let ymax = nice_ceiling(ymax);
    let (left, right) = (x0 + MARGIN_L, x0 + PANEL_W - MARGIN_R);
    let (top, bottom) = (MARGIN_T, PANEL_H - MARGIN_B);
    let x = |c: usize| left + ((c as f64).log2() - lo) / (hi - lo).max(1e-9) * (right - left);
    let y = |v: f64| bottom - v / ymax * (bottom - top);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-weight="bold">{}</text>"#,
        (left + right) / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="#333"/>"##
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy}" x2="{right}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left - 6.0,
            yy + 4.0,
            tick(v)
        );
    }
    for &c in &clients {
        let xx = x(c);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx}" y1="{bottom}" x2="{xx}" y2="{}" stroke="#333"/><text x="{xx}" y="{}" text-anchor="middle">{c}</text>"##,
            bottom + 5.0,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrent clients</text>"#,
        (left + right) / 2.0,
        bottom + 36.0
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| value(p).is_finite())
            .map(|p| (x(p.clients), y(value(p))))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (a, b) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="{colour}"/>"#
            );
        }
    }
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn tick(v: f64) -> String {
    if v == 0.0 || v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
