//! The rotation plan: from the key ring, the policy, the pending requests, what the consumers have
//! rolled out and the time, decide the next key ring and what the controller must do about it.
//!
//! Pure and deterministic: no Kubernetes, no clock and no randomness of its own (new keys come from
//! the `generate` callback). Every input is explicit, so planning again with the output ring and the
//! same inputs changes nothing, and an operator that restarts resumes from the persisted ring alone.
//!
//! One call runs the ring forward as far as the inputs allow, possibly through several phases,
//! and stops where it must wait: for a rollout, for `publishAhead`, for room under `maxKeys`, or
//! for the next rotation to be due.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use crate::keys::{Algorithm, KeyError, SigningKey};
use crate::ring::{KeyRing, KeyState, Phase, RingKey};

/// Transitions one plan may take before it must have settled. Far above what any ring needs (a
/// rotation under way, the one queued behind it and the expiries in between); reaching it means a
/// transition does not converge, which is a bug rather than a state to wait in.
const MAX_TRANSITIONS: usize = 32;

/// How consumers are moved onto a new revision of the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Publish the Next key, wait until every consumer has rolled onto it and `publishAhead` has
    /// passed, promote it, and wait for the consumers again before the rotation ends.
    #[default]
    Staged,
    /// Generate and promote in one write with one rollout; the rotation ends when that rollout
    /// completes, and a rotation queued behind it waits until then.
    Immediate,
    /// Never roll consumers: they reload mounted files themselves. Keeps the staged order and
    /// `publishAhead` (so a file-watching consumer sees the Next key that long before it signs)
    /// but waits for no rollout, since there is none to observe.
    None,
}

/// What the AuthKeyRing spec asks of the ring.
///
/// The RSA modulus size is not here: it only matters when a key is made, so it belongs to the
/// `generate` callback. A changed `rsaKeyBits` applies from the next rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The algorithm of new keys; an Active key of another algorithm is rotated away.
    pub algorithm: Algorithm,
    /// Rotate when the Active key has signed this long; `None` rotates only on request.
    pub every: Option<Duration>,
    /// Least time a Next key is published before it signs.
    pub publish_ahead: Duration,
    /// How long a superseded key keeps verifying.
    pub retain_for: Duration,
    /// Most keys (Next, Active and Retiring) the ring may hold; at least 2.
    pub max_keys: usize,
    pub strategy: Strategy,
}

/// What an admin asked for through the AuthKeyRing's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// The current value of the rotate annotation; a value other than the ring's
    /// `last_rotate_request` is a new request.
    pub rotate: Option<String>,
    /// Kids from the revoke annotation, already split and trimmed. Unknown kids are ignored.
    pub revoke: Vec<String>,
}

/// What the consumers have rolled out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The ring revision every consumer has completed a rollout to. With no consumers, the
    /// controller passes the revision of the ring it read, since nobody is left to wait for.
    /// Ignored under [`Strategy::None`].
    pub complete_revision: Option<String>,
}

/// Why a key became Active or a rotation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The ring had no Active key: a new AuthKeyRing, or a ring edited by hand.
    Initial,
    /// `rotation.every` passed since the Active key was activated.
    Schedule,
    /// The rotate annotation took a new value.
    Request,
    /// `algorithm` differs from the Active key's.
    AlgorithmChange,
    /// The Active key was revoked and another one took over at once.
    Revocation,
}

impl Trigger {
    /// The trigger as a metric label and in Event notes.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "Initial",
            Trigger::Schedule => "Schedule",
            Trigger::Request => "Request",
            Trigger::AlgorithmChange => "AlgorithmChange",
            Trigger::Revocation => "Revocation",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the ring is not moving on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Not every consumer has completed a rollout to this revision of the ring.
    Rollout { revision: String },
    /// The Next key has not been published for `publishAhead` yet.
    PublishAhead { until: Timestamp },
    /// A rotation is due but a new key would exceed `maxKeys`; it starts once this Retiring key
    /// leaves the ring at `until`.
    MaxKeys { kid: String, until: Timestamp },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Rollout { revision } => {
                write!(
                    f,
                    "waiting for every consumer to complete a rollout to revision {revision}"
                )
            }
            Waiting::PublishAhead { until } => {
                write!(
                    f,
                    "waiting until {until} so the Next key is published for publishAhead"
                )
            }
            Waiting::MaxKeys { kid, until } => write!(
                f,
                "a rotation is due but would exceed maxKeys: waiting for Retiring key {kid} to leave at {until}"
            ),
        }
    }
}

