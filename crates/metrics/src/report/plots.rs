//! SVG plots, one set per (model, task, decoding) with one series per precision policy: accuracy per
//! configuration (with 95% Wilson intervals), the spread of response lengths, where token streams
//! diverge, and the top-1 probability spread per position.
//!
//! An empty plot (nothing diverged, a single run) is still written, with the reason in its caption, so
//! the set of files does not depend on the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{io_err, Error, Result};
use crate::report::{GroupReport, Report, Top1Axis};

const SIZE: (u32, u32) = (960, 540);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// A file-name-safe rendering of a set's identity.
fn slug(parts: &[&str]) -> String {
    let joined = parts.join("_");
    let mut s: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.trim_matches('_').to_lowercase()
}

pub(crate) fn write_plots(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut sets: BTreeMap<(String, String, String), Vec<&GroupReport>> = BTreeMap::new();
    for g in &report.groups {
        if g.metrics().is_some() {
            sets.entry((g.model.clone(), g.task.clone(), g.decoding.clone()))
                .or_default()
                .push(g);
        }
    }
    if sets.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut written = Vec::new();
    for ((model, task, decoding), groups) in sets {
        let title = format!("{model} · {task} · {decoding}");
        let s = slug(&[&model, &task, &decoding]);
        let plots: [(&str, PlotFn); 4] = [
            ("accuracy", accuracy_plot),
            ("length_spread", length_plot),
            ("divergence", divergence_plot),
            ("top1_std", top1_plot),
        ];
        for (kind, draw) in plots {
            let path = dir.join(format!("{kind}_{s}.svg"));
            let mut svg = String::new();
            draw(&mut svg, &title, &groups, report.top1_axis).map_err(|reason| Error::Plot {
                path: path.clone(),
                reason,
            })?;
            std::fs::write(&path, svg).map_err(io_err(&path))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Horizontal offset of series `i` of `n` around a category's centre.
fn jitter(i: usize, n: usize) -> f64 {
    (i as f64 - (n as f64 - 1.0) / 2.0) * 0.04
}

fn integer_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

type PlotFn = fn(&mut String, &str, &[&GroupReport], Top1Axis) -> std::result::Result<(), String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

/// Accuracy of every run, x = configuration, one line per policy, whiskers = 95% interval.
fn accuracy_plot(
    svg: &mut String,
    title: &str,
    groups: &[&GroupReport],
    _axis: Top1Axis,
) -> std::result::Result<(), String> {
    let mut labels: Vec<String> = Vec::new();
    for g in groups {
        for r in &g.runs {
            if !labels.contains(&r.label) {
                labels.push(r.label.clone());
            }
        }
    }
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let n = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Accuracy per configuration — {title}"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(70)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..100f64)
        .map_err(e)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-3 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(labels.len().max(1))
        .x_label_formatter(&label_of)
        .x_desc("configuration")
        .y_desc("accuracy (%)")
        .disable_x_mesh()
        .draw()
        .map_err(e)?;
    for (i, g) in groups.iter().enumerate() {
        let c = color(i);
        let mut pts = Vec::new();
        let mut bars = Vec::new();
        for r in &g.runs {
            let Some(s) = &r.stats else { continue };
            let Some(&acc) = s.accuracy.value() else {
                continue;
            };
            // Shift each policy a little so equal accuracies do not hide each other's whiskers.
            let x = labels.iter().position(|l| l == &r.label).unwrap_or(0) as f64
                + jitter(i, groups.len());
            pts.push((x, acc * 100.0));
            if let Some(ci) = s.accuracy_ci95.value() {
                bars.push((x, ci.lo * 100.0, ci.hi * 100.0));
            }
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(g.policy_label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(e)?;
        chart
            .draw_series(
                bars.iter().map(|&(x, lo, hi)| {
                    PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1))
                }),
            )
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// Per-sample length standard deviation across runs, sorted descending, one line per policy.
fn length_plot(
    svg: &mut String,
    title: &str,
    groups: &[&GroupReport],
    _axis: Top1Axis,
) -> std::result::Result<(), String> {
    let series: Vec<(String, Vec<f64>)> = groups
        .iter()
        .filter_map(|g| {
            let m = g.metrics()?;
            let mut v = m.series.length_std.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            Some((g.policy_label(), v))
        })
        .collect();
    let caption = format!("Response-length spread — {title}");
    let axes = LineAxes {
        empty_reason: "needs at least 2 runs",
        x_desc: "sample, by length std (largest first)",
        y_desc: "std of response length (tokens)",
        stroke: 2,
        log_y: false,
    };
    policy_lines(svg, &caption, &axes, &series)
}

/// Histogram of Div_Index over diverging samples; bars of the policies side by side in each bin.
fn divergence_plot(
    svg: &mut String,
    title: &str,
    groups: &[&GroupReport],
    _axis: Top1Axis,
) -> std::result::Result<(), String> {
    let series: Vec<(String, &Vec<usize>)> = groups
        .iter()
        .filter_map(|g| Some((g.policy_label(), &g.metrics()?.series.divergence_positions)))
        .collect();
    let max_pos = series.iter().flat_map(|(_, v)| v.iter().copied()).max();
    let n_bins = 20usize;
    let width = max_pos.map_or(1, |m| (m + 1).div_ceil(n_bins)).max(1);
    let counts: Vec<Vec<u32>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u32; n_bins];
            for &p in v.iter() {
                c[(p / width).min(n_bins - 1)] += 1;
            }
            c
        })
        .collect();
    let max_count = counts.iter().flatten().copied().max().unwrap_or(0);
    let caption = match max_pos {
        None => format!("Divergence positions — {title} (no sample diverges)"),
        Some(_) => format!("Divergence positions (Div_Index) — {title}"),
    };
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let x_max = (n_bins * width) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..f64::from(max_count.max(1)) * 1.1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "token position of first divergence (bins of {width})"
        ))
        .x_label_formatter(&integer_label)
        .y_desc("samples")
        .disable_x_mesh()
        .draw()
        .map_err(e)?;
    let k = series.len().max(1) as f64;
    for (i, ((policy, _), c_counts)) in series.iter().zip(&counts).enumerate() {
        let c = color(i);
        let bar_w = width as f64 / k;
        chart
            .draw_series(
                c_counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &n)| n > 0)
                    .map(|(b, &n)| {
                        let x0 = (b * width) as f64 + i as f64 * bar_w;
                        Rectangle::new([(x0, 0.0), (x0 + bar_w * 0.9, f64::from(n))], c.filled())
                    }),
            )
            .map_err(e)?
            .label(policy.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    if max_pos.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// Mean top-1 probability std per position (before divergence), in units of 1e-4.
fn top1_plot(
    svg: &mut String,
    title: &str,
    groups: &[&GroupReport],
    axis: Top1Axis,
) -> std::result::Result<(), String> {
    let series: Vec<(String, Vec<f64>)> = groups
        .iter()
        .filter_map(|g| {
            let per_position = &g.metrics()?.series.top1_std_by_position;
            Some((
                g.policy_label(),
                per_position.iter().map(|x| x * 1e4).collect(),
            ))
        })
        .collect();
    let positive: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|&y| y > 0.0)
        .collect();
    let log = match axis {
        Top1Axis::Linear => false,
        Top1Axis::Log => true,
        Top1Axis::Auto => {
            let (lo, hi) = positive
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), &y| {
                    (lo.min(y), hi.max(y))
                });
            !positive.is_empty() && hi / lo >= 100.0
        }
    };
    let mut caption = format!("Top-1 probability std per position — {title}");
    let zeros = series.iter().map(|(_, v)| v.len()).sum::<usize>() - positive.len();
    if log && zeros > 0 {
        caption.push_str(&format!(" ({zeros} exact zeros not drawn)"));
    }
    let axes = LineAxes {
        empty_reason: "needs 2 runs and shared tokens",
        x_desc: "token position (before divergence)",
        y_desc: if log {
            "std of top-1 probability (x1e-4, log scale)"
        } else {
            "std of top-1 probability (x1e-4)"
        },
        stroke: 1,
        log_y: log,
    };
    policy_lines(svg, &caption, &axes, &series)
}

