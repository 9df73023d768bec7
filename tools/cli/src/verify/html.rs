//! `dualpub verify --html FILE`: the findings as one self-contained HTML page for people — the
//! verdict, the verdict per rollout step, five charts drawn as inline SVG, the pipelines'
//! totals and the first missing locations. Nothing is loaded from anywhere (no scripts, fonts
//! or images; the page's Content-Security-Policy forbids them), and every string that came from
//! a device is escaped.

use super::engine::{Cause, Findings, Minute, Pipeline, PipelineTotals, Step, Unbound};
use std::fmt::Write;

/// The ids of the page's charts' `<svg>` elements, in page order.
pub const CHART_IDS: [&str; 5] = ["chart-deliveries", "chart-delay", "chart-causes", "chart-devices", "chart-fallbacks"];

/// How many missing locations the page lists (`--json` lists them all).
pub const MISSING_LISTED: usize = 100;

/// The text a chart shows instead of an empty plot.
pub const NO_DATA: &str = "No data";

/// Most slots a time chart draws; longer runs are summed into slots of several minutes.
const MAX_SLOTS: i128 = 720;

/// The spacing of a time axis' labels, in minutes: the first of these that leaves room.
const NICE_MINUTES: [i128; 18] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1_440, 2_880, 10_080, 20_160, 43_200, 129_600, 525_600];

/// Up to this many slots a time chart draws bars, beyond it lines.
const MAX_BAR_SLOTS: usize = 30;

/// Chart colours (Okabe–Ito, safe for colour-blind readers).
const MQTT_COLOR: &str = "#0072B2";
const PUBSUB_COLOR: &str = "#E69F00";
const FALLBACK_COLOR: &str = "#CC79A7";
const ALARM_COLOR: &str = "#D55E00";
const EXPLAINED_COLOR: &str = "#8C959F";

/// The width of every chart's view box.
const WIDTH: f64 = 900.0;

/// The widest a bar gets (a chart of one or two slots would otherwise draw blocks).
const MAX_BAR_WIDTH: f64 = 56.0;