/// Why a requested rotation did not start at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deferral {
    /// Another rotation is under way; the request starts one more rotation after it.
    RotationUnderWay,
    /// A new key would exceed `maxKeys`; the rotation starts once this Retiring key leaves.
    MaxKeys { kid: String, until: Timestamp },
}

/// A change the controller reports as a Kubernetes Event. Names keys by kid, never by material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    /// A key was generated.
    Generated { kid: String, algorithm: Algorithm },
    /// A key joined the JWK Set as Next: consumers trust it, it does not sign yet.
    Published { kid: String },
    /// A key became the Active signing key.
    Activated { kid: String },
    /// A key was superseded and keeps verifying until `retire_at`.
    Retiring { kid: String, retire_at: Timestamp },
    /// A Retiring key reached its `retire_at` and left the JWK Set.
    Retired { kid: String },
    /// A key left the JWK Set because it was revoked.
    Revoked { kid: String },
    /// A rotation began.
    RotationStarted { trigger: Trigger },
    /// A rotation was requested but queued.
    RotationDeferred { trigger: Trigger, reason: Deferral },
    /// A rotation ended: `kid` signs and every consumer that is rolled has rolled onto it.
    RotationCompleted { kid: String },
}

impl KeyEvent {
    /// The Kubernetes Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyEvent::Generated { .. } => "KeyGenerated",
            KeyEvent::Published { .. } => "KeyPublished",
            KeyEvent::Activated { .. } => "KeyActivated",
            KeyEvent::Retiring { .. } => "KeyRetiring",
            KeyEvent::Retired { .. } => "KeyRetired",
            KeyEvent::Revoked { .. } => "KeyRevoked",
            KeyEvent::RotationStarted { .. } => "RotationStarted",
            KeyEvent::RotationDeferred { .. } => "RotationDeferred",
            KeyEvent::RotationCompleted { .. } => "RotationCompleted",
        }
    }

    /// The key the event is about, if it is about one key.
    pub fn kid(&self) -> Option<&str> {
        match self {
            KeyEvent::Generated { kid, .. }
            | KeyEvent::Published { kid }
            | KeyEvent::Activated { kid }
            | KeyEvent::Retiring { kid, .. }
            | KeyEvent::Retired { kid }
            | KeyEvent::Revoked { kid }
            | KeyEvent::RotationCompleted { kid } => Some(kid),
            KeyEvent::RotationStarted { .. } | KeyEvent::RotationDeferred { .. } => None,
        }
    }
}

/// The Event note.
impl fmt::Display for KeyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEvent::Generated { kid, algorithm } => write!(f, "generated {algorithm} key {kid}"),
            KeyEvent::Published { kid } => write!(f, "published key {kid} as Next: consumers trust it"),
            KeyEvent::Activated { kid } => write!(f, "key {kid} is Active and signs"),
            KeyEvent::Retiring { kid, retire_at } => {
                write!(f, "key {kid} is Retiring and verifies until {retire_at}")
            }
            KeyEvent::Retired { kid } => write!(f, "key {kid} reached its retireAt and left the JWK Set"),
            KeyEvent::Revoked { kid } => write!(f, "key {kid} was revoked and left the JWK Set"),
            KeyEvent::RotationStarted { trigger } => write!(f, "rotation started ({trigger})"),
            KeyEvent::RotationDeferred {
                trigger,
                reason: Deferral::RotationUnderWay,
            } => {
                write!(f, "rotation ({trigger}) queued behind the rotation under way")
            }
            KeyEvent::RotationDeferred {
                trigger,
                reason: Deferral::MaxKeys { kid, until },
            } => write!(
                f,
                "rotation ({trigger}) would exceed maxKeys: it starts when Retiring key {kid} leaves at {until}"
            ),
            KeyEvent::RotationCompleted { kid } => write!(f, "rotation completed: key {kid} signs"),
        }
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The next ring. Persist it (when `changed`) before acting on anything else in the plan.
    pub ring: KeyRing,
    /// `ring` differs from the input ring.
    pub changed: bool,
    /// Every key state change and rotation milestone, in order.
    pub events: Vec<KeyEvent>,
    /// The revision consumers read changed and the strategy rolls consumers: roll them to
    /// `ring.revision()`. This is the edge, not the level: a controller that resumes after a crash
    /// between persisting the ring and rolling must still bring consumers to `ring.revision()`.
    pub roll: bool,
    /// The next time-based deadline (scheduled rotation, a `retireAt`, the end of `publishAhead`),
    /// always after `now`. Waits for rollouts have no deadline here: consumer changes wake the
    /// controller.
    pub requeue_at: Option<Timestamp>,
    /// Why the ring is not progressing, if it has somewhere to go.
    pub waiting: Option<Waiting>,
    /// Why a key became Active or a rotation started in this plan; the last one if several did.
    pub trigger: Option<Trigger>,
}

