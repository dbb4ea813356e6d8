//! The managed Secret and JWKS ConfigMap: what they should hold for a key ring, and the key ring
//! read back from what they hold, with any hand edit or deletion detected.
//!
//! No API calls here: the reconciler fetches and applies; this module only builds and compares.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::{
    AuthKeyRing, DeletionPolicy, JWKS_FIELD, KEYRING_FIELD, KEYRING_LABEL, MANAGER, SIGNING_KID_FIELD,
};
use crate::keys;
use crate::ring::{KeyRing, KeyState, RingKey};

/// Labels on every object the operator manages for a key ring.
pub fn labels(akr: &AuthKeyRing) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned()),
        (
            KEYRING_LABEL.to_owned(),
            akr.metadata.name.clone().unwrap_or_default(),
        ),
    ])
}

/// The label selector matching every object the operator manages.
pub fn managed_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER}")
}

fn metadata(akr: &AuthKeyRing, name: String) -> ObjectMeta {
    let owner: Option<OwnerReference> = match akr.spec.deletion_policy {
        DeletionPolicy::Delete => akr.controller_owner_ref(&()),
        DeletionPolicy::Retain => None,
    };
    ObjectMeta {
        name: Some(name),
        namespace: akr.metadata.namespace.clone(),
        labels: Some(labels(akr)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The data fields the Secret must hold for `ring`.
pub fn secret_data(akr: &AuthKeyRing, ring: &KeyRing) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::new();
    if let Some(active) = ring.active() {
        if let Some(private) = &active.private {
            data.insert(
                akr.spec.signing_key_field.clone(),
                ByteString(private.as_bytes().to_vec()),
            );
        }
        data.insert(
            SIGNING_KID_FIELD.to_owned(),
            ByteString(active.kid.clone().into_bytes()),
        );
    }
    data.insert(JWKS_FIELD.to_owned(), ByteString(json_bytes(&ring.jwks())));
    data.insert(
        KEYRING_FIELD.to_owned(),
        ByteString(serde_json::to_vec(ring).expect("key ring serializes")),
    );
    data
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON value serializes")
}

/// The Secret to apply for `ring`.
pub fn desired_secret(akr: &AuthKeyRing, ring: &KeyRing) -> Secret {
    Secret {
        metadata: metadata(akr, akr.secret_name()),
        type_: Some("Opaque".to_owned()),
        data: Some(secret_data(akr, ring)),
        ..Secret::default()
    }
}

/// The public JWKS ConfigMap to apply for `ring`, for asymmetric rings only.
pub fn desired_config_map(akr: &AuthKeyRing, ring: &KeyRing) -> Option<ConfigMap> {
    let name = akr.jwks_config_map_name()?;
    let jwks = String::from_utf8(json_bytes(&ring.public_jwks())).expect("JSON is UTF-8");
    Some(ConfigMap {
        metadata: metadata(akr, name),
        data: Some(BTreeMap::from([(JWKS_FIELD.to_owned(), jwks)])),
        ..ConfigMap::default()
    })
}

/// Whether `current` already matches `desired` in everything the operator manages, so that a
/// reconcile with nothing to do writes nothing.
pub fn secret_up_to_date(current: &Secret, desired: &Secret) -> bool {
    current.data == desired.data && metadata_up_to_date(&current.metadata, &desired.metadata)
}

/// Like [`secret_up_to_date`] for the JWKS ConfigMap.
pub fn config_map_up_to_date(current: &ConfigMap, desired: &ConfigMap) -> bool {
    current.data == desired.data && metadata_up_to_date(&current.metadata, &desired.metadata)
}

fn metadata_up_to_date(current: &ObjectMeta, desired: &ObjectMeta) -> bool {
    let labels_present = desired
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| current.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let owners = |m: &ObjectMeta| m.owner_references.clone().unwrap_or_default();
    labels_present && owners(current) == owners(desired)
}

/// How the stored ring differed from what the operator last wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The Secret is gone although the status says keys were issued.
    SecretDeleted,
    /// The bookkeeping survived but consumer-facing fields were edited: they are rewritten.
    FieldsEdited(Vec<String>),
    /// The bookkeeping was lost or corrupted; keys were recovered from the remaining fields.
    BookkeepingLost { recovered: usize },
}

impl Damage {
    /// The Event reason, one per kind of damage.
    pub fn reason(&self) -> &'static str {
        match self {
            Damage::SecretDeleted => "SecretDeleted",
            Damage::FieldsEdited(_) => "SecretEdited",
            Damage::BookkeepingLost { .. } => "KeyRingRecovered",
        }
    }

    /// A one-line account for a Warning Event and the Degraded condition; never key material.
    pub fn describe(&self, secret: &str) -> String {
        match self {
            Damage::SecretDeleted => {
                format!(
                    "Secret {secret} was deleted; a new Active key was generated and the Secret rewritten"
                )
            }
            Damage::FieldsEdited(fields) => {
                format!(
                    "Secret {secret} was edited by hand ({}); the fields were rewritten",
                    fields.join(", ")
                )
            }
            Damage::BookkeepingLost { recovered } => format!(
                "Secret {secret} lost its {KEYRING_FIELD}; {recovered} key(s) were recovered from the remaining \
                 fields and the Secret rewritten"
            ),
        }
    }
}

