//! The HTML report: one self-contained HTML5 document that is also well-formed XML —
//! inline CSS and SVG charts, no scripts, no external resources — so it can be
//! attached to an issue or mailed as is.

use super::{Report, SeriesPoint};
use crate::monitor::Sample;
use serde_json::Value;
use std::fmt::{self, Write};

/// Chart width and margins, in SVG user units.
const W: f64 = 720.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

const STYLE: &str = "\
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;max-width:960px;margin:2em auto;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .3em}
h2{font-size:1.15em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #d8dee4}
.meta{color:#59636e;margin:.2em 0}
code,pre,td.n,td.m{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f8fa;border:1px solid #d8dee4;border-radius:6px;padding:.8em 1em;overflow-x:auto}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #d8dee4;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.n{text-align:right}
.scroll{overflow-x:auto}
svg{display:block;margin:.3em 0 1em}
svg text{font:11px system-ui,sans-serif;fill:#59636e}
.grid{stroke:#eaeef2}
.axis{stroke:#8c959f}
";

/// The report as an HTML5 document that XML parsers accept too.
pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    document(&mut o, r).expect("writing to a String cannot fail");
    o
}

/// Escapes text or an attribute value (and drops control characters XML forbids).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => {}
            c => o.push(c),
        }
    }
    o
}

/// `v` with `decimals` decimals, or "–" if it is not finite.
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{:.*}", decimals, v + 0.0)
    } else {
        "–".to_owned()
    }
}

/// Milliseconds with as many decimals as they deserve.
fn ms(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    num(v, decimals)
}

/// A quantile as a percentage: 0.999 → "99.9%".
fn percent(q: f64) -> String {
    let s = num(q * 100.0, 4);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}%")
}

/// An SVG coordinate: one decimal, 0 if not finite (never "NaN" or "inf").
#[derive(Clone, Copy)]
struct C(f64);

impl fmt::Display for C {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() {
            self.0 + 0.0
        } else {
            0.0
        };
        write!(f, "{v:.1}")
    }
}

