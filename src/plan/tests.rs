//! The rotation rules, one test per rule, against a fake key generator; the random long-run
//! properties live in `properties`.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use zeroize::Zeroizing;

use super::*;
use crate::ring::{KeyRing, KeyState, Phase};

mod properties;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// What every fake private key starts with, so a test can look for material where none belongs.
const PRIVATE: &str = "private-material-";

/// Hands out keys `k1`, `k2`, … with a JWK that holds only the kid and alg.
#[derive(Clone, Debug, Default)]
struct FakeKeys {
    made: u64,
}

impl FakeKeys {
    fn generate(&mut self, algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        self.made += 1;
        let kid = format!("k{}", self.made);
        Ok(SigningKey {
            algorithm,
            jwk: json!({ "kid": kid, "alg": algorithm.as_str() }),
            kid,
            private: Zeroizing::new(format!("{PRIVATE}{}", self.made)),
        })
    }
}

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn policy(strategy: Strategy) -> Policy {
    Policy {
        algorithm: Algorithm::ES256,
        every: Some(30 * DAY),
        publish_ahead: 2 * MINUTE,
        retain_for: DAY,
        max_keys: 5,
        strategy,
    }
}

/// An AuthKeyRing as the controller sees it: the persisted ring, the spec, the annotations, the
/// consumers and the clock.
struct World {
    policy: Policy,
    ring: KeyRing,
    requests: Requests,
    rollout: Rollout,
    now: Timestamp,
    keys: FakeKeys,
}

impl World {
    fn new(strategy: Strategy) -> World {
        World::with_policy(policy(strategy))
    }

    fn with_policy(policy: Policy) -> World {
        World {
            policy,
            ring: KeyRing::default(),
            requests: Requests::default(),
            rollout: Rollout::default(),
            now: start(),
            keys: FakeKeys::default(),
        }
    }

    /// A ring whose first key is Active and rolled out.
    fn settled(strategy: Strategy) -> World {
        let mut world = World::new(strategy);
        world.reconcile();
        world.consumers_roll();
        world
    }

    /// Plans `ring` with the world's inputs, drawing new keys from `keys`.
    fn plan_on(&self, ring: &KeyRing, keys: &mut FakeKeys) -> Result<Plan, PlanError> {
        let mut generate = |a| keys.generate(a);
        plan(
            &self.policy,
            ring,
            &self.requests,
            &self.rollout,
            self.now,
            &mut generate,
        )
    }

    /// Plans and persists the result, as one reconcile does.
    fn reconcile(&mut self) -> Plan {
        let mut keys = self.keys.clone();
        let plan = self.plan_on(&self.ring, &mut keys).unwrap();
        self.keys = keys;
        self.ring = plan.ring.clone();
        plan
    }

    /// Every consumer completes a rollout to the current ring.
    fn consumers_roll(&mut self) {
        self.rollout.complete_revision = Some(self.ring.revision());
    }

    /// Every consumer completes a rollout, then a reconcile sees it.
    fn reconcile_after_rollout(&mut self) -> Plan {
        self.consumers_roll();
        self.reconcile()
    }

    /// A published Next key is trusted by every consumer and `publishAhead` has passed.
    fn reconcile_after_publish_ahead(&mut self) -> Plan {
        self.consumers_roll();
        self.advance(self.policy.publish_ahead);
        self.reconcile()
    }

    fn advance(&mut self, by: Duration) {
        self.now = after(self.now, by);
    }

    fn request_rotation(&mut self, value: &str) {
        self.requests.rotate = Some(value.to_owned());
    }

    /// Sets the rotate annotation to `value` and reconciles.
    fn rotate(&mut self, value: &str) -> Plan {
        self.request_rotation(value);
        self.reconcile()
    }

    /// A requested rotation runs to its end with consumers that keep up.
    fn rotate_to_the_end(&mut self, value: &str) {
        self.rotate(value);
        if self.ring.phase == Phase::Publishing {
            self.reconcile_after_publish_ahead();
        }
        self.reconcile_after_rollout();
        assert_eq!(self.ring.phase, Phase::Idle);
    }

