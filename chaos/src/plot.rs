//! Benchmark pictures: SVG charts the benchmarks write beside the tables
//! they print (`--plot FILE`), so docs/benchmarks.md shows both from one
//! run. Plain SVG text, no dependency: a chart is a handful of rectangles
//! and labels.

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

/// A chart of `pairs`: per measure two bars, `names.0`'s and `names.1`'s,
/// each measure scaled to its larger value (the measures have different
/// units), with the values written at the bars' ends; lower is better.
pub fn paired_bars(title: &str, names: (&str, &str), pairs: &[Pair]) -> String {
    let height = 60.0 + pairs.len() as f64 * (2.0 * BAR + 2.0 * GAP) + 30.0;
    // About 8.5 pixels a character of the bold title.
    let width = (LABEL_WIDTH + BAR_WIDTH + 110.0).max(title.chars().count() as f64 * 8.5 + 20.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
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
}