fn document(o: &mut String, r: &Report) -> fmt::Result {
    let title = esc(&format!("Switchboard bench — {}", r.scenario));
    let (started, target, command) = (esc(&r.started_at), esc(&r.target), esc(&r.command));
    writeln!(
        o,
        r#"<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>{title}</title>
<style>
{STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Started {started} · target <code>{target}</code></p>
<p class="meta">Command: <code>{command}</code></p>
<h2>Summary</h2>
<pre>{}</pre>"#,
        esc(&r.summary.join("\n"))
    )?;
    if let Some(b) = &r.baseline {
        writeln!(
            o,
            "<h2>Baseline</h2>\n<p>This machine's loopback HTTP ceiling (a minimal hyper server \
             answering <code>ok</code>, driven by the same client at concurrency {}): \
             <b>{} requests/s</b>, p50 {} ms, p99 {} ms. Read the figures of this run as a \
             fraction of it: the gateway cannot be faster than plain HTTP over loopback.</p>",
            b.concurrency,
            num(b.requests_per_sec, 0),
            ms(b.latency_ms.p50),
            ms(b.latency_ms.p99)
        )?;
    }
    if let Some(g) = &r.gateway {
        let core = |v| format!("{}% of a core", num(v, 0));
        let mib = |v| format!("{} MiB", num(v, 0));
        writeln!(o, "<h2>Gateway process</h2>\n<table>")?;
        for (k, v) in [
            ("CPU time", format!("{} s", num(g.cpu_seconds, 1))),
            ("CPU average", core(g.cpu_percent_avg)),
            ("CPU peak", core(g.cpu_percent_peak)),
            ("RSS peak", mib(g.rss_mib_peak)),
            ("RSS at the end", mib(g.rss_mib_end)),
            ("PID", g.pid.to_string()),
        ] {
            writeln!(o, r#"<tr><th>{k}</th><td class="n">{v}</td></tr>"#)?;
        }
        writeln!(o, "</table>")?;
    }
    charts(o, r)?;
    let mut params = Vec::new();
    flatten("", &r.params, &mut params);
    if !params.is_empty() {
        writeln!(o, "<h2>Parameters</h2>\n<table>")?;
        for (k, v) in params {
            let (k, v) = (esc(&k), esc(&v));
            writeln!(o, r#"<tr><th>{k}</th><td class="m">{v}</td></tr>"#)?;
        }
        writeln!(o, "</table>")?;
    }
    let result = esc(&serde_json::to_string_pretty(&r.result).unwrap_or_default());
    writeln!(o, "<h2>Result</h2>\n<pre>{result}</pre>\n</body>\n</html>")
}

/// `v` as (dotted key, value) rows: objects flattened, arrays of scalars joined.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| match prefix {
        "" => k.to_owned(),
        p => format!("{p}.{k}"),
    };
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    match v {
        Value::Null if prefix.is_empty() => {}
        Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(a) if a.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        Value::Array(a) => {
            let joined = a.iter().map(scalar).collect::<Vec<_>>().join(", ");
            out.push((prefix.to_owned(), joined));
        }
        v => out.push((prefix.to_owned(), scalar(v))),
    }
}

/// The charts that have data: latency over time, its distribution, the gateway's CPU and memory.
fn charts(o: &mut String, r: &Report) -> fmt::Result {
    let latency = match r.latency_label.as_str() {
        "" => "latency (ms)".to_owned(),
        l => format!("latency (ms): {l}"),
    };
    let s = &r.latency_over_time;
    if !s.is_empty() {
        // Each point is a one-second bucket: plot its latency in the middle of it.
        let at = |f: fn(&SeriesPoint) -> f64| s.iter().map(|p| (p.t_secs + 0.5, f(p))).collect();
        let lines = vec![
            Series::line("p50", "#2f81f7", at(|p| p.p50_ms)),
            Series::line("p99", "#e16f24", at(|p| p.p99_ms)),
            Series::line("max", "#cf222e", at(|p| p.max_ms)),
        ];
        let count = s.iter().map(|p| (p.t_secs, p.count as f64)).collect();
        let bars = vec![Series {
            bars: true,
            ..Series::line("completed", "#8c959f", count)
        }];
        writeln!(o, "<h2>Latency over time</h2>")?;
        let time = "time since start (s)";
        chart(
            o,
            &Chart::new("Latency over time", time, &latency, 300.0, lines),
        )?;
        let per_second = "completed per second";
        chart(o, &Chart::new(per_second, time, per_second, 170.0, bars))?;
    }
    let d = &r.latency_distribution;
    if !d.is_empty() {
        // HDR-style: x is 1/(1-q) on a log scale, so each "nine" gets the same width.
        let x = |q: f64| 1.0 / (1.0 - q.clamp(0.0, 0.99999));
        let run = d.iter().map(|q| (x(q.quantile), q.ms)).collect();
        let mut series = vec![Series::line("this run", "#2f81f7", run)];
        if let Some(b) = &r.baseline {
            let l = &b.latency_ms;
            let points = [
                (0.5, l.p50),
                (0.9, l.p90),
                (0.99, l.p99),
                (0.999, l.p999),
                (1.0, l.max),
            ];
            let points = points.map(|(q, v)| (x(q), v)).to_vec();
            series.push(Series::line("loopback baseline", "#8c959f", points));
        }
        writeln!(o, "<h2>Latency distribution</h2>")?;
        let x_title = "percentile (log scale of 1/(1 − q); 100% drawn at 99.999%)";
        let mut c = Chart::new("Latency distribution", x_title, &latency, 300.0, series);
        c.log_x = Some(|v| percent(1.0 - 1.0 / v));
        chart(o, &c)?;
        let cells = |f: &dyn Fn(&super::Quantile) -> String| {
            d.iter()
                .map(|q| format!(r#"<td class="n">{}</td>"#, f(q)))
                .collect::<String>()
        };
        let (qs, mss) = (cells(&|q| percent(q.quantile)), cells(&|q| ms(q.ms)));
        writeln!(
            o,
            "<div class=\"scroll\"><table>\n<tr><th>percentile</th>{qs}</tr>\n\
             <tr><th>ms</th>{mss}</tr>\n</table></div>"
        )?;
    }
    if let Some(g) = r.gateway.as_ref().filter(|g| !g.samples.is_empty()) {
        writeln!(o, "<h2>Gateway CPU and memory</h2>")?;
        let at = |f: fn(&Sample) -> f64| g.samples.iter().map(|s| (s.t_secs, f(s))).collect();
        let cpu = Series::line("CPU", "#8250df", at(|s| s.cpu_percent));
        let rss = Series::line("RSS", "#1a7f37", at(|s| s.rss_mib));
        let time = "time since the monitor started (s)";
        for (title, y_title, series) in [
            ("Gateway CPU", "CPU (% of one core)", cpu),
            ("Gateway memory", "RSS (MiB)", rss),
        ] {
            chart(o, &Chart::new(title, time, y_title, 200.0, vec![series]))?;
        }
    }
    Ok(())
}

/// One series of a chart, in a CSS colour.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
    /// Bars from each x to the next one's (buckets) instead of a line.
    bars: bool,
}

impl<'a> Series<'a> {
    fn line(name: &'a str, color: &'a str, points: Vec<(f64, f64)>) -> Self {
        let bars = false;
        Self {
            name,
            color,
            points,
            bars,
        }
    }
}

/// A chart: y from 0 up, x linear or — with `log_x`, which labels the ticks — log₁₀.
struct Chart<'a> {
    title: &'a str,
    x_title: &'a str,
    y_title: &'a str,
    height: f64,
    log_x: Option<fn(f64) -> String>,
    series: Vec<Series<'a>>,
}

impl<'a> Chart<'a> {
    /// A chart with a linear x axis.
    fn new(
        title: &'a str,
        x_title: &'a str,
        y_title: &'a str,
        height: f64,
        series: Vec<Series<'a>>,
    ) -> Self {
        let log_x = None;
        Self {
            title,
            x_title,
            y_title,
            height,
            log_x,
            series,
        }
    }
}

/// An axis range widened to its ticks, never empty.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    /// About `n` ticks over [lo, hi], 1, 2 or 5 × 10ⁿ apart.
    fn nice(lo: f64, hi: f64, n: f64) -> Self {
        let (lo, hi) = match (lo, hi) {
            (lo, hi) if !(lo.is_finite() && hi.is_finite() && lo <= hi) => (0.0, 1.0),
            (lo, hi) if hi > lo => (lo, hi),
            (0.0, _) => (0.0, 1.0),
            (v, _) => (v - v.abs() * 0.1, v + v.abs() * 0.1),
        };
        let raw = (hi - lo) / n;
        let mag = 10f64.powf(raw.log10().floor());
        let steps = [1.0, 2.0, 5.0, 10.0].map(|m| m * mag);
        let step = steps.into_iter().find(|s| *s >= raw).unwrap_or(10.0 * mag);
        if !(step.is_finite() && step > 0.0) {
            return Self {
                lo,
                hi,
                ticks: vec![lo, hi],
                decimals: 0,
            };
        }
        let (first, last) = ((lo / step).floor(), (hi / step).ceil());
        let count = (last - first).clamp(1.0, 100.0) as usize;
        Self {
            lo: first * step,
            hi: (first + count as f64) * step,
            ticks: (0..=count).map(|i| (first + i as f64) * step).collect(),
            decimals: (-step.log10().floor()).clamp(0.0, 6.0) as usize,
        }
    }

    /// Whole powers of ten covering [lo, hi], given as log₁₀ values (rounding noise
    /// such as log₁₀ 1/(1 − 0.99999) = 5.000000000004 forgiven).
    fn log(lo: f64, hi: f64) -> Self {
        let lo = if lo.is_finite() {
            (lo + 1e-9).floor()
        } else {
            0.0
        };
        let hi = if hi.is_finite() {
            (hi - 1e-9).ceil()
        } else {
            lo
        };
        let step = ((hi - lo) / 8.0).ceil().max(1.0);
        let count = ((hi - lo) / step).ceil().clamp(1.0, 100.0) as usize;
        let ticks: Vec<f64> = (0..=count).map(|i| lo + i as f64 * step).collect();
        Self {
            lo,
            hi: ticks[count],
            ticks,
            decimals: 0,
        }
    }
}

