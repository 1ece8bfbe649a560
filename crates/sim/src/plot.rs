//! Enrolment and completion over virtual time: an SVG chart and a terminal sparkline.

use std::fmt::Write;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` squeezed into `width` characters of block bars (the sum of each group).
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let groups = width.min(values.len());
    let sums: Vec<f64> = (0..groups)
        .map(|g| {
            let (a, b) = (g * values.len() / groups, (g + 1) * values.len() / groups);
            values[a..b].iter().sum()
        })
        .collect();
    let max = sums.iter().cloned().fold(0.0, f64::max);
    sums.iter()
        .map(|v| {
            if max <= 0.0 || *v <= 0.0 {
                ' '
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

/// One line of the chart: a name and cumulative values per bin.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The most characters of a series' name the legend shows: what fits the 190 px beside the
/// chart at 12 px (studynames run to 128); the whole name is the label's `<title>`.
const LEGEND_CHARS: usize = 26;

/// `name`, cut to [`LEGEND_CHARS`] with an ellipsis when longer.
fn legend_label(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS {
        return name.to_string();
    }
    let cut: String = name.chars().take(LEGEND_CHARS - 1).collect();
    format!("{cut}…")
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A self-contained SVG: cumulative enrolment (solid) and completion (dashed) per flight
/// over `days`.
pub fn svg(title: &str, days: f64, enrolled: &[Series], completed: &[Series]) -> String {
    let (w, h, left, bottom, top, right) = (900.0, 420.0, 70.0, 40.0, 40.0, 230.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max = enrolled
        .iter()
        .chain(completed)
        .flat_map(|s| s.values.iter().cloned())
        .fold(1.0, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = top + ph - ph * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            left - 6.0,
            y + 4.0,
            v.round(),
            left + pw
        );
    }
    let ticks = days.ceil().clamp(1.0, 10.0) as usize;
    for i in 0..=ticks {
        let d = days * i as f64 / ticks as f64;
        let x = left + pw * i as f64 / ticks as f64;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{}" text-anchor="middle">day {:.1}</text>"#,
            top + ph + 18.0,
            d
        );
    }
    let mut legend = top;
    for (k, (series, dash)) in enrolled
        .iter()
        .map(|s| (s, ""))
        .chain(completed.iter().map(|s| (s, r#" stroke-dasharray="5,3""#)))
        .enumerate()
    {
        let colour = COLOURS[k % enrolled.len().max(1) % COLOURS.len()];
        let n = series.values.len().max(1) as f64;
        let points: Vec<String> = series
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    left + pw * (i as f64 + 1.0) / n,
                    top + ph - ph * v / max
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{legend}" x2="{}" y2="{legend}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}"><title>{}</title>{}</text>"#,
            left + pw + 10.0,
            left + pw + 34.0,
            left + pw + 40.0,
            legend + 4.0,
            escape(&series.name),
            escape(&legend_label(&series.name))
        );
        legend += 18.0;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_largest() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 4), " ▃▅█");
        assert_eq!(sparkline(&[1.0; 10], 5).chars().count(), 5);
    }

    #[test]
    fn svg_escapes_names() {
        let s = svg(
            "t",
            2.0,
            &[Series {
                name: "<a>".into(),
                values: vec![1.0, 2.0],
            }],
            &[],
        );
        assert!(s.contains("&lt;a&gt;") && s.starts_with("<svg"));
    }

    #[test]
    fn long_names_are_cut_in_the_legend_and_whole_in_its_title() {
        let name = format!("a-very-long-studyname-{}", "x".repeat(100));
        let s = svg(
            "t",
            2.0,
            &[Series {
                name: name.clone(),
                values: vec![1.0],
            }],
            &[],
        );
        let shown = format!("{}…</text>", &name[..LEGEND_CHARS - 1]);
        assert!(s.contains(&shown), "{s}");
        assert!(s.contains(&format!("<title>{name}</title>")), "{s}");
        assert_eq!(legend_label("short"), "short");
    }
}