const STYLE: &str = "
body{margin:0;background:#fff;color:#1f2328;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0}
h2{font-size:17px;margin:32px 0 8px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
.verdict{display:inline-block;margin:10px 0 4px;padding:6px 20px;border-radius:6px;color:#fff;font-size:34px;font-weight:700;letter-spacing:.05em}
.v-pass{background:#1a7f37}.v-fail{background:#cf222e}.v-insufficient{background:#9a6700}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600}
.muted{color:#57606a}
dl.thresholds{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:12px 0 0}
dl.thresholds dt{color:#57606a}dl.thresholds dd{margin:0;font-variant-numeric:tabular-nums}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #d8dee4;text-align:right}
th{vertical-align:bottom}td{vertical-align:baseline;white-space:nowrap}
th.event{width:270px}
th{background:#f6f8fa;font-weight:600}
.l{text-align:left}
.mono{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px;word-break:break-all;white-space:normal}
figure{margin:20px 0}
figcaption{font-weight:600;margin-bottom:4px}
svg{display:block;width:100%;height:auto}
svg text{font-size:12px;fill:#57606a}
svg .axis-label{font-size:13px;fill:#1f2328}
svg .value{fill:#1f2328}
svg .no-data{font-size:18px}
svg .grid{stroke:#eaeef2}
svg .axis{stroke:#8c959f}
";

/// The findings as one HTML page (UTF-8, no external references).
pub fn page(f: &Findings) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>dualpub verify: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&verdict_text(f.verdict))
    );
    header(&mut o, f);
    steps_table(&mut o, f);
    charts(&mut o, f);
    totals(&mut o, f);
    missing_table(&mut o, f);
    mismatch_table(&mut o, f);
    unbounded_table(&mut o, f);
    o.push_str("</main>\n</body>\n</html>\n");
    o
}

/// `s` safe in HTML text and attribute values: markup characters as entities, and control and
/// bidirectional-override characters (which could hide or reorder what a reader sees) as U+FFFD.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut o: String = s.chars().take(max.saturating_sub(1)).collect();
    o.push('…');
    o
}

/// A count with thousands separators: 2,995.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut o = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// A count for an axis: 950, 12k, 3.5M.
fn compact(n: u64) -> String {
    match n {
        0..=9_999 => count(n),
        10_000..=999_999 => format!("{}k", trim(n as f64 / 1e3)),
        _ => format!("{}M", trim(n as f64 / 1e6)),
    }
}

/// A number with at most one decimal, without a trailing `.0`.
fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// A rate as a percentage.
fn percent(x: f64) -> String {
    format!("{:.4} %", x * 100.0)
}

/// A duration in ms for people: 250 ms, 2.5 s, 5 min, 1 h.
fn duration(ms: i64) -> String {
    match ms.unsigned_abs() {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{} s", trim(ms as f64 / 1e3)),
        60_000..=3_599_999 => format!("{} min", trim(ms as f64 / 6e4)),
        _ => format!("{} h", trim(ms as f64 / 3.6e6)),
    }
}

fn verdict_text(v: &str) -> String {
    if v.is_empty() {
        "NO VERDICT".into()
    } else {
        v.to_uppercase()
    }
}

/// The CSS class of a verdict's colour.
fn verdict_class(v: &str) -> &'static str {
    match v {
        "pass" => "v-pass",
        "fail" => "v-fail",
        _ => "v-insufficient",
    }
}

/// What the overall verdict means.
fn verdict_meaning(f: &Findings) -> &'static str {
    match f.verdict {
        "pass" => "Every rollout step is clean and had the traffic to show it.",
        "fail" => "A rollout step has a location a device acknowledged but no pipeline delivered, or discrepancies above the bound.",
        _ if f.steps.is_empty() => "No location was received: there is nothing to judge.",
        _ => "No step failed, but a step had too little traffic for the upper bound to reach the threshold.",
    }
}

/// The confidence of the bound, as a percentage label ("95 %").
fn confidence_label(f: &Findings) -> String {
    let c = f.thresholds.map_or(0.95, |t| t.confidence);
    format!("{} %", trim(c * 100.0))
}

fn header(o: &mut String, f: &Findings) {
    let _ = writeln!(o, "<header>\n<h1>dualpub verify: MQTT and Pub/Sub joined by eventId</h1>");
    let _ = writeln!(o, "<p id=\"verdict\" class=\"verdict {}\">{}</p>", verdict_class(f.verdict), esc(&verdict_text(f.verdict)));
    let _ = writeln!(o, "<p class=\"muted\">{}</p>", verdict_meaning(f));
    if let Some(t) = &f.thresholds {
        let _ = writeln!(
            o,
            "<dl class=\"thresholds\"><dt>locations acknowledged but never received allowed per step</dt><dd>{}</dd>\
             <dt>highest {} upper bound of the discrepancy rate</dt><dd>{}</dd>\
             <dt>late: later on one pipeline than on the other by more than</dt><dd>{}</dd></dl>",
            count(t.max_acked_not_received),
            confidence_label(f),
            percent(t.max_rate_bound),
            duration(t.late_ms)
        );
    }
    o.push_str("</header>\n");
}

fn steps_table(o: &mut String, f: &Findings) {
    o.push_str("<section>\n<h2>Verdict per rollout step</h2>\n");
    if f.steps.is_empty() {
        o.push_str("<p>No location was received: no rollout step to judge.</p>\n</section>\n");
        return;
    }
    let _ = writeln!(
        o,
        "<table id=\"steps\">\n<thead><tr><th>cfg</th><th>devices</th><th>locations</th><th>MQTT received / expected</th>\
         <th>Pub/Sub received / expected</th><th>fallbacks</th><th>discrepancies</th><th>rate</th><th>{} upper bound</th>\
         <th>trials / min traffic</th><th class=\"l\">verdict</th></tr></thead>\n<tbody>",
        confidence_label(f)
    );
    for s in &f.steps {
        step_row(o, s);
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

fn step_row(o: &mut String, s: &Step) {
    let min = if s.min_trials == u64::MAX { "∞".to_string() } else { count(s.min_trials) };
    let _ = writeln!(
        o,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td>\
         <td class=\"l\"><span class=\"badge {}\">{}</span></td></tr>",
        s.cfg,
        count(s.devices),
        count(s.locations),
        count(s.mqtt.received),
        count(s.mqtt.expected),
        count(s.pubsub.received),
        count(s.pubsub.expected),
        count(s.mqtt.fallbacks),
        count(s.discrepancies),
        percent(s.rate),
        percent(s.rate_bound),
        count(s.trials),
        min,
        verdict_class(s.verdict),
        esc(s.verdict)
    );
}

fn charts(o: &mut String, f: &Findings) {
    o.push_str("<section>\n<h2>Charts</h2>\n");
    let grid = TimeGrid::new(&f.timeline);
    deliveries_chart(o, grid.as_ref());
    delay_chart(o, f);
    causes_chart(o, f);
    devices_chart(o, f);
    fallbacks_chart(o, grid.as_ref());
    o.push_str("</section>\n");
}

/// One series of a chart: a name, a colour (or one per value) and its values.
struct Series {
    name: &'static str,
    colors: Vec<&'static str>,
    values: Vec<u64>,
}

impl Series {
    fn new(name: &'static str, color: &'static str, values: Vec<u64>) -> Series {
        Series { name, colors: vec![color], values }
    }

    fn color(&self, i: usize) -> &'static str {
        self.colors.get(i).copied().unwrap_or(self.colors[0])
    }

    fn total(&self) -> u64 {
        self.values.iter().sum()
    }
}

/// What every chart has: its id, title, axis labels and a one-line summary for screen readers.
struct Frame<'a> {
    id: &'a str,
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    summary: String,
}

/// Where the data is drawn inside a chart's view box.
#[derive(Clone, Copy)]
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Plot {
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// A chart's axis scale: the top value and the step between ticks (1, 2 or 5 × 10^k).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    top: u64,
    step: u64,
}

impl Scale {
    fn new(max: u64) -> Scale {
        let raw = max.div_ceil(5).max(1);
        let mut magnitude = 1u64;
        while magnitude.saturating_mul(10) <= raw {
            magnitude *= 10;
        }
        let step = [1, 2, 5, 10].iter().map(|m| magnitude.saturating_mul(*m)).find(|s| *s >= raw).unwrap_or(raw);
        Scale { top: max.div_ceil(step).max(1).saturating_mul(step), step }
    }

    fn ticks(&self) -> impl Iterator<Item = u64> + '_ {
        (0..=self.top / self.step).map(|i| i * self.step)
    }

    fn fraction(&self, v: u64) -> f64 {
        v as f64 / self.top as f64
    }
}

fn figure_open(o: &mut String, frame: &Frame, height: f64) {
    let _ = write!(
        o,
        "<figure>\n<figcaption>{title}</figcaption>\n<svg id=\"{id}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{title}: {summary}\">\
         <title>{title}</title><desc>{summary}</desc>\n",
        id = frame.id,
        title = esc(frame.title),
        summary = esc(&frame.summary),
    );
}

fn figure_close(o: &mut String) {
    o.push_str("</svg>\n</figure>\n");
}

/// A chart with nothing to draw: its frame and a "No data" line saying why.
fn no_data(o: &mut String, frame: &Frame, why: &str) {
    figure_open(o, frame, 120.0);
    let _ = writeln!(o, "<text class=\"no-data\" x=\"{}\" y=\"66\" text-anchor=\"middle\">{NO_DATA}: {}</text>", WIDTH / 2.0, esc(why));
    figure_close(o);
}

/// The legend, right-aligned above the plot.
fn legend(o: &mut String, plot: Plot, entries: &[(&str, &str)]) {
    let mut x = plot.left + plot.width;
    for (name, color) in entries.iter().rev() {
        x -= 7.0 * name.chars().count() as f64 + 30.0;
        let _ = writeln!(
            o,
            "<rect class=\"swatch\" x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            plot.top - 26.0,
            x + 17.0,
            plot.top - 16.0,
            esc(name)
        );
    }
}

/// The value axis on the left (gridlines, ticks, label) and the category axis line.
fn value_axis(o: &mut String, plot: Plot, scale: Scale, frame: &Frame) {
    for v in scale.ticks() {
        let y = plot.bottom() - scale.fraction(v) * plot.height;
        let _ = writeln!(
            o,
            "<line class=\"grid\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            plot.left,
            plot.left + plot.width,
            plot.left - 6.0,
            y + 4.0,
            compact(v)
        );
    }
    let _ = writeln!(
        o,
        "<line class=\"axis\" x1=\"{l:.1}\" x2=\"{l:.1}\" y1=\"{:.1}\" y2=\"{b:.1}\"/><line class=\"axis\" x1=\"{l:.1}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\"/>",
        plot.top,
        plot.left + plot.width,
        l = plot.left,
        b = plot.bottom(),
    );
    axis_labels(o, plot, frame);
}

/// The x label centred under the plot, the y label turned along the left edge.
fn axis_labels(o: &mut String, plot: Plot, frame: &Frame) {
    let _ = writeln!(
        o,
        "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis-label\" transform=\"rotate(-90)\" x=\"{:.1}\" y=\"16\" text-anchor=\"middle\">{}</text>",
        plot.left + plot.width / 2.0,
        plot.bottom() + 44.0,
        esc(frame.x_label),
        -(plot.top + plot.height / 2.0),
        esc(frame.y_label)
    );
}

/// The categories along a chart's x axis, and the labels drawn under it.
struct Axis {
    /// One name per slot (in the bars' tooltips).
    categories: Vec<String>,
    /// (slot, label): the labels under the plot, spaced so they never overlap.
    ticks: Vec<(usize, String)>,
}

impl Axis {
    /// Every category labelled, or every n-th where they would not fit.
    fn fitted(categories: Vec<String>) -> Axis {
        let widest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(1);
        let stride = (label_width(widest) / slot_width(categories.len())).ceil().max(1.0) as usize;
        let ticks = categories.iter().cloned().enumerate().step_by(stride).collect();
        Axis { categories, ticks }
    }
}

/// About how wide a label of `chars` characters is drawn, with a margin.
fn label_width(chars: usize) -> f64 {
    chars as f64 * 7.0 + 10.0
}

/// The width of one of `n` slots of a vertical chart.
fn slot_width(n: usize) -> f64 {
    vertical_plot().width / n.max(1) as f64
}

/// The axis labels under the plot.
fn category_labels(o: &mut String, plot: Plot, axis: &Axis) {
    let slot = slot_width(axis.categories.len());
    for (i, label) in &axis.ticks {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            plot.left + (*i as f64 + 0.5) * slot,
            plot.bottom() + 18.0,
            esc(label)
        );
    }
}

/// The plot of a vertical chart (300 high, room for the legend, the labels and the axes).
fn vertical_plot() -> Plot {
    Plot { left: 70.0, top: 44.0, width: WIDTH - 70.0 - 20.0, height: 196.0 }
}

fn legend_entries(series: &[Series]) -> Vec<(&str, &str)> {
    series.iter().map(|s| (s.name, s.colors[0])).collect()
}

/// Grouped vertical bars: one group per category, one bar per series; single-series bars carry
/// their value.
fn bars(o: &mut String, frame: &Frame, axis: &Axis, series: &[Series], legend_entries: &[(&str, &str)]) {
    let plot = vertical_plot();
    figure_open(o, frame, 300.0);
    let scale = Scale::new(series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0));
    value_axis(o, plot, scale, frame);
    legend(o, plot, legend_entries);
    let slot = slot_width(axis.categories.len());
    let bar = (slot * 0.8 / series.len() as f64).min(MAX_BAR_WIDTH);
    let group_left = (slot - bar * series.len() as f64) / 2.0;
    for (i, category) in axis.categories.iter().enumerate() {
        for (j, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = (scale.fraction(v) * plot.height).max(1.0);
            let x = plot.left + i as f64 * slot + group_left + j as f64 * bar;
            let _ = writeln!(
                o,
                "<rect class=\"mark\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} · {}: {}</title></rect>",
                plot.bottom() - h,
                bar.max(1.0),
                s.color(i),
                esc(category),
                esc(s.name),
                count(v)
            );
            if series.len() == 1 && bar >= 24.0 {
                let _ = writeln!(
                    o,
                    "<text class=\"value\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x + bar / 2.0,
                    plot.bottom() - h - 5.0,
                    count(v)
                );
            }
        }
    }
    category_labels(o, plot, axis);
    figure_close(o);
}

/// One line per series over evenly spaced categories (long time series).
fn lines(o: &mut String, frame: &Frame, axis: &Axis, series: &[Series]) {
    let plot = vertical_plot();
    figure_open(o, frame, 300.0);
    let scale = Scale::new(series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0));
    value_axis(o, plot, scale, frame);
    legend(o, plot, &legend_entries(series));
    let slot = slot_width(axis.categories.len());
    for s in series {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", plot.left + (i as f64 + 0.5) * slot, plot.bottom() - scale.fraction(*v) * plot.height))
            .collect();
        let _ = writeln!(
            o,
            "<polyline class=\"mark\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"><title>{}: {} in all</title></polyline>",
            s.colors[0],
            points.join(" "),
            esc(s.name),
            count(s.total())
        );
    }
    category_labels(o, plot, axis);
    figure_close(o);
}

/// Horizontal bars, one per labelled row (long labels are shortened; the full one is the bar's
/// tooltip).
fn horizontal_bars(o: &mut String, frame: &Frame, rows: &[(String, u64)], color: &str) {
    let row_height = 22.0;
    let plot = Plot { left: 250.0, top: 16.0, width: WIDTH - 250.0 - 60.0, height: row_height * rows.len() as f64 };
    figure_open(o, frame, plot.bottom() + 60.0);
    let scale = Scale::new(rows.iter().map(|r| r.1).max().unwrap_or(0));
    for v in scale.ticks() {
        let x = plot.left + scale.fraction(v) * plot.width;
        let _ = writeln!(
            o,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            plot.top,
            plot.bottom(),
            plot.bottom() + 18.0,
            compact(v)
        );
    }
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = plot.top + i as f64 * row_height;
        let w = (scale.fraction(*v) * plot.width).max(1.0);
        let _ = writeln!(
            o,
            "<text class=\"mono\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"mark\" x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {}</title></rect>\
             <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            plot.left - 8.0,
            y + 15.0,
            esc(&shorten(label, 28)),
            plot.left,
            y + 3.0,
            row_height - 6.0,
            esc(label),
            count(*v),
            plot.left + w + 6.0,
            y + 15.0,
            count(*v)
        );
    }
    let _ = writeln!(o, "<line class=\"axis\" x1=\"{l:.1}\" x2=\"{l:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>", plot.top, plot.bottom(), l = plot.left);
    axis_labels(o, plot, frame);
    figure_close(o);
}

/// The timeline on an even grid: minutes without arrivals count zero, and a run longer than
/// `MAX_SLOTS` minutes is summed into slots of several minutes.
#[derive(Debug, PartialEq)]
struct TimeGrid {
    /// The first slot's start, ms since the Unix epoch.
    start_ms: i64,
    /// Minutes per slot.
    minutes: i64,
    mqtt: Vec<u64>,
    pubsub: Vec<u64>,
    fallbacks: Vec<u64>,
}

impl TimeGrid {
    fn new(timeline: &[Minute]) -> Option<TimeGrid> {
        let first = timeline.iter().map(|m| m.start_ms).min()?;
        let last = timeline.iter().map(|m| m.start_ms).max()?;
        let span = (i128::from(last) - i128::from(first)) / 60_000 + 1;
        let per_slot = (span + MAX_SLOTS - 1) / MAX_SLOTS;
        let n = ((span + per_slot - 1) / per_slot) as usize;
        let mut g = TimeGrid { start_ms: first, minutes: per_slot as i64, mqtt: vec![0; n], pubsub: vec![0; n], fallbacks: vec![0; n] };
        for m in timeline {
            let i = ((i128::from(m.start_ms) - i128::from(first)) / 60_000 / per_slot) as usize;
            g.mqtt[i] += m.mqtt;
            g.pubsub[i] += m.pubsub;
            g.fallbacks[i] += m.fallbacks;
        }
        Some(g)
    }

    fn slot_start(&self, i: usize) -> i64 {
        let ms = i128::from(self.start_ms) + i as i128 * i128::from(self.minutes) * 60_000;
        ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Whether every slot falls on the first slot's UTC day.
    fn one_day(&self) -> bool {
        let last = self.slot_start(self.mqtt.len() - 1).saturating_add(self.minutes.saturating_mul(60_000)).saturating_sub(1);
        utc(self.start_ms).0 == utc(last).0
    }

    /// A time as `HH:MM` (UTC), with the date when the run spans days, or only the date when
    /// a slot is a day or longer.
    fn label(&self, ms: i64, one_day: bool) -> String {
        let (date, time) = utc(ms);
        match (one_day, self.minutes >= 1_440) {
            (true, _) => time,
            (false, true) => date,
            (false, false) => format!("{} {time}", &date[5..]),
        }
    }

    /// The slots (named by their start) and labels at round times (every 1, 2, 5, 10, 15, 30
    /// minutes, hours, days…), as many as fit.
    fn axis(&self) -> Axis {
        let (n, one_day) = (self.mqtt.len(), self.one_day());
        let categories: Vec<String> = (0..n).map(|i| self.label(self.slot_start(i), one_day)).collect();
        let widest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(1);
        let per_slot = i128::from(self.minutes);
        let needed = (label_width(widest) / slot_width(n)).ceil().max(1.0) as i128 * per_slot;
        let step = NICE_MINUTES.iter().copied().find(|s| *s >= needed).unwrap_or((needed + 1_439) / 1_440 * 1_440);
        let first = i128::from(self.start_ms.div_euclid(60_000));
        let mut ticks: Vec<(usize, String)> = (0..n)
            .filter_map(|i| {
                let start = first + i as i128 * per_slot;
                let round = (start + step - 1).div_euclid(step) * step;
                (round < start + per_slot).then(|| (i, self.label((round * 60_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64, one_day)))
            })
            .collect();
        if ticks.is_empty() {
            ticks.push((0, categories[0].clone()));
        }
        Axis { categories, ticks }
    }

    /// The x axis' label: what a slot is, in UTC, and the day when there is one.
    fn x_label(&self) -> String {
        let unit = if self.minutes == 1 { "minute".to_string() } else { format!("{}-minute slot", self.minutes) };
        if self.one_day() {
            format!("{unit} of arrival (UTC, {})", utc(self.start_ms).0)
        } else {
            format!("{unit} of arrival (UTC)")
        }
    }

    /// The value axis' label.
    fn y_label(&self, what: &str) -> String {
        if self.minutes == 1 {
            format!("{what} per minute")
        } else {
            format!("{what} per {} min", self.minutes)
        }
    }
}

/// `ms` since the Unix epoch as a UTC date (`YYYY-MM-DD`) and time (`HH:MM`).
fn utc(ms: i64) -> (String, String) {
    let days = ms.div_euclid(86_400_000);
    let minute = ms.rem_euclid(86_400_000) / 60_000;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), format!("{:02}:{:02}", minute / 60, minute % 60))
}

/// A time chart: bars for a few slots, lines for many.
fn time_chart(o: &mut String, frame: &Frame, grid: &TimeGrid, series: &[Series]) {
    let axis = grid.axis();
    if axis.categories.len() <= MAX_BAR_SLOTS {
        bars(o, frame, &axis, series, &legend_entries(series));
    } else {
        lines(o, frame, &axis, series);
    }
}

/// (a) Locations first received per minute on each pipeline, and fallback copies on MQTT.
fn deliveries_chart(o: &mut String, grid: Option<&TimeGrid>) {
    let title = "Deliveries per minute, per pipeline";
    let Some(g) = grid else {
        return no_data(
            o,
            &Frame { id: CHART_IDS[0], title, x_label: "", y_label: "", summary: "no location was received".into() },
            "no location was received",
        );
    };
    let series = [
        Series::new("MQTT (owed)", MQTT_COLOR, g.mqtt.clone()),
        Series::new("Pub/Sub", PUBSUB_COLOR, g.pubsub.clone()),
        Series::new("fallback copies on MQTT", FALLBACK_COLOR, g.fallbacks.clone()),
    ];
    let summary = format!(
        "MQTT {} owed locations, Pub/Sub {}, fallback copies on MQTT {}, over {} slots of {} min",
        count(series[0].total()),
        count(series[1].total()),
        count(series[2].total()),
        g.mqtt.len(),
        g.minutes
    );
    let (x_label, y_label) = (g.x_label(), g.y_label("locations first received"));
    time_chart(o, &Frame { id: CHART_IDS[0], title, x_label: &x_label, y_label: &y_label, summary }, g, &series);
}

/// The histogram's bounds as labels: `≤ 250 ms` … `> 1 h`.
fn delay_labels(bounds: &[i64]) -> Vec<String> {
    bounds
        .iter()
        .enumerate()
        .map(|(i, b)| match (*b, i) {
            (i64::MAX, 0) => "any".to_string(),
            (i64::MAX, _) => format!("> {}", duration(bounds[i - 1])),
            (b, _) => format!("≤ {}", duration(b)),
        })
        .collect()
}

/// (b) How many locations arrived within each delay bound, per pipeline.
fn delay_chart(o: &mut String, f: &Findings) {
    let title = "Delay distribution per pipeline (arrival − location timestamp)";
    let hist = |p: Pipeline| f.delay_histogram.get(&p).cloned().unwrap_or_default();
    let (mqtt, pubsub) = (hist(Pipeline::Mqtt), hist(Pipeline::Pubsub));
    let bounds: Vec<i64> = (if mqtt.len() >= pubsub.len() { &mqtt } else { &pubsub }).iter().map(|(b, _)| *b).collect();
    let series = [
        Series::new("MQTT", MQTT_COLOR, mqtt.iter().map(|(_, n)| *n).collect()),
        Series::new("Pub/Sub", PUBSUB_COLOR, pubsub.iter().map(|(_, n)| *n).collect()),
    ];
    let summary = format!(
        "MQTT p50 {}, p95 {}; Pub/Sub p50 {}, p95 {}",
        delay_text(f.mqtt.delay_ms.p50),
        delay_text(f.mqtt.delay_ms.p95),
        delay_text(f.pubsub.delay_ms.p50),
        delay_text(f.pubsub.delay_ms.p95)
    );
    let frame = Frame { id: CHART_IDS[1], title, x_label: "delay, at most (upper bound of each bucket)", y_label: "locations", summary };
    if series.iter().all(|s| s.total() == 0) {
        return no_data(o, &frame, "no delivery to measure");
    }
    bars(o, &frame, &Axis::fitted(delay_labels(&bounds)), &series, &legend_entries(&series));
}

fn delay_text(ms: Option<i64>) -> String {
    ms.map_or("-".into(), duration)
}

/// A cause's label.
fn cause_label(c: Cause) -> &'static str {
    match c {
        Cause::AckedNotReceived => "acked, not received",
        Cause::StillQueued => "still queued",
        Cause::DroppedOnDevice => "dropped on device",
        Cause::VerifierGap => "verifier gap",
        Cause::Unexplained => "unexplained",
    }
}