/// Why no plan could be made. The ring is untouched: nothing of a failed plan is to be persisted.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `maxKeys` leaves no room for the two keys every rotation briefly holds.
    #[error("maxKeys is {0}, but a rotation needs room for at least 2 keys")]
    MaxKeysTooSmall(usize),
    /// `rotation.every` is zero, which would rotate without end.
    #[error("rotation.every is zero: give a positive duration, or omit it to rotate only on request")]
    ZeroInterval,
    /// The `generate` callback failed.
    #[error("generating a new signing key failed")]
    Generate(#[source] KeyError),
    /// The ring kept changing: a bug in the plan, not a state of the ring.
    #[error("the rotation plan did not settle within {MAX_TRANSITIONS} transitions")]
    Unsettled,
}

/// When the Active key is due for its scheduled rotation, for status. `None` without a schedule.
pub fn next_rotation_time(policy: &Policy, ring: &KeyRing) -> Option<Timestamp> {
    let active = ring.active()?;
    Some(after(
        active.activated_at.unwrap_or(active.created_at),
        policy.every?,
    ))
}

/// Plans the next step of `ring`; see the module documentation. `generate` makes a new key of the
/// given algorithm and is called only when the plan needs one.
pub fn plan(
    policy: &Policy,
    ring: &KeyRing,
    requests: &Requests,
    rollout: &Rollout,
    now: Timestamp,
    generate: &mut dyn FnMut(Algorithm) -> Result<SigningKey, KeyError>,
) -> Result<Plan, PlanError> {
    if policy.max_keys < 2 {
        return Err(PlanError::MaxKeysTooSmall(policy.max_keys));
    }
    if policy.every == Some(Duration::ZERO) {
        return Err(PlanError::ZeroInterval);
    }

    let mut planner = Planner {
        policy,
        rollout,
        now,
        generate,
        ring: ring.clone(),
        events: Vec::new(),
        trigger: None,
    };
    planner.repair();

    let active_revoked = planner.revoke(&requests.revoke);
    let initial = ring.keys.is_empty();
    let trigger = if active_revoked {
        Trigger::Revocation
    } else {
        Trigger::Initial
    };
    planner.ensure_active(trigger)?;

    let requested = planner.take_rotate_request(requests.rotate.as_deref(), initial);
    planner.settle()?;
    if requested && planner.ring.rotation_pending {
        let reason = planner.deferral();
        planner.events.push(KeyEvent::RotationDeferred {
            trigger: Trigger::Request,
            reason,
        });
    }

    let waiting = planner.waiting();
    let requeue_at = planner.requeue_at();
    let Planner {
        ring: next,
        events,
        trigger,
        ..
    } = planner;
    Ok(Plan {
        changed: next != *ring,
        roll: policy.strategy != Strategy::None && next.revision() != ring.revision(),
        ring: next,
        events,
        requeue_at,
        waiting,
        trigger,
    })
}

/// `t + d`, or the end of time when that overflows (a deadline that never comes).
fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The working state of one call to [`plan`].
struct Planner<'a> {
    policy: &'a Policy,
    rollout: &'a Rollout,
    now: Timestamp,
    generate: &'a mut dyn FnMut(Algorithm) -> Result<SigningKey, KeyError>,
    ring: KeyRing,
    events: Vec<KeyEvent>,
    trigger: Option<Trigger>,
}

// === impl Planner: the steps before the phases run ===

