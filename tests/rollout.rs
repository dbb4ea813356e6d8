//! Rolling the consumers against a real control plane with kwok nodes: discovery of the seed's
//! Deployment, the staged order, health gating, StatefulSet and DaemonSet consumers, one workload
//! consuming two rings, and an operator restart mid-phase.

mod support;

use std::time::{Duration, Instant};

use authkeyring::crd::AuthKeyRing;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, status};
use support::{TestNamespace, namespace, wait_for};

const SETTLE: Duration = Duration::from_secs(90);

async fn create_ring(ns: &TestNamespace, name: &str, spec: Value) {
    let akr: AuthKeyRing = serde_json::from_value(json!({
        "apiVersion": "authkeyring.dev/v1alpha1", "kind": "AuthKeyRing",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    ns.api::<AuthKeyRing>()
        .create(&PostParams::default(), &akr)
        .await
        .unwrap();
}

/// The seed's Deployment: the user-service reading JWT_SECRET from `auth-secrets` through
/// `secretKeyRef`, on kwok nodes.
fn seed_deployment(name: &str, env: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "user-service", "image": "my-docker-repo/user-service:v1.2.0",
                        "ports": [{"containerPort": 8080}], "env": env}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }))
    .unwrap()
}

fn secret_env(secret: &str, key: &str) -> Value {
    json!([{"name": "JWT_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}])
}

async fn deploy(ns: &TestNamespace, deployment: Deployment) {
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .expect("creating the Deployment");
}

async fn field(ns: &TestNamespace, secret: &str, name: &str) -> Option<String> {
    let s = ns.api::<Secret>().get_opt(secret).await.ok()??;
    s.data?.get(name).map(|b| String::from_utf8(b.0.clone()).unwrap())
}

async fn jwks_kids(ns: &TestNamespace, secret: &str) -> Vec<String> {
    let Some(text) = field(ns, secret, "jwks.json").await else {
        return Vec::new();
    };
    let jwks: Value = serde_json::from_str(&text).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn request_rotation(ns: &TestNamespace, name: &str) -> String {
    let value = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {"authkeyring.dev/rotate": value}}});
    ns.api::<AuthKeyRing>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    value
}

async fn idle_after(ns: &TestNamespace, name: &str, request: &str, timeout: Duration) {
    let done = wait_for(timeout, || async {
        let st = status(ns, name).await;
        st.phase.as_deref() == Some("Idle") && st.last_rotate_request.as_deref() == Some(request)
    })
    .await;
    if let Err(e) = done {
        panic!(
            "{name} never finished rotating: {e}; status {:?}",
            status(ns, name).await
        );
    }
}

async fn replica_sets(ns: &TestNamespace, app: &str) -> usize {
    let lp = ListParams::default().labels(&format!("app={app}"));
    ns.api::<ReplicaSet>().list(&lp).await.unwrap().items.len()
}

async fn deployment_revision(ns: &TestNamespace, name: &str, ring: &str) -> Option<String> {
    let d = ns.api::<Deployment>().get(name).await.unwrap();
    let annotations = d.spec.template.metadata?.annotations?;
    annotations
        .get(&format!("{ring}.keyring.authkeyring.dev/revision"))
        .cloned()
}

async fn rollout_complete(ns: &TestNamespace, name: &str) -> bool {
    let d = ns.api::<Deployment>().get(name).await.unwrap();
    authkeyring::controller::consumers::deployment_progress(&d)
        == authkeyring::controller::consumers::Progress::Complete
}

#[tokio::test]
async fn the_seed_deployment_is_discovered_and_rolled_before_the_new_key_signs() {
    let ns = namespace("seed").await;
    let _operator = Operator::start(ns.name()).await;
    deploy(
        &ns,
        seed_deployment("user-service", secret_env("auth-secrets", "jwt-signing-key")),
    )
    .await;
    create_ring(&ns, "user-service-jwt", json!({
        "secretName": "auth-secrets", "rotation": {"publishAhead": "2s"}, "verification": {"retainFor": "1h"},
    }))
    .await;
    wait_for(SETTLE, || async {
        status(&ns, "user-service-jwt")
            .await
            .consumers
            .iter()
            .any(|c| c.up_to_date)
    })
    .await
    .expect("the seed Deployment is discovered and up to date");
    let first_kid = field(&ns, "auth-secrets", "jwt-signing-kid").await.unwrap();
    let rs_before = replica_sets(&ns, "user-service").await;

    // Watch the order: the new kid must be in jwks.json and its rollout complete before it signs.
    let request = request_rotation(&ns, "user-service-jwt").await;
    let started = Instant::now();
    let mut published_at = None;
    let mut published_rollout_done_at = None;
    let mut signing_changed_at = None;
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline && signing_changed_at.is_none() {
        let kids = jwks_kids(&ns, "auth-secrets").await;
        let signing = field(&ns, "auth-secrets", "jwt-signing-kid").await.unwrap();
        let st = status(&ns, "user-service-jwt").await;
        if published_at.is_none() && kids.len() == 2 {
            published_at = Some(started.elapsed());
        }
        if published_at.is_some() && published_rollout_done_at.is_none() && signing == first_kid {
            let next = st.keys.iter().find(|k| k.state == "Next").map(|k| k.kid.clone());
            let revision = deployment_revision(&ns, "user-service", "user-service-jwt").await;
            let consumer_rev = st.consumers.first().and_then(|c| c.revision.clone());
            if next.is_some()
                && revision.is_some()
                && revision == consumer_rev
                && rollout_complete(&ns, "user-service").await
            {
                published_rollout_done_at = Some(started.elapsed());
            }
        }
        if signing != first_kid {
            signing_changed_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published = published_at.expect("the Next key was published");
    let rolled = published_rollout_done_at
        .expect("the rollout trusting the Next key completed while the old key signed");
    let promoted = signing_changed_at.expect("the new key was promoted");
    assert!(
        published <= rolled && rolled <= promoted,
        "order: publish {published:?}, roll {rolled:?}, promote {promoted:?}"
    );

    idle_after(&ns, "user-service-jwt", &request, SETTLE).await;
    let elapsed = started.elapsed();
    let rollouts = replica_sets(&ns, "user-service").await - rs_before;
    eprintln!("rotation with one consumer: request to Idle {elapsed:?}, rollouts {rollouts}");
    assert_eq!(rollouts, 2, "one rollout to publish, one to promote");
}

#[tokio::test]
async fn a_consumer_that_cannot_become_ready_holds_the_rotation_until_it_is_fixed() {
    let ns = namespace("gate").await;
    let _operator = Operator::start(ns.name()).await;
    let mut deployment = seed_deployment("api", secret_env("jwt", "jwt-signing-key"));
    deployment.spec.progress_deadline_seconds = Some(600);
    deploy(&ns, deployment).await;
    create_ring(
        &ns,
        "jwt",
        json!({"rotation": {"publishAhead": "1s"}, "rollout": {"timeout": "5s"}}),
    )
    .await;
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.consumers.iter().all(|c| c.up_to_date)
            && !status(&ns, "jwt").await.consumers.is_empty()
    })
    .await
    .expect("the consumer is up to date");
    let signing = field(&ns, "jwt", "jwt-signing-kid").await.unwrap();

    // Break the consumer: its new pods can never be scheduled.
    let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}});
    ns.api::<Deployment>()
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let request = request_rotation(&ns, "jwt").await;

    wait_for(SETTLE, || async {
        let st = status(&ns, "jwt").await;
        st.phase.as_deref() == Some("Publishing")
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.status == "True" && c.message.contains("api"))
    })
    .await
    .expect("the rotation holds in Publishing with Degraded naming the consumer");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        field(&ns, "jwt", "jwt-signing-kid").await.unwrap(),
        signing,
        "the new key does not sign"
    );
    let events = support::kubectl(&["get", "events", "-n", ns.name(), "-o", "json"])
        .await
        .unwrap();
    assert!(events.contains("RolloutStalled"), "a Warning Event is emitted");

    let fix = json!({"spec": {"template": {"spec": {"nodeSelector": null}}}});
    ns.api::<Deployment>()
        .patch("api", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    idle_after(&ns, "jwt", &request, SETTLE).await;
    assert_ne!(
        field(&ns, "jwt", "jwt-signing-kid").await.unwrap(),
        signing,
        "the rotation completes after the fix"
    );
    let st = status(&ns, "jwt").await;
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False"),
        "no longer Degraded"
    );
}