    fn revoke(&mut self, kid: &str) {
        self.requests.revoke.push(kid.to_owned());
    }

    fn active_kid(&self) -> String {
        self.ring.active().unwrap().kid.clone()
    }

    fn states(&self) -> Vec<(&str, KeyState)> {
        self.ring.keys.iter().map(|k| (k.kid.as_str(), k.state)).collect()
    }

    /// The wait for consumers to roll onto the current ring.
    fn rollout_wait(&self) -> Option<Waiting> {
        Some(Waiting::Rollout {
            revision: self.ring.revision(),
        })
    }
}

fn started(plan: &Plan) -> Vec<Trigger> {
    plan.events
        .iter()
        .filter_map(|e| match e {
            KeyEvent::RotationStarted { trigger } => Some(*trigger),
            _ => None,
        })
        .collect()
}

#[test]
fn empty_ring_gets_an_active_key_at_once() {
    let mut world = World::new(Strategy::Staged);

    let plan = world.reconcile();

    assert_eq!(world.states(), [("k1", KeyState::Active)]);
    assert_eq!(world.ring.active().unwrap().activated_at, Some(start()));
    assert_eq!(world.ring.phase, Phase::Idle);
    assert_eq!(plan.trigger, Some(Trigger::Initial));
    let generated = KeyEvent::Generated {
        kid: "k1".into(),
        algorithm: Algorithm::ES256,
    };
    assert_eq!(plan.events, [generated, KeyEvent::Activated { kid: "k1".into() }]);
    assert!(plan.changed && plan.roll);
    assert_eq!(plan.requeue_at, Some(after(start(), 30 * DAY)));
    assert_eq!(world.ring.last_rotation_time, None);
}

#[test]
fn first_key_consumes_a_rotate_request_already_present() {
    let mut world = World::new(Strategy::Staged);

    let plan = world.rotate("2026-01-01");

    assert_eq!(world.states(), [("k1", KeyState::Active)]);
    assert_eq!(world.ring.last_rotate_request.as_deref(), Some("2026-01-01"));
    assert!(!world.ring.rotation_pending);
    assert!(started(&plan).is_empty());
}

#[test]
fn schedule_starts_a_staged_rotation_by_publishing_a_next_key() {
    let mut world = World::settled(Strategy::Staged);
    world.advance(30 * DAY - MINUTE);
    assert!(!world.reconcile().changed, "not due yet");

    world.advance(MINUTE);
    let plan = world.reconcile();

    assert_eq!(world.states(), [("k1", KeyState::Active), ("k2", KeyState::Next)]);
    assert_eq!(
        (world.ring.phase, world.ring.phase_since),
        (Phase::Publishing, Some(world.now))
    );
    assert_eq!(plan.trigger, Some(Trigger::Schedule));
    let reasons: Vec<_> = plan.events.iter().map(KeyEvent::reason).collect();
    assert_eq!(reasons, ["RotationStarted", "KeyGenerated", "KeyPublished"]);
    assert!(plan.roll, "consumers must learn the Next key");
    assert_eq!(plan.waiting, world.rollout_wait());
}

#[test]
fn staged_promotion_waits_for_the_rollout_even_after_publish_ahead() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");

    world.advance(HOUR);
    let plan = world.reconcile();

    assert!(!plan.changed);
    assert_eq!(world.active_kid(), "k1");
    assert_eq!(plan.waiting, world.rollout_wait());
}

#[test]
fn staged_promotion_waits_for_publish_ahead_even_after_the_rollout() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");
    let until = after(world.now, 2 * MINUTE);

    world.advance(MINUTE);
    let plan = world.reconcile_after_rollout();
    assert!(!plan.changed);
    assert_eq!(plan.waiting, Some(Waiting::PublishAhead { until }));
    assert_eq!(plan.requeue_at, Some(until));

    world.advance(MINUTE);
    let plan = world.reconcile();
    assert_eq!(world.active_kid(), "k2");
    assert_eq!(world.ring.phase, Phase::Promoting);
    assert!(plan.roll);
}

