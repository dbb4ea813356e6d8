//! The AuthKeyRing controller: reads the ring back from its Secret, asks the rotation plan what to
//! do next, writes the Secret and JWKS ConfigMap, rolls consumers, and reports status and Events.
//!
//! The decisions live in [`crate::plan`]; this module only carries them out against the API
//! server, in an order that keeps the invariants across crashes: the Secret (with the phase) is
//! written before any consumer is rolled, and consumers are rolled before anything waits.

pub mod consumers;
pub mod metrics;
pub mod secret;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::crd::{AuthKeyRing, KEYRING_LABEL, MANAGER, ROTATE_ANNOTATION, RolloutStrategy};
use crate::keys;
use crate::plan::{self, KeyEvent, Plan, PlanError, Policy, Requests, Rollout};
use consumers::{Consumer, Consumers, Progress};
use metrics::{ErrorLabels, KeyRingLabels, Metrics, ReconcileLabels, ReconcileResult};

/// What a reconcile can fail on. Messages name the object and never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The rotation plan refused the ring.
    #[error("key ring {namespace}/{name}: {source}")]
    Plan {
        namespace: String,
        name: String,
        #[source]
        source: PlanError,
    },
}

impl Error {
    /// A short label for the reconcile-errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Plan { .. } => "plan",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub reporter: Reporter,
    pub metrics: Metrics,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_owned(),
            instance,
        };
        Self {
            client,
            reporter,
            metrics,
        }
    }
}

/// Runs the controller for one namespace (or all, with `None`) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let api = |c: Client| -> Api<AuthKeyRing> {
        match &namespace {
            Some(ns) => Api::namespaced(c, ns),
            None => Api::all(c),
        }
    };
    let managed = watcher::Config::default().labels(&secret::managed_selector());

    let controller = Controller::new(api(client.clone()), watcher::Config::default().any_semantic());
    let store = controller.store();
    let controller = controller
        .watches(
            scoped::<Secret>(&client, &namespace),
            managed.clone(),
            managed_owner,
        )
        .watches(scoped::<ConfigMap>(&client, &namespace), managed, managed_owner)
        .watches(
            scoped::<Deployment>(&client, &namespace),
            watcher::Config::default(),
            {
                let store = store.clone();
                move |d: Deployment| rings_consuming(&store, &d, Some(&d.spec.template))
            },
        )
        .watches(
            scoped::<StatefulSet>(&client, &namespace),
            watcher::Config::default(),
            {
                let store = store.clone();
                move |s: StatefulSet| rings_consuming(&store, &s, Some(&s.spec.template))
            },
        )
        .watches(
            scoped::<DaemonSet>(&client, &namespace),
            watcher::Config::default(),
            {
                let store = store.clone();
                move |d: DaemonSet| rings_consuming(&store, &d, Some(&d.spec.template))
            },
        )
        .graceful_shutdown_on(shutdown);

    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "reconcile did not complete");
            }
        })
        .await;
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Maps a managed Secret or ConfigMap to its key ring through the keyring label, which works under
/// both deletion policies (a retained Secret has no owner reference).
fn managed_owner<K: Resource>(obj: K) -> Option<ObjectRef<AuthKeyRing>> {
    let name = obj.meta().labels.as_ref()?.get(KEYRING_LABEL)?;
    Some(ObjectRef::new(name).within(obj.meta().namespace.as_deref()?))
}

/// Maps a workload to every key ring of its namespace that it consumes, or that it carries a
/// revision annotation of.
fn rings_consuming<K: Resource>(
    store: &Store<AuthKeyRing>,
    workload: &K,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> Vec<ObjectRef<AuthKeyRing>> {
    let namespace = workload.meta().namespace.clone();
    let annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone());
    let spec = template.and_then(|t| t.spec.as_ref());
    let name = workload.meta().name.clone().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|akr| akr.metadata.namespace == namespace)
        .filter(|akr| {
            let carries = annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(&consumers::revision_annotation(&akr.name_any())));
            let targeted = akr.spec.rollout.targets.iter().any(|t| t.name == name);
            let uses = spec.is_some_and(|s| {
                consumers::pod_uses(s, &akr.secret_name(), akr.jwks_config_map_name().as_deref())
            });
            carries || targeted || uses
        })
        .map(|akr| ObjectRef::from(akr.as_ref()))
        .collect()
}