#[tokio::test]
async fn stateful_set_and_daemon_set_consumers_are_rolled_and_three_consumers_reach_idle() {
    let ns = namespace("kinds").await;
    let _operator = Operator::start(ns.name()).await;
    let template = |app: &str| {
        json!({
            "metadata": {"labels": {"app": app}},
            "spec": {
                "containers": [{"name": "c", "image": "verifier", "volumeMounts": [{"name": "keys", "mountPath": "/keys"}]}],
                "volumes": [{"name": "keys", "configMap": {"name": "jwt-jwks"}}],
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            },
        })
    };
    let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
        "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}})).unwrap();
    let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}}))
    .unwrap();
    let web: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")}}))
    .unwrap();
    ns.api::<StatefulSet>()
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    ns.api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    deploy(&ns, web).await;
    create_ring(
        &ns,
        "jwt",
        json!({"algorithm": "ES256", "rotation": {"publishAhead": "1s"}}),
    )
    .await;

    let up = wait_for(SETTLE, || async {
        let st = status(&ns, "jwt").await;
        st.consumers.len() == 3 && st.consumers.iter().all(|c| c.up_to_date)
    })
    .await;
    if let Err(e) = up {
        panic!(
            "three consumers up to date: {e}; {:?}",
            status(&ns, "jwt").await.consumers
        );
    }

    let started = Instant::now();
    let request = request_rotation(&ns, "jwt").await;
    idle_after(&ns, "jwt", &request, Duration::from_secs(180)).await;
    eprintln!(
        "rotation with three consumers (Deployment, StatefulSet, DaemonSet): request to Idle {:?}",
        started.elapsed()
    );
    let st = status(&ns, "jwt").await;
    assert!(st.consumers.iter().all(|c| c.up_to_date), "{:?}", st.consumers);
    let kinds: Vec<String> = st.consumers.iter().map(|c| format!("{:?}", c.kind)).collect();
    assert_eq!(kinds, ["Deployment", "StatefulSet", "DaemonSet"]);
}

