//! Benchmark pictures: SVG charts the benchmarks write beside the tables
//! they print (`--plot FILE`, `--cdf FILE`), so docs/benchmarks.md shows
//! both from one run. Plain SVG text, no dependency: a chart is a handful
//! of rectangles, lines and labels. [`paired_bars`] compares two
//! contenders measure by measure; [`cdf`] draws how several contenders'
//! samples are distributed.

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
        let _ = writeln!(
            svg,
            "<line x1=\"{CDF_LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4:.2}</text>",
            y(share),
            CDF_LEFT + CDF_WIDTH,
            CDF_LEFT - 6.0,
            y(share) + 4.0,
            share
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