/// (c) Missing locations by cause over every step; the causes that count against a step in
/// the alarm colour.
fn causes_chart(o: &mut String, f: &Findings) {
    let values: Vec<u64> = Cause::ALL.iter().map(|c| f.steps.iter().map(|s| s.causes.get(c).copied().unwrap_or(0)).sum()).collect();
    let colors = Cause::ALL.iter().map(|c| if c.is_discrepancy() { ALARM_COLOR } else { EXPLAINED_COLOR }).collect();
    let summary = Cause::ALL.iter().zip(&values).map(|(c, n)| format!("{} {}", cause_label(*c), count(*n))).collect::<Vec<_>>().join(", ");
    let frame = Frame {
        id: CHART_IDS[2],
        title: "Missing locations by cause",
        x_label: "cause (from the device's newest report)",
        y_label: "missing locations",
        summary,
    };
    let series = [Series { name: "missing locations", colors, values }];
    if series[0].total() == 0 {
        return no_data(o, &frame, "no location is missing");
    }
    let categories: Vec<String> = Cause::ALL.iter().map(|c| cause_label(*c).to_string()).collect();
    bars(o, &frame, &Axis::fitted(categories), &series, &[("counts against the step", ALARM_COLOR), ("explained", EXPLAINED_COLOR)]);
}