/// Labels and line width of a [`policy_lines`] chart.
struct LineAxes {
    /// Said in the caption when no policy has a point.
    empty_reason: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    stroke: u32,
    /// Plot log10 of the values (positive ones only) and label the axis in powers of ten.
    log_y: bool,
}

/// One line per policy over an integer x axis (the length and top-1 plots differ only in data and
/// labels).
fn policy_lines(
    svg: &mut String,
    caption: &str,
    axes: &LineAxes,
    series: &[(String, Vec<f64>)],
) -> std::result::Result<(), String> {
    let max_n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    // On a log axis each point is (x, log10 y), zeros left out.
    let points = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .filter(|(_, &y)| !axes.log_y || y > 0.0)
            .map(|(x, &y)| (x as f64, if axes.log_y { y.log10() } else { y }))
            .collect()
    };
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| points(v).into_iter().map(|(_, y)| y))
        .collect();
    let max_y = all.iter().copied().fold(0.0, f64::max);
    let y_range = if axes.log_y && !all.is_empty() {
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min).floor();
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max).ceil();
        lo..hi.max(lo + 1.0)
    } else {
        // Up to the largest value, however small: a fixed floor of 1 would press a reproducible
        // policy's top-1 std (1e-8, 1e-4 in the plot's unit) flat onto zero.
        0f64..if max_y > 0.0 { max_y * 1.05 } else { 1.0 }
    };
    let caption = if max_n == 0 {
        format!("{caption} (no data: {})", axes.empty_reason)
    } else {
        caption.to_string()
    };
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..(max_n.max(2) - 1) as f64, y_range)
        .map_err(e)?;
    let power_of_ten = |y: &f64| format!("1e{y:.0}");
    // Ticks of an axis below 0.01 would print as 0.000 with fixed decimals.
    let scientific = |y: &f64| {
        if *y == 0.0 {
            "0".to_string()
        } else {
            format!("{y:.1e}")
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(axes.x_desc)
        .x_label_formatter(&integer_label)
        .y_desc(axes.y_desc);
    if axes.log_y {
        mesh.y_label_formatter(&power_of_ten);
    } else if max_y > 0.0 && max_y < 0.01 {
        mesh.y_label_formatter(&scientific);
    }
    mesh.draw().map_err(e)?;
    for (i, (policy, v)) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(points(v), c.stroke_width(axes.stroke)))
            .map_err(e)?
            .label(policy.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if max_n > 0 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(
            slug(&[
                "deepseek-ai/DeepSeek-R1",
                "math500",
                "greedy, max_tokens 256"
            ]),
            "deepseek-ai_deepseek-r1_math500_greedy_max_tokens_256"
        );
    }
}