#[test]
fn promotion_makes_the_old_active_key_retiring_without_private_material() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");

    let plan = world.reconcile_after_publish_ahead();

    let retire_at = after(world.now, DAY);
    assert_eq!(
        world.states(),
        [("k1", KeyState::Retiring), ("k2", KeyState::Active)]
    );
    let (old, new) = (world.ring.key("k1").unwrap(), world.ring.key("k2").unwrap());
    assert_eq!(old.retire_at, Some(retire_at));
    assert!(old.private.is_none() && new.private.is_some());
    assert_eq!(new.activated_at, Some(world.now));
    assert_eq!(world.ring.last_rotation_time, Some(world.now));
    let retiring = KeyEvent::Retiring {
        kid: "k1".into(),
        retire_at,
    };
    assert_eq!(plan.events, [KeyEvent::Activated { kid: "k2".into() }, retiring]);
}

#[test]
fn hmac_retiring_key_still_verifies_through_its_jwk() {
    let mut world = World::with_policy(Policy {
        algorithm: Algorithm::HS256,
        ..policy(Strategy::Immediate)
    });
    world.reconcile_after_rollout();
    let jwk = world.ring.key("k1").unwrap().jwk.clone();

    world.rotate("now");

    let old = world.ring.key("k1").unwrap();
    assert_eq!((old.state, &old.jwk), (KeyState::Retiring, &jwk));
    assert!(world.ring.jwks()["keys"].as_array().unwrap().contains(&jwk));
}

#[test]
fn promoting_waits_for_the_rollout_before_the_rotation_completes() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");
    world.reconcile_after_publish_ahead();

    world.advance(HOUR);
    let plan = world.reconcile();
    assert_eq!(world.ring.phase, Phase::Promoting);
    assert_eq!(plan.waiting, world.rollout_wait());

    let plan = world.reconcile_after_rollout();
    assert_eq!(world.ring.phase, Phase::Idle);
    assert_eq!(plan.events, [KeyEvent::RotationCompleted { kid: "k2".into() }]);
    assert!(!plan.roll);
}

#[test]
fn rotate_request_starts_one_rotation_per_new_value() {
    let mut world = World::settled(Strategy::Immediate);

    let plan = world.rotate("a");
    assert_eq!(started(&plan), [Trigger::Request]);
    assert_eq!(world.ring.last_rotate_request.as_deref(), Some("a"));
    world.reconcile_after_rollout();

    world.advance(HOUR);
    assert!(
        started(&world.reconcile()).is_empty(),
        "the same value again is no new request"
    );
    world.requests.rotate = None;
    assert!(
        !world.reconcile().changed,
        "removing the annotation is no request"
    );
}

#[test]
fn rotate_request_during_publishing_coalesces_into_one_more_rotation() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("a");
    assert_eq!(world.ring.phase, Phase::Publishing);

    let plan = world.rotate("b");
    assert!(world.ring.rotation_pending);
    let reason = Deferral::RotationUnderWay;
    assert_eq!(
        plan.events,
        [KeyEvent::RotationDeferred {
            trigger: Trigger::Request,
            reason
        }]
    );
    world.rotate("c");
    assert_eq!(
        world.ring.keys.len(),
        2,
        "no extra key while a rotation is under way"
    );

    // The rotation under way ends, and exactly one more starts behind it.
    world.reconcile_after_publish_ahead();
    let plan = world.reconcile_after_rollout();
    assert_eq!(started(&plan), [Trigger::Request]);
    assert!(!world.ring.rotation_pending);

    world.reconcile_after_publish_ahead();
    let plan = world.reconcile_after_rollout();
    assert_eq!(world.ring.phase, Phase::Idle);
    assert!(started(&plan).is_empty());
    assert_eq!(world.active_kid(), "k3");
}

#[test]
fn algorithm_change_rotates_to_a_key_of_the_new_algorithm_in_stages() {
    let mut world = World::settled(Strategy::Staged);
    world.policy.algorithm = Algorithm::EdDSA;

    let plan = world.reconcile();

    assert_eq!(plan.trigger, Some(Trigger::AlgorithmChange));
    assert_eq!(world.ring.next().unwrap().algorithm, Algorithm::EdDSA);
    assert_eq!(world.ring.active().unwrap().algorithm, Algorithm::ES256);
}

