//! The user-service's Prometheus metrics: requests, latency, verification failures and key set
//! reloads, rendered in the OpenMetrics text format for `GET /metrics`.
//!
//! Labels are bounded: routes are the router's templates (or `unmatched`), methods a fixed list,
//! reasons the verifier's own labels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::token::TokenError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How a key set reload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new key set was loaded and swapped in.
    Success,
    /// The source was unreadable or malformed; the last good key set stays.
    Error,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric the service records, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    verification_failures: Family<ReasonLabels, Counter>,
    key_reloads: Family<ResultLabels, Counter>,
    keys_loaded: Gauge,
}

fn duration_histogram() -> Histogram {
    // 50 µs to about 1.6 s: verification and a database read sit at the bottom, timeouts at the top.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("user_service");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = DurationFamily::new_with_constructor(duration_histogram);
        let verification_failures = Family::<ReasonLabels, Counter>::default();
        let key_reloads = Family::<ResultLabels, Counter>::default();
        let keys_loaded = Gauge::default();

        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            duration.clone(),
        );
        registry.register(
            "token_verification_failures",
            "Requests whose bearer token was refused, by reason",
            verification_failures.clone(),
        );
        registry.register(
            "key_reloads",
            "Key set reloads from the key ring directory, by result",
            key_reloads.clone(),
        );
        registry.register(
            "keys_loaded",
            "Keys in the key set currently trusted",
            keys_loaded.clone(),
        );

        // Zero series exist from the start, so that rates and alerts have a baseline.
        for reason in TokenError::REASONS {
            let _ = verification_failures.get_or_create(&ReasonLabels { reason });
        }
        for result in ["success", "error"] {
            let _ = key_reloads.get_or_create(&ResultLabels { result });
        }

        Self {
            registry,
            requests,
            duration,
            verification_failures,
            key_reloads,
            keys_loaded,
        }
    }

    pub fn observe_request(&self, route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    pub fn verification_failed(&self, error: &TokenError) {
        self.verification_failures
            .get_or_create(&ReasonLabels {
                reason: error.reason(),
            })
            .inc();
    }

    pub fn key_reload(&self, result: ReloadResult) {
        let result = match result {
            ReloadResult::Success => "success",
            ReloadResult::Error => "error",
        };
        self.key_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn set_keys_loaded(&self, count: usize) {
        self.keys_loaded.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
