//! Consumers: the Deployments, StatefulSets and DaemonSets that read a key ring, how they are
//! found, how they are rolled to a ring revision, and when their rollout counts as complete.
//!
//! Discovery and completion are pure functions of the workload objects; only [`Consumers`] talks
//! to the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::crd::{AuthKeyRing, MANAGER, RolloutTarget, WorkloadKind};

/// Pod-template annotation carrying the revision of one key ring.
pub fn revision_annotation(keyring: &str) -> String {
    format!("{keyring}.keyring.authkeyring.dev/revision")
}

/// Where a consumer's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every replica runs the current template and is available.
    Complete,
    /// The rollout is under way.
    Rolling,
    /// The workload reports that it cannot progress (ProgressDeadlineExceeded).
    Failed(String),
}

/// A workload that reads the key ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub kind: WorkloadKind,
    pub name: String,
    /// The ring revision its pod template carries, if any.
    pub revision: Option<String>,
    pub progress: Progress,
}

impl Consumer {
    /// Whether it runs `revision` with its rollout complete.
    pub fn runs(&self, revision: &str) -> bool {
        self.revision.as_deref() == Some(revision) && self.progress == Progress::Complete
    }
}

/// Whether a pod spec reads the Secret `secret` or the ConfigMap `config_map`: through env
/// `secretKeyRef`/`configMapKeyRef`, `envFrom`, or secret, configMap and projected volumes.
pub fn pod_uses(spec: &PodSpec, secret: &str, config_map: Option<&str>) -> bool {
    let is_cm = |name: &str| config_map == Some(name);
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for env in c.env.iter().flatten() {
            let Some(from) = &env.value_from else { continue };
            if from.secret_key_ref.as_ref().is_some_and(|r| r.name == secret)
                || from.config_map_key_ref.as_ref().is_some_and(|r| is_cm(&r.name))
            {
                return true;
            }
        }
        for from in c.env_from.iter().flatten() {
            if from.secret_ref.as_ref().is_some_and(|r| r.name == secret)
                || from.config_map_ref.as_ref().is_some_and(|r| is_cm(&r.name))
            {
                return true;
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret)
            || v.config_map.as_ref().is_some_and(|c| is_cm(&c.name))
        {
            return true;
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if source.secret.as_ref().is_some_and(|s| s.name == secret)
                || source.config_map.as_ref().is_some_and(|c| is_cm(&c.name))
            {
                return true;
            }
        }
    }
    false
}

/// Rollout progress of a Deployment, as `kubectl rollout status` judges it.
pub fn deployment_progress(d: &Deployment) -> Progress {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Progress::Rolling;
    };
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "Deployment {} exceeded its progress deadline",
            d.name_any()
        ));
    }
    let wanted = d.spec.replicas.unwrap_or(1);
    let done = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) <= status.updated_replicas.unwrap_or(0)
        && status.available_replicas.unwrap_or(0) >= status.updated_replicas.unwrap_or(0);
    if done {
        Progress::Complete
    } else {
        Progress::Rolling
    }
}

/// Rollout progress of a StatefulSet with the RollingUpdate strategy.
pub fn stateful_set_progress(s: &StatefulSet) -> Progress {
    let generation = s.metadata.generation.unwrap_or(0);
    let Some(status) = &s.status else {
        return Progress::Rolling;
    };
    let wanted = s.spec.replicas.unwrap_or(1);
    let done = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.ready_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.update_revision.is_some()
        && status.current_revision == status.update_revision;
    if done {
        Progress::Complete
    } else {
        Progress::Rolling
    }
}

/// Rollout progress of a DaemonSet with the RollingUpdate strategy.
pub fn daemon_set_progress(d: &DaemonSet) -> Progress {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Progress::Rolling;
    };
    let desired = status.desired_number_scheduled;
    let done = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_number_scheduled.unwrap_or(0) >= desired
        && status.number_available.unwrap_or(0) >= desired;
    if done {
        Progress::Complete
    } else {
        Progress::Rolling
    }
}

fn template_revision(annotations: Option<&BTreeMap<String, String>>, key: &str) -> Option<String> {
    annotations.and_then(|a| a.get(key)).cloned()
}

/// Finds and rolls the consumers of key rings in one namespace.
pub struct Consumers {
    deployments: Api<Deployment>,
    stateful_sets: Api<StatefulSet>,
    daemon_sets: Api<DaemonSet>,
}

