//! Benchmark pictures: SVG charts the benchmarks write beside the tables
//! they print (`--plot FILE`, `--cdf FILE`), so docs/benchmarks.md shows
//! both from one run. Plain SVG text, no dependency: a chart is a handful
//! of rectangles, lines and labels. [`paired_bars`] compares two
//! contenders measure by measure; [`cdf`] draws how several contenders'
//! samples are distributed; [`timeline`] draws one failover as the client
//! and the segment saw it.

use std::fmt::Write as _;

/// One measure compared between two contenders.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// What is measured, with its unit (`"withdraw all, s"`).
    pub measure: String,
    /// The first contender's value.
    pub first: f64,
    /// The second contender's value.
    pub second: f64,
}

/// Bar height and the gaps around it, in pixels.
const BAR: f64 = 18.0;
const GAP: f64 = 10.0;
const LABEL_WIDTH: f64 = 230.0;
const BAR_WIDTH: f64 = 380.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An SVG of `width` x `height` pixels on white, with `title` at its top.
fn header(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    )
}

/// A light horizontal line across `span` at `y`, with `label` at its left.
fn labelled_rule(svg: &mut String, span: (f64, f64), y: f64, label: &str) {
    let _ = writeln!(
        svg,
        "<line x1=\"{0:.1}\" y1=\"{2:.1}\" x2=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#e2e8f0\"/>\
         <text x=\"{3:.1}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>",
        span.0,
        span.1,
        y,
        span.0 - 7.0,
        y + 4.0,
        escape(label)
    );
}

/// A chart of `pairs`: per measure two bars, `names.0`'s and `names.1`'s,
/// each measure scaled to its larger value (the measures have different
/// units), with the values written at the bars' ends; lower is better.
pub fn paired_bars(title: &str, names: (&str, &str), pairs: &[Pair]) -> String {
    let height = 60.0 + pairs.len() as f64 * (2.0 * BAR + 2.0 * GAP) + 30.0;
    // About 8.5 pixels a character of the bold title.
    let width = (LABEL_WIDTH + BAR_WIDTH + 110.0).max(title.chars().count() as f64 * 8.5 + 20.0);
    let mut svg = header(width, height, title);
    let colors = ("#2b6cb0", "#a0aec0");
    let _ = write!(
        svg,
        "<rect x=\"10\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"28\" y=\"45\">{}</text>\n\
         <rect x=\"150\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"168\" y=\"45\">{}</text>\n\
         <text x=\"300\" y=\"45\" fill=\"#555\">(lower is better; each measure scaled to its larger value)</text>\n",
        colors.0,
        escape(names.0),
        colors.1,
        escape(names.1)
    );
    let mut y = 60.0;
    for pair in pairs {
        let top = pair.first.max(pair.second).max(f64::MIN_POSITIVE);
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{}\">{}</text>",
            y + BAR + 4.0,
            escape(&pair.measure)
        );
        for (value, color) in [(pair.first, colors.0), (pair.second, colors.1)] {
            let length = (value / top * BAR_WIDTH).max(1.0);
            let _ = writeln!(
                svg,
                "<rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length:.1}\" height=\"{BAR}\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                LABEL_WIDTH + length + 6.0,
                y + BAR - 4.0,
                format_value(value)
            );
            y += BAR;
        }
        y += 2.0 * GAP;
    }
    svg.push_str("</svg>\n");
    svg
}

/// One contender's samples for [`cdf`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// The samples (any order), in `unit`s.
    pub samples: Vec<f64>,
}

/// Plot area of [`cdf`], in pixels.
const CDF_LEFT: f64 = 60.0;
const CDF_TOP: f64 = 50.0;
const CDF_WIDTH: f64 = 520.0;
const CDF_HEIGHT: f64 = 260.0;
const COLORS: [&str; 6] = ["#2b6cb0", "#c05621", "#718096", "#2f855a", "#6b46c1", "#b83280"];

