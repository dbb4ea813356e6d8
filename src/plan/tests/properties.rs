//! Long random runs of the rotation plan (time passing, rotate requests, revocations, algorithm and
//! strategy changes, consumers that complete rollouts or lag, operator restarts) with every
//! invariant of the rotation checked after every reconcile.

use std::collections::BTreeSet;

use proptest::prelude::{
    ProptestConfig, TestCaseError, prop, prop_assert, prop_assert_eq, prop_oneof, proptest,
};
use proptest::strategy::{Just, Strategy as Gen};

use super::*;

/// Cases per property and reconciles per case. Each reconcile plans three times (the step itself,
/// the same step after a restart, and once more to check idempotence).
const CASES: u32 = 256;
const STEPS: std::ops::RangeInclusive<usize> = 200..=400;

#[derive(Clone, Copy, Debug)]
enum Target {
    Active,
    Next,
    Retiring(usize),
    Unknown,
}

#[derive(Clone, Debug)]
enum Op {
    /// The clock moves on by this many seconds.
    Advance(u64),
    /// The rotate annotation takes a new value.
    Rotate,
    /// The revoke annotation gains a kid.
    Revoke(Target),
    ChangeAlgorithm(Algorithm),
    ChangeStrategy(Strategy),
    /// Every consumer completes a rollout to the current ring; otherwise they lag.
    ConsumersRoll,
    /// The operator restarts and reads the ring back from its JSON.
    Restart,
}

fn algorithm() -> impl Gen<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::HS256),
        Just(Algorithm::ES256),
        Just(Algorithm::RS256)
    ]
}

fn strategy() -> impl Gen<Value = Strategy> {
    prop_oneof![3 => Just(Strategy::Staged), 1 => Just(Strategy::Immediate), 1 => Just(Strategy::None)]
}

fn random_policy() -> impl Gen<Value = Policy> {
    let every = prop::option::weighted(0.8, 600u64..=3 * 86_400);
    (
        every,
        0u64..=1_800,
        0u64..=2 * 86_400,
        2usize..=6,
        strategy(),
        algorithm(),
    )
        .prop_map(|(every, ahead, retain, max_keys, strategy, algorithm)| Policy {
            algorithm,
            every: every.map(Duration::from_secs),
            publish_ahead: Duration::from_secs(ahead),
            retain_for: Duration::from_secs(retain),
            max_keys,
            strategy,
        })
}

fn op() -> impl Gen<Value = Op> {
    let seconds = prop_oneof![0u64..=5, 0u64..=600, 0u64..=7_200, 0u64..=3 * 86_400];
    let target = prop_oneof![
        Just(Target::Active),
        Just(Target::Next),
        (0usize..4).prop_map(Target::Retiring),
        Just(Target::Unknown),
    ];
    prop_oneof![
        30 => seconds.prop_map(Op::Advance),
        25 => Just(Op::ConsumersRoll),
        8 => Just(Op::Rotate),
        3 => target.prop_map(Op::Revoke),
        2 => algorithm().prop_map(Op::ChangeAlgorithm),
        2 => strategy().prop_map(Op::ChangeStrategy),
        5 => Just(Op::Restart),
    ]
}

fn round_trip(ring: &KeyRing) -> KeyRing {
    serde_json::from_str(&serde_json::to_string(ring).unwrap()).unwrap()
}

fn fail(message: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(message.to_string())
}

