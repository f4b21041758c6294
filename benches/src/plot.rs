//! `--plot FILE.svg`: one picture of a bench run — throughput over time on the left, the
//! latency distribution on the right — drawn from the report alone. A long run (more than
//! one window) or one that watched the disk gets a second row: p50 and p99 latency per
//! window on the left, disk use over time on the right — what an endurance run is judged
//! by.
//!
//! Each report carries what the picture needs (a [`ThroughputSeries`] and a
//! [`PercentileCurve`]), so the same data is in `--json` and a plot can be redrawn from
//! it. Only SVG is written: plotters draws text into an SVG as `<text>` elements, with no
//! fonts, while a bitmap would need its `ttf` feature and so freetype and fontconfig.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::disk::DiskSeries;
use crate::report::{thousands, OrdererBenchReport, PeerBenchReport};
use crate::stats::{PercentileCurve, ThroughputSeries};
use crate::windows::Window;
use crate::E2eBenchReport;

/// Width of the picture, in pixels (two panels side by side).
const WIDTH_PX: u32 = 1400;
/// Height of one row of panels, in pixels.
const HEIGHT_PX: u32 = 620;
/// Most parts of a disk series drawn as their own lines (the total is always drawn).
const MOST_DISK_PARTS: usize = 8;

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in `.svg`, the only format written.
    #[error("--plot {}: only SVG is supported; give a file name ending in .svg", path.display())]
    NotSvg {
        /// The file asked for.
        path: PathBuf,
    },
    /// The file's directory does not exist (checked before a run, not to lose it).
    #[error("--plot {}: directory {} does not exist", path.display(), dir.display())]
    NoDirectory {
        /// The file asked for.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// plotters failed to draw (it reports its errors as text).
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// The picture could not be written.
    #[error("writing the plot to {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

/// What one picture shows; made from a report by its `plot()` method.
#[derive(Debug, Clone)]
pub struct Plot<'a> {
    /// First title line: which bench, on what.
    pub title: String,
    /// Second title line: the settings and the headline figures.
    pub subtitle: String,
    /// What time 0 of the throughput panel is, e.g. "time since the first submit".
    pub time_axis: &'a str,
    /// What the throughput counts, e.g. "delivered"; the axis says "(tx/s)".
    pub throughput_axis: &'a str,
    /// Throughput over the run.
    pub throughput: &'a ThroughputSeries,
    /// The run's average throughput, drawn as a dashed line (the report's `tx_per_s`).
    pub mean_tx_per_s: f64,
    /// What the latency spans, e.g. "submit → delivered"; the axis says "(ms)".
    pub latency_axis: &'a str,
    /// The latency distribution, in milliseconds.
    pub latency_ms: &'a PercentileCurve,
    /// Median latency, marked on the distribution.
    pub latency_ms_p50: f64,
    /// 99th percentile latency, marked on the distribution.
    pub latency_ms_p99: f64,
    /// The run cut into windows (drawn in the second row when there are two or more).
    pub windows: &'a [Window],
    /// Disk use over the run (drawn in the second row when present).
    pub disk: Option<&'a DiskSeries>,
}

impl Plot<'_> {
    /// The run is drawn with a second row: it has windows to compare or disk samples.
    fn has_second_row(&self) -> bool {
        self.windows.len() > 1 || self.disk.is_some_and(|d| !d.samples.is_empty())
    }
}

