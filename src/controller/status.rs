//! The AuthKeyRing status: built from the planned ring, its consumers and what went wrong, with
//! condition transition times kept stable so that an unchanged ring produces an identical status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::consumers::Consumer;
use super::secret::Damage;
use crate::crd::{AuthKeyRing, AuthKeyRingStatus, ConsumerStatus, KeyStatus};
use crate::plan::{self, Plan, Policy};
use crate::ring::{KeyState, Phase};

/// A status time, at the second precision the API server keeps, so that a status read back
/// compares equal to the one that was written.
fn time(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

pub fn condition_true(status: &AuthKeyRingStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Next => "Next",
        KeyState::Active => "Active",
        KeyState::Retiring => "Retiring",
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "Idle",
        Phase::Publishing => "Publishing",
        Phase::Promoting => "Promoting",
    }
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    akr: &AuthKeyRing,
    plan: &Plan,
    policy: &Policy,
    consumers: &[Consumer],
    revision: &str,
    stall: Option<&str>,
    damage: Option<&Damage>,
    previous: &AuthKeyRingStatus,
    now: Timestamp,
) -> AuthKeyRingStatus {
    let ring = &plan.ring;
    let keys: Vec<KeyStatus> = ring
        .keys
        .iter()
        .map(|k| KeyStatus {
            kid: k.kid.clone(),
            algorithm: k.algorithm,
            state: state_name(k.state).to_owned(),
            created_at: Some(time(k.created_at)),
            activated_at: k.activated_at.map(time),
            retire_at: k.retire_at.map(time),
        })
        .collect();

    let mut conditions = Vec::new();
    let active = ring.active();
    conditions.push(condition(
        previous,
        "Ready",
        active.is_some(),
        if active.is_some() {
            "KeyActive"
        } else {
            "NoActiveKey"
        },
        match active {
            Some(k) => format!("key {} signs", k.kid),
            None => "no Active key yet".to_owned(),
        },
        akr,
        now,
    ));

    let rotating = ring.phase != Phase::Idle;
    let rotating_message = match (&plan.waiting, rotating) {
        (Some(waiting), _) => waiting.to_string(),
        (None, true) => format!("{} revision {revision}", phase_name(ring.phase)),
        (None, false) => "no rotation under way".to_owned(),
    };
    conditions.push(condition(
        previous,
        "Rotating",
        rotating,
        phase_name(ring.phase),
        rotating_message,
        akr,
        now,
    ));

    // A repaired Secret stays reported until the next rotation, so that an admin notices that
    // tokens signed by a lost key no longer verify.
    let earlier_damage = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "SecretModified")
        .filter(|c| {
            ring.last_rotation_time
                .is_none_or(|t| t <= c.last_transition_time.0)
        })
        .map(|c| c.message.clone());
    let degraded = match (stall, damage) {
        (Some(why), _) => Some(("RolloutStalled", why.to_owned())),
        (None, Some(d)) => Some(("SecretModified", d.describe(&akr.secret_name()))),
        (None, None) => earlier_damage.map(|m| ("SecretModified", m)),
    };
    conditions.push(match degraded {
        Some((reason, message)) => condition(previous, "Degraded", true, reason, message, akr, now),
        None => condition(
            previous,
            "Degraded",
            false,
            "Healthy",
            "key ring and consumers are healthy".to_owned(),
            akr,
            now,
        ),
    });

    AuthKeyRingStatus {
        observed_generation: akr.metadata.generation,
        phase: Some(phase_name(ring.phase).to_owned()),
        signing_kid: active.map(|k| k.kid.clone()),
        key_count: Some(ring.keys.len() as u32),
        keys,
        last_rotation_time: ring.last_rotation_time.map(time),
        next_rotation_time: plan::next_rotation_time(policy, ring).map(time),
        last_rotate_request: ring.last_rotate_request.clone(),
        consumers: consumers
            .iter()
            .map(|c| ConsumerStatus {
                kind: c.kind,
                name: c.name.clone(),
                revision: c.revision.clone(),
                up_to_date: c.runs(revision),
            })
            .collect(),
        conditions,
    }
}

/// A condition whose transition time moves only when its status does.
fn condition(
    previous: &AuthKeyRingStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    akr: &AuthKeyRing,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: akr.metadata.generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Requests, Rollout};

    #[test]
    fn a_status_read_back_from_the_api_server_equals_the_one_rebuilt_from_the_same_ring() {
        let akr = AuthKeyRing::new(
            "jwt",
            serde_json::from_str(r#"{"rotation": {"every": "720h"}}"#).unwrap(),
        );
        let policy = crate::controller::policy(&akr);
        let now: Timestamp = "2026-12-03T18:00:00.123456789Z".parse().unwrap();
        let mut generate = |alg| crate::keys::generate(alg, 2048);
        let plan = plan::plan(
            &policy,
            &Default::default(),
            &Requests::default(),
            &Rollout::default(),
            now,
            &mut generate,
        )
        .unwrap();

        let written = build(
            &akr,
            &plan,
            &policy,
            &[],
            "r",
            None,
            None,
            &AuthKeyRingStatus::default(),
            now,
        );
        // The API server keeps times to the second; what it returns must not look like a change.
        let read_back: AuthKeyRingStatus =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        let later = now + jiff::SignedDuration::from_secs(5);
        let rebuilt = build(&akr, &plan, &policy, &[], "r", None, None, &read_back, later);
        assert_eq!(
            rebuilt, read_back,
            "an unchanged ring rebuilds an identical status"
        );
    }
}
