//! Unit tests of [`CallContext`](super::CallContext): deadlines, pending
//! outcomes, cuts.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::*;
use crate::call::Settle;

/// Records what it settles: the sum and the count of the outcomes.
struct Recorder {
    layer: usize,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Recorder {
    fn new(layer: usize) -> Arc<Self> {
        Arc::new(Recorder {
            layer,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        })
    }

    fn seen(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::SeqCst),
            self.sum.load(Ordering::SeqCst),
        )
    }
}

impl Settle for Recorder {
    fn settle(&self, outcome: u64) {
        self.sum.fetch_add(outcome, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn layer(&self) -> usize {
        self.layer
    }
}

fn pending(r: &Arc<Recorder>, outcome: u64) -> Pending {
    Pending::new(r.clone(), outcome)
}

#[tokio::test(start_paused = true)]
async fn the_earliest_deadline_wins() {
    let mut ext = http::Extensions::new();
    let ctx = CallContext::get_or_insert(&mut ext).clone();
    assert_eq!(ctx.deadline(), None);
    let now = Instant::now();
    let in_force = ctx.set_deadline_earliest(now + Duration::from_secs(60));
    assert_eq!(in_force, now + Duration::from_secs(60));
    let in_force = ctx.set_deadline_earliest(now + Duration::from_secs(30));
    assert_eq!(in_force, now + Duration::from_secs(30));
    let in_force = ctx.set_deadline_earliest(now + Duration::from_secs(90));
    assert_eq!(in_force, now + Duration::from_secs(30));
    assert_eq!(
        CallContext::get(&ext).unwrap().deadline(),
        Some(now + Duration::from_secs(30))
    );
    // A deadline already passed stays passed.
    tokio::time::advance(Duration::from_secs(1)).await;
    let past = ctx.set_deadline_earliest(now - Duration::from_secs(5));
    assert!(past <= Instant::now());
}

#[tokio::test(start_paused = true)]
async fn the_latest_outcome_of_a_breaker_is_settled_once_when_the_call_ends() {
    let ctx = CallContext::new(Instant::now());
    let a = Recorder::new(1);
    ctx.own();
    // Three attempts on one breaker: only the last counts.
    for outcome in [10, 20, 30] {
        ctx.hold();
        ctx.leave(pending(&a, outcome));
        assert_eq!(a.seen(), (0, 0), "pending while the loop holds the call");
    }
    ctx.release();
    assert_eq!(a.seen(), (1, 30));
}

#[tokio::test(start_paused = true)]
async fn the_final_attempt_records_at_once_after_the_loop_ended() {
    let ctx = CallContext::new(Instant::now());
    let a = Recorder::new(1);
    ctx.own();
    ctx.hold();
    ctx.leave(pending(&a, 1));
    ctx.hold();
    // The loop returns the response; its body is still being read.
    ctx.release();
    assert_eq!(a.seen(), (0, 0));
    ctx.leave(pending(&a, 5));
    assert_eq!(a.seen(), (1, 5), "the earlier outcome was superseded");
}

#[tokio::test(start_paused = true)]
async fn another_breaker_of_the_same_layer_settles_the_previous_at_once() {
    let ctx = CallContext::new(Instant::now());
    let (a, b) = (Recorder::new(1), Recorder::new(1));
    let other_layer = Recorder::new(2);
    ctx.own();
    ctx.hold();
    ctx.leave(pending(&a, 3));
    ctx.hold();
    ctx.leave(pending(&other_layer, 7));
    ctx.hold();
    ctx.leave(pending(&b, 4));
    assert_eq!(a.seen(), (1, 3), "moved to another key: settled at once");
    assert_eq!(b.seen(), (0, 0));
    ctx.release();
    assert_eq!(b.seen(), (1, 4));
    assert_eq!(other_layer.seen(), (1, 7));
}

#[tokio::test(start_paused = true)]
async fn more_layers_than_slots_settle_the_oldest() {
    let ctx = CallContext::new(Instant::now());
    let rs: Vec<_> = (0..3).map(Recorder::new).collect();
    ctx.own();
    for r in &rs {
        ctx.hold();
        ctx.leave(pending(r, 1));
    }
    assert_eq!(rs[0].seen(), (1, 1));
    assert_eq!(rs[1].seen(), (0, 0));
    ctx.release();
    assert!(rs.iter().all(|r| r.seen() == (1, 1)));
}

#[tokio::test(start_paused = true)]
async fn a_cut_applies_to_the_attempt_in_flight_and_earlier_ones() {
    let ctx = CallContext::new(Instant::now());
    assert!(!ctx.is_cut(0));
    ctx.count_attempt();
    ctx.mark_cut();
    assert!(ctx.is_cut(1));
    ctx.count_attempt();
    assert!(!ctx.is_cut(2), "a later attempt was not cut");
    ctx.mark_cut();
    assert!(ctx.is_cut(2));
}

#[tokio::test(start_paused = true)]
async fn a_stream_s_first_byte_clock_bounds_it_until_a_loop_owns_it() {
    let now = Instant::now();
    let s = Duration::from_secs;
    let ctx = CallContext::new(now);
    ctx.set_deadline_earliest(now + s(300));
    ctx.set_first_byte(s(60), now + s(60), true);
    assert!(ctx.is_streaming());
    assert_eq!(
        ctx.deadline(),
        Some(now + s(60)),
        "its headers are due then"
    );
    assert_eq!(ctx.first_byte(), Some((s(60), now + s(60))));
    ctx.own();
    assert_eq!(
        ctx.deadline(),
        Some(now + s(300)),
        "the loop runs the clock per attempt"
    );

    // An ordinary call keeps the clock for a response that turns out to
    // be a stream, and is bounded by its total alone.
    let ctx = CallContext::new(now);
    ctx.set_deadline_earliest(now + s(60));
    ctx.set_first_byte(s(10), now + s(10), false);
    assert!(!ctx.is_streaming());
    assert_eq!(ctx.deadline(), Some(now + s(60)));
    assert_eq!(ctx.first_byte(), Some((s(10), now + s(10))));
    // The shortest clock published wins.
    ctx.set_first_byte(s(30), now + s(30), false);
    assert_eq!(ctx.first_byte(), Some((s(10), now + s(10))));
}

#[tokio::test(start_paused = true)]
async fn attempts_not_sent_and_targets_left() {
    let ctx = CallContext::new(Instant::now());
    ctx.uncount_attempt();
    assert_eq!(ctx.attempts(), 0, "never below zero");
    ctx.count_attempt();
    ctx.count_attempt();
    ctx.uncount_attempt();
    assert_eq!(ctx.attempts(), 1);
    assert!(!ctx.another_target_remains());
    ctx.set_another_target(true);
    assert!(ctx.another_target_remains());
    ctx.set_another_target(false);
    assert!(!ctx.another_target_remains());
}

/// A waker of its own task: wakes nothing, but is not `Waker::noop()`.
struct Other;

impl std::task::Wake for Other {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test(start_paused = true)]
async fn only_timers_armed_for_the_polling_task_are_noted() {
    let mut ext = http::Extensions::new();
    let ctx = CallContext::get_or_insert(&mut ext).clone();
    let task = |w: &std::task::Waker| [w.data() as usize, std::ptr::from_ref(w.vtable()) as usize];
    let polling = task(std::task::Waker::noop());
    let other = task(&std::task::Waker::from(Arc::new(Other)));
    let at = Instant::now() + Duration::from_secs(2);

    ctx.timing().watch_timers(polling);
    ctx.timing().timer_armed(other, at);
    assert_eq!(ctx.timing().timer_inside(), None, "another task's timer");
    ctx.timing()
        .timer_armed(polling, at + Duration::from_secs(1));
    ctx.timing().timer_armed(polling, at);
    assert_eq!(ctx.timing().timer_inside(), Some(at), "the earliest");
    ctx.timing().timer_dropped();
    assert_eq!(ctx.timing().timer_inside(), None);
    ctx.timing().timer_armed(polling, at);
    ctx.timing().watch_timers(polling);
    assert_eq!(ctx.timing().timer_inside(), None, "each poll starts afresh");
}

#[tokio::test(start_paused = true)]
async fn the_send_instant_is_told_only_while_sending() {
    let mut ext = http::Extensions::new();
    let ctx = CallContext::get_or_insert(&mut ext).clone();
    let at = Instant::now() + Duration::from_secs(1);
    let later = at + Duration::from_secs(1);
    assert_eq!(ctx.timing().sending(), None);
    let seen = ctx.timing().send(at, || {
        let inner = ctx.timing().send(later, || ctx.timing().sending());
        (ctx.timing().sending(), inner)
    });
    assert_eq!(
        seen,
        (Some(at), Some(later)),
        "the outer's again after the inner's"
    );
    assert_eq!(ctx.timing().sending(), None, "not after the send");
}