/// (d) The devices with the most missing locations (at most 20).
fn devices_chart(o: &mut String, f: &Findings) {
    let summary = f.worst_devices.iter().take(5).map(|(d, n)| format!("{} {}", shorten(d, 30), count(*n))).collect::<Vec<_>>().join(", ");
    let frame = Frame {
        id: CHART_IDS[3],
        title: "Missing locations by device (worst 20)",
        x_label: "missing locations (both pipelines, and seq seen on neither)",
        y_label: "device",
        summary: if summary.is_empty() { "no device is missing a location".into() } else { summary },
    };
    if f.worst_devices.is_empty() {
        return no_data(o, &frame, "no device is missing a location");
    }
    horizontal_bars(o, &frame, &f.worst_devices, ALARM_COLOR);
}

/// (e) Fallback copies first received on MQTT, over time.
fn fallbacks_chart(o: &mut String, grid: Option<&TimeGrid>) {
    let title = "Fallbacks over time (Pub/Sub-routed locations received on MQTT)";
    let total = grid.map_or(0, |g| g.fallbacks.iter().sum());
    let summary = format!("{} fallback copies", count(total));
    let Some(g) = grid.filter(|_| total > 0) else {
        return no_data(o, &Frame { id: CHART_IDS[4], title, x_label: "", y_label: "", summary }, "no fallback copy was received");
    };
    let (x_label, y_label) = (g.x_label(), g.y_label("fallback copies"));
    let series = [Series::new("fallback copies on MQTT", FALLBACK_COLOR, g.fallbacks.clone())];
    time_chart(o, &Frame { id: CHART_IDS[4], title, x_label: &x_label, y_label: &y_label, summary }, g, &series);
}