impl Consumers {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            deployments: Api::namespaced(client.clone(), namespace),
            stateful_sets: Api::namespaced(client.clone(), namespace),
            daemon_sets: Api::namespaced(client, namespace),
        }
    }

    /// The consumers of `akr`: its explicit targets, or every workload whose pod template reads its
    /// Secret or JWKS ConfigMap. Sorted by kind and name.
    pub async fn find(&self, akr: &AuthKeyRing) -> Result<Vec<Consumer>, kube::Error> {
        let key = revision_annotation(&akr.name_any());
        let secret = akr.secret_name();
        let config_map = akr.jwks_config_map_name();
        let targets = &akr.spec.rollout.targets;
        let wanted = |kind: WorkloadKind, name: &str, spec: Option<&PodSpec>| {
            if targets.is_empty() {
                spec.is_some_and(|s| pod_uses(s, &secret, config_map.as_deref()))
            } else {
                targets.contains(&RolloutTarget {
                    kind,
                    name: name.to_owned(),
                })
            }
        };

        let examine = |kind, name: String, template: Option<&PodTemplateSpec>, progress| {
            wanted(kind, &name, template.and_then(|t| t.spec.as_ref())).then(|| Consumer {
                kind,
                revision: template_revision(
                    template
                        .and_then(|t| t.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref()),
                    &key,
                ),
                name,
                progress,
            })
        };

        let lp = ListParams::default();
        let mut found = Vec::new();
        for d in self.deployments.list(&lp).await? {
            let progress = deployment_progress(&d);
            found.extend(examine(
                WorkloadKind::Deployment,
                d.name_any(),
                Some(&d.spec.template),
                progress,
            ));
        }
        for s in self.stateful_sets.list(&lp).await? {
            let progress = stateful_set_progress(&s);
            found.extend(examine(
                WorkloadKind::StatefulSet,
                s.name_any(),
                Some(&s.spec.template),
                progress,
            ));
        }
        for d in self.daemon_sets.list(&lp).await? {
            let progress = daemon_set_progress(&d);
            found.extend(examine(
                WorkloadKind::DaemonSet,
                d.name_any(),
                Some(&d.spec.template),
                progress,
            ));
        }
        found.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(found)
    }

    /// Rolls one consumer to `revision` by patching its pod-template annotation: one write, one
    /// rollout.
    pub async fn roll(&self, keyring: &str, consumer: &Consumer, revision: &str) -> Result<(), kube::Error> {
        let patch = json!({
            "spec": {"template": {"metadata": {"annotations": {revision_annotation(keyring): revision}}}}
        });
        let pp = PatchParams {
            field_manager: Some(MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(&patch);
        match consumer.kind {
            WorkloadKind::Deployment => self
                .deployments
                .patch(&consumer.name, &pp, &patch)
                .await
                .map(drop),
            WorkloadKind::StatefulSet => self
                .stateful_sets
                .patch(&consumer.name, &pp, &patch)
                .await
                .map(drop),
            WorkloadKind::DaemonSet => self
                .daemon_sets
                .patch(&consumer.name, &pp, &patch)
                .await
                .map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> PodSpec {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn the_seed_deployment_reads_the_secret_through_secret_key_ref() {
        let spec = pod(json!({"containers": [{"name": "user-service", "env": [{
            "name": "JWT_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "auth-secrets", "key": "jwt-signing-key"}}
        }]}]}));
        assert!(pod_uses(&spec, "auth-secrets", None));
        assert!(!pod_uses(&spec, "other", None));
    }

    #[test]
    fn env_from_and_every_volume_kind_count_as_use() {
        let env_from = pod(json!({"containers": [{"name": "a", "envFrom": [{"secretRef": {"name": "s"}}]}]}));
        let secret_volume = pod(json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "k", "secret": {"secretName": "s"}}]}));
        let projected = pod(json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "k", "projected": {"sources": [{"secret": {"name": "s"}}]}}]}));
        let cm_volume = pod(json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "k", "configMap": {"name": "ring-jwks"}}]}));
        let init_env = pod(
            json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i",
            "env": [{"name": "J", "valueFrom": {"configMapKeyRef": {"name": "ring-jwks", "key": "jwks.json"}}}]}]}),
        );

        for spec in [&env_from, &secret_volume, &projected] {
            assert!(pod_uses(spec, "s", None));
        }
        assert!(pod_uses(&cm_volume, "s", Some("ring-jwks")));
        assert!(pod_uses(&init_env, "s", Some("ring-jwks")));
        assert!(
            !pod_uses(&cm_volume, "s", None),
            "a ConfigMap counts only for asymmetric rings"
        );
    }

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_is_complete_only_when_every_replica_is_updated_and_available() {
        let done =
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            deployment_progress(&deployment(3, done.clone())),
            Progress::Complete
        );
        assert_eq!(
            deployment_progress(&deployment(4, done)),
            Progress::Rolling,
            "generation not observed"
        );

        let surge =
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3});
        assert_eq!(
            deployment_progress(&deployment(3, surge)),
            Progress::Rolling,
            "old replicas remain"
        );

        let unavailable =
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert_eq!(
            deployment_progress(&deployment(3, unavailable)),
            Progress::Rolling
        );
    }

    #[test]
    fn progress_deadline_exceeded_is_a_failure_not_a_wait() {
        let stalled = json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        assert!(matches!(
            deployment_progress(&deployment(3, stalled)),
            Progress::Failed(_)
        ));
    }

    #[test]
    fn a_stateful_set_is_complete_when_current_and_update_revisions_agree() {
        let sts = |current: &str| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": {"name": "s", "generation": 2},
                "spec": {"replicas": 1, "selector": {}, "serviceName": "s", "template": {}},
                "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                    "availableReplicas": 1, "currentRevision": current, "updateRevision": "s-2"},
            }))
            .unwrap()
        };
        assert_eq!(stateful_set_progress(&sts("s-2")), Progress::Complete);
        assert_eq!(stateful_set_progress(&sts("s-1")), Progress::Rolling);
    }

    #[test]
    fn a_daemon_set_is_complete_when_every_scheduled_pod_is_updated_and_available() {
        let ds = |available: i32| -> DaemonSet {
            serde_json::from_value(json!({
                "metadata": {"name": "d", "generation": 2},
                "spec": {"selector": {}, "template": {}},
                "status": {"observedGeneration": 2, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                    "numberMisscheduled": 0, "numberReady": available, "updatedNumberScheduled": 3,
                    "numberAvailable": available},
            }))
            .unwrap()
        };
        assert_eq!(daemon_set_progress(&ds(3)), Progress::Complete);
        assert_eq!(daemon_set_progress(&ds(2)), Progress::Rolling);
    }
}
