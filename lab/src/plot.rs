//! Drawing charts as SVG, from numbers a real run produced, and diagrams
//! from the code's own values (a model's shapes from its config).
//!
//! These helpers only draw: every caller passes measured data (a loss
//! history, attention weights, token counts) or values computed by the
//! book's code. Every chart has a white background, so it reads in the
//! book's dark themes too, and round ticks: a linear axis writes all its
//! ticks with the same number of decimals, a log axis puts them at 1, 2 and
//! 5 times powers of 10. The SVG backend leaves text to the browser, so
//! nothing here needs a font installed.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Colours for series, in order: distinct, and readable on white.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One named line of a [`line_chart`].
pub struct Series<'a> {
    /// The legend entry.
    pub name: &'a str,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Labels and scales of a chart. Both axis titles are required: drawing a
/// chart without one is an error.
pub struct Axes<'a> {
    /// The title above the chart.
    pub title: &'a str,
    /// What the x axis measures, with its unit.
    pub x_label: &'a str,
    /// What the y axis measures, with its unit.
    pub y_label: &'a str,
    /// Draw the y axis on a log scale (every y must be positive).
    pub log_y: bool,
    /// Draw the x axis on a log scale (every x must be positive).
    pub log_x: bool,
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// An error unless both axes have a title: a chart whose axes say nothing
/// leaves the reader to guess what was measured.
fn check_titles(axes: &Axes) -> Result<()> {
    if axes.x_label.is_empty() || axes.y_label.is_empty() {
        return Err(anyhow!(
            "the chart {:?} needs a title for each axis",
            axes.title
        ));
    }
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>, log: bool) -> Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        if !v.is_finite() || (log && v <= 0.0) {
            return Err(anyhow!(
                "cannot plot {v} on a {} axis",
                if log { "log" } else { "linear" }
            ));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return Err(anyhow!("nothing to plot"));
    }
    if log {
        Ok((lo / 1.15, hi * 1.15))
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9);
        Ok((lo - pad, hi + pad))
    }
}

/// The most ticks a linear axis gets.
const MAX_TICKS: usize = 10;

