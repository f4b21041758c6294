//! One metrics implementation for both nodes: `prometheus-client` registries, rendered in
//! the format the scraper asks for, with the pieces every node exports the same way.
//!
//! Each node keeps one root [`Registry`] without a prefix and registers its own metrics in
//! a sub-registry (`ordo_orderer_…`, `ordo_peer_…`); what both export under one name —
//! [`register_build_info`]'s `ordo_build_info` — goes in the root. Every metric is
//! registered once, with help text, in base units (seconds, bytes); durations are
//! histograms with [`latency_buckets`].
//!
//! **Two formats.** `prometheus-client` writes OpenMetrics text, where a counter family
//! is declared without its `_total` suffix (`# TYPE x counter`, sample `x_total`). The
//! classic Prometheus text format (0.0.4) — what `curl` users, `promtool check metrics`
//! and older scrapers read — declares the family under the sample's name. Read as
//! classic text, OpenMetrics counters look like undocumented, untyped samples. So
//! [`render`] answers OpenMetrics only to a scraper that asks for it in `Accept` (as
//! Prometheus does) and the classic format otherwise, converted by [`openmetrics_to_text`]
//! — the negotiation the Go client library performs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Content type of the classic Prometheus text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text exposition format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The version every node reports in `ordo_build_info` (the workspace's version).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which node a process is, for `ordo_build_info{node}`: dashboards count versions per
/// kind of node during a rolling upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// An orderer (`ordo orderer`).
    Orderer,
    /// A peer (`ordo peer`).
    Peer,
}

impl NodeKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Orderer => "orderer",
            NodeKind::Peer => "peer",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    node: String,
}

/// Registers `ordo_build_info{version="…",node="orderer|peer"} 1` in `root`, which must be
/// a registry without a prefix (the name is the same on every node, so one query joins
/// any metric with the version that produced it).
pub fn register_build_info(root: &mut Registry, node: NodeKind) {
    let info: Family<BuildLabels, Gauge> = Family::default();
    info.get_or_create(&BuildLabels {
        version: BUILD_VERSION.to_string(),
        node: node.as_str().to_string(),
    })
    .set(1);
    root.register(
        "ordo_build_info",
        "Always 1; the labels say which Ordo version and kind of node this is",
        info,
    );
}

/// Histogram buckets for durations on a node's hot paths, in seconds: 100 µs doubling to
/// about 3.3 s (16 buckets) — a block validated or fsynced lands in the middle, a stall
/// in the last ones.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_1, 2.0, 16)
}

/// The exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic Prometheus text (0.0.4): the default.
    Text,
    /// OpenMetrics text 1.0: for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when the client lists it,
    /// the classic text format otherwise (no header, `*/*`, `text/plain`).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|a| {
            a.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The exposition of every metric in `registry`, in `format`. Encoding into a `String`
/// cannot fail short of a metric's own encoder failing; then the scrape gets what was
/// encoded before it, which Prometheus reports as a parse error rather than a gap.
pub fn render(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    match format {
        Format::OpenMetrics => out,
        Format::Text => openmetrics_to_text(&out),
    }
}

/// Converts OpenMetrics text as `prometheus-client` writes it into the classic Prometheus
/// text format: counter families are declared under their `_total` sample name, `info`
/// families become gauges named `…_info`, `unknown` becomes `untyped`, and `# UNIT` and
/// `# EOF` lines go (the classic format has neither). Samples pass unchanged; the nodes'
/// registries record no exemplars or created timestamps, which the classic format could
/// not carry.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // `prometheus-client` writes HELP before TYPE; the HELP line waits for the TYPE that
    // says under which name it belongs.
    let mut help: Option<(&str, &str)> = None;
    let flush_help = |out: &mut String, help: &mut Option<(&str, &str)>| {
        if let Some((name, text)) = help.take() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            out.push_str(text);
            out.push('\n');
        }
    };
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, &mut help);
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
                } else {
                    flush_help(&mut out, &mut Some((help_name, text)));
                }
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            flush_help(&mut out, &mut help);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush_help(&mut out, &mut help);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;

    fn sample_registry() -> Registry {
        let mut root = Registry::default();
        register_build_info(&mut root, NodeKind::Peer);
        let node = root.sub_registry_with_prefix("ordo_test");
        let c: Counter = Counter::default();
        c.inc_by(3);
        node.register("things", "Things done", c);
        let h = Histogram::new([0.5, 1.0]);
        h.observe(0.25);
        node.register("wait_seconds", "Time waited", h);
        root
    }

    #[test]
    fn counters_are_declared_under_their_total_name_in_the_classic_format() {
        let text = render(&sample_registry(), Format::Text);
        assert!(
            text.contains("# HELP ordo_test_things_total Things done.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ordo_test_things_total counter\n"),
            "{text}"
        );
        assert!(text.contains("\nordo_test_things_total 3\n"), "{text}");
        assert!(
            text.contains("# TYPE ordo_test_wait_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("ordo_test_wait_seconds_count 1\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_is_left_as_prometheus_client_writes_it() {
        let om = render(&sample_registry(), Format::OpenMetrics);
        assert!(om.contains("# TYPE ordo_test_things counter\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn build_info_names_the_version_and_the_node() {
        let text = render(&sample_registry(), Format::Text);
        let want = format!("ordo_build_info{{version=\"{BUILD_VERSION}\",node=\"peer\"}} 1\n");
        assert!(text.contains(&want), "{text}");
        assert!(text.contains("# TYPE ordo_build_info gauge\n"), "{text}");
    }

    #[test]
    fn info_unit_and_unknown_families_convert() {
        let om = "# HELP a_b Info.\n# TYPE a_b info\na_b_info{v=\"1\"} 1\n\
                  # HELP c_seconds Unit.\n# TYPE c_seconds gauge\n# UNIT c_seconds seconds\n\
                  c_seconds 2\n# HELP d Odd.\n# TYPE d unknown\nd 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_b_info Info.\n# TYPE a_b_info gauge\na_b_info{v=\"1\"} 1\n\
             # HELP c_seconds Unit.\n# TYPE c_seconds gauge\nc_seconds 2\n\
             # HELP d Odd.\n# TYPE d untyped\nd 1\n"
        );
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Text
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0,text/plain")),
            Format::Text
        );
    }

    #[test]
    fn latency_buckets_start_at_100_microseconds_and_reach_seconds() {
        let b: Vec<f64> = latency_buckets().collect();
        assert_eq!(b.len(), 16);
        assert!((b[0] - 0.000_1).abs() < 1e-12);
        assert!(b[15] > 3.0 && b[15] < 4.0, "{b:?}");
    }
}