#[test]
fn algorithm_change_during_a_rotation_takes_one_more_rotation_after_it() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("a");
    world.policy.algorithm = Algorithm::RS256;
    assert!(!world.reconcile().changed);

    world.reconcile_after_publish_ahead();
    let plan = world.reconcile_after_rollout();

    assert_eq!(started(&plan), [Trigger::AlgorithmChange]);
    assert_eq!(world.ring.next().unwrap().algorithm, Algorithm::RS256);
}

#[test]
fn immediate_generates_and_promotes_in_one_write_with_one_roll() {
    let mut world = World::settled(Strategy::Immediate);

    let plan = world.rotate("now");

    assert_eq!(
        world.states(),
        [("k1", KeyState::Retiring), ("k2", KeyState::Active)]
    );
    assert!(plan.changed && plan.roll);
    assert_eq!(world.ring.phase, Phase::Promoting);
    assert_eq!(plan.waiting, world.rollout_wait());

    world.reconcile_after_rollout();
    assert_eq!(world.ring.phase, Phase::Idle);
}

#[test]
fn none_strategy_keeps_publish_ahead_but_never_rolls_or_waits_for_rollouts() {
    let mut world = World::settled(Strategy::None);

    let plan = world.rotate("now");
    assert_eq!(world.ring.phase, Phase::Publishing);
    assert!(plan.changed && !plan.roll);

    world.advance(2 * MINUTE);
    let plan = world.reconcile();
    assert_eq!(world.active_kid(), "k2");
    assert_eq!(
        world.ring.phase,
        Phase::Idle,
        "nothing to wait for after promotion"
    );
    assert!(plan.changed && !plan.roll);
    assert!(
        plan.events
            .contains(&KeyEvent::RotationCompleted { kid: "k2".into() })
    );
}

#[test]
fn retiring_key_leaves_at_its_retire_at_and_consumers_roll() {
    let mut world = World::settled(Strategy::Immediate);
    world.rotate_to_the_end("now");
    let retire_at = world.ring.key("k1").unwrap().retire_at.unwrap();

    world.advance(DAY - Duration::from_secs(1));
    let plan = world.reconcile();
    assert!(world.ring.key("k1").is_some());
    assert_eq!(plan.requeue_at, Some(retire_at));

    world.advance(Duration::from_secs(1));
    let plan = world.reconcile();
    assert!(world.ring.key("k1").is_none());
    assert_eq!(plan.events, [KeyEvent::Retired { kid: "k1".into() }]);
    assert!(plan.roll);
}

#[test]
fn zero_retain_for_drops_the_old_key_in_the_same_plan() {
    let mut world = World::settled(Strategy::Immediate);
    world.policy.retain_for = Duration::ZERO;

    let plan = world.rotate("now");

    assert_eq!(world.states(), [("k2", KeyState::Active)]);
    assert!(plan.events.contains(&KeyEvent::Retired { kid: "k1".into() }));
}

#[test]
fn revoking_a_retiring_key_removes_it_at_once() {
    let mut world = World::settled(Strategy::Immediate);
    world.rotate_to_the_end("now");

    world.revoke("k1");
    let plan = world.reconcile();

    assert_eq!(world.states(), [("k2", KeyState::Active)]);
    assert_eq!(plan.events, [KeyEvent::Revoked { kid: "k1".into() }]);
    assert!(plan.roll);
}

#[test]
fn revoking_the_active_key_promotes_the_published_next_key_without_waiting() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");

    world.revoke("k1");
    let plan = world.reconcile();

    assert_eq!(world.states(), [("k2", KeyState::Active)]);
    assert_eq!(world.ring.phase, Phase::Idle);
    assert_eq!(plan.trigger, Some(Trigger::Revocation));
    let activated = KeyEvent::Activated { kid: "k2".into() };
    assert_eq!(plan.events, [KeyEvent::Revoked { kid: "k1".into() }, activated]);
    assert!(plan.roll);
    assert_eq!(world.ring.last_rotation_time, Some(world.now));
}