/// The empirical cumulative distribution of each series' samples, as
/// steps: at x, the share of the samples at most x (lower and further left
/// is better), with the median of each in the legend. The x axis runs from
/// 0 to the largest sample, `unit` names it.
pub fn cdf(title: &str, unit: &str, series: &[Series]) -> String {
    let largest = series
        .iter()
        .flat_map(|s| s.samples.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    // A round end for the axis: 1, 2 or 5 times a power of ten.
    let magnitude = 10f64.powf(largest.log10().floor());
    let top = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|t| *t >= largest)
        .unwrap_or(largest);
    let x = |v: f64| CDF_LEFT + v / top * CDF_WIDTH;
    let y = |share: f64| CDF_TOP + (1.0 - share) * CDF_HEIGHT;
    let height = CDF_TOP + CDF_HEIGHT + 50.0 + 18.0 * series.len() as f64;
    let width = (CDF_LEFT + CDF_WIDTH + 40.0).max(title.chars().count() as f64 * 8.5 + 20.0);
    let mut svg = header(width, height, title);
    // Grid: quarters of the share, tenths of the axis.
    for i in 0..=4 {
        let share = f64::from(i) / 4.0;
        labelled_rule(
            &mut svg,
            (CDF_LEFT, CDF_LEFT + CDF_WIDTH),
            y(share),
            &format!("{share:.2}"),
        );
    }
    for i in 0..=10 {
        let value = top * f64::from(i) / 10.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{CDF_TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(value),
            CDF_TOP + CDF_HEIGHT,
            CDF_TOP + CDF_HEIGHT + 16.0,
            format_value(value)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">share of runs at most x</text>",
        CDF_LEFT + CDF_WIDTH / 2.0,
        CDF_TOP + CDF_HEIGHT + 34.0,
        escape(unit),
        CDF_TOP + CDF_HEIGHT / 2.0,
        CDF_TOP + CDF_HEIGHT / 2.0
    );
    for (i, one) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut samples = one.samples.clone();
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        // Steps: flat at each share, up at each sample.
        let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
        for (k, value) in samples.iter().enumerate() {
            let _ = write!(
                points,
                " {0:.1},{1:.1} {0:.1},{2:.1}",
                x(*value),
                y(k as f64 / n),
                y((k + 1) as f64 / n)
            );
        }
        let _ = write!(points, " {:.1},{:.1}", x(top), y(1.0));
        let _ = writeln!(
            svg,
            "<polyline points=\"{points}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>"
        );
        let median = samples.get(samples.len().saturating_sub(1) / 2).copied();
        let legend_y = CDF_TOP + CDF_HEIGHT + 52.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{CDF_LEFT}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} (median {}, {} runs)</text>",
            legend_y - 10.0,
            CDF_LEFT + 18.0,
            legend_y,
            escape(&one.name),
            median.map_or("-".to_owned(), format_value),
            samples.len()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One failover as the client and the segment saw it, for [`timeline`]:
/// times in seconds from the fault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// The nodes, one lane each, top to bottom.
    pub lanes: Vec<String>,
    /// Probes answered: when sent, and by which lane.
    pub answered: Vec<(f64, usize)>,
    /// Probes no one answered: when sent.
    pub unanswered: Vec<f64>,
    /// Announcements of the address on the segment (gratuitous ARP, ARP
    /// replies): when, and by which lane.
    pub announcements: Vec<(f64, usize)>,
    /// Moments marked with a vertical line: when, and what.
    pub marks: Vec<(f64, String)>,
}

/// Timeline plot area, in pixels.
const LANE: f64 = 34.0;
const TIMELINE_LEFT: f64 = 130.0;
const TIMELINE_WIDTH: f64 = 560.0;