/// Refuses, before a run, a `--plot` file that could not be written afterwards: a name
/// not ending in `.svg` (any case), or a directory that does not exist.
pub fn check_svg_path(path: &Path) -> Result<(), PlotError> {
    let is_svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !is_svg {
        return Err(PlotError::NotSvg {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(PlotError::NoDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Draws `plot` and writes it to `path` as one SVG file (replacing any file there).
pub fn write_svg(path: &Path, plot: &Plot<'_>) -> Result<(), PlotError> {
    let svg = render_svg(plot)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The SVG document of `plot`.
fn render_svg(plot: &Plot<'_>) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let rows = if plot.has_second_row() { 2 } else { 1 };
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX * rows)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let body = root
            .titled(&plot.title, ("sans-serif", 26))
            .map_err(draw)?
            .titled(&plot.subtitle, ("sans-serif", 17))
            .map_err(draw)?;
        let (top, bottom) = if rows == 2 {
            let (top, bottom) = body.split_vertically(body.dim_in_pixel().1 / 2);
            (top, Some(bottom))
        } else {
            (body, None)
        };
        let (left, right) = top.split_horizontally(WIDTH_PX / 2);
        throughput_panel(&left, plot)?;
        latency_panel(&right, plot)?;
        if let Some(bottom) = bottom {
            let (left, right) = bottom.split_horizontally(WIDTH_PX / 2);
            window_latency_panel(&left, plot)?;
            disk_panel(&right, plot.disk)?;
        }
        root.present().map_err(draw)?;
    }
    Ok(svg)
}

/// plotters' drawing errors, as text (they are generic over the backend).
fn draw(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// The series' names in the lower right corner of a panel.
fn legend<'a>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw)
}

/// A short line in the legend, in `color`.
fn legend_mark(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
}

/// Throughput over time, as steps (each interval's rate held across it), with the run's
/// average as a dashed line.
fn throughput_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &Plot<'_>,
) -> Result<(), PlotError> {
    let t = plot.throughput;
    let width_s = t.interval_s;
    let steps: Vec<(f64, f64)> = t
        .tx_per_s
        .iter()
        .enumerate()
        .flat_map(|(k, &rate)| [(k as f64 * width_s, rate), ((k + 1) as f64 * width_s, rate)])
        .collect();
    let x_max = steps.last().map_or(1.0, |(x, _)| *x).max(1e-3);
    let highest = t
        .tx_per_s
        .iter()
        .copied()
        .fold(plot.mean_tx_per_s, f64::max);
    let y_max = if highest > 0.0 { highest * 1.12 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption("throughput over time", ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (s)", plot.time_axis))
        .y_desc(format!("{} (tx/s)", plot.throughput_axis))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw)?;
    chart
        .draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))
        .map_err(draw)?
        .label(format!("per {width_s} s"))
        .legend(legend_mark(BLUE));
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, plot.mean_tx_per_s), (x_max, plot.mean_tx_per_s)],
            10,
            6,
            RED.stroke_width(1),
        ))
        .map_err(draw)?
        .label(format!(
            "average {} tx/s",
            thousands(plot.mean_tx_per_s.round() as u64)
        ))
        .legend(legend_mark(RED));
    legend(&mut chart)
}

/// The latency distribution as a cumulative curve (share of transactions at or below
/// each latency), with p50 and p99 as dashed vertical lines named in the legend.
fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &Plot<'_>,
) -> Result<(), PlotError> {
    let curve = plot.latency_ms;
    let (x_min, x_max) = latency_range(curve);
    let caption = if curve.value.is_empty() {
        "latency distribution (no samples)"
    } else {
        "latency distribution"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min..x_max, 0f64..100f64)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} latency (ms)", plot.latency_axis))
        .y_desc("transactions at or below (%)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw)?;
    if curve.value.is_empty() {
        return Ok(());
    }
    let points = curve
        .value
        .iter()
        .copied()
        .zip(curve.percent.iter().copied());
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(draw)?
        .label("cumulative share")
        .legend(legend_mark(BLUE));
    for (name, ms, color) in [
        ("p50", plot.latency_ms_p50, GREEN),
        ("p99", plot.latency_ms_p99, RED),
    ] {
        chart
            .draw_series(DashedLineSeries::new(
                [(ms, 0.0), (ms, 100.0)],
                8,
                5,
                color.stroke_width(2),
            ))
            .map_err(draw)?
            .label(format!("{name} {ms:.2} ms"))
            .legend(legend_mark(color));
    }
    legend(&mut chart)
}

/// One line of the latency-per-window panel: its name, what it reads of a window, its
/// colour.
type WindowSeries = (&'static str, fn(&Window) -> f64, RGBColor);

/// p50 and p99 latency of each window, as steps across the window.
fn window_latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &Plot<'_>,
) -> Result<(), PlotError> {
    let windows = plot.windows;
    let x_max = windows.last().map_or(1.0, |w| w.end_s).max(1e-3);
    let y_max = windows
        .iter()
        .map(|w| w.latency_ms_p99)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.12;
    let mut chart = ChartBuilder::on(area)
        .caption("latency per window", ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (s)", plot.time_axis))
        .y_desc(format!("{} latency (ms)", plot.latency_axis))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw)?;
    let Some(first) = windows.first() else {
        return Ok(());
    };
    let width = first.end_s - first.start_s;
    let series: [WindowSeries; 2] = [
        ("p99", |w| w.latency_ms_p99, RED),
        ("p50", |w| w.latency_ms_p50, GREEN),
    ];
    for (name, value, color) in series {
        let steps: Vec<(f64, f64)> = windows
            .iter()
            .flat_map(|w| [(w.start_s, value(w)), (w.end_s, value(w))])
            .collect();
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))
            .map_err(draw)?
            .label(format!("{name} per {width:.0} s"))
            .legend(legend_mark(color));
    }
    legend(&mut chart)
}