#[test]
fn revoking_the_active_key_without_a_next_key_generates_a_new_active_key() {
    let mut world = World::settled(Strategy::Staged);

    world.revoke("k1");
    let plan = world.reconcile();

    assert_eq!(world.states(), [("k2", KeyState::Active)]);
    assert_eq!(plan.trigger, Some(Trigger::Revocation));
    assert!(plan.roll);
    assert!(plan.waiting.is_none());
}

#[test]
fn revoking_active_and_next_together_generates_a_new_active_key() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");

    world.revoke("k1");
    world.revoke("k2");
    world.reconcile();

    assert_eq!(world.states(), [("k3", KeyState::Active)]);
    assert_eq!(world.ring.phase, Phase::Idle);
}

#[test]
fn revoking_the_active_key_keeps_a_queued_rotation() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("a");
    world.rotate("b");

    world.revoke("k1");
    let plan = world.reconcile();

    assert_eq!(world.active_kid(), "k2");
    assert_eq!(
        started(&plan),
        [Trigger::Request],
        "the queued request starts behind it"
    );
    assert_eq!(world.ring.next().unwrap().kid, "k3");
}

#[test]
fn revoking_the_next_key_publishes_a_fresh_one_and_restarts_publish_ahead() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");
    world.advance(MINUTE);

    world.revoke("k2");
    let plan = world.reconcile();

    assert_eq!(world.states(), [("k1", KeyState::Active), ("k3", KeyState::Next)]);
    assert_eq!(world.ring.phase_since, Some(world.now));
    assert!(plan.events.contains(&KeyEvent::Published { kid: "k3".into() }));
}

#[test]
fn unknown_or_repeated_revocations_are_ignored() {
    let mut world = World::settled(Strategy::Staged);
    world.revoke("no-such-kid");
    assert!(!world.reconcile().changed);

    world.revoke("k1");
    world.reconcile();
    let plan = world.reconcile();
    assert!(!plan.changed && plan.events.is_empty());
}

#[test]
fn rotation_that_would_exceed_max_keys_waits_for_the_oldest_retiring_key() {
    let mut world = World::with_policy(Policy {
        max_keys: 3,
        ..policy(Strategy::Immediate)
    });
    world.reconcile_after_rollout();
    for value in ["a", "b"] {
        world.rotate_to_the_end(value);
        world.advance(HOUR);
    }
    assert_eq!(world.ring.keys.len(), 3);
    let until = world.ring.key("k1").unwrap().retire_at.unwrap();

    let plan = world.rotate("c");
    assert_eq!(world.ring.keys.len(), 3);
    assert!(world.ring.rotation_pending);
    assert_eq!(
        plan.waiting,
        Some(Waiting::MaxKeys {
            kid: "k1".into(),
            until
        })
    );
    assert_eq!(plan.requeue_at, Some(until));
    let reason = Deferral::MaxKeys {
        kid: "k1".into(),
        until,
    };
    assert_eq!(
        plan.events,
        [KeyEvent::RotationDeferred {
            trigger: Trigger::Request,
            reason
        }]
    );

    world.now = until;
    let plan = world.reconcile();
    assert!(plan.events.contains(&KeyEvent::Retired { kid: "k1".into() }));
    assert_eq!(started(&plan), [Trigger::Request]);
    assert_eq!(world.ring.keys.len(), 3);
}

#[test]
fn requeue_at_is_the_earliest_future_deadline() {
    let mut world = World::with_policy(Policy {
        every: Some(HOUR),
        retain_for: 2 * HOUR,
        ..policy(Strategy::Staged)
    });
    world.reconcile_after_rollout();
    world.advance(HOUR);
    world.reconcile();
    assert_eq!(world.reconcile().requeue_at, Some(after(world.now, 2 * MINUTE)));

    world.reconcile_after_publish_ahead();
    let plan = world.reconcile_after_rollout();

    // Idle again: the next scheduled rotation (one hour) comes before k1 retires (two hours).
    assert_eq!(world.ring.phase, Phase::Idle);
    assert_eq!(plan.requeue_at, Some(after(world.now, HOUR)));
    assert_eq!(next_rotation_time(&world.policy, &world.ring), plan.requeue_at);
}