/// One axis of a chart: the range it spans, and its ticks, each with the
/// label written under or beside it.
///
/// On a log axis the range and the tick positions are log10 of the values,
/// and the labels are the values. Plotters asks this type where the grid
/// lines go ([`Ranged::key_points`]) and how to write them
/// ([`ValueFormatter::format_ext`]), so every chart's ticks come from
/// [`Scale::linear`] or [`Scale::log`].
#[derive(Clone, Debug)]
struct Scale {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

/// `v` with `decimals` digits after the point, and no "-0.0".
fn fixed(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// The digits after the point that `v`, a tick of the form m·10^k with a
/// single digit m, needs: 0 from 1 up, 1 for 0.5, 2 for 0.02.
fn decimals_of(v: f64) -> usize {
    (-v.log10() - 1e-9).ceil().max(0.0) as usize
}

impl Scale {
    /// A linear axis over `lo..hi`: at most `max_ticks` ticks a round step
    /// apart (1, 2 or 5 times a power of 10), all written with the same
    /// number of decimals, the step's: 0, 0.5, 1.0, 1.5 rather than
    /// 0, 0.500, 1, 1.50.
    fn linear(lo: f64, hi: f64, max_ticks: usize) -> Scale {
        let span = hi - lo;
        let power = 10f64.powi((span / max_ticks as f64).log10().floor() as i32);
        let step = [1.0, 2.0, 5.0, 10.0]
            .map(|m| m * power)
            .into_iter()
            .find(|step| span / step <= max_ticks as f64)
            .unwrap_or(10.0 * power);
        let decimals = decimals_of(step);
        let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
        let ticks = (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                (v, fixed(v, decimals))
            })
            .collect();
        Scale { lo, hi, ticks }
    }

    /// A log axis over the values `lo..hi` (both positive), with ticks at
    /// round numbers: the densest of three sets that gives at most
    /// [`MAX_TICKS`] ticks. 1, 2, 3, 4, 5, 6 and 8 times the powers of 10
    /// suit a short range (0.8, 1, 2, ..., 8 for a loss from 0.8 to 8); 1, 2
    /// and 5 times the powers a longer one (50, 100, 200, ..., 2000); the
    /// powers alone one of many powers of 10 (0.01, 0.1, 1, 10, 100). An
    /// axis that spans two powers of 10 or more writes each tick as it is
    /// (0.01, 0.1, 1); a shorter one gives every tick the same decimals
    /// (0.8, 1.0, 2.0).
    fn log(lo: f64, hi: f64) -> Scale {
        let steps: [&[f64]; 3] = [
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
            &[1.0, 2.0, 5.0],
            &[1.0],
        ];
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let ticks_of = |mantissas: &[f64]| -> Vec<f64> {
            (e0..=e1)
                .flat_map(|e| {
                    mantissas.iter().map(move |m| {
                        // Divide for negative powers: 3.0 / 10.0 is the
                        // number 0.3 stands for, 3.0 * 0.1 is not.
                        if e >= 0 {
                            m * 10f64.powi(e)
                        } else {
                            m / 10f64.powi(-e)
                        }
                    })
                })
                .filter(|v| (lo..=hi).contains(v))
                .collect()
        };
        let chosen = steps
            .iter()
            .map(|m| ticks_of(m))
            .find(|t| t.len() <= MAX_TICKS)
            .unwrap_or_else(|| ticks_of(steps[2]));
        if chosen.len() < 2 {
            // A range too short for two of those (1.1 to 1.9, say):
            // linear ticks on the values, placed on the log axis.
            let linear = Scale::linear(lo, hi, 5);
            let ticks = linear.ticks.into_iter().map(|(v, l)| (v.log10(), l));
            return Scale {
                lo: lo.log10(),
                hi: hi.log10(),
                ticks: ticks.collect(),
            };
        }
        let shared = chosen.iter().map(|&v| decimals_of(v)).max().unwrap_or(0);
        let ticks = chosen
            .into_iter()
            .map(|v| {
                let decimals = if hi / lo >= 100.0 {
                    decimals_of(v)
                } else {
                    shared
                };
                (v.log10(), fixed(v, decimals))
            })
            .collect();
        Scale {
            lo: lo.log10(),
            hi: hi.log10(),
            ticks,
        }
    }

    /// An axis with no ticks, for a bar chart's groups (labelled apart).
    fn bare(lo: f64, hi: f64) -> Scale {
        Scale {
            lo,
            hi,
            ticks: Vec::new(),
        }
    }

    #[cfg(test)]
    fn labels(&self) -> Vec<&str> {
        self.ticks.iter().map(|(_, l)| l.as_str()).collect()
    }
}

impl Ranged for Scale {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let share = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.max_num_points() == 0 {
            return Vec::new();
        }
        self.ticks.iter().map(|&(v, _)| v).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Scale {
    fn format_ext(&self, value: &f64) -> String {
        let near = |t: &&(f64, String)| (t.0 - value).abs() <= 1e-9 * (self.hi - self.lo).abs();
        self.ticks
            .iter()
            .find(near)
            .map_or_else(|| format!("{value}"), |(_, l)| l.clone())
    }
}

/// Draws line series into an SVG file of 760 x 440 pixels.
///
/// A log axis is drawn by plotting log10 of the values on a linear axis and
/// labelling the ticks with the values themselves.
pub fn line_chart(path: &Path, axes: &Axes, series: &[Series]) -> Result<()> {
    line_chart_with_legend(path, axes, series, SeriesLabelPosition::UpperRight)
}

/// [`line_chart`] with the legend at `legend` instead of the upper right
/// corner, for curves that pass through that corner.
pub fn line_chart_with_legend(
    path: &Path,
    axes: &Axes,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<()> {
    check_titles(axes)?;
    let tx = |x: f64| if axes.log_x { x.log10() } else { x };
    let ty = |y: f64| if axes.log_y { y.log10() } else { y };
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x0, x1) = bounds(xs, axes.log_x)?;
    let (y0, y1) = bounds(ys, axes.log_y)?;
    let scale = |log: bool, lo: f64, hi: f64| {
        if log {
            Scale::log(lo, hi)
        } else {
            Scale::linear(lo, hi, MAX_TICKS)
        }
    };
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    let mut chart = frame(
        &root,
        axes.title,
        scale(axes.log_x, x0, x1),
        scale(axes.log_y, y0, y1),
    )?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points = s.points.iter().map(|&(x, y)| (tx(x), ty(y)));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_err)?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    if series.iter().any(|s| !s.name.is_empty()) {
        draw_legend(&mut chart, legend)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A white drawing with a title and room for axis labels, and a chart over
/// `x` and `y` inside it: the frame the line, bar and scatter charts share.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x: Scale,
    y: Scale,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<Scale, Scale>>> {
    root.fill(&WHITE).map_err(plot_err)?;
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)
}

/// Draws a chart's legend at `position`, on a white box that lets the grid
/// show through a little, with a light border.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot_err)
}

/// How the line of a [`Styled`] series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stroke {
    /// A solid line through the points.
    Solid,
    /// A dashed line through the points.
    Dashed,
    /// No line: the markers alone.
    None,
}

/// What a [`Styled`] series draws at each of its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// Nothing.
    None,
    /// A small filled dot.
    Dot,
    /// A larger ring, to pick out a point on a line.
    Ring,
}

/// One series of a [`styled_chart`]: a line, markers or both, in a colour
/// of the caller's choosing (so that a measured series and a fitted one
/// can share one).
pub struct Styled<'a> {
    /// The legend entry; an empty name has none.
    pub name: &'a str,
    /// The points, in x order. A named series without points is a legend
    /// entry alone.
    pub points: Vec<(f64, f64)>,
    /// Its colour.
    pub colour: RGBColor,
    /// Its line.
    pub stroke: Stroke,
    /// Its markers.
    pub marker: Marker,
}

