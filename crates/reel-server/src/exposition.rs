//! The two metrics exposition formats `/metrics` speaks: OpenMetrics, which
//! the engine's registry writes, for scrapers that ask for it (Prometheus
//! does), and the Prometheus text format 0.0.4 for everything else.
//!
//! The formats differ where a text-format parser would misread OpenMetrics:
//! a counter's `# TYPE` names its family (`reel_x`) while its sample is
//! `reel_x_total`, and OpenMetrics ends with `# EOF` and may carry `# UNIT`.

use std::collections::HashSet;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when an `Accept` header takes OpenMetrics (with a non-zero q).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next() == Some("application/openmetrics-text")
                && !parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
    })
}

/// The text format 0.0.4 of an OpenMetrics exposition.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmetrics_parser::{OpenMetricsType, PrometheusType, openmetrics, prometheus};

    const SAMPLE: &str = "# HELP reel_uploaded_bytes Bytes uploaded.\n\
# TYPE reel_uploaded_bytes counter\n\
reel_uploaded_bytes_total{store=\"primary\"} 42\n\
# HELP reel_backlog_bytes Bytes waiting.\n\
# TYPE reel_backlog_bytes gauge\n\
reel_backlog_bytes 7\n\
# HELP reel_upload_seconds Upload time.\n\
# TYPE reel_upload_seconds histogram\n\
reel_upload_seconds_sum 0.5\n\
reel_upload_seconds_count 2\n\
reel_upload_seconds_bucket{le=\"0.25\"} 1\n\
reel_upload_seconds_bucket{le=\"+Inf\"} 2\n\
# EOF\n";

    #[test]
    fn both_formats_parse_with_their_types() {
        let om = openmetrics::parse_openmetrics(SAMPLE).expect("valid OpenMetrics");
        assert_eq!(
            om.families["reel_uploaded_bytes"].family_type,
            OpenMetricsType::Counter
        );
        let text = openmetrics_to_text(SAMPLE);
        let parsed = prometheus::parse_prometheus(&text).expect("valid text format");
        let ty = |name: &str| parsed.families[name].family_type.clone();
        assert_eq!(ty("reel_uploaded_bytes_total"), PrometheusType::Counter);
        assert_eq!(ty("reel_backlog_bytes"), PrometheusType::Gauge);
        assert_eq!(ty("reel_upload_seconds"), PrometheusType::Histogram);
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn accept_headers() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