impl Planner<'_> {
    /// Restores what the phases rely on in a ring that was edited by hand or written by another
    /// version: one Active key with an activation time, at most one Next key and only while
    /// Publishing, a `retireAt` and no private material on every Retiring key, and a start time on
    /// every rotation phase. A ring the planner wrote is left as it is.
    fn repair(&mut self) {
        let now = self.now;

        let keep_active = self.newest(KeyState::Active, |k| {
            (k.activated_at.unwrap_or(k.created_at), k.created_at)
        });
        let keep_next = self.newest(KeyState::Next, |k| k.created_at);
        let retire_at = after(now, self.policy.retain_for);
        for (i, key) in self.ring.keys.iter_mut().enumerate() {
            let extra = match key.state {
                KeyState::Active => keep_active != Some(i),
                KeyState::Next => keep_next != Some(i),
                KeyState::Retiring => false,
            };
            if extra {
                key.state = KeyState::Retiring;
                key.retire_at = Some(retire_at);
                self.events.push(KeyEvent::Retiring {
                    kid: key.kid.clone(),
                    retire_at,
                });
            }
            match key.state {
                KeyState::Active if key.activated_at.is_none() => key.activated_at = Some(key.created_at),
                KeyState::Retiring => {
                    key.private = None;
                    if key.retire_at.is_none() {
                        key.retire_at = Some(retire_at);
                        self.events.push(KeyEvent::Retiring {
                            kid: key.kid.clone(),
                            retire_at,
                        });
                    }
                }
                _ => {}
            }
        }

        if self.ring.next().is_some() && self.ring.phase != Phase::Publishing {
            self.set_phase(Phase::Publishing);
        }
        if self.ring.phase_since.is_none() {
            self.ring.phase_since = Some(now);
        }
    }

    /// The position of the newest key in `state` by `order` (the later one on a tie).
    fn newest<T: Ord>(&self, state: KeyState, order: impl Fn(&RingKey) -> T) -> Option<usize> {
        let keys = self
            .ring
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.state == state);
        keys.max_by_key(|(i, k)| (order(k), *i)).map(|(i, _)| i)
    }

    /// Removes the revoked keys at once, whatever their state. Returns whether the Active key was
    /// among them.
    fn revoke(&mut self, kids: &[String]) -> bool {
        let mut active_revoked = false;
        let events = &mut self.events;
        self.ring.keys.retain(|key| {
            if !kids.contains(&key.kid) {
                return true;
            }
            active_revoked |= key.state == KeyState::Active;
            events.push(KeyEvent::Revoked { kid: key.kid.clone() });
            false
        });
        active_revoked
    }

    /// Makes sure a key signs: a ring without an Active key promotes its Next key, which consumers
    /// already trust, or else a new key, without waiting for anything. A rotation that was under
    /// way ends with it; one queued behind it starts when the phases run.
    fn ensure_active(&mut self, trigger: Trigger) -> Result<(), PlanError> {
        if self.ring.active().is_some() {
            return Ok(());
        }

        self.trigger = Some(trigger);
        if self.ring.next().is_none() {
            let key = self.generate_key()?;
            self.ring.keys.push(key);
        }
        self.promote();
        if trigger == Trigger::Revocation {
            self.ring.last_rotation_time = Some(self.now);
        }
        self.set_phase(Phase::Idle);
        Ok(())
    }

    /// Records a new value of the rotate annotation as a pending rotation. The first key of a ring
    /// is as fresh as a rotation would make it, so a request already present then is consumed
    /// without one. Returns whether the request is new and pending.
    fn take_rotate_request(&mut self, rotate: Option<&str>, initial: bool) -> bool {
        let Some(value) = rotate else { return false };
        if self.ring.last_rotate_request.as_deref() == Some(value) {
            return false;
        }
        self.ring.last_rotate_request = Some(value.to_owned());
        if initial {
            return false;
        }
        self.ring.rotation_pending = true;
        true
    }
}

// === impl Planner: the phases ===