/// Draws [`Styled`] series into an SVG file of 760 x 440 pixels: lines
/// (solid or dashed), markers, or both, each in its own colour; the legend
/// at `legend`. Log axes as in [`line_chart`].
pub fn styled_chart(
    path: &Path,
    axes: &Axes,
    series: &[Styled],
    legend: SeriesLabelPosition,
) -> Result<()> {
    check_titles(axes)?;
    let tx = |x: f64| if axes.log_x { x.log10() } else { x };
    let ty = |y: f64| if axes.log_y { y.log10() } else { y };
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x0, x1) = bounds(xs, axes.log_x)?;
    let (y0, y1) = bounds(ys, axes.log_y)?;
    let scale = |log: bool, lo: f64, hi: f64| {
        if log {
            Scale::log(lo, hi)
        } else {
            Scale::linear(lo, hi, MAX_TICKS)
        }
    };
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    let mut chart = frame(
        &root,
        axes.title,
        scale(axes.log_x, x0, x1),
        scale(axes.log_y, y0, y1),
    )?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    for s in series {
        let (colour, stroke, marker) = (s.colour, s.stroke, s.marker);
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), ty(y))).collect();
        let style = colour.stroke_width(2);
        let line = match stroke {
            Stroke::Solid => Some(
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(plot_err)?,
            ),
            Stroke::Dashed => Some(
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 5, 4, style))
                    .map_err(plot_err)?,
            ),
            Stroke::None => None,
        };
        // The line, if any, carries the legend entry; else the markers do.
        let anno = match line {
            Some(anno) => anno,
            None => chart
                .draw_series(points.iter().filter_map(|&p| marker_at(p, marker, colour)))
                .map_err(plot_err)?,
        };
        if !s.name.is_empty() {
            anno.label(s.name).legend(move |(x, y)| {
                // Three pieces of line: one whole line, three dashes, or
                // none at all (a piece from a point to itself draws
                // nothing); in pixels from the legend entry's corner.
                let pieces: [(i32, i32); 3] = match stroke {
                    Stroke::Solid => [(0, 18), (18, 18), (18, 18)],
                    Stroke::Dashed => [(0, 4), (7, 11), (14, 18)],
                    Stroke::None => [(0, 0), (0, 0), (0, 0)],
                };
                let piece = |(a, b): (i32, i32)| PathElement::new(vec![(a, 0), (b, 0)], style);
                let (radius, mark) =
                    marker_style(marker, colour).unwrap_or((0, colour.mix(0.0).filled()));
                EmptyElement::at((x, y))
                    + piece(pieces[0])
                    + piece(pieces[1])
                    + piece(pieces[2])
                    + Circle::new((9, 0), radius, mark)
            });
        }
        if stroke != Stroke::None {
            chart
                .draw_series(points.iter().filter_map(|&p| marker_at(p, marker, colour)))
                .map_err(plot_err)?;
        }
    }
    if series.iter().any(|s| !s.name.is_empty()) {
        draw_legend(&mut chart, legend)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The radius and style of a [`Marker`]'s circle in `colour` (none for
/// [`Marker::None`]).
fn marker_style(marker: Marker, colour: RGBColor) -> Option<(i32, ShapeStyle)> {
    match marker {
        Marker::None => None,
        Marker::Dot => Some((3, colour.filled())),
        Marker::Ring => Some((6, colour.stroke_width(2))),
    }
}

/// A [`Marker`] at `at`, in `colour`.
fn marker_at<C>(at: C, marker: Marker, colour: RGBColor) -> Option<Circle<C, i32>> {
    marker_style(marker, colour).map(|(radius, style)| Circle::new(at, radius, style))
}

/// One named set of bars of a [`bar_chart`]: one value per group.
pub struct Bars<'a> {
    /// The legend entry.
    pub name: &'a str,
    /// One value per group, in the order of the groups.
    pub values: Vec<f64>,
}

/// Draws grouped bars into an SVG file of 760 x 440 pixels: for each group
/// (a label under the x axis) one bar per series, side by side, in the
/// series' colours. The y axis starts at 0; `axes.log_x` and `axes.log_y`
/// must be false, and every value must be finite and not negative.
pub fn bar_chart(path: &Path, axes: &Axes, groups: &[&str], series: &[Bars]) -> Result<()> {
    bar_chart_with_legend(path, axes, groups, series, SeriesLabelPosition::UpperLeft)
}

