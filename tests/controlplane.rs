//! Proves the test control plane is a real cluster: Deployments schedule onto kwok Nodes and roll
//! out, RBAC is enforced for ServiceAccount tokens, CRDs are served, and Helm installs charts.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

const ROLLOUT: Duration = Duration::from_secs(90);

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a well-formed object")
}

/// `kubectl rollout status` semantics: the controller saw the latest spec, and every replica is
/// updated and available with no old pod left running.
async fn rollout_complete(deployments: &Api<Deployment>, name: &str) -> bool {
    let Ok(deployment) = deployments.get(name).await else {
        return false;
    };
    let wanted = deployment.spec.replicas.unwrap_or(1);
    let Some(status) = deployment.status else {
        return false;
    };
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas == Some(wanted)
        && status.replicas == Some(wanted)
        && status.available_replicas == Some(wanted)
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|conditions| {
        conditions
            .iter()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True")
    })
}

#[tokio::test]
async fn deployment_becomes_available_on_kwok_nodes_and_rolls_out_a_template_change() {
    let ns = support::namespace("rollout").await;
    let deployments: Api<Deployment> = ns.api();
    let replica_sets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    ns.create::<Deployment>(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
            }
        }
    }))
    .await;

    support::wait_for(ROLLOUT, || rollout_complete(&deployments, "web"))
        .await
        .expect("the Deployment becomes Available with 2 replicas");

    let running = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(running.items.len(), 2);
    for pod in &running.items {
        let node = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default();
        assert!(
            node.starts_with("kwok-node-"),
            "pod {} runs on {node:?}",
            pod.name_any()
        );
        assert!(is_ready(pod), "pod {} is not Ready", pod.name_any());
    }

    let change = json!({"spec": {"template": {"metadata": {"annotations": {"example.dev/revision": "2"}}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap();
    support::wait_for(ROLLOUT, || rollout_complete(&deployments, "web"))
        .await
        .expect("the template change rolls out to completion");

    // The old pods must be gone, not merely terminating: kwok finishes their deletion.
    support::wait_for(ROLLOUT, || async {
        let Ok(list) = replica_sets.list(&ListParams::default()).await else {
            return false;
        };
        let old_drained = list.items.iter().all(|rs| {
            let revision = rs
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str);
            let status = rs.status.as_ref();
            match revision {
                Some("2") => status.and_then(|s| s.ready_replicas) == Some(2),
                _ => rs.spec.replicas == Some(0) && status.map(|s| s.replicas) == Some(0),
            }
        });
        old_drained && list.items.len() == 2
    })
    .await
    .expect("the new ReplicaSet has 2 ready replicas and the old one is scaled to 0");

    let pods_left = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert!(
        pods_left
            .items
            .iter()
            .all(|pod| pod.annotations().get("example.dev/revision").is_some()),
        "only pods of the new template remain"
    );
}

#[tokio::test]
async fn service_account_reads_secrets_only_once_a_role_binding_grants_it() {
    let ns = support::namespace("rbac").await;
    ns.create::<ServiceAccount>(json!({"metadata": {"name": "reader"}}))
        .await;
    ns.create::<Secret>(json!({"metadata": {"name": "token-key"}, "stringData": {"key": "value"}}))
        .await;

    let as_reader: Api<Secret> = Api::namespaced(
        support::service_account_client(ns.name(), "reader").await,
        ns.name(),
    );
    match as_reader.get("token-key").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "unexpected refusal: {status:?}"),
        other => panic!("a ServiceAccount without a Role read a Secret: {other:?}"),
    }

    ns.create::<Role>(json!({
        "metadata": {"name": "secret-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    }))
    .await;
    ns.create::<RoleBinding>(json!({
        "metadata": {"name": "secret-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name()}]
    }))
    .await;

    // The authorizer learns of new bindings through a watch, so allow it a moment.
    support::wait_for(Duration::from_secs(10), || async {
        as_reader.get("token-key").await.is_ok()
    })
    .await
    .expect("the bound ServiceAccount reads the Secret");
    let listed = as_reader.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn custom_resource_definition_is_established_and_served() {
    let ns = support::namespace("crd").await;
    // CRDs are cluster-scoped: a group per namespace keeps parallel runs apart.
    let group = format!("{}.test.authkeyring.dev", ns.name());
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client());
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {"size": {"type": "integer", "minimum": 1}}
                    }}
                }}
            }]
        }
    }));
    let name = crd.metadata.name.clone().unwrap();

    crds.create(&PostParams::default(), &crd).await.unwrap();
    support::wait_for(Duration::from_secs(30), || async {
        let Ok(crd) = crds.get(&name).await else {
            return false;
        };
        let conditions = crd
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        conditions
            .iter()
            .any(|condition| condition.type_ == "Established" && condition.status == "True")
    })
    .await
    .expect("the CRD becomes Established");

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Gadget"));
    let gadgets: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource);
    let gadget: DynamicObject = from_json(json!({
        "apiVersion": format!("{group}/v1"),
        "kind": "Gadget",
        "metadata": {"name": "first"},
        "spec": {"size": 3}
    }));
    // Discovery of a new group can lag Established by a moment.
    support::wait_for(Duration::from_secs(30), || async {
        gadgets.create(&PostParams::default(), &gadget).await.is_ok()
    })
    .await
    .expect("an object of the new kind is accepted");

    let stored = gadgets.get("first").await.unwrap();
    assert_eq!(stored.data["spec"]["size"], 3);
    let invalid = from_json(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "invalid"}, "spec": {"size": 0}
    }));
    match gadgets.create(&PostParams::default(), &invalid).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "unexpected refusal: {status:?}"),
        other => panic!("the schema's minimum was not enforced: {other:?}"),
    }

    let _ = crds.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn helm_installs_a_chart_whose_resources_come_up() {
    let ns = support::namespace("helm").await;

    let installed = support::helm(&[
        "install",
        "smoke",
        "tests/fixtures/smoke-chart",
        "--namespace",
        ns.name(),
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout",
        "90s",
    ])
    .await
    .unwrap();
    assert!(
        installed.contains("STATUS: deployed"),
        "helm install said:\n{installed}"
    );

    let settings = support::kubectl(&[
        "get",
        "configmap",
        "smoke-settings",
        "-n",
        ns.name(),
        "-o",
        "jsonpath={.data.greeting}",
    ])
    .await
    .unwrap();
    assert_eq!(settings, "hi");
    support::kubectl(&["get", "serviceaccount", "smoke", "-n", ns.name()])
        .await
        .unwrap();
    let deployments: Api<Deployment> = ns.api();
    assert!(
        rollout_complete(&deployments, "smoke").await,
        "helm --wait returned before the Deployment was up"
    );

    let releases = support::helm(&["list", "--namespace", ns.name(), "--short"])
        .await
        .unwrap();
    assert_eq!(releases.trim(), "smoke");
}