fn error_policy(akr: Arc<AuthKeyRing>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(keyring = %akr.name_any(), namespace = ?akr.namespace(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.metric_label().to_owned(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(akr: Arc<AuthKeyRing>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span =
        info_span!("reconcile", keyring = %akr.name_any(), namespace = %akr.namespace().unwrap_or_default());
    let started = std::time::Instant::now();
    let result = Reconciler {
        akr: &akr,
        ctx: &ctx,
        namespace: akr.namespace().unwrap_or_default(),
    }
    .run()
    .instrument(span)
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() {
        ReconcileResult::ok
    } else {
        ReconcileResult::error
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels { result: outcome })
        .inc();
    result
}

/// One reconcile of one key ring.
struct Reconciler<'a> {
    akr: &'a AuthKeyRing,
    ctx: &'a Context,
    namespace: String,
}

/// How long to wait for consumers before checking again, when nothing else wakes the controller.
const ROLLOUT_POLL: Duration = Duration::from_secs(30);

impl Reconciler<'_> {
    async fn run(&self) -> Result<Action, Error> {
        let akr = self.akr;
        let now = Timestamp::now();
        let status = akr.status.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let secret_name = akr.secret_name();

        // Read the ring back, and notice if someone else changed or removed it.
        let current = secrets
            .get_opt(&secret_name)
            .await
            .map_err(|e| self.kube("get", "Secret", &secret_name, e))?;
        let loaded = secret::load(akr, current.as_ref(), !status.keys.is_empty(), now);
        let ring = loaded.ring;
        if let Some(damage) = &loaded.damage {
            let note = damage.describe(&secret_name);
            warn!(secret = %secret_name, damage = damage.reason(), "managed Secret was changed outside the operator");
            self.event(EventType::Warning, damage.reason(), "Repair", note)
                .await;
        }
        // Where the consumers stand with the ring as it is now.
        let consumers = self.consumers().await?;
        let revision = ring.revision();
        let complete = consumers.iter().all(|c| c.runs(&revision));
        let rollout = Rollout {
            complete_revision: complete.then(|| revision.clone()),
        };

        let requests = Requests {
            rotate: akr.annotations().get(ROTATE_ANNOTATION).cloned(),
            revoke: akr.revoke_requests(),
        };
        let policy = policy(akr);
        let rsa_bits = akr.spec.rsa_key_bits.unwrap_or(2048);
        let plan = plan::plan(&policy, &ring, &requests, &rollout, now, &mut |alg| {
            keys::generate(alg, rsa_bits)
        })
        .map_err(|source| Error::Plan {
            namespace: self.namespace.clone(),
            name: akr.name_any(),
            source,
        })?;

        // Persist before acting: the Secret carries the phase, so a restart resumes from here.
        self.write_secret(current.as_ref(), &plan, loaded.damage.is_some())
            .await?;
        self.write_config_map(&plan).await?;
        for event in &plan.events {
            self.event(EventType::Normal, event.reason(), "Rotate", event.to_string())
                .await;
        }
        for event in &plan.events {
            let (trigger, result) = match event {
                KeyEvent::RotationStarted { trigger } => (trigger.as_str(), "started"),
                KeyEvent::RotationCompleted { .. } => {
                    (plan.trigger.map_or("Unknown", |t| t.as_str()), "completed")
                }
                KeyEvent::Revoked { .. } => ("Revocation", "revoked"),
                _ => continue,
            };
            info!(trigger, result, "rotation {result}");
            let labels = metrics::RotationLabels {
                trigger: trigger.to_owned(),
                result: result.to_owned(),
            };
            self.ctx.metrics.rotations.get_or_create(&labels).inc();
        }

        // Roll every consumer that does not yet carry the new revision, in one write each.
        // Limitation: a workload created after its key ring carries no revision yet, so it is rolled
        // once when first discovered although its pods already read the current keys.
        let revision = plan.ring.revision();
        let mut consumers = consumers;
        if akr.spec.rollout.strategy != RolloutStrategy::None {
            let api = Consumers::new(self.ctx.client.clone(), &self.namespace);
            let mut rolled = Vec::new();
            for c in consumers
                .iter_mut()
                .filter(|c| c.revision.as_deref() != Some(revision.as_str()))
            {
                api.roll(&akr.name_any(), c, &revision)
                    .await
                    .map_err(|e| self.kube("patch", kind_name(c), &c.name, e))?;
                self.ctx.metrics.wrote(kind_name(c));
                c.revision = Some(revision.clone());
                c.progress = Progress::Rolling;
                rolled.push(format!("{} {}", kind_name(c), c.name));
            }
            if !rolled.is_empty() {
                info!(revision = %revision, consumers = ?rolled, "rolling consumers");
                self.event(
                    EventType::Normal,
                    "RolloutStarted",
                    "Roll",
                    format!("rolling {} to revision {revision}", rolled.join(", ")),
                )
                .await;
            }
        }

        let stall = self.stall(&plan, &consumers, &revision, now);
        let previous = status.clone();
        let next = status::build(
            akr,
            &plan,
            &policy,
            &consumers,
            &revision,
            stall.as_deref(),
            loaded.damage.as_ref(),
            &previous,
            now,
        );
        self.report_transitions(&previous, &next, stall.as_deref()).await;
        if next != previous {
            self.write_status(&next).await?;
        }
        self.observe(&plan, &consumers, now, stall.is_some());

        Ok(self.requeue(&plan, &consumers, &revision, now))
    }

    async fn consumers(&self) -> Result<Vec<Consumer>, Error> {
        if self.akr.spec.rollout.strategy == RolloutStrategy::None {
            return Ok(Vec::new());
        }
        Consumers::new(self.ctx.client.clone(), &self.namespace)
            .find(self.akr)
            .await
            .map_err(|e| self.kube("list", "workloads", "", e))
    }

    async fn write_secret(&self, current: Option<&Secret>, plan: &Plan, repair: bool) -> Result<(), Error> {
        let desired = secret::desired_secret(self.akr, &plan.ring);
        if !repair && current.is_some_and(|c| secret::secret_up_to_date(c, &desired)) {
            return Ok(());
        }
        let name = self.akr.secret_name();
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        api.patch(&name, &apply_params(), &Patch::Apply(&desired))
            .await
            .map_err(|e| self.kube("apply", "Secret", &name, e))?;
        self.ctx.metrics.wrote("Secret");
        debug!(secret_name = %name, "Secret written");
        Ok(())
    }

    async fn write_config_map(&self, plan: &Plan) -> Result<(), Error> {
        let Some(desired) = secret::desired_config_map(self.akr, &plan.ring) else {
            return Ok(());
        };
        let name = desired.metadata.name.clone().unwrap_or_default();
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let current = api
            .get_opt(&name)
            .await
            .map_err(|e| self.kube("get", "ConfigMap", &name, e))?;
        if current.is_some_and(|c| secret::config_map_up_to_date(&c, &desired)) {
            return Ok(());
        }
        api.patch(&name, &apply_params(), &Patch::Apply(&desired))
            .await
            .map_err(|e| self.kube("apply", "ConfigMap", &name, e))?;
        self.ctx.metrics.wrote("ConfigMap");
        Ok(())
    }

    async fn write_status(&self, status: &crate::crd::AuthKeyRingStatus) -> Result<(), Error> {
        let api: Api<AuthKeyRing> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = serde_json::json!({
            "apiVersion": "authkeyring.dev/v1alpha1",
            "kind": "AuthKeyRing",
            "status": status,
        });
        api.patch_status(&self.akr.name_any(), &apply_params(), &Patch::Apply(&patch))
            .await
            .map_err(|e| self.kube("update status of", "AuthKeyRing", &self.akr.name_any(), e))?;
        self.ctx.metrics.wrote("AuthKeyRingStatus");
        Ok(())
    }

    /// Why the rotation is held by its consumers, if it is: a consumer reports failure, or the
    /// phase has waited longer than `rollout.timeout`.
    fn stall(&self, plan: &Plan, consumers: &[Consumer], revision: &str, now: Timestamp) -> Option<String> {
        let failed: Vec<String> = consumers
            .iter()
            .filter_map(|c| match &c.progress {
                Progress::Failed(why) => Some(why.clone()),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Some(failed.join("; "));
        }
        let waiting: Vec<String> = consumers
            .iter()
            .filter(|c| !c.runs(revision))
            .map(|c| format!("{} {}", kind_name(c), c.name))
            .collect();
        let since = plan.ring.phase_since?;
        let timeout = jiff::SignedDuration::try_from(self.akr.spec.rollout.timeout.as_std()).ok()?;
        (!waiting.is_empty() && now > since + timeout).then(|| {
            format!(
                "rollout of {} has not completed within {}",
                waiting.join(", "),
                self.akr.spec.rollout.timeout
            )
        })
    }

    async fn report_transitions(
        &self,
        previous: &crate::crd::AuthKeyRingStatus,
        next: &crate::crd::AuthKeyRingStatus,
        stall: Option<&str>,
    ) {
        let was_degraded = status::condition_true(previous, "Degraded");
        if let Some(why) = stall
            && !was_degraded
        {
            warn!(reason = %why, "rotation held by its consumers");
            self.event(EventType::Warning, "RolloutStalled", "Roll", why.to_owned())
                .await;
        }
        let all_up = |s: &crate::crd::AuthKeyRingStatus| {
            !s.consumers.is_empty() && s.consumers.iter().all(|c| c.up_to_date)
        };
        let rolled_revision = next
            .consumers
            .first()
            .and_then(|c| c.revision.clone())
            .unwrap_or_default();
        if all_up(next) && !all_up(previous) {
            info!(revision = %rolled_revision, "rollout complete");
            self.event(
                EventType::Normal,
                "RolloutComplete",
                "Roll",
                format!("every consumer runs revision {rolled_revision}"),
            )
            .await;
        }
    }

    fn observe(&self, plan: &Plan, consumers: &[Consumer], now: Timestamp, stalled: bool) {
        let labels = KeyRingLabels {
            namespace: self.namespace.clone(),
            keyring: self.akr.name_any(),
        };
        let m = &self.ctx.metrics;
        if let Some(at) = plan.ring.active().and_then(|k| k.activated_at) {
            m.active_key_age
                .get_or_create(&labels)
                .set(now.duration_since(at).as_secs_f64());
        }
        match plan::next_rotation_time(&policy(self.akr), &plan.ring) {
            Some(at) => {
                m.next_rotation.get_or_create(&labels).set(at.as_second() as f64);
            }
            None => {
                m.next_rotation.remove(&labels);
            }
        }
        let waiting = consumers.iter().any(|c| c.progress != Progress::Complete);
        let wait = plan
            .ring
            .phase_since
            .filter(|_| waiting)
            .map(|since| now.duration_since(since).as_secs_f64())
            .unwrap_or(0.0);
        m.rollout_wait.get_or_create(&labels).set(wait);
        m.degraded.get_or_create(&labels).set(i64::from(stalled));
    }

    fn requeue(&self, plan: &Plan, consumers: &[Consumer], revision: &str, now: Timestamp) -> Action {
        let mut wake = plan.requeue_at;
        if consumers.iter().any(|c| !c.runs(revision)) {
            let poll = now + jiff::SignedDuration::try_from(ROLLOUT_POLL).unwrap_or_default();
            let deadline = plan.ring.phase_since.and_then(|since| {
                jiff::SignedDuration::try_from(self.akr.spec.rollout.timeout.as_std())
                    .ok()
                    .map(|t| since + t)
            });
            wake = [wake, Some(poll), deadline.filter(|d| *d > now)]
                .into_iter()
                .flatten()
                .min();
        }
        match wake {
            Some(at) => {
                let wait = at.duration_since(now).max(jiff::SignedDuration::from_secs(1));
                Action::requeue(Duration::try_from(wait).unwrap_or(Duration::from_secs(1)))
            }
            None => Action::await_change(),
        }
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        self.ctx.metrics.wrote("Event");
        // NB: a Recorder folds an Event into the series of an earlier one with the same reason
        // for six minutes and keeps the earlier note, so a second KeyActivated would still name
        // the first kid. Each key event says something new, so each gets a Recorder of its own.
        let recorder = Recorder::new(self.ctx.client.clone(), self.ctx.reporter.clone());
        if let Err(error) = recorder.publish(&event, &self.akr.object_ref(&())).await {
            warn!(%error, reason, "could not publish Event");
        }
    }

    fn kube(&self, action: &'static str, kind: &'static str, name: &str, source: kube::Error) -> Error {
        Error::Kube {
            action,
            kind,
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    }
}

fn kind_name(c: &Consumer) -> &'static str {
    match c.kind {
        crate::crd::WorkloadKind::Deployment => "Deployment",
        crate::crd::WorkloadKind::StatefulSet => "StatefulSet",
        crate::crd::WorkloadKind::DaemonSet => "DaemonSet",
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// The rotation policy of a key ring, as the plan reads it.
pub fn policy(akr: &AuthKeyRing) -> Policy {
    let spec = &akr.spec;
    Policy {
        algorithm: spec.algorithm,
        every: spec.rotation.every.as_ref().map(|d| d.as_std()),
        publish_ahead: spec.rotation.publish_ahead.as_std(),
        retain_for: spec.verification.retain_for.as_std(),
        max_keys: spec.verification.max_keys as usize,
        strategy: match spec.rollout.strategy {
            RolloutStrategy::Staged => plan::Strategy::Staged,
            RolloutStrategy::Immediate => plan::Strategy::Immediate,
            RolloutStrategy::None => plan::Strategy::None,
        },
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (ready once the controller runs, which under leader
/// election means once this replica leads).
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    registry: prometheus_client::registry::Registry,
    ready: Arc<std::sync::atomic::AtomicBool>,
) {
    use axum::http::StatusCode;
    use axum::routing::get;

    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        ),
                        Err(_) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [("content-type", "text/plain")],
                            String::new(),
                        ),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(std::sync::atomic::Ordering::Relaxed) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "waiting for leadership")
                    }
                }
            }),
        );
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            if let Err(error) = axum::serve(listener, app).await {
                warn!(%error, "metrics server stopped");
            }
        }
        Err(error) => warn!(%error, addr = %addr, "cannot serve metrics"),
    }
}
