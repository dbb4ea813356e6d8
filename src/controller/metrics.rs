//! Prometheus metrics of the operator. Labels carry names, triggers and results, never key material.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyRingLabels {
    pub namespace: String,
    pub keyring: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub result: ReconcileResult,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReconcileResult {
    ok,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    pub trigger: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub rotations: Family<RotationLabels, Counter>,
    pub active_key_age: Family<KeyRingLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub next_rotation: Family<KeyRingLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub rollout_wait: Family<KeyRingLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub degraded: Family<KeyRingLabels, Gauge>,
    pub api_writes: Family<WriteLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under the `authkeyring` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            rotations: Family::default(),
            active_key_age: Family::default(),
            next_rotation: Family::default(),
            rollout_wait: Family::default(),
            degraded: Family::default(),
            api_writes: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("authkeyring");
        r.register("reconciles", "Reconciles by result", metrics.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            metrics.reconcile_errors.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Time one reconcile takes",
            prometheus_client::registry::Unit::Seconds,
            metrics.reconcile_duration.clone(),
        );
        r.register(
            "rotations",
            "Rotations by trigger and result",
            metrics.rotations.clone(),
        );
        r.register_with_unit(
            "active_key_age",
            "Age of the Active key since activation",
            prometheus_client::registry::Unit::Seconds,
            metrics.active_key_age.clone(),
        );
        r.register(
            "next_rotation_timestamp_seconds",
            "When the schedule rotates next, as Unix time; absent without a schedule",
            metrics.next_rotation.clone(),
        );
        r.register_with_unit(
            "rollout_wait",
            "How long the current phase has waited for consumers to complete their rollout",
            prometheus_client::registry::Unit::Seconds,
            metrics.rollout_wait.clone(),
        );
        r.register(
            "degraded",
            "1 when the key ring is Degraded",
            metrics.degraded.clone(),
        );
        r.register(
            "api_writes",
            "Writes to the API server by kind of object, Events included",
            metrics.api_writes.clone(),
        );
        metrics
    }

    /// Counts one write to the API server.
    pub fn wrote(&self, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }
}