/// The key ring as read back from the cluster.
#[derive(Debug, Default)]
pub struct Loaded {
    pub ring: KeyRing,
    pub damage: Option<Damage>,
}

/// Reads the ring back from the managed Secret. `had_keys` says whether the status shows that keys
/// were issued before, which tells a deleted Secret from one never created.
pub fn load(akr: &AuthKeyRing, secret: Option<&Secret>, had_keys: bool, now: jiff::Timestamp) -> Loaded {
    let Some(secret) = secret else {
        let damage = had_keys.then_some(Damage::SecretDeleted);
        return Loaded {
            ring: KeyRing::default(),
            damage,
        };
    };
    let data = secret.data.clone().unwrap_or_default();
    let field = |name: &str| data.get(name).map(|b| b.0.as_slice());

    match field(KEYRING_FIELD).map(serde_json::from_slice::<KeyRing>) {
        Some(Ok(ring)) => {
            let desired = secret_data(akr, &ring);
            let mut edited: Vec<String> = desired
                .iter()
                .filter(|(name, value)| data.get(*name) != Some(*value))
                .map(|(name, _)| name.clone())
                .collect();
            edited.extend(data.keys().filter(|name| !desired.contains_key(*name)).cloned());
            edited.sort();
            edited.dedup();
            let damage = (!edited.is_empty()).then_some(Damage::FieldsEdited(edited));
            Loaded { ring, damage }
        }
        _ => recover(
            akr,
            field(&akr.spec.signing_key_field),
            field(JWKS_FIELD),
            had_keys,
            now,
        ),
    }
}

/// Rebuilds what can be rebuilt when `keyring.json` is gone: the signing key becomes Active again,
/// and every other key still in `jwks.json` keeps verifying for `retainFor`.
fn recover(
    akr: &AuthKeyRing,
    signing_key: Option<&[u8]>,
    jwks: Option<&[u8]>,
    had_keys: bool,
    now: jiff::Timestamp,
) -> Loaded {
    let mut ring = KeyRing::default();
    let active = signing_key
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| keys::from_private(akr.spec.algorithm, text.trim()).ok());
    if let Some(key) = &active {
        ring.keys.push(RingKey {
            kid: key.kid.clone(),
            algorithm: key.algorithm,
            state: KeyState::Active,
            created_at: now,
            activated_at: Some(now),
            retire_at: None,
            jwk: key.jwk.clone(),
            private: Some(key.private.clone()),
        });
    }

    let retain_for = jiff::SignedDuration::try_from(akr.spec.verification.retain_for.as_std())
        .unwrap_or(jiff::SignedDuration::ZERO);
    let published: Vec<serde_json::Value> = jwks
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
        .and_then(|set| set.get("keys").and_then(|k| k.as_array()).cloned())
        .unwrap_or_default();
    for jwk in published {
        let Some(kid) = jwk.get("kid").and_then(|k| k.as_str()).map(str::to_owned) else {
            continue;
        };
        let Some(algorithm) = jwk
            .get("alg")
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse().ok())
        else {
            continue;
        };
        // Only keys whose kid is the thumbprint of the JWK itself are trusted back into the ring.
        if ring.key(&kid).is_some() || keys::thumbprint(&jwk).ok().as_deref() != Some(kid.as_str()) {
            continue;
        }
        ring.keys.push(RingKey {
            kid,
            algorithm,
            state: KeyState::Retiring,
            created_at: now,
            activated_at: None,
            retire_at: Some(now + retain_for),
            jwk,
            private: None,
        });
    }

    let recovered = ring.keys.len();
    let damage = (had_keys || recovered > 0).then_some(Damage::BookkeepingLost { recovered });
    Loaded { ring, damage }
}