#[tokio::test]
async fn one_deployment_consuming_two_rings_carries_a_revision_for_each() {
    let ns = namespace("two-rings").await;
    let _operator = Operator::start(ns.name()).await;
    let env = json!([
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "ring-a", "key": "jwks.json"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "ring-b", "key": "jwks.json"}}},
    ]);
    deploy(&ns, seed_deployment("both", env)).await;
    create_ring(&ns, "ring-a", json!({"rotation": {"publishAhead": "1s"}})).await;
    create_ring(&ns, "ring-b", json!({"rotation": {"publishAhead": "1s"}})).await;
    wait_for(SETTLE, || async {
        deployment_revision(&ns, "both", "ring-a").await.is_some()
            && deployment_revision(&ns, "both", "ring-b").await.is_some()
    })
    .await
    .expect("both rings annotate the Deployment");

    let b_before = deployment_revision(&ns, "both", "ring-b").await;
    let request = request_rotation(&ns, "ring-a").await;
    idle_after(&ns, "ring-a", &request, SETTLE).await;
    assert_eq!(
        deployment_revision(&ns, "both", "ring-b").await,
        b_before,
        "ring-b's revision is untouched"
    );
    let st = status(&ns, "ring-b").await;
    assert!(st.consumers.iter().all(|c| c.up_to_date));
}

