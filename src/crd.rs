//! The `AuthKeyRing` custom resource: spec, status and the admission rules the API server enforces.
//!
//! The CRD manifest in `crds/` is generated from these types (`authkeyring crd`); the doc comments
//! here are what `kubectl explain` shows. No logic beyond defaults and derived names lives here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::keys::Algorithm;

/// API group of every authkeyring resource and annotation.
pub const GROUP: &str = "authkeyring.dev";
/// Annotation on an AuthKeyRing whose every new value requests a rotation.
pub const ROTATE_ANNOTATION: &str = "authkeyring.dev/rotate";
/// Annotation on an AuthKeyRing listing kids to revoke, comma-separated.
pub const REVOKE_ANNOTATION: &str = "authkeyring.dev/revoke";
/// Label naming the key ring a managed object belongs to.
pub const KEYRING_LABEL: &str = "authkeyring.dev/keyring";
/// Field manager for every server-side apply, and the value of the managed-by label.
pub const MANAGER: &str = "authkeyring";

/// Secret field holding the kid of the Active key.
pub const SIGNING_KID_FIELD: &str = "jwt-signing-kid";
/// Secret and ConfigMap field holding the JWK Set consumers must accept.
pub const JWKS_FIELD: &str = "jwks.json";
/// Secret field holding the operator's own bookkeeping; consumers must not read it.
pub const KEYRING_FIELD: &str = "keyring.json";

/// A ring of JWT signing keys kept in a Secret, rotated on a schedule or on request, with
/// superseded keys verifying for a grace period and consuming workloads rolled in stages.
///
/// Request a rotation by setting the annotation `authkeyring.dev/rotate` to any new value;
/// revoke keys at once with `authkeyring.dev/revoke: <kid>[,<kid>...]`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "authkeyring.dev",
    version = "v1alpha1",
    kind = "AuthKeyRing",
    plural = "authkeyrings",
    shortname = "akr",
    namespaced,
    status = "AuthKeyRingStatus",
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".spec.algorithm"}"#,
    printcolumn = r#"{"name":"Signing Kid","type":"string","jsonPath":".status.signingKid"}"#,
    printcolumn = r#"{"name":"Keys","type":"integer","jsonPath":".status.keyCount"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last Rotation","type":"date","jsonPath":".status.lastRotationTime"}"#,
    printcolumn = r#"{"name":"Next Rotation","type":"string","jsonPath":".status.nextRotationTime"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.rsaKeyBits) || self.algorithm.startsWith('RS') || self.algorithm.startsWith('PS')")
        .message("rsaKeyBits applies only to RS* and PS* algorithms: remove it or choose an RSA algorithm")
        .field_path(".rsaKeyBits"),
    validation = Rule::new("!has(self.jwksConfigMap) || !self.algorithm.startsWith('HS')")
        .message("jwksConfigMap applies only to asymmetric algorithms: HMAC keys never go into a ConfigMap, remove it")
        .field_path(".jwksConfigMap"),
    validation = Rule::new("!has(self.rotation.every) || duration(self.rotation.publishAhead) < duration(self.rotation.every)")
        .message("rotation.publishAhead must be shorter than rotation.every")
        .field_path(".rotation.publishAhead"),
    validation = Rule::new(
        "!has(self.rotation.every) || duration(self.verification.retainFor).getSeconds() + duration(self.rotation.publishAhead).getSeconds() <= duration(self.rotation.every).getSeconds() * (self.verification.maxKeys - 2)"
    )
        .message("verification.retainFor plus rotation.publishAhead must not exceed rotation.every times (verification.maxKeys - 2), or superseded keys pile up beyond maxKeys: shorten retainFor, lengthen rotation.every or raise maxKeys")
        .field_path(".verification.retainFor"),
    validation = Rule::new("!(self.signingKeyField in ['jwks.json', 'keyring.json', 'jwt-signing-kid'])")
        .message("signingKeyField must not be one of the fields the operator writes itself (jwks.json, keyring.json, jwt-signing-kid)")
        .field_path(".signingKeyField"),
)]
#[serde(rename_all = "camelCase")]
pub struct AuthKeyRingSpec {
    /// JWS algorithm of new keys: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512,
    /// ES256, ES384 or EdDSA. Changing it performs a staged rotation to a key of the new algorithm;
    /// keys of the old one keep verifying for verification.retainFor.
    #[serde(default = "default_algorithm")]
    pub algorithm: Algorithm,