impl Planner<'_> {
    /// Takes transitions until none applies.
    fn settle(&mut self) -> Result<(), PlanError> {
        for _ in 0..MAX_TRANSITIONS {
            if !self.transition()? {
                return Ok(());
            }
        }
        Err(PlanError::Unsettled)
    }

    /// Takes one transition, if one applies. Expiry comes first, so a phase never moves on against
    /// a revision that still lists a key whose time is up.
    fn transition(&mut self) -> Result<bool, PlanError> {
        if self.expire() {
            return Ok(true);
        }
        match self.ring.phase {
            Phase::Idle => self.start_rotation(),
            Phase::Publishing => self.publish_or_promote(),
            Phase::Promoting => Ok(self.finish_rotation()),
        }
    }

    /// Drops every Retiring key whose `retireAt` has come.
    fn expire(&mut self) -> bool {
        let now = self.now;
        let before = self.ring.keys.len();
        let events = &mut self.events;
        self.ring.keys.retain(|key| {
            let expired = key.state == KeyState::Retiring && key.retire_at.is_some_and(|t| t <= now);
            if expired {
                events.push(KeyEvent::Retired { kid: key.kid.clone() });
            }
            !expired
        });
        self.ring.keys.len() != before
    }

    /// Idle: starts a rotation when one is due and a new key fits under `maxKeys`.
    fn start_rotation(&mut self) -> Result<bool, PlanError> {
        let Some(trigger) = self.due() else {
            return Ok(false);
        };
        if self.max_keys_blocker().is_some() {
            return Ok(false);
        }

        self.ring.rotation_pending = false;
        self.trigger = Some(trigger);
        self.events.push(KeyEvent::RotationStarted { trigger });
        let key = self.generate_key()?;
        let kid = key.kid.clone();
        self.ring.keys.push(key);

        if self.policy.strategy == Strategy::Immediate {
            self.promote();
            self.ring.last_rotation_time = Some(self.now);
            self.set_phase(Phase::Promoting);
        } else {
            self.events.push(KeyEvent::Published { kid });
            self.set_phase(Phase::Publishing);
        }
        Ok(true)
    }

    /// Publishing: promotes the Next key once consumers trust it and `publishAhead` has passed.
    /// A Next key that was revoked is replaced, and `publishAhead` counts again from then.
    fn publish_or_promote(&mut self) -> Result<bool, PlanError> {
        if self.ring.next().is_none() {
            let key = self.generate_key()?;
            self.events.push(KeyEvent::Published { kid: key.kid.clone() });
            self.ring.keys.push(key);
            self.ring.phase_since = Some(self.now);
            return Ok(true);
        }
        if self.publishing_wait().is_some() {
            return Ok(false);
        }

        self.promote();
        self.ring.last_rotation_time = Some(self.now);
        self.set_phase(Phase::Promoting);
        Ok(true)
    }

    /// Promoting: the rotation ends once the consumers run on the promoted key.
    fn finish_rotation(&mut self) -> bool {
        if self.policy.strategy != Strategy::None && !self.rollout_complete() {
            return false;
        }
        if let Some(active) = self.ring.active() {
            self.events.push(KeyEvent::RotationCompleted {
                kid: active.kid.clone(),
            });
        }
        self.set_phase(Phase::Idle);
        true
    }

    /// The Next key becomes Active; the Active key, if any, becomes Retiring for `retainFor` and
    /// loses its private material (an HMAC key still verifies through the `k` of its JWK).
    fn promote(&mut self) {
        let now = self.now;
        let retire_at = after(now, self.policy.retain_for);
        let mut retired = None;
        let mut activated = None;
        for key in &mut self.ring.keys {
            match key.state {
                KeyState::Active => {
                    key.state = KeyState::Retiring;
                    key.retire_at = Some(retire_at);
                    key.private = None;
                    retired = Some(key.kid.clone());
                }
                KeyState::Next => {
                    key.state = KeyState::Active;
                    key.activated_at = Some(now);
                    activated = Some(key.kid.clone());
                }
                KeyState::Retiring => {}
            }
        }
        if let Some(kid) = activated {
            self.events.push(KeyEvent::Activated { kid });
        }
        if let Some(kid) = retired {
            self.events.push(KeyEvent::Retiring { kid, retire_at });
        }
    }

    /// Makes a key of the policy's algorithm as a Next key (not yet in the ring).
    fn generate_key(&mut self) -> Result<RingKey, PlanError> {
        let key = (self.generate)(self.policy.algorithm).map_err(PlanError::Generate)?;
        self.events.push(KeyEvent::Generated {
            kid: key.kid.clone(),
            algorithm: key.algorithm,
        });
        Ok(RingKey {
            kid: key.kid,
            algorithm: key.algorithm,
            state: KeyState::Next,
            created_at: self.now,
            activated_at: None,
            retire_at: None,
            jwk: key.jwk,
            private: Some(key.private),
        })
    }

    fn set_phase(&mut self, phase: Phase) {
        self.ring.phase = phase;
        self.ring.phase_since = Some(self.now);
    }
}