/// One failover over time, from `from` to `to` seconds around the fault:
/// a lane per node with a dot for every probe it answered, a lane of
/// probes no one answered, a tick for every announcement of the address a
/// node made on the segment, and the marked moments as vertical lines.
pub fn timeline(title: &str, line: &Timeline, from: f64, to: f64) -> String {
    let span = (to - from).max(f64::MIN_POSITIVE);
    let x = |t: f64| TIMELINE_LEFT + (t - from) / span * TIMELINE_WIDTH;
    let top = 60.0;
    let lanes = line.lanes.len() + 1;
    let lane_y = |lane: usize| top + LANE * lane as f64 + LANE / 2.0;
    let bottom = top + LANE * lanes as f64;
    let height = bottom + 80.0;
    let width = (TIMELINE_LEFT + TIMELINE_WIDTH + 30.0).max(title.chars().count() as f64 * 8.5 + 20.0);
    let mut svg = header(width, height, title);
    let inside = |t: f64| (from..=to).contains(&t);
    for (lane, name) in line.lanes.iter().map(String::as_str).chain(["no answer"]).enumerate() {
        labelled_rule(
            &mut svg,
            (TIMELINE_LEFT, TIMELINE_LEFT + TIMELINE_WIDTH),
            lane_y(lane),
            name,
        );
    }
    // Ticks every tenth of the span, on a round step.
    let step = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(span / 10.0);
    let mut tick = (from / step).ceil() * step;
    while tick <= to + 1e-9 {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#edf2f7\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3:.2}</text>",
            x(tick),
            bottom,
            bottom + 16.0,
            tick
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds from the fault</text>",
        TIMELINE_LEFT + TIMELINE_WIDTH / 2.0,
        bottom + 34.0
    );
    for (i, (at, what)) in line.marks.iter().filter(|(t, _)| inside(*t)).enumerate() {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#c53030\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{3:.1}\" y=\"{4:.1}\" fill=\"#c53030\">{5}</text>",
            x(*at),
            top - 4.0 - 14.0 * (i % 2) as f64,
            bottom,
            x(*at) + 3.0,
            top - 8.0 - 14.0 * (i % 2) as f64,
            escape(what)
        );
    }
    for (at, lane) in line.answered.iter().filter(|(t, _)| inside(*t)) {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#2b6cb0\"/>",
            x(*at),
            lane_y(*lane)
        );
    }
    let none = line.lanes.len();
    for at in line.unanswered.iter().filter(|t| inside(**t)) {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"none\" stroke=\"#718096\"/>",
            x(*at),
            lane_y(none)
        );
    }
    for (at, lane) in line.announcements.iter().filter(|(t, _)| inside(*t)) {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#dd6b20\" stroke-width=\"2\"/>",
            x(*at),
            lane_y(*lane) - 11.0,
            lane_y(*lane) + 11.0
        );
    }
    let legend = bottom + 56.0;
    let _ = writeln!(
        svg,
        "<circle cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"3\" fill=\"#2b6cb0\"/><text x=\"{2:.1}\" y=\"{3:.1}\">probe answered (every 10 ms)</text>\
         <line x1=\"{4:.1}\" y1=\"{5:.1}\" x2=\"{4:.1}\" y2=\"{6:.1}\" stroke=\"#dd6b20\" stroke-width=\"2\"/><text x=\"{7:.1}\" y=\"{3:.1}\">the node announces the address (gratuitous ARP, ARP reply)</text>",
        TIMELINE_LEFT,
        legend - 4.0,
        TIMELINE_LEFT + 8.0,
        legend,
        TIMELINE_LEFT + 220.0,
        legend - 11.0,
        legend + 3.0,
        TIMELINE_LEFT + 228.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// A value with three significant digits.
fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_puts_each_probe_in_its_node_lane_and_leaves_out_what_is_outside() {
        let line = Timeline {
            lanes: vec!["node1".into(), "node2".into()],
            answered: vec![(-0.1, 0), (0.3, 1), (5.0, 1)],
            unanswered: vec![0.1],
            announcements: vec![(0.29, 1)],
            marks: vec![(0.0, "crash".into()), (0.28, "declared <down>".into())],
        };
        let svg = timeline("one failover", &line, -0.2, 0.5);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Two answered probes inside the window (the third is after it), one
        // unanswered, one announcement, two marks, and the legend's dot.
        assert_eq!(svg.matches("fill=\"#2b6cb0\"/>").count(), 3, "{svg}");
        assert_eq!(svg.matches("stroke=\"#718096\"/>").count(), 1);
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        assert!(svg.contains("declared &lt;down&gt;") && svg.contains(">node2<") && svg.contains(">no answer<"));
        // The answer by node2 at 0.3 s: lane 1, x at 0.5/0.7 of the width.
        let x = TIMELINE_LEFT + 0.5 / 0.7 * TIMELINE_WIDTH;
        assert!(
            svg.contains(&format!("cx=\"{x:.1}\" cy=\"{:.1}\"", 60.0 + LANE * 1.5)),
            "{svg}"
        );
    }

    #[test]
    fn bars_are_scaled_per_measure_and_labelled() {
        let svg = paired_bars(
            "a <title>",
            ("meshlb", "gobgpd"),
            &[
                Pair {
                    measure: "withdraw, s".into(),
                    first: 0.2,
                    second: 0.4,
                },
                Pair {
                    measure: "RSS, MiB".into(),
                    first: 120.0,
                    second: 60.0,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;title&gt;"));
        // The larger of each pair spans the whole bar width; the other half.
        assert_eq!(svg.matches("width=\"380.0\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("width=\"190.0\"").count(), 2, "{svg}");
        assert!(svg.contains(">0.200<") && svg.contains(">120<"));
    }

    #[test]
    fn a_cdf_steps_up_at_each_sample_on_a_round_axis() {
        let svg = cdf(
            "crash",
            "outage, s",
            &[
                Series {
                    name: "a".into(),
                    samples: vec![0.8, 0.2, 0.4, 0.6],
                },
                Series {
                    name: "b & c".into(),
                    samples: vec![1.7],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // The axis ends at 2 (the largest sample, 1.7, rounded up).
        assert!(svg.contains(">2.000<") && !svg.contains(">5.000<"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Four samples: four steps of a quarter, each two points.
        let first = svg.split("<polyline points=\"").nth(1).unwrap();
        let points = first.split('"').next().unwrap().split(' ').count();
        assert_eq!(points, 1 + 2 * 4 + 1);
        assert!(svg.contains("a (median 0.400, 4 runs)"), "{svg}");
        assert!(svg.contains("b &amp; c (median 1.700, 1 runs)"), "{svg}");
    }
}
