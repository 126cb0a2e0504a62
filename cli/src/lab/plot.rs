//! The percentile plot of the rows' latency distributions (plotters, SVG or PNG).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::config::trim_float;
use super::row::Row;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Draws the percentile plot of the rows' processing-time latency (and event-time latency,
/// dashed, where measured) to `path`: SVG or PNG by its extension. The x axis is the
/// percentile on HDR's log scale (0 .. 99.99: the distance to 100% shrinks tenfold per step),
/// the y axis latency in milliseconds on a log scale.
pub fn plot(rows: &[Row], title: &str, path: &Path) -> Result<(), String> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let size = (1280, 650);
    let fail = |e: String| format!("cannot draw {}: {e}", path.display());
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(rows, title, &root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(rows, title, &root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(format!(
            "cannot draw {}: the plot is written as .svg or .png",
            path.display()
        )),
    }
}

/// Points of a percentile curve: (1 / (1 - q), latency in ms) for q from 0 to 99.99%.
pub(crate) fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=400)
        .map(|k| {
            let x = 10f64.powf(k as f64 / 100.0);
            let q = 1.0 - 1.0 / x;
            (x, (h.value_at_quantile(q).max(1) as f64) / 1e3)
        })
        .collect()
}

pub(crate) fn draw<DB: DrawingBackend>(
    rows: &[Row],
    title: &str,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    // The chart on the left, the legend beside it, so no curve is hidden.
    let (plot_area, legend_area) = root.split_horizontally(880);
    // (legend, points, dashed, colour): a configuration's processing and event-time curves
    // share its colour (event time dashed); the legend gives each curve's maximum and marks a
    // configuration that did not keep up with its offered rate.
    type Series = (String, Vec<(f64, f64)>, bool, usize);
    let mut series: Vec<Series> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let behind = match r.kept_up() {
            Some(false) => ", DID NOT KEEP UP",
            _ => "",
        };
        let max = |h: &Histogram<u64>| weir_engine::summary::micros(h.max());
        if !r.processing.is_empty() {
            series.push((
                format!(
                    "{} (processing, max {}{behind})",
                    r.label,
                    max(&r.processing)
                ),
                curve(&r.processing),
                false,
                i,
            ));
        }
        if let Some(e) = r.event.as_ref().filter(|e| !e.is_empty()) {
            series.push((
                format!("{} (event time, max {}{behind})", r.label, max(e)),
                curve(e),
                true,
                i,
            ));
        }
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, pts, _, _)| pts.iter().map(|p| p.1))
        .fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo > hi {
        (0.001, 1.0)
    } else {
        (lo.max(0.001) / 1.5, hi * 1.5)
    };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..10_000f64).log_scale(), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("{}%", trim_float((p * 100.0).round() / 100.0))
        })
        .y_label_formatter(&|y| {
            let s = format!("{y:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .draw()
        .map_err(err)?;
    let legend_font = ("sans-serif", 14).into_font();
    for (i, (name, pts, dashed, config)) in series.into_iter().enumerate() {
        let color = Palette99::pick(config).to_rgba();
        let style = ShapeStyle::from(&color).stroke_width(2);
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?;
        }
        let y = 60 + 22 * i as i32;
        let line = vec![(10, y), (40, y)];
        if dashed {
            legend_area
                .draw(&plotters::element::DashedPathElement::new(
                    line, 6, 4, style,
                ))
                .map_err(err)?;
        } else {
            legend_area
                .draw(&PathElement::new(line, style))
                .map_err(err)?;
        }
        legend_area
            .draw(&Text::new(
                name,
                (48, y - 8),
                legend_font.clone().color(&BLACK),
            ))
            .map_err(err)?;
    }
    Ok(())
}
