//! The operator against a real control plane: key rings of every algorithm, requested and
//! scheduled rotation, revocation, admission of bad specs, hand edits of the Secret, deletion
//! policies, and no key material in status, Events or logs.

mod support;

use std::time::{Duration, Instant};

use authkeyring::crd::AuthKeyRing;
use authkeyring::keys::{self, Algorithm};
use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, status};
use support::{TestNamespace, namespace, wait_for};

const SETTLE: Duration = Duration::from_secs(60);

fn ring(name: &str, spec: Value) -> AuthKeyRing {
    serde_json::from_value(json!({
        "apiVersion": "authkeyring.dev/v1alpha1",
        "kind": "AuthKeyRing",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid AuthKeyRing")
}

async fn create(ns: &TestNamespace, akr: &AuthKeyRing) {
    ns.api::<AuthKeyRing>()
        .create(&PostParams::default(), akr)
        .await
        .expect("creating the AuthKeyRing");
}

fn field(secret: &Secret, name: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(name)
        .map(|b| String::from_utf8(b.0.clone()).expect("UTF-8 field"))
}

async fn secret(ns: &TestNamespace, name: &str) -> Option<Secret> {
    ns.api::<Secret>()
        .get_opt(name)
        .await
        .expect("reading the Secret")
}

/// Waits until the Secret exists with a signing key, and returns it.
async fn issued(ns: &TestNamespace, name: &str) -> Secret {
    wait_for(SETTLE, || async {
        secret(ns, name)
            .await
            .is_some_and(|s| field(&s, "jwt-signing-kid").is_some())
    })
    .await
    .unwrap_or_else(|e| panic!("Secret {name} never held a signing key: {e}"));
    secret(ns, name).await.unwrap()
}

fn jwks_kids(secret: &Secret) -> Vec<String> {
    let jwks: Value = serde_json::from_str(&field(secret, "jwks.json").expect("jwks.json")).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Signs with the Secret's signing key and verifies against every key of its `jwks.json`: only the
/// key whose kid is the signing kid accepts the token.
fn assert_signing_key_verifies(secret: &Secret, algorithm: Algorithm) {
    let private = field(secret, "jwt-signing-key").expect("signing key field");
    let kid = field(secret, "jwt-signing-kid").expect("signing kid field");
    let key = keys::from_private(algorithm, &private).expect("the signing key loads");
    assert_eq!(key.kid, kid, "the signing kid is the key's thumbprint");
    let token = key
        .sign(&json!({"user_id": 7, "exp": jiff::Timestamp::now().as_second() + 60}))
        .unwrap();

    let jwks: Value = serde_json::from_str(&field(secret, "jwks.json").unwrap()).unwrap();
    let mut verified_by = Vec::new();
    for jwk in jwks["keys"].as_array().unwrap() {
        let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&parsed).unwrap();
        let mut validation = Validation::new(algorithm.to_jsonwebtoken());
        validation.required_spec_claims = ["exp".to_owned()].into();
        if jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok() {
            verified_by.push(jwk["kid"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        verified_by,
        vec![kid],
        "{algorithm}: exactly the signing key's JWK verifies"
    );
}

/// The operator's API writes so far, by kind of object written.
async fn writes_by_kind(operator: &Operator) -> Vec<(&'static str, f64)> {
    let mut writes = Vec::new();
    for kind in ["Secret", "ConfigMap", "AuthKeyRingStatus", "Event"] {
        let n = operator
            .metric("authkeyring_api_writes_total", &format!("kind=\"{kind}\""))
            .await;
        writes.push((kind, n));
    }
    writes
}

async fn cli(ns: &TestNamespace, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_authkeyring"))
        .args(args)
        .args(["-n", ns.name(), "--kubeconfig"])
        .arg(support::kubeconfig_path())
        .output()
        .await
        .expect("running the authkeyring CLI")
}

#[tokio::test]
async fn a_ring_of_every_algorithm_issues_a_key_that_verifies_against_its_jwks() {
    let ns = namespace("every-alg").await;
    let _operator = Operator::start(ns.name()).await;
    for alg in Algorithm::ALL {
        let name = format!("ring-{}", alg.as_str().to_lowercase());
        create(&ns, &ring(&name, json!({"algorithm": alg.as_str()}))).await;
    }

    for alg in Algorithm::ALL {
        let name = format!("ring-{}", alg.as_str().to_lowercase());
        let secret = issued(&ns, &name).await;
        assert_signing_key_verifies(&secret, alg);
        assert_eq!(
            secret
                .labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("authkeyring")
        );

        let config_maps = ns.api::<ConfigMap>();
        let cm_name = format!("{name}-jwks");
        if alg.is_hmac() {
            let config_map = config_maps.get_opt(&cm_name).await.unwrap();
            assert!(config_map.is_none(), "{alg}: HMAC keys never go into a ConfigMap");
        } else {
            // The ConfigMap is written right after the Secret.
            wait_for(SETTLE, || async {
                config_maps.get_opt(&cm_name).await.unwrap().is_some()
            })
            .await
            .expect("asymmetric rings publish a JWKS ConfigMap");
            let data = config_maps.get(&cm_name).await.unwrap().data.unwrap();
            let public: Value = serde_json::from_str(&data["jwks.json"]).unwrap();
            for jwk in public["keys"].as_array().unwrap() {
                for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                    assert!(
                        jwk.get(private).is_none(),
                        "{alg}: public JWKS holds no `{private}`"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn rotate_promotes_a_new_key_and_the_old_one_verifies_until_retire_at() {
    let ns = namespace("rotate").await;
    let operator = Operator::start(ns.name()).await;
    create(
        &ns,
        &ring(
            "jwt",
            json!({
                "rotation": {"publishAhead": "1s"},
                "verification": {"retainFor": "15s"},
            }),
        ),
    )
    .await;
    let before = issued(&ns, "jwt").await;
    let old_kid = field(&before, "jwt-signing-kid").unwrap();
    let writes_before = writes_by_kind(&operator).await;

    let started = Instant::now();
    let out = cli(&ns, &["rotate", "jwt", "--wait", "--timeout", "60s"]).await;
    assert!(
        out.status.success(),
        "rotate --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elapsed = started.elapsed();

    let after = secret(&ns, "jwt").await.unwrap();
    let new_kid = field(&after, "jwt-signing-kid").unwrap();
    assert_ne!(new_kid, old_kid, "a new key signs");
    assert_signing_key_verifies(&after, Algorithm::HS256);
    assert!(jwks_kids(&after).contains(&old_kid), "the old key still verifies");
    let st = status(&ns, "jwt").await;
    let old = st
        .keys
        .iter()
        .find(|k| k.kid == old_kid)
        .expect("the old key is listed");
    assert_eq!(old.state, "Retiring");
    let writes: Vec<(&str, f64)> = writes_by_kind(&operator)
        .await
        .into_iter()
        .zip(writes_before)
        .map(|((kind, after), (_, before))| (kind, after - before))
        .collect();
    assert_eq!(
        writes.iter().find(|(kind, _)| *kind == "Secret").map(|(_, n)| *n),
        Some(3.0),
        "a staged rotation writes the Secret once per phase it enters: Publishing, Promoting, Idle"
    );
    eprintln!("rotate request to Idle with the new key: {elapsed:?}; API writes by kind: {writes:?}");
    let completed = operator
        .metric("authkeyring_rotations_total", "result=\"completed\"")
        .await;
    assert_eq!(
        completed, 1.0,
        "the rotations metric counts the completed rotation"
    );

    wait_for(Duration::from_secs(40), || async {
        secret(&ns, "jwt")
            .await
            .is_some_and(|s| !jwks_kids(&s).contains(&old_kid))
    })
    .await
    .expect("the old key leaves jwks.json after retireAt");
    let retire_at = old.retire_at.as_ref().unwrap().0;
    assert!(jiff::Timestamp::now() >= retire_at, "not before its retireAt");

    let events = event_notes(&ns).await;
    for (reason, kid) in [
        ("KeyActivated", &old_kid),
        ("KeyPublished", &new_kid),
        ("KeyActivated", &new_kid),
        ("KeyRetiring", &old_kid),
        ("KeyRetired", &old_kid),
    ] {
        assert!(
            events
                .iter()
                .any(|(r, note)| r == reason && note.contains(kid.as_str())),
            "an Event {reason} names key {kid}: {events:?}"
        );
    }
}

/// The reason and note of every Event in the namespace.
async fn event_notes(ns: &TestNamespace) -> Vec<(String, String)> {
    let list = support::kubectl(&["get", "events.events.k8s.io", "-n", ns.name(), "-o", "json"])
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (text("reason"), text("note"))
        })
        .collect()
}

#[tokio::test]
async fn a_short_schedule_rotates_on_its_own() {
    let ns = namespace("schedule").await;
    let _operator = Operator::start(ns.name()).await;
    create(
        &ns,
        &ring(
            "jwt",
            json!({
                "rotation": {"every": "10s", "publishAhead": "1s"},
                "verification": {"retainFor": "5s", "maxKeys": 3},
            }),
        ),
    )
    .await;
    let first = field(&issued(&ns, "jwt").await, "jwt-signing-kid").unwrap();
    // The status is written right after the Secret.
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.next_rotation_time.is_some()
    })
    .await
    .expect("status shows the next rotation");

    wait_for(Duration::from_secs(45), || async {
        secret(&ns, "jwt")
            .await
            .and_then(|s| field(&s, "jwt-signing-kid"))
            .is_some_and(|k| k != first)
    })
    .await
    .expect("the schedule rotates the key");
}

#[tokio::test]
async fn revoking_a_retiring_key_removes_it_and_revoking_the_active_key_replaces_it_at_once() {
    let ns = namespace("revoke").await;
    let _operator = Operator::start(ns.name()).await;
    create(&ns, &ring("jwt", json!({"rotation": {"publishAhead": "1s"}}))).await;
    let first = field(&issued(&ns, "jwt").await, "jwt-signing-kid").unwrap();
    let out = cli(&ns, &["rotate", "jwt", "--wait", "--timeout", "60s"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = field(&secret(&ns, "jwt").await.unwrap(), "jwt-signing-kid").unwrap();

    let out = cli(&ns, &["revoke", "jwt", "--kid", &first]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(SETTLE, || async {
        secret(&ns, "jwt")
            .await
            .is_some_and(|s| !jwks_kids(&s).contains(&first))
    })
    .await
    .expect("the revoked Retiring key leaves jwks.json at once");

    let out = cli(&ns, &["revoke", "jwt", "--kid", &second]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(SETTLE, || async {
        secret(&ns, "jwt").await.is_some_and(|s| {
            !jwks_kids(&s).contains(&second) && field(&s, "jwt-signing-kid").is_some_and(|k| k != second)
        })
    })
    .await
    .expect("a revoked Active key is replaced and leaves jwks.json");
    assert_signing_key_verifies(&secret(&ns, "jwt").await.unwrap(), Algorithm::HS256);

    let out = cli(&ns, &["revoke", "jwt", "--kid", "no-such-kid"]).await;
    assert_eq!(out.status.code(), Some(1), "an unknown kid is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no key no-such-kid"));
}

#[tokio::test]
async fn bad_specs_are_refused_at_admission_with_a_message_that_says_what_to_fix() {
    let ns = namespace("admission").await;
    support::operator::install().await;
    let cases = [
        (json!({"algorithm": "HS1"}), "Unsupported value: \"HS1\""),
        (
            json!({"algorithm": "HS256", "rsaKeyBits": 2048}),
            "rsaKeyBits applies only to RS* and PS*",
        ),
        (
            json!({"algorithm": "RS256", "rsaKeyBits": 1024}),
            "rsaKeyBits must be 2048, 3072 or 4096",
        ),
        (json!({"rotation": {"every": "30d"}}), "spec.rotation.every"),
        (
            json!({"rotation": {"every": "5s"}}),
            "rotation.every must be at least 10s",
        ),
        (
            json!({"rotation": {"publishAhead": "soon"}}),
            "spec.rotation.publishAhead",
        ),
        (
            json!({"verification": {"maxKeys": 2}}),
            "spec.verification.maxKeys",
        ),
        (
            json!({"verification": {"maxKeys": 50}}),
            "spec.verification.maxKeys",
        ),
        (
            json!({"rotation": {"every": "1h"}, "verification": {"retainFor": "24h", "maxKeys": 5}}),
            "superseded keys pile up beyond maxKeys",
        ),
        (
            json!({"rotation": {"every": "1m", "publishAhead": "2m"}}),
            "publishAhead must be shorter than rotation.every",
        ),
        (
            json!({"algorithm": "HS256", "jwksConfigMap": "x"}),
            "HMAC keys never go into a ConfigMap",
        ),
        (
            json!({"signingKeyField": "jwks.json"}),
            "signingKeyField must not be one of the fields",
        ),
        (
            json!({"rollout": {"strategy": "Eventually"}}),
            "Unsupported value: \"Eventually\"",
        ),
        (
            json!({"rollout": {"timeout": "0s"}}),
            "rollout.timeout must be at least 1s",
        ),
    ];
    let api = ns.api::<AuthKeyRing>();
    for (i, (spec, message)) in cases.iter().enumerate() {
        let object = json!({"apiVersion": "authkeyring.dev/v1alpha1", "kind": "AuthKeyRing",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec});
        let pp = PatchParams::apply("test");
        let error = api
            .patch(&format!("bad-{i}"), &pp, &Patch::Apply(&object))
            .await
            .expect_err(&format!("spec {spec} must be refused"));
        let text = error.to_string();
        assert!(
            text.contains(message),
            "spec {spec}: expected {message:?} in {text:?}"
        );
    }
    assert!(
        api.list(&Default::default()).await.unwrap().items.is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_secret_deleted_or_edited_by_hand_is_repaired_and_reported() {
    let ns = namespace("tamper").await;
    let _operator = Operator::start(ns.name()).await;
    create(&ns, &ring("jwt", json!({}))).await;
    let original = issued(&ns, "jwt").await;
    let kid = field(&original, "jwt-signing-kid").unwrap();

    // An edit of a consumer-facing field is reverted; the key ring keeps its keys.
    let patch = json!({"stringData": {"jwks.json": "{\"keys\":[]}"}});
    ns.api::<Secret>()
        .patch("jwt", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(SETTLE, || async {
        secret(&ns, "jwt")
            .await
            .is_some_and(|s| jwks_kids(&s) == vec![kid.clone()])
    })
    .await
    .expect("jwks.json is rewritten");
    assert_eq!(
        field(&secret(&ns, "jwt").await.unwrap(), "jwt-signing-kid").unwrap(),
        kid,
        "the key is kept"
    );
    let degraded = |st: &authkeyring::crd::AuthKeyRingStatus| {
        st.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "SecretModified")
    };
    wait_for(SETTLE, || async { degraded(&status(&ns, "jwt").await) })
        .await
        .expect("the ring is Degraded");

    // A deleted Secret comes back with a new Active key.
    ns.api::<Secret>()
        .delete("jwt", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(SETTLE, || async {
        secret(&ns, "jwt")
            .await
            .and_then(|s| field(&s, "jwt-signing-kid"))
            .is_some_and(|k| k != kid)
    })
    .await
    .expect("the Secret is recreated with a new Active key");
    assert_signing_key_verifies(&secret(&ns, "jwt").await.unwrap(), Algorithm::HS256);

    let events = support::kubectl(&["get", "events", "-n", ns.name(), "-o", "json"])
        .await
        .unwrap();
    assert!(
        events.contains("SecretEdited"),
        "a Warning Event says the Secret was edited"
    );
    assert!(
        events.contains("SecretDeleted"),
        "a Warning Event says the Secret was deleted"
    );
    assert!(events.contains("was deleted"), "the Event names the deletion");
}

#[tokio::test]
async fn deleting_the_ring_deletes_its_secret_unless_the_policy_is_retain() {
    let ns = namespace("deletion").await;
    let _operator = Operator::start(ns.name()).await;
    create(&ns, &ring("owned", json!({"algorithm": "ES256"}))).await;
    create(
        &ns,
        &ring("kept", json!({"algorithm": "ES256", "deletionPolicy": "Retain"})),
    )
    .await;
    issued(&ns, "owned").await;
    issued(&ns, "kept").await;

    let api = ns.api::<AuthKeyRing>();
    api.delete("owned", &DeleteParams::foreground()).await.unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();

    wait_for(SETTLE, || async {
        secret(&ns, "owned").await.is_none()
            && ns
                .api::<ConfigMap>()
                .get_opt("owned-jwks")
                .await
                .unwrap()
                .is_none()
    })
    .await
    .expect("the owned Secret and ConfigMap are garbage-collected");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        secret(&ns, "kept").await.is_some(),
        "a Retain ring leaves its Secret"
    );
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("kept-jwks")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn no_key_material_reaches_status_events_or_logs() {
    let ns = namespace("no-leak").await;
    let operator = Operator::start(ns.name()).await;
    create(&ns, &ring("hs", json!({"rotation": {"publishAhead": "1s"}}))).await;
    create(
        &ns,
        &ring(
            "ec",
            json!({"algorithm": "ES256", "rotation": {"publishAhead": "1s"}}),
        ),
    )
    .await;
    issued(&ns, "hs").await;
    issued(&ns, "ec").await;
    for name in ["hs", "ec"] {
        let out = cli(&ns, &["rotate", name, "--wait", "--timeout", "60s"]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let mut secrets = Vec::new();
    for name in ["hs", "ec"] {
        let s = secret(&ns, name).await.unwrap();
        let ring: Value = serde_json::from_str(&field(&s, "keyring.json").unwrap()).unwrap();
        for key in ring["keys"].as_array().unwrap() {
            if let Some(private) = key["private"].as_str() {
                secrets.push(private.to_owned());
                // A PEM body line is long enough to be unique.
                secrets.extend(private.lines().filter(|l| l.len() > 40).map(str::to_owned));
            }
            if let Some(k) = key["jwk"]["k"].as_str() {
                secrets.push(k.to_owned());
            }
        }
    }
    assert!(!secrets.is_empty());

    let statuses = support::kubectl(&["get", "akr", "-n", ns.name(), "-o", "json"])
        .await
        .unwrap();
    let events = support::kubectl(&["get", "events", "-n", ns.name(), "-o", "json"])
        .await
        .unwrap();
    let metrics = reqwest::get(format!("{}/metrics", operator.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs = operator.logs();
    assert!(
        events.contains("KeyActivated") || events.contains("Activated"),
        "events were recorded"
    );
    for material in &secrets {
        for (what, text) in [
            ("status", &statuses),
            ("events", &events),
            ("logs", &logs),
            ("metrics", &metrics),
        ] {
            assert!(!text.contains(material.as_str()), "key material found in {what}");
        }
    }
}

#[tokio::test]
async fn the_cli_mints_tokens_and_works_as_a_kubectl_plugin() {
    let ns = namespace("cli").await;
    let _operator = Operator::start(ns.name()).await;
    create(&ns, &ring("jwt", json!({"algorithm": "EdDSA"}))).await;
    let secret = issued(&ns, "jwt").await;

    let out = cli(&ns, &["token", "jwt", "--user-id", "7", "--admin", "--ttl", "5m"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid, field(&secret, "jwt-signing-kid"));
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&field(&secret, "jwks.json").unwrap()).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &Validation::new(jsonwebtoken::Algorithm::EdDSA),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["user_id"], 7);
    assert_eq!(claims["is_admin"], true);

    // Installed as kubectl-authkeyring on PATH, kubectl finds it as a plugin.
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_authkeyring"),
        plugins.path().join("kubectl-authkeyring"),
    )
    .unwrap();
    let path = format!(
        "{}:{}:{}",
        plugins.path().display(),
        support::bin_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let out = tokio::process::Command::new(support::bin_dir().join("kubectl"))
        .args(["authkeyring", "status", "jwt", "-n", ns.name(), "--kubeconfig"])
        .arg(support::kubeconfig_path())
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EdDSA") && text.contains("Active"), "{text}");

    let out = cli(&ns, &["status", "missing"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = cli(&ns, &["rotate"]).await;
    assert_eq!(out.status.code(), Some(2), "a usage error exits 2");
}

#[tokio::test]
async fn an_idle_ring_makes_no_api_writes() {
    let ns = namespace("idle").await;
    let operator = Operator::start(ns.name()).await;
    create(&ns, &ring("jwt", json!({"rotation": {"every": "720h"}}))).await;
    issued(&ns, "jwt").await;
    wait_for(SETTLE, || async {
        status(&ns, "jwt").await.phase.as_deref() == Some("Idle")
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = operator.metric("authkeyring_api_writes_total", "").await;
    let version = ns.api::<Secret>().get("jwt").await.unwrap().resource_version();
    let window = Duration::from_secs(
        std::env::var("IDLE_WINDOW_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    tokio::time::sleep(window).await;
    let writes = operator.metric("authkeyring_api_writes_total", "").await - before;
    eprintln!("API writes during {window:?} idle: {writes}");
    assert_eq!(writes, 0.0, "an idle ring makes no writes");
    assert_eq!(
        ns.api::<Secret>().get("jwt").await.unwrap().resource_version(),
        version
    );
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over_when_it_dies() {
    let ns = namespace("leader").await;
    let lease = format!(
        "--lease-name=test-{} --leader-elect --lease-namespace={}",
        ns.name(),
        support::operator::SYSTEM_NAMESPACE
    );
    let args: Vec<&str> = lease.split(' ').collect();
    let first = Operator::start_with(ns.name(), &args, true).await;
    let second = Operator::start_with(ns.name(), &args, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(first.ready().await, "the first replica leads");
    assert!(!second.ready().await, "the second replica waits");

    create(&ns, &ring("jwt", json!({"rotation": {"publishAhead": "1s"}}))).await;
    let kid = field(&issued(&ns, "jwt").await, "jwt-signing-kid").unwrap();
    first.kill().await;

    wait_for(Duration::from_secs(40), || async { second.ready().await })
        .await
        .expect("the second replica takes the Lease once the leader is gone");
    let out = cli(&ns, &["rotate", "jwt", "--wait", "--timeout", "60s"]).await;
    assert!(
        out.status.success(),
        "the new leader rotates: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        field(&secret(&ns, "jwt").await.unwrap(), "jwt-signing-kid").unwrap(),
        kid
    );
}