    /// RSA modulus size in bits for RS* and PS* algorithms: 2048, 3072 or 4096 (default 2048).
    /// Not allowed with other algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [2048, 3072, 4096]").message("rsaKeyBits must be 2048, 3072 or 4096"))]
    #[schemars(extend("format" = "int32"))]
    pub rsa_key_bits: Option<u32>,

    /// Name of the Secret holding the keys (default: the AuthKeyRing's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("secretName is immutable: create a new AuthKeyRing to use another Secret"))]
    pub secret_name: Option<String>,

    /// Secret field holding the Active signing key: the HMAC secret as base64url text, usable as an
    /// environment variable, or a PKCS#8 PEM private key.
    #[serde(default = "default_signing_key_field")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub signing_key_field: String,

    /// When keys rotate on their own.
    #[serde(default)]
    pub rotation: RotationSpec,

    /// How long superseded keys keep verifying, and how many keys the ring may hold.
    #[serde(default)]
    pub verification: VerificationSpec,

    /// How workloads consuming the keys are rolled during a rotation.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Name of the ConfigMap receiving the public JWK Set, for asymmetric algorithms only, so
    /// verifiers need no Secret access (default: `<name>-jwks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub jwks_config_map: Option<String>,

    /// What happens to the Secret and ConfigMap when the AuthKeyRing is deleted: Delete (they are
    /// owned by the AuthKeyRing and garbage-collected) or Retain (they are left in place).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// When keys rotate on their own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// Rotate when the Active key has been signing this long, as a Go duration (`720h`, `90m`).
    /// Omitted: rotate only on request. At least 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("rotation.every must be at least 10s"))]
    pub every: Option<GoDuration>,

    /// Least time a new key is published in jwks.json before it signs, as a Go duration
    /// (default 2m).
    #[serde(default = "default_publish_ahead")]
    pub publish_ahead: GoDuration,
}

/// How long superseded keys keep verifying.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// How long a superseded key keeps verifying, as a Go duration (default 24h). Set it to at least
    /// the longest token lifetime plus the verifiers' leeway.
    #[serde(default = "default_retain_for")]
    pub retain_for: GoDuration,

    /// Most keys the ring holds at once, Next, Active and Retiring together: 3 to 20 (default 5).
    /// A rotation that would exceed it waits for the oldest Retiring key to expire.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 3, max = 20), extend("format" = "int32"))]
    pub max_keys: u32,
}

/// How consuming workloads are rolled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Staged (publish the new key, roll, promote it, roll), Immediate (publish and promote in one
    /// write with one rollout) or None (write without rolling, for consumers that reload mounted
    /// files themselves). Default Staged.
    #[serde(default)]
    pub strategy: RolloutStrategy,

    /// Workloads to roll, replacing discovery. Default: every Deployment, StatefulSet and
    /// DaemonSet of the namespace whose pod template uses the Secret or the JWKS ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub targets: Vec<RolloutTarget>,

    /// Longest a consumer's rollout may take before the rotation holds and the ring is Degraded,
    /// as a Go duration (default 10m).
    #[serde(default = "default_rollout_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("rollout.timeout must be at least 1s"))]
    pub timeout: GoDuration,
}

/// A workload to roll.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RolloutTarget {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// Name of the workload in the AuthKeyRing's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kinds of workload a key ring rolls.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// How consumers are rolled during a rotation.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutStrategy {
    #[default]
    Staged,
    Immediate,
    None,
}

/// What happens to the managed Secret and ConfigMap with the AuthKeyRing.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// Observed state of the key ring. Never holds key material.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthKeyRingStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Idle, Publishing (a Next key is being rolled out) or Promoting (the new key signs; consumers
    /// are being rolled onto it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Kid of the Active key, the one that signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_kid: Option<String>,
    /// Number of keys consumers must accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub key_count: Option<u32>,
    /// Every key consumers must accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
    /// When the last rotation promoted a new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// When the schedule rotates next; empty when rotation happens only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// The last value of the authkeyring.dev/rotate annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_request: Option<String>,
    /// The workloads rolled with this ring and whether they run its current revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerStatus>,
    /// Ready, Rotating and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A key consumers must accept, without its material.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    pub kid: String,
    pub algorithm: Algorithm,
    /// Next, Active or Retiring.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<Time>,
}

/// A workload rolled with the ring.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    pub kind: WorkloadKind,
    pub name: String,
    /// The ring revision its pod template carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Whether it runs the ring's current revision with its rollout complete.
    pub up_to_date: bool,
}