fn totals(o: &mut String, f: &Findings) {
    o.push_str(
        "<section>\n<h2>Pipelines</h2>\n<table id=\"totals\">\n<thead><tr><th class=\"l\">pipeline</th><th>messages</th><th>distinct</th>\
         <th>duplicates</th><th>malformed</th><th>late</th><th>delay p50</th><th>p95</th><th>p99</th><th>verifier's own gaps</th></tr></thead>\n<tbody>\n",
    );
    for (p, t) in [(Pipeline::Mqtt, &f.mqtt), (Pipeline::Pubsub, &f.pubsub)] {
        totals_row(o, f, p, t);
    }
    let _ = writeln!(
        o,
        "</tbody>\n</table>\n<p class=\"muted\">{} devices sent a readable migration report; {} reports could not be read.</p>\n</section>",
        count(f.devices_reporting),
        count(f.unreadable_reports)
    );
}

fn totals_row(o: &mut String, f: &Findings, p: Pipeline, t: &PipelineTotals) {
    let gap_ms: i64 = t.own_gaps.iter().map(|(from, to)| to.saturating_sub(*from).max(0)).fold(0, i64::saturating_add);
    let gaps = if t.own_gaps.is_empty() { "none".to_string() } else { format!("{} ({} in all)", count(t.own_gaps.len() as u64), duration(gap_ms)) };
    let _ = writeln!(
        o,
        "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        if p == Pipeline::Mqtt { "MQTT" } else { "Pub/Sub" },
        count(t.messages),
        count(t.distinct),
        count(t.duplicates),
        count(t.malformed),
        count(f.late.get(&p).map_or(0, |l| l.len() as u64)),
        delay_text(t.delay_ms.p50),
        delay_text(t.delay_ms.p95),
        delay_text(t.delay_ms.p99),
        gaps
    );
}

