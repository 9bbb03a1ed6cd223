//! The sweep chart (`--chart FILE.svg`): throughput and p99 latency against
//! concurrency (log scale), store (solid) and baseline (dashed), for `get`
//! and `upsert`. Drawn with plotters' SVG backend, whose text needs no
//! system fonts.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::mix::Op;
use super::report::{OpReport, RunReport};

/// Colour of each charted operation.
const SERIES: [(Op, RGBColor); 2] = [
    (Op::Get, RGBColor(31, 119, 180)),
    (Op::Upsert, RGBColor(214, 39, 40)),
];

/// Draws the chart of `runs` (a sweep) into `path`.
pub fn draw(runs: &[RunReport], path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    panel(&left, runs, "Throughput", "operations per second", |o| {
        o.ops_per_s
    })?;
    panel(&right, runs, "Latency, 99th percentile", "p99 (ms)", |o| {
        o.p99_us / 1000.0
    })?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One side of the chart: `value` of each charted operation against
/// concurrency.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    runs: &[RunReport],
    title: &str,
    y_label: &str,
    value: impl Fn(&OpReport) -> f64,
) -> anyhow::Result<()> {
    // (operation, target, points) for every line that has data.
    let mut lines = Vec::new();
    for (op, colour) in SERIES {
        for target in ["store", "baseline"] {
            let mut points: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|run| {
                    let phase = match target {
                        "store" => Some(&run.store),
                        _ => run.baseline.as_ref(),
                    }?;
                    let report = phase.operations.get(op.name())?;
                    Some((run.concurrency as f64, value(report)))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !points.is_empty() {
                lines.push((op, colour, target, points));
            }
        }
    }
    let all = lines.iter().flat_map(|(.., points)| points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let y_max = all.map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..x_max).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (tasks)")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (op, colour, target, points) in lines {
        let label = format!("{} {}", op.name(), target);
        let style = colour.stroke_width(2);
        if target == "store" {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))?
                .label(label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], style)
                        + PathElement::new(vec![(10, 0), (17, 0)], style)
                        + PathElement::new(vec![(20, 0), (24, 0)], style)
                });
        }
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