/// Disk use over the run: the total and each watched directory (the largest few), in MiB.
fn disk_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    disk: Option<&DiskSeries>,
) -> Result<(), PlotError> {
    let empty = DiskSeries::default();
    let disk = disk.unwrap_or(&empty);
    let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    let x_max = disk.samples.last().map_or(1.0, |s| s.at_s).max(1e-3);
    let y_max = (mib(disk.max_total_bytes()) * 1.12).max(1.0);
    let caption = if disk.samples.is_empty() {
        "disk use (not watched: --watch-disk DIR)"
    } else {
        "disk use over time"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("time since the load started (s)")
        .y_desc("on disk (MiB)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw)?;
    let Some(last) = disk.samples.last() else {
        return Ok(());
    };
    let total: Vec<(f64, f64)> = disk
        .samples
        .iter()
        .map(|s| (s.at_s, mib(s.total_bytes)))
        .collect();
    chart
        .draw_series(LineSeries::new(total, BLACK.stroke_width(2)))
        .map_err(draw)?
        .label("all watched")
        .legend(legend_mark(BLACK));
    if last.parts.len() > 1 {
        // The largest parts at the end of the run, each in its own colour.
        let mut parts: Vec<(&String, u64)> = last.parts.iter().map(|(k, v)| (k, *v)).collect();
        parts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (k, (name, _)) in parts.into_iter().take(MOST_DISK_PARTS).enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let points: Vec<(f64, f64)> = disk
                .samples
                .iter()
                .filter_map(|s| s.parts.get(name).map(|&b| (s.at_s, mib(b))))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(1)))
                .map_err(draw)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
    }
    legend(&mut chart)
}

/// The latency axis: from a little below the smallest sample (never below 0) to a little
/// above the largest, so that a distribution far from 0 is not squeezed against one side.
fn latency_range(curve: &PercentileCurve) -> (f64, f64) {
    let (Some(&lo), Some(&hi)) = (curve.value.first(), curve.value.last()) else {
        return (0.0, 1.0);
    };
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        hi.abs().max(1.0) * 0.05
    };
    ((lo - pad).max(0.0), hi + pad)
}

impl OrdererBenchReport {
    /// The picture `--plot` draws of this run.
    pub fn plot(&self) -> Plot<'_> {
        Plot {
            title: format!(
                "ordo bench orderer: channel {} ({}, ack {})",
                self.channel, self.consensus, self.ack_mode
            ),
            subtitle: format!(
                "{} envelopes of {} payload bytes over {} Broadcast streams: {} tx/s delivered, latency p50 {:.1} ms, p99 {:.1} ms",
                thousands(self.txs_sent),
                thousands(self.payload_bytes as u64),
                self.clients,
                thousands(self.tx_per_s.round() as u64),
                self.latency_ms_p50,
                self.latency_ms_p99,
            ),
            time_axis: "time since the first submit",
            throughput_axis: "delivered",
            throughput: &self.throughput,
            mean_tx_per_s: self.tx_per_s,
            latency_axis: "submit → delivered",
            latency_ms: &self.latency_ms_percentiles,
            latency_ms_p50: self.latency_ms_p50,
            latency_ms_p99: self.latency_ms_p99,
            windows: &[],
            disk: None,
        }
    }
}