/// Writes one SVG chart: grid, ticks, axis titles, legend, lines (or bars).
fn chart(o: &mut String, c: &Chart) -> fmt::Result {
    let (h, left, right, top) = (c.height, LEFT, W - RIGHT, TOP);
    let bottom = h - BOTTOM;
    let tx = |x: f64| if c.log_x.is_some() { x.log10() } else { x };
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let project = |s: &Series| {
        s.points
            .iter()
            .map(|&(x, y)| (tx(x), y))
            .filter(finite)
            .collect()
    };
    let series: Vec<Vec<(f64, f64)>> = c.series.iter().map(project).collect();
    // Bars are as wide as the narrowest gap between their x (1 if there is none).
    let bars = series.iter().zip(&c.series).filter(|(_, s)| s.bars);
    let gaps = bars.flat_map(|(p, _)| p.windows(2).map(|w| w[1].0 - w[0].0));
    let gap = gaps.filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    let gap = if gap.is_finite() { gap } else { 1.0 };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0_f64, 0.0_f64);
    for (points, s) in series.iter().zip(&c.series) {
        for &(x, y) in points {
            (x0, x1) = (x0.min(x), x1.max(if s.bars { x + gap } else { x }));
            (y0, y1) = (y0.min(y), y1.max(y));
        }
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    let xa = match c.log_x {
        Some(_) => Axis::log(x0, x1),
        None => Axis::nice(x0, x1, 8.0),
    };
    let ya = Axis::nice(y0, y1, 5.0);
    let sx = |x: f64| C(left + (x - xa.lo) / (xa.hi - xa.lo) * (right - left));
    let sy = |y: f64| C(bottom - (y - ya.lo) / (ya.hi - ya.lo) * (bottom - top));
    let (l, r, t, b) = (C(left), C(right), C(top), C(bottom));

    let view_box = format!("0 0 {W} {h}");
    writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="{view_box}" width="100%" role="img">"#
    )?;
    writeln!(o, "<title>{}</title>", esc(c.title))?;
    for &v in &ya.ticks {
        let (y, ty, tl, label) = (sy(v), C(sy(v).0 + 4.0), C(left - 6.0), num(v, ya.decimals));
        writeln!(
            o,
            r#"<line class="grid" x1="{l}" y1="{y}" x2="{r}" y2="{y}" /><text x="{tl}" y="{ty}" text-anchor="end">{label}</text>"#
        )?;
    }
    for &v in &xa.ticks {
        let label = match c.log_x {
            Some(f) => esc(&f(10f64.powf(v))),
            None => num(v, xa.decimals),
        };
        let (x, ty) = (sx(v), C(bottom + 16.0));
        writeln!(
            o,
            r#"<line class="grid" x1="{x}" y1="{t}" x2="{x}" y2="{b}" /><text x="{x}" y="{ty}" text-anchor="middle">{label}</text>"#
        )?;
    }
    let (mid, ty) = (C((left + right) / 2.0), C(h - 8.0));
    let (x_title, y_title) = (esc(c.x_title), esc(c.y_title));
    writeln!(
        o,
        r#"<polyline class="axis" fill="none" points="{l},{t} {l},{b} {r},{b}" />
<text x="{mid}" y="{ty}" text-anchor="middle">{x_title}</text>
<text x="8" y="16">{y_title}</text>"#
    )?;
    for (points, s) in series.iter().zip(&c.series) {
        let color = esc(s.color);
        if s.bars {
            let zero = sy(0.0_f64.clamp(ya.lo, ya.hi)).0;
            for &(x, y) in points {
                let (end, w) = (sy(y).0, C((sx(x + gap).0 - sx(x).0) * 0.85));
                let (x, y, h) = (sx(x), C(end.min(zero)), C((end - zero).abs()));
                writeln!(
                    o,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{color}" />"#
                )?;
            }
            continue;
        }
        if points.len() > 1 {
            let xy: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{},{}", sx(x), sy(y)))
                .collect();
            let xy = xy.join(" ");
            writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round" points="{xy}" />"#
            )?;
        }
        // Markers where there are few points (a single one has no line).
        if points.len() <= 24 {
            for &(x, y) in points {
                let (x, y) = (sx(x), sy(y));
                writeln!(o, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}" />"#)?;
            }
        }
    }
    if series.iter().all(Vec::is_empty) {
        let y = C((top + bottom) / 2.0);
        writeln!(
            o,
            r#"<text x="{mid}" y="{y}" text-anchor="middle">no data</text>"#
        )?;
    }
    // The legend, right-aligned above the plot (text width estimated from its length).
    let width = |s: &Series| 30.0 + s.name.chars().count() as f64 * 6.5;
    let mut lx = (right - c.series.iter().map(width).sum::<f64>()).max(left);
    for s in &c.series {
        let (x, tx, color, name) = (C(lx), C(lx + 14.0), esc(s.color), esc(s.name));
        writeln!(
            o,
            r#"<rect x="{x}" y="8" width="10" height="10" rx="2" fill="{color}" /><text x="{tx}" y="17">{name}</text>"#
        )?;
        lx += width(s);
    }
    writeln!(o, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::BaselineReport;
    use crate::monitor::{ProcessStats, Sample};
    use crate::report::{QUANTILES, Quantile, well_formed};
    use crate::scenarios::Latency;
    use serde_json::json;

    /// Every coordinate of every chart lies within its viewBox.
    fn in_view_box(html: &str) {
        for svg in html.split("<svg ").skip(1) {
            let svg = &svg[..svg.find("</svg>").expect("closed svg")];
            let (head, body) = svg.split_once('>').expect("svg tag");
            let view_box = head.split('"').nth(3).expect("viewBox");
            let size: Vec<f64> = view_box
                .split(' ')
                .map(|n| n.parse().expect("number"))
                .collect();
            let check = |name: &str, v: &str, max: f64| {
                let v: f64 = v.parse().unwrap_or_else(|_| panic!("{name}={v:?}"));
                assert!((0.0..=max).contains(&v), "{name}={v} outside 0..={max}");
            };
            for pair in body.split('"').collect::<Vec<_>>().chunks(2) {
                let [key, value] = pair else { continue };
                let name = key.trim_end_matches('=').rsplit(char::is_whitespace).next();
                match name.unwrap_or("") {
                    n @ ("x" | "x1" | "x2" | "cx" | "width") => check(n, value, size[2]),
                    n @ ("y" | "y1" | "y2" | "cy" | "height") => check(n, value, size[3]),
                    "points" => value.split(' ').for_each(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        check("points", x, size[2]);
                        check("points", y, size[3]);
                    }),
                    _ => {}
                }
            }
        }
    }

    const HOSTILE: &str = r#"<script>alert("x")</script> & co 'q'"#;

    fn full() -> Report {
        Report {
            scenario: format!("webhooks {HOSTILE}"),
            started_at: "2025-01-02T03:04:05Z".into(),
            command: format!("switchboard-bench webhooks --rate 500 --note '{HOSTILE}'"),
            target: "spawned (SQLite)".into(),
            params: json!({
                "rate": 500, "secs": 30, "sizes": [1, 2, 3], "names": ["a&b", "<c>"],
                "nested": {"label": HOSTILE, "deep": {"on": true}}, "objs": [{"k": 1}], "none": null,
            }),
            summary: vec![
                "webhooks: 15000 delivered".into(),
                format!("  note: {HOSTILE}"),
            ],
            result: json!({"delivered": 15000, "note": HOSTILE}),
            latency_label: "event created → webhook received <&>".into(),
            latency_over_time: (0..30u64)
                .map(|i| SeriesPoint {
                    t_secs: i as f64,
                    count: 400 + i * 7 % 50,
                    p50_ms: 2.0 + (i % 5) as f64,
                    p99_ms: 9.0 + i as f64 * 0.5,
                    max_ms: 20.0 + (i * 13 % 17) as f64,
                })
                .collect(),
            latency_distribution: QUANTILES
                .iter()
                .map(|&q| Quantile {
                    quantile: q,
                    ms: 1.0 + 90.0 * q.powi(40),
                })
                .collect(),
            gateway: Some(ProcessStats {
                pid: 4242,
                cpu_seconds: 12.5,
                cpu_percent_avg: 41.7,
                cpu_percent_peak: 98.0,
                rss_mib_peak: 210.0,
                rss_mib_end: 180.0,
                samples: (0..60)
                    .map(|i| Sample {
                        t_secs: i as f64 * 0.5,
                        cpu_percent: (i * 37 % 100) as f64,
                        rss_mib: 150.0 + i as f64,
                    })
                    .collect(),
            }),
            baseline: Some(BaselineReport {
                scenario: "baseline",
                concurrency: 64,
                duration_secs: 3.0,
                requests: 300_000,
                requests_per_sec: 100_000.0,
                latency_ms: Latency {
                    p50: 0.4,
                    p90: 0.8,
                    p99: 1.5,
                    p999: 3.0,
                    max: 7.0,
                },
            }),
        }
    }

    fn clean(html: &str) {
        well_formed(html).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !html.contains("NaN") && !html.contains("inf"),
            "NaN or inf in the output"
        );
        in_view_box(html);
    }

    #[test]
    fn full_report_is_well_formed_and_escaped() {
        let html = render(&full());
        clean(&html);
        assert!(html.matches("<svg").count() >= 3);
        assert!(!html.to_lowercase().contains("<script"));
        for s in [
            "nested.deep.on",
            "1, 2, 3",
            "a&amp;b, &lt;c&gt;",
            "objs.0.k",
            "99.99%",
            "100000 requests/s",
        ] {
            assert!(html.contains(s), "{s} missing");
        }
    }

    #[test]
    fn degenerate_reports_render_without_nan() {
        let empty = Report {
            scenario: String::new(),
            started_at: String::new(),
            command: String::new(),
            target: String::new(),
            params: Value::Null,
            summary: Vec::new(),
            result: Value::Null,
            latency_label: String::new(),
            latency_over_time: Vec::new(),
            latency_distribution: Vec::new(),
            gateway: None,
            baseline: None,
        };
        let mut single = empty.clone();
        single.latency_over_time = vec![SeriesPoint {
            t_secs: 0.0,
            count: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
        }];
        single.latency_distribution = vec![Quantile {
            quantile: 1.0,
            ms: 0.0,
        }];
        single.gateway = Some(ProcessStats {
            pid: 1,
            cpu_seconds: 0.0,
            cpu_percent_avg: f64::NAN,
            cpu_percent_peak: f64::INFINITY,
            rss_mib_peak: 0.0,
            rss_mib_end: 0.0,
            samples: vec![
                Sample {
                    t_secs: 2.0,
                    cpu_percent: 0.0,
                    rss_mib: 5.0
                };
                3
            ],
        });
        let mut odd = full();
        odd.latency_over_time
            .iter_mut()
            .for_each(|p| (p.p99_ms, p.max_ms) = (f64::NAN, f64::INFINITY));
        odd.latency_distribution
            .iter_mut()
            .for_each(|q| q.ms = -q.ms);
        for r in [&empty, &single, &odd] {
            clean(&render(r));
        }
        assert!(!render(&empty).contains("<svg"));
        assert_eq!(render(&single).matches("<svg").count(), 5);
    }

    #[test]
    fn checker_rejects_malformed_markup() {
        for bad in [
            "<p>a < b</p>",
            "<p>&nbsp;</p>",
            "<p>a & b</p>",
            "<p><b></p>",
            "<a href=x />",
            "<p title=\"<\">x</p>",
            "<p>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
        assert!(well_formed("<!DOCTYPE html><!-- <x --><p a=\"&amp;\">&#39;<br /></p>").is_ok());
    }

    #[test]
    fn axes_are_nice_and_never_empty() {
        let a = Axis::nice(0.0, 97.0, 5.0);
        assert_eq!((a.lo, a.hi, a.ticks.len()), (0.0, 100.0, 6));
        for (lo, hi) in [
            (0.0, 0.0),
            (3.0, 3.0),
            (-2.0, -2.0),
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
        ] {
            let a = Axis::nice(lo, hi, 5.0);
            assert!(
                a.hi > a.lo && a.ticks.iter().all(|t| t.is_finite()),
                "{lo}..{hi}"
            );
        }
        let nines = (1.0 / (1.0 - 0.99999_f64)).log10();
        assert_eq!(Axis::log(0.0, nines).ticks, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(percent(0.999), "99.9%");
        assert_eq!(percent(1.0 - 1.0 / 1e4), "99.99%");
    }
}