/// A [`World`] driven at random, with what the invariants need to remember about its past.
struct Sim {
    world: World,
    /// Kids in the JWK Set of the revision every consumer last completed a rollout to.
    trusted: BTreeSet<String>,
    /// A rotate request was made and no rotation has started since.
    owed: bool,
    made: u64,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        Sim {
            world: World::with_policy(policy),
            trusted: BTreeSet::new(),
            owed: false,
            made: 0,
        }
    }

    fn plan_on(&self, ring: &KeyRing, keys: &mut FakeKeys) -> Result<Plan, TestCaseError> {
        self.world.plan_on(ring, keys).map_err(fail)
    }

    fn apply(&mut self, op: &Op) {
        let world = &mut self.world;
        match op {
            Op::Advance(seconds) => world.advance(Duration::from_secs(*seconds)),
            Op::Rotate => {
                self.made += 1;
                world.request_rotation(&format!("request-{}", self.made));
                self.owed = true;
            }
            Op::Revoke(target) => {
                let retiring: Vec<_> = world
                    .ring
                    .keys
                    .iter()
                    .filter(|k| k.state == KeyState::Retiring)
                    .collect();
                let kid = match target {
                    Target::Active => world.ring.active().map(|k| k.kid.clone()),
                    Target::Next => world.ring.next().map(|k| k.kid.clone()),
                    Target::Retiring(i) => retiring.get(*i % retiring.len().max(1)).map(|k| k.kid.clone()),
                    Target::Unknown => None,
                };
                self.made += 1;
                world.revoke(&kid.unwrap_or_else(|| format!("unknown-{}", self.made)));
            }
            Op::ChangeAlgorithm(algorithm) => world.policy.algorithm = *algorithm,
            Op::ChangeStrategy(strategy) => world.policy.strategy = *strategy,
            Op::ConsumersRoll => {
                world.consumers_roll();
                self.trusted = world.ring.keys.iter().map(|k| k.kid.clone()).collect();
            }
            Op::Restart => world.ring = round_trip(&world.ring),
        }
    }

    /// One reconcile: plans, checks every invariant, and persists the ring.
    fn reconcile(&mut self) -> Result<Plan, TestCaseError> {
        let before = self.world.ring.clone();
        let mut keys = self.world.keys.clone();
        let plan = self.plan_on(&before, &mut keys)?;

        let restarted = self.plan_on(&round_trip(&before), &mut self.world.keys.clone())?;
        prop_assert_eq!(
            &restarted,
            &plan,
            "a JSON round trip of the ring changed the plan"
        );

        let again = self.plan_on(&plan.ring, &mut keys.clone())?;
        prop_assert!(
            !again.changed && !again.roll,
            "planning again changed the ring: {again:?}"
        );
        prop_assert!(
            again.events.is_empty(),
            "planning again emitted {:?}",
            again.events
        );
        prop_assert_eq!(&again.ring, &plan.ring);
        prop_assert_eq!(
            (&again.waiting, again.requeue_at),
            (&plan.waiting, plan.requeue_at)
        );

        self.check(&before, &plan)?;
        self.world.keys = keys;
        self.world.ring = plan.ring.clone();
        Ok(plan)
    }

    fn check(&mut self, before: &KeyRing, plan: &Plan) -> Result<(), TestCaseError> {
        let ring = &plan.ring;
        let (policy, now) = (&self.world.policy, self.world.now);
        let revoked = |kid: &str| self.world.requests.revoke.iter().any(|r| r == kid);

        let active: Vec<_> = ring.keys.iter().filter(|k| k.state == KeyState::Active).collect();
        prop_assert_eq!(active.len(), 1, "exactly one Active key: {:?}", ring.keys);
        let active = active[0];
        prop_assert!(
            ring.keys.len() <= policy.max_keys,
            "more than maxKeys keys: {:?}",
            ring.keys
        );

        for key in &ring.keys {
            match key.state {
                KeyState::Retiring => {
                    prop_assert!(
                        key.private.is_none(),
                        "Retiring key {} keeps private material",
                        key.kid
                    );
                    prop_assert!(
                        key.retire_at.is_some_and(|t| t > now),
                        "Retiring key {} is overdue",
                        key.kid
                    );
                }
                KeyState::Active | KeyState::Next => prop_assert!(key.private.is_some()),
            }
        }
        let next_count = ring.keys.iter().filter(|k| k.state == KeyState::Next).count();
        prop_assert_eq!(
            next_count,
            usize::from(ring.phase == Phase::Publishing),
            "Next key only while Publishing"
        );

        // A key leaves the JWK Set only once revoked or past its retireAt.
        for key in &before.keys {
            if ring.key(&key.kid).is_some() || revoked(&key.kid) {
                continue;
            }
            let retire_at = key.retire_at.or_else(|| {
                plan.events.iter().find_map(|e| match e {
                    KeyEvent::Retiring { kid, retire_at } if *kid == key.kid => Some(*retire_at),
                    _ => None,
                })
            });
            prop_assert!(
                retire_at.is_some_and(|t| t <= now),
                "key {} left before its retireAt",
                key.kid
            );
        }

        // Staged: a key signs only once every consumer completed a rollout that trusts it, unless it
        // replaces a revoked Active key or is the ring's first key.
        if let Some(previous) = before.active()
            && previous.kid != active.kid
            && !revoked(&previous.kid)
            && policy.strategy == Strategy::Staged
        {
            prop_assert!(
                self.trusted.contains(&active.kid),
                "key {} became Active before consumers trusted it ({:?})",
                active.kid,
                self.trusted
            );
        }

        // Requests: one owed rotation at most, held as the pending flag until a rotation starts.
        for event in &plan.events {
            if let KeyEvent::RotationStarted { trigger } = event {
                prop_assert!(
                    *trigger != Trigger::Request || self.owed,
                    "a Request rotation nobody asked for"
                );
                self.owed = false;
            }
        }
        prop_assert_eq!(
            ring.rotation_pending,
            self.owed,
            "pending rotation out of step with requests"
        );

        if let Some(at) = plan.requeue_at {
            prop_assert!(at > now, "requeue_at {at} is not after now {now}");
        }

        // An Idle ring with nothing to wait for has nothing due.
        if ring.phase == Phase::Idle && plan.waiting.is_none() {
            prop_assert!(!ring.rotation_pending);
            prop_assert_eq!(active.algorithm, policy.algorithm);
            prop_assert!(next_rotation_time(policy, ring).is_none_or(|t| t > now));
        }
        Ok(())
    }

    /// Consumers keep up and time moves from deadline to deadline: every rotation under way or owed
    /// must come to an end.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..64 {
            self.apply(&Op::ConsumersRoll);
            let plan = self.reconcile()?;
            let ring = &self.world.ring;
            if ring.phase == Phase::Idle && !ring.rotation_pending && plan.waiting.is_none() {
                return Ok(());
            }
            // A rollout is waited for by rolling again at the same moment; only time waits move the
            // clock, so a short schedule cannot keep pre-empting the end of a rotation.
            match (&plan.waiting, plan.requeue_at) {
                (Some(Waiting::Rollout { .. }), _) => {}
                (_, Some(at)) => self.world.now = at,
                (_, None) => self.world.advance(Duration::from_secs(1)),
            }
        }
        Err(fail(format!("the ring never settled: {:?}", self.world.ring)))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn every_invariant_holds_through_long_random_runs(
        policy in random_policy(),
        ops in prop::collection::vec(op(), STEPS),
    ) {
        let mut sim = Sim::new(policy);
        sim.reconcile()?;
        for op in &ops {
            sim.apply(op);
            sim.reconcile()?;
        }
        sim.drain()?;
        prop_assert!(!sim.owed);
    }
}