impl PeerBenchReport {
    /// The picture `--plot` draws of this run.
    pub fn plot(&self) -> Plot<'_> {
        Plot {
            title: format!(
                "ordo bench peer: channel {} ({}, ack {}), chaincode {}, {} peers",
                self.channel,
                self.consensus,
                self.ack_mode,
                self.chaincode,
                self.peers.len()
            ),
            subtitle: format!(
                "{} transactions ({} conflicting on purpose) over {} Broadcast streams: {} tx/s committed on every peer, latency p50 {:.1} ms, p99 {:.1} ms",
                thousands(self.txs_sent),
                thousands(self.conflicts_planned),
                self.clients,
                thousands(self.tx_per_s.round() as u64),
                self.latency_ms_p50,
                self.latency_ms_p99,
            ),
            time_axis: "time since the first submit",
            throughput_axis: "committed on every peer",
            throughput: &self.throughput,
            mean_tx_per_s: self.tx_per_s,
            latency_axis: "submit → on every peer",
            latency_ms: &self.latency_ms_percentiles,
            latency_ms_p50: self.latency_ms_p50,
            latency_ms_p99: self.latency_ms_p99,
            windows: &[],
            disk: None,
        }
    }
}

impl E2eBenchReport {
    /// The picture `--plot` draws of this run.
    pub fn plot(&self) -> Plot<'_> {
        Plot {
            title: format!(
                "ordo bench e2e: channel {} ({}, ack {}), chaincode {}",
                self.channel, self.consensus, self.ack_mode, self.chaincode
            ),
            subtitle: format!(
                "{} clients over {} accounts through {} gateways, {} transactions: {} VALID tx/s, latency p50 {:.1} ms, p99 {:.1} ms",
                self.clients,
                thousands(u64::from(self.accounts)),
                self.gateways.len(),
                thousands(self.txs_submitted),
                thousands(self.tx_per_s.round() as u64),
                self.latency_ms_p50,
                self.latency_ms_p99,
            ),
            time_axis: "time since the first proposal",
            throughput_axis: "VALID commit statuses",
            throughput: &self.throughput,
            mean_tx_per_s: self.tx_per_s,
            latency_axis: "proposal → commit status",
            latency_ms: &self.latency_ms_percentiles,
            latency_ms_p50: self.latency_ms_p50,
            latency_ms_p99: self.latency_ms_p99,
            windows: &self.windows,
            disk: self.disk.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of 2 s at about 1,000 tx/s, with latencies of 1 to 200 ms.
    fn sample() -> (ThroughputSeries, PercentileCurve) {
        let throughput = ThroughputSeries {
            interval_s: 0.1,
            tx_per_s: (0..20).map(|k| 800.0 + 20.0 * f64::from(k)).collect(),
        };
        let latencies: Vec<f64> = (1..=200).map(f64::from).collect();
        (throughput, PercentileCurve::from_sorted(&latencies))
    }

    fn plot<'a>(t: &'a ThroughputSeries, l: &'a PercentileCurve) -> Plot<'a> {
        Plot {
            title: "ordo bench test: channel \"bench\" (solo, ack enqueued)".into(),
            subtitle: "4 clients <&> 1,000 tx/s".into(),
            time_axis: "time since the first submit",
            throughput_axis: "delivered",
            throughput: t,
            mean_tx_per_s: 990.0,
            latency_axis: "submit → delivered",
            latency_ms: l,
            latency_ms_p50: 100.0,
            latency_ms_p99: 198.0,
            windows: &[],
            disk: None,
        }
    }

    fn read(path: &Path) -> String {
        match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }

    #[test]
    fn plot_writes_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.svg");
        let (t, l) = sample();
        write_svg(&path, &plot(&t, &l)).expect("plot written");
        let svg = read(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // The title, escaped as XML, and both panels with their axes and units.
        assert!(
            svg.contains("ordo bench test: channel &quot;bench&quot; (solo, ack enqueued)"),
            "{svg}"
        );
        assert!(svg.contains("4 clients &lt;&amp;&gt; 1,000 tx/s"), "{svg}");
        for text in [
            "throughput over time",
            "time since the first submit (s)",
            "delivered (tx/s)",
            "average 990 tx/s",
            "per 0.1 s",
            "latency distribution",
            "submit → delivered latency (ms)",
            "transactions at or below (%)",
            "p50 100.00 ms",
            "p99 198.00 ms",
        ] {
            assert!(svg.contains(&format!(">\n{text}\n<")), "no text {text:?}");
        }
        // The throughput steps (two points per interval) and the latency curve (one per
        // percentile) are each one polyline.
        let point_counts: Vec<usize> = svg
            .split("<polyline")
            .skip(1)
            .filter_map(|tag| {
                let points = tag.split("points=\"").nth(1)?.split('"').next()?;
                Some(points.split_whitespace().count())
            })
            .collect();
        assert!(point_counts.contains(&40), "{point_counts:?}");
        assert!(point_counts.contains(&104), "{point_counts:?}");
    }

    #[test]
    fn a_long_run_with_disk_samples_gets_a_second_row() {
        use std::collections::BTreeMap;
        use std::time::Duration;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long.svg");
        let (t, l) = sample();
        let finished: Vec<crate::windows::Finished> = (0..180u32)
            .map(|s| crate::windows::Finished {
                at_ms: s * 1000,
                latency_ms: f64::from(10 + s % 7),
                counted: true,
            })
            .collect();
        let windows =
            crate::windows::windows(Duration::from_secs(180), Duration::from_secs(60), &finished);
        let sample_at = |at_s: f64, a: u64, b: u64| crate::disk::DiskSample {
            at_s,
            total_bytes: a + b,
            parts: BTreeMap::from([
                ("orderer0/data".to_string(), a),
                ("peer0/data".to_string(), b),
            ]),
        };
        let disk = DiskSeries {
            dirs: vec!["net/orderer0/data".into(), "net/peer0/data".into()],
            samples: vec![
                sample_at(0.0, 1 << 20, 2 << 20),
                sample_at(90.0, 40 << 20, 30 << 20),
                sample_at(180.0, 41 << 20, 31 << 20),
            ],
        };
        let mut p = plot(&t, &l);
        p.windows = &windows;
        p.disk = Some(&disk);
        write_svg(&path, &p).expect("plot written");
        let svg = read(&path);
        assert!(
            svg.contains(&format!("height=\"{}\"", 2 * HEIGHT_PX)),
            "{}",
            &svg[..200]
        );
        for text in [
            "latency per window",
            "p99 per 60 s",
            "p50 per 60 s",
            "disk use over time",
            "on disk (MiB)",
            "all watched",
            "orderer0/data",
            "peer0/data",
        ] {
            assert!(svg.contains(&format!(">\n{text}\n<")), "no text {text:?}");
        }
        // One run without windows or disk keeps the single row.
        let path = dir.path().join("short.svg");
        write_svg(&path, &plot(&t, &l)).expect("plot written");
        let svg = read(&path);
        assert!(
            svg.contains(&format!("height=\"{HEIGHT_PX}\"")),
            "{}",
            &svg[..200]
        );
        assert!(!svg.contains("disk use"));
    }

    #[test]
    fn latency_axis_fits_the_samples() {
        let curve = |v: &[f64]| PercentileCurve::from_sorted(v);
        assert_eq!(latency_range(&curve(&[])), (0.0, 1.0));
        assert_eq!(latency_range(&curve(&[60.0, 80.0])), (59.0, 81.0));
        assert_eq!(latency_range(&curve(&[1.0, 201.0])), (0.0, 211.0));
        assert_eq!(latency_range(&curve(&[40.0])), (38.0, 42.0));
        assert_eq!(latency_range(&curve(&[0.0])), (0.0, 0.05));
    }

    #[test]
    fn plot_of_a_run_without_samples_still_draws() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.svg");
        let (t, l) = (ThroughputSeries::default(), PercentileCurve::default());
        let mut p = plot(&t, &l);
        p.mean_tx_per_s = 0.0;
        write_svg(&path, &p).expect("plot written");
        let svg = read(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("latency distribution (no samples)"));
    }

    #[test]
    fn plot_reports_a_file_it_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("run.svg");
        let (t, l) = sample();
        match write_svg(&path, &plot(&t, &l)) {
            Err(PlotError::Write { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected a write error, got {other:?}"),
        }
    }

    #[test]
    fn plot_path_must_be_svg_in_an_existing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_svg_path(&dir.path().join("a.svg")).is_ok());
        assert!(check_svg_path(&dir.path().join("a.SVG")).is_ok());
        assert!(check_svg_path(Path::new("relative.svg")).is_ok());
        for name in ["a.png", "a", "a.svg.txt", ".svg"] {
            let err = check_svg_path(&dir.path().join(name)).expect_err(name);
            assert!(matches!(err, PlotError::NotSvg { .. }), "{name}: {err}");
            assert!(err.to_string().contains("only SVG is supported"), "{err}");
        }
        let err = check_svg_path(&dir.path().join("missing").join("a.svg"))
            .expect_err("no such directory");
        assert!(matches!(err, PlotError::NoDirectory { .. }), "{err}");
    }
}