/// [`bar_chart`] with the legend where the bars leave room for it.
pub fn bar_chart_with_legend(
    path: &Path,
    axes: &Axes,
    groups: &[&str],
    series: &[Bars],
    legend: SeriesLabelPosition,
) -> Result<()> {
    check_titles(axes)?;
    if axes.log_x || axes.log_y {
        return Err(anyhow!("a bar chart has linear axes"));
    }
    if groups.is_empty() || series.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    for s in series {
        if s.values.len() != groups.len() {
            return Err(anyhow!(
                "series {:?} has {} values for {} groups",
                s.name,
                s.values.len(),
                groups.len()
            ));
        }
        if let Some(v) = s.values.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(anyhow!("cannot draw a bar of height {v}"));
        }
    }
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.08 } else { 1.0 };
    let n = groups.len() as f64;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    let (x, y) = (Scale::bare(0.0, n), Scale::linear(0.0, top, MAX_TICKS));
    let mut chart = frame(&root, axes.title, x, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    // Each group is one unit wide; its bars fill the middle 80%.
    let width = 0.8 / series.len() as f64;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let bars = s.values.iter().enumerate().map(|(g, &v)| {
            let x = g as f64 + 0.1 + i as f64 * width;
            Rectangle::new([(x, 0.0), (x + width * 0.92, v)], colour.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot_err)?
            .label(s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    let font = ("sans-serif", 13).into_font();
    for (g, label) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        let style = font
            .clone()
            .into_text_style(&root)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(label.to_string(), (px, py + 6), style))
            .map_err(plot_err)?;
    }
    draw_legend(&mut chart, legend)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Titles of a [`heatmap_with_axes`]: the chart's, its axes' and its
/// colour scale's. An empty title is left out.
pub struct HeatmapAxes<'a> {
    /// The title above the chart.
    pub title: &'a str,
    /// What the columns are, under their labels.
    pub x_label: &'a str,
    /// What the rows are, beside their labels.
    pub y_label: &'a str,
    /// What the shades measure, beside the colour scale.
    pub scale_label: &'a str,
}

/// The shade of a heat-map cell whose value is the share `t` of the way
/// from the smallest value (0, white) to the largest (1, dark blue).
fn shade(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    RGBColor(
        (255.0 - t * 247.0) as u8,
        (255.0 - t * 207.0) as u8,
        (255.0 - t * 148.0) as u8,
    )
}

/// Width of the colour scale beside a heat map, with its labels.
const SCALE_AREA: u32 = 110;

/// Draws a matrix as a grid of shaded cells (white for the smallest value,
/// dark blue for the largest), with a label for every row and column and a
/// colour scale beside it: attention weights, for instance, with the
/// attending tokens as rows. [`heatmap_with_axes`] adds axis titles.
pub fn heatmap(
    path: &Path,
    title: &str,
    values: &ndarray::ArrayView2<f32>,
    row_labels: &[String],
    col_labels: &[String],
) -> Result<()> {
    let axes = HeatmapAxes {
        title,
        x_label: "",
        y_label: "",
        scale_label: "",
    };
    heatmap_with_axes(path, &axes, values, row_labels, col_labels)
}

/// [`heatmap`] with a title for each axis and for the colour scale.
pub fn heatmap_with_axes(
    path: &Path,
    axes: &HeatmapAxes,
    values: &ndarray::ArrayView2<f32>,
    row_labels: &[String],
    col_labels: &[String],
) -> Result<()> {
    let (rows, cols) = values.dim();
    if row_labels.len() != rows || col_labels.len() != cols {
        return Err(anyhow!(
            "heatmap of {rows} x {cols} values got {} row and {} column labels",
            row_labels.len(),
            col_labels.len()
        ));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(anyhow!("cannot shade a cell of value {v}"));
    }
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let title_room = |label: &str| if label.is_empty() { 0 } else { 26 };
    let (x_room, y_room) = (title_room(axes.x_label), title_room(axes.y_label));
    let cell = (520 / rows.max(cols)).clamp(12, 48) as u32;
    let w = cols as u32 * cell + 170 + y_room + SCALE_AREA;
    let h = rows as u32 * cell + 150 + x_room;
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 18))
        .margin(12)
        .margin_right(12 + SCALE_AREA)
        .x_label_area_size(80 + x_room)
        .y_label_area_size(80 + y_room)
        .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)
        .map_err(plot_err)?;
    let area = chart.plotting_area();
    for ((r, c), &v) in values.indexed_iter() {
        let colour = shade(f64::from((v - lo) / span));
        // Row 0 at the top.
        let (x, y) = (c as f64, (rows - 1 - r) as f64);
        area.draw(&Rectangle::new(
            [(x, y), (x + 1.0, y + 1.0)],
            colour.filled(),
        ))
        .map_err(plot_err)?;
    }
    // Labels beside the cells, in pixels, outside the plotting area.
    let font = ("sans-serif", 13).into_font();
    let text = |label: &str, at: (i32, i32), pos: Pos, rotate: Option<FontTransform>| {
        let mut style = font.clone();
        if let Some(r) = rotate {
            style = style.transform(r);
        }
        let style = style.into_text_style(&root).pos(pos);
        root.draw(&Text::new(label.to_string(), at, style))
            .map_err(plot_err)
    };
    for (r, l) in row_labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, (rows - r) as f64 - 0.5));
        text(l, (px - 6, py), Pos::new(HPos::Right, VPos::Center), None)?;
    }
    for (c, l) in col_labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
        let pos = Pos::new(HPos::Right, VPos::Center);
        text(l, (px, py + 6), pos, Some(FontTransform::Rotate270))?;
    }
    let (xs, ys) = area.get_pixel_range();
    if !axes.x_label.is_empty() {
        let at = ((xs.start + xs.end) / 2, ys.end + 80 + 4);
        text(axes.x_label, at, Pos::new(HPos::Center, VPos::Top), None)?;
    }
    if !axes.y_label.is_empty() {
        let at = (xs.start - 80 - 4 - 16, (ys.start + ys.end) / 2);
        let pos = Pos::new(HPos::Center, VPos::Center);
        text(axes.y_label, at, pos, Some(FontTransform::Rotate270))?;
    }
    // The colour scale: a bar from the smallest value (bottom) to the
    // largest (top), with round ticks.
    let (bar_left, bar_right) = (xs.end + 24, xs.end + 40);
    let (top, bottom) = (ys.start, ys.end);
    let y_of = |v: f64| {
        let share = (v - f64::from(lo)) / f64::from(span);
        bottom - (share * f64::from(bottom - top)).round() as i32
    };
    let strips = 64;
    for i in 0..strips {
        let share = |i: i32| f64::from(lo) + f64::from(span) * f64::from(i) / f64::from(strips);
        let (low, high) = (y_of(share(i)), y_of(share(i + 1)));
        let colour = shade((f64::from(i) + 0.5) / f64::from(strips));
        root.draw(&Rectangle::new(
            [(bar_left, high), (bar_right, low)],
            colour.filled(),
        ))
        .map_err(plot_err)?;
    }
    root.draw(&Rectangle::new(
        [(bar_left, top), (bar_right, bottom)],
        BLACK.mix(0.5),
    ))
    .map_err(plot_err)?;
    let ticks = Scale::linear(f64::from(lo), f64::from(lo + span), 6);
    for (v, label) in &ticks.ticks {
        let y = y_of(*v);
        root.draw(&PathElement::new(
            vec![(bar_right, y), (bar_right + 5, y)],
            BLACK.mix(0.5),
        ))
        .map_err(plot_err)?;
        text(
            label,
            (bar_right + 8, y),
            Pos::new(HPos::Left, VPos::Center),
            None,
        )?;
    }
    if !axes.scale_label.is_empty() {
        let at = (bar_right + 58, (top + bottom) / 2);
        let pos = Pos::new(HPos::Center, VPos::Center);
        text(axes.scale_label, at, pos, Some(FontTransform::Rotate90))?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One named group of a [`scatter`]: points drawn in one colour, each with
/// its own label.
pub struct LabelledPoints<'a> {
    /// The legend entry.
    pub name: &'a str,
    /// The points, each `(x, y, label)`.
    pub points: Vec<(f64, f64, String)>,
}