fn missing_table(o: &mut String, f: &Findings) {
    let shown = f.missing.len().min(MISSING_LISTED);
    let _ = writeln!(o, "<section>\n<h2>Missing locations ({} of {})</h2>", count(shown as u64), count(f.missing.len() as u64));
    if f.missing.is_empty() {
        o.push_str("<p>No location is missing.</p>\n</section>\n");
        return;
    }
    o.push_str(
        "<table id=\"missing\">\n<thead><tr><th class=\"l event\">eventId</th><th class=\"l\">device</th><th>seq</th><th>cfg</th>\
         <th class=\"l\">pipeline</th><th class=\"l\">cause</th></tr></thead>\n<tbody>\n",
    );
    for m in &f.missing[..shown] {
        let _ = writeln!(
            o,
            "<tr><td class=\"l mono\">{}</td><td class=\"l mono\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            if m.event_id.is_empty() { "—".to_string() } else { esc(&m.event_id) },
            esc(&m.device_id),
            m.seq,
            m.cfg,
            m.pipeline.map_or("both (seq never seen)", |p| p.as_str()),
            cause_label(m.cause)
        );
    }
    o.push_str("</tbody>\n</table>\n");
    if f.missing.len() > shown {
        let _ = writeln!(o, "<p class=\"muted\">… and {} more: <code>--json</code> lists them all.</p>", count((f.missing.len() - shown) as u64));
    }
    o.push_str("</section>\n");
}

/// How many mismatched locations and unbounded runs the page lists (`--json` lists more).
pub const MISMATCHES_LISTED: usize = 100;