#[test]
fn without_a_schedule_a_ring_rotates_only_on_request() {
    let mut world = World::settled(Strategy::Staged);
    world.policy.every = None;
    world.advance(3_650 * DAY);

    let plan = world.reconcile();

    assert!(!plan.changed);
    assert_eq!(plan.requeue_at, None);
    assert_eq!(next_rotation_time(&world.policy, &world.ring), None);
}

#[test]
fn planning_again_with_the_same_inputs_changes_nothing() {
    let mut world = World::settled(Strategy::Staged);
    world.revoke("unknown");
    let first = world.rotate("now");
    assert!(first.changed);

    let again = world.reconcile();

    assert!(!again.changed && !again.roll && again.events.is_empty());
    assert_eq!(
        (again.waiting, again.requeue_at),
        (first.waiting, first.requeue_at)
    );
}

#[test]
fn a_restarted_operator_resumes_a_rotation_from_the_persisted_ring() {
    let mut world = World::settled(Strategy::Staged);
    world.rotate("now");
    world.consumers_roll();
    world.advance(2 * MINUTE);

    let json = serde_json::to_string(&world.ring).unwrap();
    world.ring = serde_json::from_str(&json).unwrap();
    world.reconcile();

    assert_eq!(world.active_kid(), "k2");
    assert_eq!(world.ring.phase, Phase::Promoting);
}

#[test]
fn repairs_a_hand_edited_ring_with_two_active_keys() {
    let mut world = World::settled(Strategy::Staged);
    let mut second = world.ring.keys[0].clone();
    second.kid = "hand-made".into();
    second.activated_at = Some(after(world.now, MINUTE));
    world.ring.keys.push(second);
    world.advance(HOUR);

    let plan = world.reconcile();

    assert_eq!(
        world.states(),
        [("k1", KeyState::Retiring), ("hand-made", KeyState::Active)]
    );
    assert!(world.ring.key("k1").unwrap().private.is_none());
    assert!(plan.changed);
    assert!(!world.reconcile().changed);
}

#[test]
fn refuses_policies_it_cannot_follow() {
    let world = World::with_policy(Policy {
        max_keys: 1,
        ..policy(Strategy::Staged)
    });
    let result = world.plan_on(&world.ring, &mut FakeKeys::default());
    assert!(matches!(result, Err(PlanError::MaxKeysTooSmall(1))));

    let world = World::with_policy(Policy {
        every: Some(Duration::ZERO),
        ..policy(Strategy::Staged)
    });
    let error = world.plan_on(&world.ring, &mut FakeKeys::default()).unwrap_err();
    assert!(error.to_string().contains("rotation.every"), "{error}");
}

#[test]
fn a_failed_key_generation_fails_the_whole_plan() {
    let world = World::new(Strategy::Staged);
    let mut failing = |a| Err(KeyError::Generate(a));

    let result = plan(
        &world.policy,
        &world.ring,
        &world.requests,
        &world.rollout,
        world.now,
        &mut failing,
    );

    assert!(matches!(
        result,
        Err(PlanError::Generate(KeyError::Generate(Algorithm::ES256)))
    ));
}

#[test]
fn events_name_keys_by_kid_and_carry_no_material() {
    let mut world = World::settled(Strategy::Immediate);

    let plan = world.rotate("now");

    for event in &plan.events {
        let note = event.to_string();
        assert!(
            !note.contains(PRIVATE) && !format!("{event:?}").contains(PRIVATE),
            "{note}"
        );
        if let Some(kid) = event.kid() {
            assert!(note.contains(kid), "{note}");
        }
    }
    let reasons: Vec<_> = plan.events.iter().map(KeyEvent::reason).collect();
    assert_eq!(
        reasons,
        ["RotationStarted", "KeyGenerated", "KeyActivated", "KeyRetiring"]
    );
}