/// A label's box in pixels: left, top, right, bottom.
type LabelBox = (i32, i32, i32, i32);

fn overlaps(a: LabelBox, b: LabelBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Where to put a label of `chars` characters for the point at pixel `p`:
/// the first of a widening ring of spots beside it whose box meets no box
/// in `taken` and stays inside `area`. Returns the label's top-left corner
/// and whether it had to move away from the point (and so needs a line).
fn place_label(
    p: (i32, i32),
    chars: usize,
    taken: &[LabelBox],
    area: LabelBox,
) -> ((i32, i32), bool) {
    let (w, h) = (chars as i32 * 7 + 2, 14);
    let mut first = None;
    for (ring, r) in [7, 20, 34, 48, 62, 76].into_iter().enumerate() {
        // Right, left, above, below, then the four diagonals.
        let spots = [
            (r, -h / 2),
            (-r - w, -h / 2),
            (-w / 2, -r - h),
            (-w / 2, r),
            (r, -r - h),
            (r, r),
            (-r - w, -r - h),
            (-r - w, r),
        ];
        for (dx, dy) in spots {
            let b = (p.0 + dx, p.1 + dy, p.0 + dx + w, p.1 + dy + h);
            let inside = b.0 >= area.0 && b.1 >= area.1 && b.2 <= area.2 && b.3 <= area.3;
            first.get_or_insert((b.0, b.1));
            if inside && !taken.iter().any(|&t| overlaps(t, b)) {
                return ((b.0, b.1), ring > 0);
            }
        }
    }
    (first.expect("at least one spot"), false)
}

/// Draws groups of labelled points into an SVG file of 760 x 560 pixels:
/// a dot per point in its group's colour, its label beside it (moved out of
/// the way of other labels and dots, with a thin line back to its dot when
/// it had to move), and a legend of the groups. Axes are linear.
pub fn scatter(path: &Path, axes: &Axes, groups: &[LabelledPoints]) -> Result<()> {
    check_titles(axes)?;
    if axes.log_x || axes.log_y {
        return Err(anyhow!("a scatter plot has linear axes"));
    }
    let all = || groups.iter().flat_map(|g| g.points.iter());
    let (x0, x1) = bounds(all().map(|p| p.0), false)?;
    let (y0, y1) = bounds(all().map(|p| p.1), false)?;
    // Room around the dots for their labels.
    let (px, py) = ((x1 - x0) * 0.12, (y1 - y0) * 0.08);
    let root = SVGBackend::new(path, (760, 560)).into_drawing_area();
    let x = Scale::linear(x0 - px, x1 + px, MAX_TICKS);
    let y = Scale::linear(y0 - py, y1 + py, MAX_TICKS);
    let mut chart = frame(&root, axes.title, x, y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    for (i, g) in groups.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let dots = g
            .points
            .iter()
            .map(move |&(x, y, _)| Circle::new((x, y), 4, colour.filled()));
        chart
            .draw_series(dots)
            .map_err(plot_err)?
            .label(g.name)
            .legend(move |(x, y)| Circle::new((x + 7, y), 4, colour.filled()));
    }
    // Labels, in pixels: every dot is an obstacle, then every placed label.
    let pixel = |x: f64, y: f64| chart.backend_coord(&(x, y));
    let (lo, hi) = (pixel(x0 - px, y1 + py), pixel(x1 + px, y0 - py));
    let area = (lo.0, lo.1, hi.0, hi.1);
    let mut taken: Vec<LabelBox> = all()
        .map(|p| {
            let (x, y) = pixel(p.0, p.1);
            (x - 5, y - 5, x + 5, y + 5)
        })
        .collect();
    let font = ("sans-serif", 13).into_font();
    for (i, g) in groups.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        for (x, y, label) in &g.points {
            let p = pixel(*x, *y);
            let chars = label.chars().count();
            let ((lx, ly), moved) = place_label(p, chars, &taken, area);
            taken.push((lx, ly, lx + chars as i32 * 7 + 2, ly + 14));
            if moved {
                // To the nearest point of the label's box.
                let end = (p.0.clamp(lx, lx + chars as i32 * 7), p.1.clamp(ly, ly + 14));
                root.draw(&PathElement::new(vec![p, end], colour.mix(0.4)))
                    .map_err(plot_err)?;
            }
            let style = font
                .clone()
                .color(&colour)
                .pos(Pos::new(HPos::Left, VPos::Top));
            root.draw(&Text::new(label.clone(), (lx + 1, ly), style))
                .map_err(plot_err)?;
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A diagram of boxes and arrows, drawn in pixels on a white SVG page:
/// the frame of a figure that shows how something is built rather than
/// what a run measured, in the charts' fonts and colours.
pub struct Diagram<'a> {
    root: DrawingArea<SVGBackend<'a>, Shift>,
}

/// The colour of a diagram's lines and arrows: a dark grey.
const INK: RGBColor = RGBColor(60, 60, 60);

/// A point of a [`Diagram`], in pixels from its top left corner.
pub type Pixel = (i32, i32);

impl<'a> Diagram<'a> {
    /// A white page of `size` pixels with `title` centred at the top.
    pub fn new(path: &'a Path, size: (u32, u32), title: &str) -> Result<Self> {
        let root = SVGBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let diagram = Diagram { root };
        let font = ("sans-serif", 20).into_font();
        let centre = (size.0 as i32 / 2, 16);
        diagram.draw_text(title, centre, font, Pos::new(HPos::Center, VPos::Top))?;
        Ok(diagram)
    }

    fn draw_text(&self, text: &str, at: Pixel, font: FontDesc, pos: Pos) -> Result<()> {
        let style = font.into_text_style(&self.root).pos(pos);
        self.root
            .draw(&Text::new(text.to_string(), at, style))
            .map_err(plot_err)
    }

    /// Writes `text` at `at` in 13-pixel type, placed by `pos` (centred
    /// there, or its left end there, ...).
    pub fn text(&self, text: &str, at: Pixel, pos: Pos) -> Result<()> {
        self.draw_text(text, at, ("sans-serif", 13).into_font(), pos)
    }

    /// Writes `text` turned a quarter turn anticlockwise, centred at `at`:
    /// the label of a vertical line.
    pub fn text_up(&self, text: &str, at: Pixel) -> Result<()> {
        let font = ("sans-serif", 13)
            .into_font()
            .transform(FontTransform::Rotate270);
        self.draw_text(text, at, font, Pos::new(HPos::Center, VPos::Center))
    }

    /// A box centred at `centre`, `size` pixels, tinted and outlined in
    /// `colour`, with `lines` of text centred in it: the first in bold.
    pub fn boxed(
        &self,
        centre: Pixel,
        size: (i32, i32),
        lines: &[&str],
        colour: RGBColor,
    ) -> Result<()> {
        let (x0, y0) = (centre.0 - size.0 / 2, centre.1 - size.1 / 2);
        let corners = [(x0, y0), (x0 + size.0, y0 + size.1)];
        self.root
            .draw(&Rectangle::new(corners, colour.mix(0.12).filled()))
            .map_err(plot_err)?;
        self.root
            .draw(&Rectangle::new(corners, colour.stroke_width(2)))
            .map_err(plot_err)?;
        let line_height = 18;
        let first = centre.1 - (lines.len() as i32 - 1) * line_height / 2;
        for (i, line) in lines.iter().enumerate() {
            let font = if i == 0 {
                ("sans-serif", 14, FontStyle::Bold).into_font()
            } else {
                ("sans-serif", 13).into_font()
            };
            let at = (centre.0, first + i as i32 * line_height);
            self.draw_text(line, at, font, Pos::new(HPos::Center, VPos::Center))?;
        }
        Ok(())
    }

    /// A line through `points` with an arrowhead at the last one.
    pub fn arrow(&self, points: &[Pixel]) -> Result<()> {
        let [.., from, tip] = points else {
            return Err(anyhow!("an arrow needs two points"));
        };
        let (dx, dy) = (f64::from(tip.0 - from.0), f64::from(tip.1 - from.1));
        let length = dx.hypot(dy).max(1.0);
        let (ux, uy) = (dx / length, dy / length);
        let at = |along: f64, across: f64| {
            (
                tip.0 - (ux * along - uy * across).round() as i32,
                tip.1 - (uy * along + ux * across).round() as i32,
            )
        };
        let mut line = points.to_vec();
        *line.last_mut().expect("two points") = at(8.0, 0.0);
        self.root
            .draw(&PathElement::new(line, INK.stroke_width(2)))
            .map_err(plot_err)?;
        let head = vec![*tip, at(10.0, 5.0), at(10.0, -5.0)];
        self.root
            .draw(&Polygon::new(head, INK.filled()))
            .map_err(plot_err)
    }

    /// A dashed line through `points`, in `colour`.
    pub fn dashed(&self, points: &[Pixel], colour: RGBColor) -> Result<()> {
        let line = plotters::element::DashedPathElement::new(
            points.to_vec(),
            6,
            4,
            colour.stroke_width(2),
        );
        self.root.draw(&line).map_err(plot_err)
    }

    /// A dashed rectangle from `top_left` to `bottom_right`: a group of
    /// boxes repeated as a whole.
    pub fn group(&self, top_left: Pixel, bottom_right: Pixel, colour: RGBColor) -> Result<()> {
        let (a, b) = (top_left, bottom_right);
        self.dashed(&[a, (b.0, a.1), b, (a.0, b.1), a], colour)
    }

    /// A small circle with a plus in it at `centre`: two arrays added.
    pub fn plus(&self, centre: Pixel) -> Result<()> {
        self.root
            .draw(&Circle::new(centre, 11, WHITE.filled()))
            .map_err(plot_err)?;
        self.root
            .draw(&Circle::new(centre, 11, INK.stroke_width(2)))
            .map_err(plot_err)?;
        let (x, y) = centre;
        for line in [[(x - 6, y), (x + 6, y)], [(x, y - 6), (x, y + 6)]] {
            self.root
                .draw(&PathElement::new(line.to_vec(), INK.stroke_width(2)))
                .map_err(plot_err)?;
        }
        Ok(())
    }

    /// A dot at `centre`: where a line splits in two.
    pub fn dot(&self, centre: Pixel) -> Result<()> {
        self.root
            .draw(&Circle::new(centre, 4, INK.filled()))
            .map_err(plot_err)
    }

    /// Writes the SVG file.
    pub fn finish(self) -> Result<()> {
        self.root.present().map_err(plot_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("listings-figures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn linear_ticks_share_their_decimals() {
        assert_eq!(
            Scale::linear(0.86, 3.92, 10).labels(),
            ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5"]
        );
        assert_eq!(
            Scale::linear(-0.1, 3.2, 10).labels(),
            ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"]
        );
        assert_eq!(
            Scale::linear(-0.95, 0.72, 10).labels(),
            ["-0.8", "-0.6", "-0.4", "-0.2", "0.0", "0.2", "0.4", "0.6"]
        );
        assert_eq!(
            Scale::linear(-100.0, 2100.0, 10).labels(),
            ["0", "500", "1000", "1500", "2000"]
        );
        assert_eq!(Scale::linear(0.0, 146.0, 10).labels().len(), 8); // 0 to 140
    }

    #[test]
    fn log_ticks_are_round_numbers() {
        // Several powers of 10: each written as it is.
        assert_eq!(
            Scale::log(0.0058, 138.0).labels(),
            ["0.01", "0.1", "1", "10", "100"]
        );
        assert_eq!(
            Scale::log(27.8, 4710.0).labels(),
            ["50", "100", "200", "500", "1000", "2000"]
        );
        // A loss from 0.79 to 7.7: one power of 10, one number of decimals.
        assert_eq!(
            Scale::log(0.69, 8.9).labels(),
            ["0.8", "1.0", "2.0", "3.0", "4.0", "5.0", "6.0", "8.0"]
        );
        // Many powers of 10, too many for 1, 2 and 5: the powers alone.
        assert_eq!(
            Scale::log(0.0143, 600.0).labels(),
            ["0.1", "1", "10", "100"]
        );
        // Narrower than any round steps: linear ticks on the log axis.
        let narrow = Scale::log(1.01, 1.3);
        assert!(narrow.labels().len() >= 2, "{:?}", narrow.labels());
        assert!(
            narrow
                .ticks
                .iter()
                .all(|&(v, _)| (narrow.lo..=narrow.hi).contains(&v))
        );
    }

    #[test]
    fn a_line_chart_holds_its_title_labels_and_lines() {
        let path = temp("lines.svg");
        let axes = Axes {
            title: "loss",
            x_label: "step",
            y_label: "nats",
            log_y: true,
            log_x: false,
        };
        let series = [
            Series {
                name: "train",
                points: vec![(0.0, 4.0), (10.0, 2.0), (20.0, 1.5)],
            },
            Series {
                name: "val",
                points: vec![(0.0, 4.1), (20.0, 1.7)],
            },
        ];
        line_chart(&path, &axes, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in ["loss", "step", "nats", "train", "val", "<polyline"] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn a_styled_chart_draws_lines_dashes_markers_and_legend_entries() {
        let path = temp("styled.svg");
        let axes = Axes {
            title: "sizes",
            x_label: "parameters",
            y_label: "loss",
            log_y: false,
            log_x: true,
        };
        let series = [
            Styled {
                name: "measured",
                points: vec![(1e3, 2.0), (1e4, 1.5), (1e5, 1.8)],
                colour: PALETTE[0],
                stroke: Stroke::Solid,
                marker: Marker::Dot,
            },
            Styled {
                name: "",
                points: vec![(1e3, 2.1), (1e5, 1.7)],
                colour: PALETTE[0],
                stroke: Stroke::Dashed,
                marker: Marker::None,
            },
            Styled {
                name: "best",
                points: vec![(1e4, 1.5)],
                colour: PALETTE[1],
                stroke: Stroke::None,
                marker: Marker::Ring,
            },
            Styled {
                name: "fitted (dashed)",
                points: vec![],
                colour: PALETTE[2],
                stroke: Stroke::Dashed,
                marker: Marker::None,
            },
        ];
        styled_chart(&path, &axes, &series, SeriesLabelPosition::UpperRight).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "sizes",
            "parameters",
            "loss",
            "measured",
            "best",
            "fitted (dashed)",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Three dots and a ring on the chart, a dot and a ring in the legend.
        assert!(svg.matches("<circle").count() >= 6);
        let empty = [Styled {
            name: "a",
            points: vec![],
            colour: PALETTE[0],
            stroke: Stroke::Solid,
            marker: Marker::Dot,
        }];
        assert!(styled_chart(&path, &axes, &empty, SeriesLabelPosition::UpperRight).is_err());
    }

    #[test]
    fn bad_data_is_an_error_not_a_broken_figure() {
        let axes = Axes {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_y: true,
            log_x: false,
        };
        let neg = [Series {
            name: "a",
            points: vec![(0.0, -1.0)],
        }];
        assert!(line_chart(&temp("neg.svg"), &axes, &neg).is_err());
        let nan = [Series {
            name: "a",
            points: vec![(0.0, f64::NAN)],
        }];
        assert!(line_chart(&temp("nan.svg"), &axes, &nan).is_err());
        let empty = [Series {
            name: "a",
            points: vec![],
        }];
        assert!(line_chart(&temp("empty.svg"), &axes, &empty).is_err());
        let untitled = Axes {
            x_label: "",
            log_y: false,
            ..axes
        };
        let fine = [Series {
            name: "a",
            points: vec![(0.0, 1.0), (1.0, 2.0)],
        }];
        assert!(line_chart(&temp("untitled.svg"), &untitled, &fine).is_err());
    }

    #[test]
    fn a_scatter_plot_labels_every_point_and_keeps_labels_apart() {
        let axes = Axes {
            title: "words",
            x_label: "first",
            y_label: "second",
            log_y: false,
            log_x: false,
        };
        let near = |x: f64, label: &str| (x, 0.0, label.to_string());
        let groups = [
            LabelledPoints {
                name: "close",
                points: vec![
                    near(0.0, "alpha"),
                    near(0.001, "beta"),
                    near(0.002, "gamma"),
                ],
            },
            LabelledPoints {
                name: "far",
                points: vec![(1.0, 1.0, "delta".to_string())],
            },
        ];
        let path = temp("scatter.svg");
        scatter(&path, &axes, &groups).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "words", "first", "second", "close", "far", "alpha", "beta", "gamma", "delta",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Four dots and a legend dot per group.
        assert!(svg.matches("<circle").count() >= 6);
        // Three labels for nearly the same spot do not overlap.
        let mut taken = vec![];
        for _ in 0..3 {
            let ((x, y), _) = place_label((100, 100), 5, &taken, (0, 0, 400, 400));
            let b = (x, y, x + 37, y + 14);
            assert!(taken.iter().all(|&t| !overlaps(t, b)));
            taken.push(b);
        }
        let log = Axes {
            log_y: true,
            ..axes
        };
        assert!(scatter(&path, &log, &groups).is_err());
    }

    #[test]
    fn a_heatmap_has_one_cell_per_value_and_checks_its_labels() {
        let v = ndarray::array![[1.0_f32, 0.0], [0.25, 0.75]];
        let labels = vec!["a".to_string(), "b".to_string()];
        let path = temp("heat.svg");
        heatmap(&path, "weights", &v.view(), &labels, &labels).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.matches("<rect").count() >= 4);
        // The colour scale, from 0 to 1 in steps of 0.2.
        for tick in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
            assert!(svg.contains(&format!(">\n{tick}\n<")), "no tick {tick}");
        }
        assert!(heatmap(&path, "w", &v.view(), &labels[..1], &labels).is_err());
        let axes = HeatmapAxes {
            title: "weights",
            x_label: "attended to",
            y_label: "attending",
            scale_label: "weight",
        };
        heatmap_with_axes(&path, &axes, &v.view(), &labels, &labels).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in ["attended to", "attending", "weight"] {
            assert!(svg.contains(text), "missing {text}");
        }
        let nan = ndarray::array![[f32::NAN]];
        let one = &labels[..1];
        assert!(heatmap(&path, "w", &nan.view(), one, one).is_err());
    }

    #[test]
    fn a_bar_chart_has_one_bar_per_value_and_checks_its_data() {
        let axes = Axes {
            title: "tokens",
            x_label: "language",
            y_label: "count",
            log_y: false,
            log_x: false,
        };
        let series = [
            Bars {
                name: "old",
                values: vec![3.0, 5.0, 8.0],
            },
            Bars {
                name: "new",
                values: vec![2.0, 4.0, 0.0],
            },
        ];
        let groups = ["en", "fr", "hi"];
        let path = temp("bars.svg");
        bar_chart(&path, &axes, &groups, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "tokens", "language", "count", "old", "new", "en", "fr", "hi",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Six bars, two legend swatches, the background.
        assert!(svg.matches("<rect").count() >= 9);
        assert!(bar_chart(&path, &axes, &groups[..2], &series).is_err());
        let negative = [Bars {
            name: "a",
            values: vec![1.0, -1.0, 2.0],
        }];
        assert!(bar_chart(&path, &axes, &groups, &negative).is_err());
    }
}