fn mismatch_table(o: &mut String, f: &Findings) {
    let total: u64 = f.steps.iter().map(|s| s.mismatches).sum();
    let shown = f.mismatched.len().min(MISMATCHES_LISTED);
    let _ = writeln!(o, "<section>\n<h2>Copies whose bytes differ ({} of {})</h2>", count(shown as u64), count(total));
    if total == 0 {
        o.push_str("<p>Every copy of every location carries the same bytes.</p>\n</section>\n");
        return;
    }
    o.push_str(
        "<table id=\"mismatched\">\n<thead><tr><th class=\"l event\">eventId</th><th class=\"l\">device</th><th>seq</th><th>cfg</th>\
         <th class=\"l\">fields that differ</th><th class=\"l\">copies (digest, pipeline, count)</th></tr></thead>\n<tbody>\n",
    );
    for m in &f.mismatched[..shown] {
        let copies: Vec<String> = m.copies.iter().map(|c| format!("{} {} ×{}", esc(&c.digest), c.pipeline.as_str(), c.copies)).collect();
        let fields = match &m.fields {
            None => "not known (the copies could not be read again)".to_string(),
            Some(f) if f.is_empty() => "none: only the bytes around the values".to_string(),
            Some(f) => f.join(", "),
        };
        let _ = writeln!(
            o,
            "<tr><td class=\"l mono\">{}</td><td class=\"l mono\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l mono\">{}</td></tr>",
            esc(&m.event_id),
            esc(&m.device_id),
            m.seq,
            m.cfg,
            esc(&fields),
            copies.join("<br>")
        );
    }
    o.push_str("</tbody>\n</table>\n");
    if total > shown as u64 {
        let _ = writeln!(o, "<p class=\"muted\">… and {} more: <code>--json</code> lists up to 1,000.</p>", count(total - shown as u64));
    }
    o.push_str("</section>\n");
}

/// What an unbounded run means, for people.
pub fn unbound_label(u: Unbound) -> &'static str {
    match u {
        Unbound::NoReport => "no migration report from the device: its last locations cannot be checked",
        Unbound::OtherEpoch => "its reports are of another data directory: this run's last locations cannot be checked",
        Unbound::StartUnknown => "a report shows locations accepted, none arrived, and no earlier report says where they begin",
    }
}