fn default_algorithm() -> Algorithm {
    Algorithm::HS256
}

fn default_signing_key_field() -> String {
    "jwt-signing-key".to_owned()
}

fn default_publish_ahead() -> GoDuration {
    "2m".parse().expect("valid default")
}

fn default_retain_for() -> GoDuration {
    "24h".parse().expect("valid default")
}

fn default_rollout_timeout() -> GoDuration {
    "10m".parse().expect("valid default")
}

fn default_max_keys() -> u32 {
    5
}

impl Default for RotationSpec {
    fn default() -> Self {
        Self {
            every: None,
            publish_ahead: default_publish_ahead(),
        }
    }
}

impl Default for VerificationSpec {
    fn default() -> Self {
        Self {
            retain_for: default_retain_for(),
            max_keys: default_max_keys(),
        }
    }
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::default(),
            targets: Vec::new(),
            timeout: default_rollout_timeout(),
        }
    }
}

impl AuthKeyRing {
    /// Name of the managed Secret.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The kids listed in the revoke annotation.
    pub fn revoke_requests(&self) -> Vec<String> {
        let annotations = self.metadata.annotations.as_ref();
        let listed = annotations
            .and_then(|a| a.get(REVOKE_ANNOTATION))
            .map(String::as_str)
            .unwrap_or("");
        listed
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Name of the public JWKS ConfigMap, for asymmetric algorithms; `None` for HMAC rings.
    pub fn jwks_config_map_name(&self) -> Option<String> {
        if self.spec.algorithm.is_hmac() {
            return None;
        }
        Some(
            self.spec
                .jwks_config_map
                .clone()
                .unwrap_or_else(|| format!("{}-jwks", self.metadata.name.as_deref().unwrap_or_default())),
        )
    }
}

/// The CRD manifest as YAML, as written to `crds/`.
pub fn crd_yaml() -> String {
    let crd = AuthKeyRing::crd();
    format!(
        "# Generated by `authkeyring crd` from the Rust types; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("CRD serializes to YAML")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_manifest_matches_the_types() {
        let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/authkeyring.yaml"))
            .expect(
                "crds/authkeyring.yaml exists; regenerate it with `authkeyring crd > crds/authkeyring.yaml`",
            );
        assert!(
            on_disk == crd_yaml(),
            "crds/authkeyring.yaml drifted from the Rust types; regenerate it with \
             `cargo run --bin authkeyring -- crd > crds/authkeyring.yaml`"
        );
    }

    #[test]
    fn the_chart_ships_the_same_crd() {
        let chart = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/authkeyring/crds/authkeyring.yaml"
        ))
        .expect("the chart carries the CRD");
        assert!(
            chart == crd_yaml(),
            "charts/authkeyring/crds/authkeyring.yaml drifted; copy crds/authkeyring.yaml over it"
        );
    }

    #[test]
    fn an_empty_spec_takes_every_default() {
        let spec: AuthKeyRingSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.algorithm, Algorithm::HS256);
        assert_eq!(spec.signing_key_field, "jwt-signing-key");
        assert_eq!(spec.rotation.every, None);
        assert_eq!(
            spec.rotation.publish_ahead.to_string(),
            default_publish_ahead().to_string()
        );
        assert_eq!(spec.verification.max_keys, 5);
        assert_eq!(spec.rollout.strategy, RolloutStrategy::Staged);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
    }

    #[test]
    fn names_default_from_the_keyring_name() {
        let mut ring = AuthKeyRing::new("user-service-jwt", serde_json::from_str("{}").unwrap());
        assert_eq!(ring.secret_name(), "user-service-jwt");
        assert_eq!(ring.jwks_config_map_name(), None, "HMAC rings have no ConfigMap");
        ring.spec.algorithm = Algorithm::ES256;
        assert_eq!(
            ring.jwks_config_map_name().as_deref(),
            Some("user-service-jwt-jwks")
        );
    }

    #[test]
    fn the_revoke_annotation_lists_kids_separated_by_commas() {
        let mut ring = AuthKeyRing::new("jwt", serde_json::from_str("{}").unwrap());
        assert!(ring.revoke_requests().is_empty());
        ring.metadata.annotations = Some([(REVOKE_ANNOTATION.to_owned(), " a, -b ,,c".to_owned())].into());
        assert_eq!(ring.revoke_requests(), ["a", "-b", "c"]);
    }
}