#[tokio::test]
async fn an_operator_killed_mid_publishing_resumes_without_a_second_rollout() {
    let ns = namespace("restart").await;
    let operator = Operator::start(ns.name()).await;
    deploy(&ns, seed_deployment("svc", secret_env("jwt", "jwks.json"))).await;
    create_ring(&ns, "jwt", json!({"rotation": {"publishAhead": "20s"}})).await;
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.consumers.iter().any(|c| c.up_to_date)
    })
    .await
    .expect("up to date");
    let rs_before = replica_sets(&ns, "svc").await;

    let request = request_rotation(&ns, "jwt").await;
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.phase.as_deref() == Some("Publishing")
    })
    .await
    .expect("Publishing");
    wait_for(SETTLE, || async {
        replica_sets(&ns, "svc").await == rs_before + 1
    })
    .await
    .expect("one rollout");
    operator.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let _restarted = Operator::start(ns.name()).await;
    idle_after(&ns, "jwt", &request, SETTLE).await;
    let rollouts = replica_sets(&ns, "svc").await - rs_before;
    assert_eq!(
        rollouts, 2,
        "publish and promote: no extra rollout after the restart"
    );
    let kids = jwks_kids(&ns, "jwt").await;
    assert_eq!(kids.len(), 2, "Active and Retiring");
}

#[tokio::test]
async fn explicit_targets_replace_discovery_and_immediate_rolls_once_per_rotation() {
    let ns = namespace("targets").await;
    let _operator = Operator::start(ns.name()).await;
    // `listed` reads nothing from the ring but is targeted; `reader` reads the Secret but is not.
    deploy(&ns, seed_deployment("listed", json!([]))).await;
    deploy(&ns, seed_deployment("reader", secret_env("jwt", "jwks.json"))).await;
    create_ring(
        &ns,
        "jwt",
        json!({"rollout": {"strategy": "Immediate", "targets": [{"kind": "Deployment", "name": "listed"}]}}),
    )
    .await;
    wait_for(SETTLE, || async {
        let st = status(&ns, "jwt").await;
        st.consumers.len() == 1 && st.consumers[0].up_to_date
    })
    .await
    .expect("only the listed Deployment is a consumer");
    assert_eq!(status(&ns, "jwt").await.consumers[0].name, "listed");
    assert_eq!(
        deployment_revision(&ns, "reader", "jwt").await,
        None,
        "an unlisted reader is not rolled"
    );

    let rs_before = replica_sets(&ns, "listed").await;
    let request = request_rotation(&ns, "jwt").await;
    idle_after(&ns, "jwt", &request, SETTLE).await;
    assert_eq!(
        replica_sets(&ns, "listed").await - rs_before,
        1,
        "Immediate: one rollout per rotation"
    );
}

#[tokio::test]
async fn a_retiring_key_that_expires_rolls_the_consumers_once_more() {
    let ns = namespace("expiry").await;
    let _operator = Operator::start(ns.name()).await;
    deploy(&ns, seed_deployment("svc", secret_env("jwt", "jwks.json"))).await;
    create_ring(
        &ns,
        "jwt",
        json!({"rotation": {"publishAhead": "1s"}, "verification": {"retainFor": "8s"}}),
    )
    .await;
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.consumers.iter().any(|c| c.up_to_date)
    })
    .await
    .expect("up to date");
    let rs_before = replica_sets(&ns, "svc").await;

    let request = request_rotation(&ns, "jwt").await;
    idle_after(&ns, "jwt", &request, SETTLE).await;
    assert_eq!(
        replica_sets(&ns, "svc").await - rs_before,
        2,
        "publish and promote"
    );
    assert_eq!(
        jwks_kids(&ns, "jwt").await.len(),
        2,
        "the superseded key still verifies"
    );

    wait_for(SETTLE, || async { jwks_kids(&ns, "jwt").await.len() == 1 })
        .await
        .expect("the superseded key retires");
    // NB: the Secret is written before the consumer is rolled and the status reports it, so the
    // status read right after the key leaves may still be the previous one, all up to date.
    wait_for(SETTLE, || async {
        replica_sets(&ns, "svc").await > rs_before + 2
    })
    .await
    .expect("the consumer is rolled once the key retires");
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.consumers.iter().all(|c| c.up_to_date)
    })
    .await
    .expect("the consumer rolls onto the ring without the retired key");
    assert_eq!(
        replica_sets(&ns, "svc").await - rs_before,
        3,
        "one more rollout when the old key expires"
    );
}
