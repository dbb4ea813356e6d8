//! The key ring: the operator's bookkeeping of every key consumers must accept, the rotation
//! phase, and what was last rolled out. Serialized as `keyring.json` in the managed Secret.
//!
//! Pure data: no Kubernetes and no I/O. Private material lives here only for Next and Active keys.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::Algorithm;

/// Where a key stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyState {
    /// Published in `jwks.json` so consumers trust it, but not yet signing.
    Next,
    /// The one key that signs.
    Active,
    /// Superseded; still verifies until its `retireAt`.
    Retiring,
}

/// The rotation phase of a key ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// No rotation under way.
    #[default]
    Idle,
    /// A Next key is published; waiting for consumers to trust it and for `publishAhead`.
    Publishing,
    /// The Next key has become Active; waiting for consumers to roll onto it.
    Promoting,
}

/// One key of the ring.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RingKey {
    /// RFC 7638 thumbprint of the public JWK.
    pub kid: String,
    pub algorithm: Algorithm,
    pub state: KeyState,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<Timestamp>,
    /// The JWK consumers verify with: public members for asymmetric keys, `oct` with `k` for HMAC.
    pub jwk: serde_json::Value,
    /// The private key: HMAC secret as unpadded base64url text, otherwise PKCS#8 PEM. Dropped
    /// once the key is Retiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// The whole ring as the operator persists it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRing {
    /// Keys in the order they were created, oldest first.
    pub keys: Vec<RingKey>,
    pub phase: Phase,
    /// When the current phase began; `publishAhead` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Timestamp>,
    /// A rotation was requested while one was under way; it starts when this one ends.
    #[serde(default)]
    pub rotation_pending: bool,
    /// The last value of the rotate annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Timestamp>,
}

impl KeyRing {
    pub fn active(&self) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    pub fn next(&self) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.state == KeyState::Next)
    }

    pub fn key(&self, kid: &str) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The JWK Set consumers must accept: every key of the ring (Next, Active, Retiring).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.keys.iter().map(|k| k.jwk.clone()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The public JWK Set: like [`KeyRing::jwks`] without symmetric keys, safe for a ConfigMap.
    pub fn public_jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| !k.algorithm.is_hmac())
            .map(|k| k.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// A hash of everything consumers read (the JWK Set and the signing kid): consumers are rolled
    /// when, and only when, it changes.
    pub fn revision(&self) -> String {
        use aws_lc_rs::digest;
        let mut ctx = digest::Context::new(&digest::SHA256);
        for k in &self.keys {
            ctx.update(k.kid.as_bytes());
            ctx.update(if k.state == KeyState::Active { b"A" } else { b"-" });
        }
        let d = ctx.finish();
        d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