// === impl Planner: what the ring waits for ===

impl Planner<'_> {
    /// Why a rotation is due now, if it is. A queued request goes first: it is what an admin asked
    /// for, and the rotation it starts also serves a changed algorithm or a due schedule.
    fn due(&self) -> Option<Trigger> {
        let active = self.ring.active()?;
        if self.ring.rotation_pending {
            Some(Trigger::Request)
        } else if active.algorithm != self.policy.algorithm {
            Some(Trigger::AlgorithmChange)
        } else if next_rotation_time(self.policy, &self.ring).is_some_and(|t| t <= self.now) {
            Some(Trigger::Schedule)
        } else {
            None
        }
    }

    /// When one more key would exceed `maxKeys`: the Retiring key (kid and `retireAt`) whose
    /// departure makes room for it.
    fn max_keys_blocker(&self) -> Option<(String, Timestamp)> {
        let excess = (self.ring.keys.len() + 1)
            .checked_sub(self.policy.max_keys)
            .filter(|n| *n > 0)?;
        let mut retiring: Vec<(Timestamp, &str)> = self
            .ring
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retiring)
            .map(|k| (k.retire_at.unwrap_or(self.now), k.kid.as_str()))
            .collect();
        retiring.sort();
        // NB: an Idle ring holds one Active key and no Next key, and `maxKeys` is at least 2, so
        // there are always enough Retiring keys to wait for.
        let (until, kid) = retiring.get(excess - 1).or(retiring.last())?;
        Some((kid.to_string(), *until))
    }

    fn rollout_complete(&self) -> bool {
        self.rollout.complete_revision.as_deref() == Some(self.ring.revision().as_str())
    }

    /// What keeps the Next key from signing, if anything.
    fn publishing_wait(&self) -> Option<Waiting> {
        let strategy = self.policy.strategy;
        if strategy == Strategy::Immediate {
            return None;
        }
        if strategy == Strategy::Staged && !self.rollout_complete() {
            return Some(Waiting::Rollout {
                revision: self.ring.revision(),
            });
        }
        let until = after(
            self.ring.phase_since.unwrap_or(self.now),
            self.policy.publish_ahead,
        );
        (self.now < until).then_some(Waiting::PublishAhead { until })
    }

    fn waiting(&self) -> Option<Waiting> {
        match self.ring.phase {
            Phase::Idle => {
                self.due()?;
                let (kid, until) = self.max_keys_blocker()?;
                Some(Waiting::MaxKeys { kid, until })
            }
            Phase::Publishing => self.publishing_wait(),
            Phase::Promoting => {
                (self.policy.strategy != Strategy::None && !self.rollout_complete()).then(|| {
                    Waiting::Rollout {
                        revision: self.ring.revision(),
                    }
                })
            }
        }
    }

    fn deferral(&self) -> Deferral {
        match self.max_keys_blocker() {
            Some((kid, until)) if self.ring.phase == Phase::Idle => Deferral::MaxKeys { kid, until },
            _ => Deferral::RotationUnderWay,
        }
    }

    /// The earliest future moment at which time alone moves the ring on.
    fn requeue_at(&self) -> Option<Timestamp> {
        let scheduled = match self.ring.phase {
            Phase::Idle => next_rotation_time(self.policy, &self.ring),
            Phase::Publishing | Phase::Promoting => None,
        };
        let retiring = self
            .ring
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retiring)
            .filter_map(|k| k.retire_at);
        let published = match (self.ring.phase, self.policy.strategy) {
            (Phase::Publishing, Strategy::Staged | Strategy::None) => self
                .ring
                .phase_since
                .map(|since| after(since, self.policy.publish_ahead)),
            _ => None,
        };
        scheduled
            .into_iter()
            .chain(retiring)
            .chain(published)
            .filter(|t| *t > self.now)
            .min()
    }
}

#[cfg(test)]
mod tests;