fn unbounded_table(o: &mut String, f: &Findings) {
    let shown = f.unbounded.len().min(MISMATCHES_LISTED);
    let _ = writeln!(o, "<section>\n<h2>Device runs no report bounds ({} of {})</h2>", count(shown as u64), count(f.unbounded_count));
    if f.unbounded_count == 0 {
        o.push_str("<p>Every device's reports say where its runs end: a location lost at the end of a run is found.</p>\n</section>\n");
        return;
    }
    o.push_str("<table id=\"unbounded\">\n<thead><tr><th class=\"l\">device</th><th class=\"l\">epoch</th><th class=\"l\">why</th></tr></thead>\n<tbody>\n");
    for u in &f.unbounded[..shown] {
        let _ = writeln!(
            o,
            "<tr><td class=\"l mono\">{}</td><td class=\"l mono\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&u.device_id),
            u.epoch.as_deref().map_or("—".to_string(), esc),
            unbound_label(u.reason)
        );
    }
    o.push_str("</tbody>\n</table>\n");
    if f.unbounded_count > shown as u64 {
        let _ = writeln!(o, "<p class=\"muted\">… and {} more: <code>--json</code> lists up to 1,000.</p>", count(f.unbounded_count - shown as u64));
    }
    o.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::engine::{Thresholds, Verifier};
    use super::*;

    const T0: i64 = 1_790_000_000_000; // 2026-09-21T14:13:20Z

    fn location(event: u32, device: &str, seq: u64, route: &str, at: i64) -> Vec<u8> {
        let id = format!("01936f1e-7c3a-7cc1-9f0a-{event:012x}");
        let device = serde_json::to_string(device).unwrap();
        format!(
            r#"{{"eventId":"{id}","deviceId":{device},"latitude":1.0,"longitude":2.0,"timestamp":{at},"schemaVersion":2,"seq":{seq},"route":"{route}","cfg":3}}"#
        )
        .into_bytes()
    }

    /// Two devices over three minutes: `device` loses one location on Pub/Sub (it acknowledged
    /// it), another device's Pub/Sub-routed locations arrive as MQTT fallbacks too.
    fn findings(device: &str) -> Findings {
        let mut v = Verifier::new(Thresholds::default());
        for seq in 1..=30u64 {
            let at = T0 + seq as i64 * 6_000;
            let bytes = location(seq as u32, device, seq, "both", at);
            v.arrival(Pipeline::Mqtt, at + 150, &bytes);
            if seq != 7 {
                v.arrival(Pipeline::Pubsub, at + 900, &bytes);
            }
            let routed = location(100 + seq as u32, "phone-2", seq, "pubsub", at);
            v.arrival(Pipeline::Pubsub, at + 400, &routed);
            if seq % 3 == 0 {
                v.arrival(Pipeline::Mqtt, at + 60_000, &routed);
            }
        }
        v.report(&serde_json::json!({"deviceId": device, "epoch": "e", "epochStartMs": 1, "reportSeq": 1,
            "counters": {"lastSeq": 30, "dropped": {}, "deadLetters": 0}, "gauges": {"mqttDepth": 0, "pubsubDepth": 0}}));
        v.finish()
    }

    /// The markup of the chart with this id, up to its `</svg>`.
    fn chart<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no <svg id=\"{id}\">"));
        let end = start + page[start..].find("</svg>").expect("an </svg>");
        &page[start..end]
    }

    #[test]
    fn a_hostile_device_id_is_escaped_everywhere() {
        // No `"` or `\`: the verifier reads deviceId unescaped and counts such a location as malformed.
        let hostile = "<script>alert(1)</script>'><img src=x onerror=alert(2)>&\u{202E}gnp.exe";
        let f = findings(hostile);
        assert_eq!(f.missing[0].device_id, hostile, "the fixture reaches the missing list");
        assert_eq!(f.worst_devices[0].0, hostile, "and the worst devices");
        let page = page(&f);
        assert!(!page.contains("<script"), "a raw <script> tag");
        assert!(!page.contains("<img"), "a raw <img> tag");
        assert!(!page.contains('\u{202E}'), "a bidirectional override");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;\u{FFFD}gnp.exe"),
            "the id, escaped, in the table"
        );
        let devices = chart(&page, "chart-devices");
        assert!(
            devices.contains("text-anchor=\"end\">&lt;script&gt;alert(1)&lt;/script&gt;&#39;&gt;…</text>"),
            "the id, shortened and escaped, as a bar's label: {devices}"
        );
        assert_eq!(esc("a&b'c\"d\ne"), "a&amp;b&#39;c&quot;d\u{FFFD}e");
    }

    #[test]
    fn every_chart_is_on_the_page_with_data() {
        let f = findings("phone-1");
        assert_eq!(f.verdict, "fail", "the acknowledged location missing on Pub/Sub fails the step");
        let page = page(&f);
        assert!(page.contains("<p id=\"verdict\" class=\"verdict v-fail\">FAIL</p>"));
        for id in CHART_IDS {
            let svg = chart(&page, id);
            assert!(svg.contains("class=\"mark\""), "{id} draws its data");
            assert!(!svg.contains(NO_DATA), "{id} has data");
            assert!(svg.contains("<title>") && svg.contains("aria-label=\""), "{id} is labelled");
        }
        let positions: Vec<usize> = CHART_IDS.iter().map(|id| page.find(&format!("id=\"{id}\"")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "charts in page order");
        let deliveries = chart(&page, "chart-deliveries");
        assert_eq!(deliveries.matches("fill=\"#CC79A7\"><title>").count(), 4, "fallbacks in 4 minutes: {deliveries}");
        assert!(deliveries.contains("<title>14:15 · fallback copies on MQTT: 3</title>"), "{deliveries}");
        assert!(deliveries.contains("(UTC, 2026-09-21)"), "the day in the x label");
        assert!(chart(&page, "chart-causes").contains("<title>acked, not received · missing locations: 1</title>"));
        assert!(page.contains("<td class=\"l\">pubsub</td><td class=\"l\">acked, not received</td>"), "the missing location listed");
    }

    #[test]
    fn empty_findings_show_no_data_in_every_chart() {
        let page = page(&Verifier::new(Thresholds::default()).finish());
        for id in CHART_IDS {
            let svg = chart(&page, id);
            assert!(svg.contains("class=\"no-data\"") && svg.contains(NO_DATA), "{id}: {svg}");
            assert!(!svg.contains("class=\"mark\""), "{id} draws nothing");
        }
        assert!(page.contains("INSUFFICIENT") && page.contains("No location was received"));
    }

    #[test]
    fn the_page_references_nothing_outside_itself() {
        let page = page(&findings("phone-1"));
        for needle in ["http://", "https://", "src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!page.contains(needle), "{needle} on the page");
        }
        assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\""));
    }

    #[test]
    fn a_long_or_sparse_timeline_fits_an_even_grid() {
        let minute = |i: i64, mqtt: u64| Minute { start_ms: T0 / 60_000 * 60_000 + i * 60_000, mqtt, pubsub: 0, fallbacks: 0 };
        let g = TimeGrid::new(&[minute(0, 1), minute(3, 2)]).unwrap();
        assert_eq!((g.minutes, g.mqtt.clone()), (1, vec![1, 0, 0, 2]), "empty minutes count zero");
        let long = TimeGrid::new(&[minute(0, 1), minute(1_439, 5), minute(1_440, 7)]).unwrap();
        assert_eq!((long.minutes, long.mqtt.len()), (3, 481));
        assert_eq!((long.mqtt[0], long.mqtt[479], long.mqtt[480]), (1, 5, 7));
        let outlier = TimeGrid::new(&[Minute { start_ms: 0, mqtt: 1, pubsub: 0, fallbacks: 0 }, minute(0, 4)]).unwrap();
        assert!(outlier.mqtt.len() as i128 <= MAX_SLOTS && outlier.mqtt.iter().sum::<u64>() == 5, "a receivedAtMs of 0 cannot blow up the grid");
        assert_eq!(TimeGrid::new(&[]), None);
        let extremes = [i64::MIN, i64::MAX].map(|ms| Minute { start_ms: ms / 60_000 * 60_000, mqtt: 1, pubsub: 1, fallbacks: 1 });
        let f = Findings { timeline: extremes.to_vec(), ..Findings::default() };
        assert!(chart(&page(&f), "chart-fallbacks").contains("class=\"mark\""), "any receivedAtMs draws");
        let three_hours = TimeGrid::new(&[minute(0, 1), minute(179, 1)]).unwrap().axis();
        assert_eq!((three_hours.categories.len(), three_hours.categories[0].as_str()), (180, "14:13"));
        assert_eq!(three_hours.ticks[0], (7, "14:20".to_string()), "labels at round times");
        assert!(three_hours.ticks.iter().all(|(_, t)| t.ends_with('0')) && three_hours.ticks.len() == 18, "{:?}", three_hours.ticks);
        assert_eq!(utc(T0), ("2026-09-21".to_string(), "14:13".to_string()));
        assert_eq!(utc(951_782_400_000).0, "2000-02-29");
    }

    #[test]
    fn scales_and_labels_read_well() {
        assert_eq!(Scale::new(0), Scale { top: 1, step: 1 });
        assert_eq!(Scale::new(7), Scale { top: 8, step: 2 });
        assert_eq!(Scale::new(480), Scale { top: 500, step: 100 });
        assert_eq!(Scale::new(1_234), Scale { top: 1_500, step: 500 });
        assert_eq!((count(2_995), count(1_000_000), compact(12_500), compact(3_500_000)), ("2,995".into(), "1,000,000".into(), "12.5k".into(), "3.5M".into()));
        assert_eq!(delay_labels(&[100, 2_500, 60_000, 3_600_000, i64::MAX]), ["≤ 100 ms", "≤ 2.5 s", "≤ 1 min", "≤ 1 h", "> 1 h"]);
    }
}
