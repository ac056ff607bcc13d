//! The state machine on its own, with explicit times.

use super::*;
use crate::circuit_breaker::config::{CircuitBreakerConfig, MAX_PROBES};

fn core(config: CircuitBreakerConfig) -> Core {
    Core::new(config)
}

fn admitted(b: &Breaker, core: &Core) -> Ticket {
    match b.admit(core) {
        Admission::Admitted(t) => t,
        other => panic!("not admitted: {other:?}"),
    }
}

#[test]
fn word_packing() {
    let w = pack(7, HALF_OPEN) + 3 * IN_FLIGHT_ONE + 5 * SUCCESS_ONE;
    assert_eq!(
        (state_of(w), gen_of(w), in_flight_of(w), successes_of(w)),
        (HALF_OPEN, 7, 3, 5)
    );
    // The largest counts fit in their fields.
    let w = pack(u32::MAX, HALF_OPEN)
        + u64::from(MAX_PROBES) * IN_FLIGHT_ONE
        + u64::from(MAX_PROBES) * SUCCESS_ONE;
    assert_eq!(in_flight_of(w), MAX_PROBES);
    assert_eq!(successes_of(w), MAX_PROBES);
    assert_eq!(gen_of(w), u32::MAX);
}

#[test]
fn stale_results_are_ignored() {
    let core = core(CircuitBreakerConfig::new().min_calls(1).failure_ratio(0.5));
    let b = Breaker::new(core.config.buckets);
    let old = admitted(&b, &core);
    b.transition(
        &core,
        None,
        Target::Open(Duration::from_secs(1)),
        TransitionReason::Forced,
        0,
    );
    b.transition(&core, None, Target::Closed, TransitionReason::Forced, 0);
    assert_eq!(b.record(&core, old, Verdict::Failure, false, 0), None);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot(&core, Arc::from("k"), 0).calls, 0);
}

#[test]
fn one_transition_for_every_move() {
    let core = core(CircuitBreakerConfig::new().min_calls(1).open_duration(
        Duration::from_secs(10),
        Duration::from_secs(60),
        0.0,
    ));
    let b = Breaker::new(core.config.buckets);
    let secs = |s: u64| s * 1_000_000_000;

    // A trip opens it and reports the counts that opened it.
    let t = admitted(&b, &core);
    let change = b.record(&core, t, Verdict::Failure, false, 0).unwrap();
    assert_eq!(
        (change.from, change.to, change.reason, change.open_duration),
        (
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::FailureRatio,
            Some(Duration::from_secs(10))
        )
    );
    assert_eq!((change.counts.calls, change.counts.failures), (1, 1));

    // Not half-open before its time; then due, and half-open once.
    assert!(b.due(secs(9)).is_none());
    let seen = b.due(secs(10)).unwrap();
    let half = |now| {
        b.transition(
            &core,
            Some(seen),
            Target::HalfOpen,
            TransitionReason::OpenElapsed,
            now,
        )
    };
    assert!(half(secs(9)).is_none());
    assert_eq!(half(secs(10)).unwrap().to, CircuitState::HalfOpen);
    assert!(half(secs(10)).is_none(), "the generation moved on");

    // A failed probe opens it for twice as long.
    let probe = admitted(&b, &core);
    assert!(probe.is_probe());
    let change = b
        .record(&core, probe, Verdict::Failure, false, secs(10))
        .unwrap();
    assert_eq!(change.open_duration, Some(Duration::from_secs(20)));
    assert_eq!(b.snapshot(&core, Arc::from("k"), secs(10)).trips, 2);

    // Forced open reports even when already open; forced closed on a
    // closed breaker reports nothing.
    let forced = b.transition(
        &core,
        None,
        Target::Open(Duration::from_secs(1)),
        TransitionReason::Forced,
        secs(10),
    );
    assert_eq!(forced.unwrap().from, CircuitState::Open);
    let closed = b.transition(
        &core,
        None,
        Target::Closed,
        TransitionReason::Forced,
        secs(10),
    );
    assert_eq!(closed.unwrap().to, CircuitState::Closed);
    assert!(b
        .transition(
            &core,
            None,
            Target::Closed,
            TransitionReason::Reset,
            secs(10)
        )
        .is_none());
    assert_eq!(b.snapshot(&core, Arc::from("k"), secs(10)).trips, 0);
}

#[test]
fn probes_are_bounded_and_given_back() {
    let core = core(CircuitBreakerConfig::new().half_open_probes(1, 2));
    let b = Breaker::new(core.config.buckets);
    b.transition(
        &core,
        None,
        Target::Open(Duration::from_millis(1)),
        TransitionReason::Forced,
        0,
    );
    let seen = b.due(1_000_000).unwrap();
    b.transition(
        &core,
        Some(seen),
        Target::HalfOpen,
        TransitionReason::OpenElapsed,
        1_000_000,
    );
    let probe = admitted(&b, &core);
    assert!(matches!(
        b.admit(&core),
        Admission::Rejected(HALF_OPEN_RETRY_AFTER)
    ));
    // An ignored probe frees its slot without counting.
    assert_eq!(b.record(&core, probe, Verdict::Ignore, false, 0), None);
    let probe = admitted(&b, &core);
    assert_eq!(b.record(&core, probe, Verdict::Success, false, 0), None);
    let probe = admitted(&b, &core);
    let change = b.record(&core, probe, Verdict::Success, false, 0).unwrap();
    assert_eq!(
        (change.to, change.reason),
        (CircuitState::Closed, TransitionReason::ProbesSucceeded)
    );
}
