//! Fleet-wide rates: a GCRA kept in the store, handed out as leases of a few
//! cells that a replica spends locally.
//!
//! A cell leased at the store's instant `g` may be spent until `g + E` (the
//! lease's life). The store's GCRA runs with the tolerance `τ − E`, so the
//! calls the fleet *sends* conform to the GCRA with the configured tolerance
//! `τ`: in any window of length `W` at most `(W + τ) / T + 1` calls leave, for
//! emission interval `T = period / limit`. Unspent cells expire; the fleet may
//! send fewer than the rate, never more.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::backend::Gcra;
use super::key::Digest;

/// The longest a leased cell lives before it is spent.
const MAX_LEASE_LIFE: Duration = Duration::from_secs(1);

/// A fleet-wide rate: at most `limit` calls per `period`, with up to `burst`
/// calls ahead of an even schedule.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::fleet::Rate;
///
/// let rpm = Rate::per_minute(600).burst(20);
/// assert_eq!(rpm.limit(), 600);
/// assert_eq!(rpm.period(), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u32,
    period: Duration,
    burst: Option<u32>,
}

impl Rate {
    /// `limit` calls per `period` (a limit of 0 counts as 1, a period under
    /// one millisecond as one millisecond).
    pub fn new(limit: u32, period: Duration) -> Rate {
        Rate {
            limit: limit.max(1),
            period: period.max(Duration::from_millis(1)),
            burst: None,
        }
    }

    /// `limit` calls per minute.
    pub fn per_minute(limit: u32) -> Rate {
        Rate::new(limit, Duration::from_secs(60))
    }

    /// Calls allowed ahead of an even schedule (default: 5 % of the limit, at
    /// least 1). Leases need room here: with a burst of 1 every call asks
    /// the store.
    pub fn burst(self, burst: u32) -> Rate {
        Rate {
            burst: Some(burst.max(1)),
            ..self
        }
    }

    /// Calls per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Calls allowed ahead of an even schedule.
    pub(crate) fn burst_cells(&self) -> u32 {
        self.burst.unwrap_or((self.limit / 20).max(1))
    }

    fn emission_us(&self) -> u64 {
        (crate::util::saturating_nanos(self.period) / 1_000 / u64::from(self.limit)).max(1)
    }

    /// The store's GCRA, how long a leased cell lives, and how many cells
    /// one lease asks for.
    pub(crate) fn plan(&self) -> (Gcra, Duration, u32) {
        let t = self.emission_us();
        let tau = t.saturating_mul(u64::from(self.burst_cells()));
        let life_us = (tau / 2).min(MAX_LEASE_LIFE.as_micros() as u64);
        let gcra = Gcra {
            emission_us: t,
            tolerance_us: tau - life_us,
        };
        let cells = self
            .limit
            .div_ceil(50)
            .clamp(1, (self.burst_cells() / 2).max(1));
        (gcra, Duration::from_micros(life_us), cells)
    }
}

/// What one replica holds of one rate: leased cells not yet spent.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) digest: Digest,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Cells and the instant they expire, oldest first.
    batches: VecDeque<(u32, Instant)>,
    /// The store said no cell conforms before this.
    retry_at: Option<Instant>,
    refilling: bool,
}

/// What a take from the pool found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// A cell; `refill` when the pool ran low and nobody refills it yet.
    Cell { refill: bool },
    /// None until this instant, as the store said.
    NotBefore(Instant),
    /// None: ask the store.
    Empty,
}

impl Pool {
    fn new(digest: Digest) -> Pool {
        Pool {
            digest,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one cell if one is held; asks for a refill when no more than
    /// `low_water` are left (`None`: never).
    pub(crate) fn take(&self, now: Instant, low_water: Option<u32>) -> Taken {
        let mut s = self.lock();
        while s
            .batches
            .front()
            .is_some_and(|&(n, end)| n == 0 || end <= now)
        {
            s.batches.pop_front();
        }
        if let Some(front) = s.batches.front_mut() {
            front.0 -= 1;
            let left: u32 = s.batches.iter().map(|b| b.0).sum();
            let refill = low_water.is_some_and(|low| left <= low) && !s.refilling;
            s.refilling |= refill;
            return Taken::Cell { refill };
        }
        match s.retry_at {
            Some(at) if at > now => Taken::NotBefore(at),
            _ => Taken::Empty,
        }
    }

    /// Adds leased cells that expire at `end`.
    pub(crate) fn add(&self, cells: u32, end: Instant) {
        let mut s = self.lock();
        if cells > 0 {
            s.batches.push_back((cells, end));
            s.retry_at = None;
        }
    }

    /// Remembers that no cell conforms before `at`.
    pub(crate) fn empty_until(&self, at: Instant) {
        self.lock().retry_at = Some(at);
    }

    /// A refill ended.
    pub(crate) fn refilled(&self) {
        self.lock().refilling = false;
    }
}

/// The pools of one mirror, bounded: a new key at a full map drops an eighth
/// of the others.
#[derive(Debug)]
pub(crate) struct Pools {
    map: RwLock<HashMap<Box<str>, Arc<Pool>>>,
    max_keys: usize,
}

impl Pools {
    pub(crate) fn new(max_keys: usize) -> Pools {
        Pools {
            map: RwLock::default(),
            max_keys: max_keys.max(1),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Arc<Pool> {
        if let Some(p) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return p.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(key) {
            return p.clone();
        }
        if map.len() >= self.max_keys {
            let drop: Vec<Box<str>> = map
                .keys()
                .take((self.max_keys / 8).max(1))
                .cloned()
                .collect();
            for k in drop {
                map.remove(&k);
            }
        }
        let pool = Arc::new(Pool::new(Digest::of(key)));
        map.insert(key.into(), pool.clone());
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_the_configured_tolerance() {
        assert_eq!(Rate::per_minute(600).burst_cells(), 30, "5 % by default");
        let (g, life, cells) = Rate::per_minute(60).burst(4).plan();
        assert_eq!(g.emission_us, 1_000_000);
        assert_eq!(life, Duration::from_secs(1));
        assert_eq!(g.tolerance_us + life.as_micros() as u64, 4_000_000);
        assert_eq!(cells, 2);
        let (g, life, cells) = Rate::per_minute(6_000).plan();
        assert_eq!(g.emission_us, 10_000);
        assert_eq!(g.tolerance_us + life.as_micros() as u64, 3_000_000);
        assert_eq!(cells, 120);
        let (g, life, cells) = Rate::new(0, Duration::ZERO).plan();
        assert_eq!((g.emission_us, cells), (1_000, 1));
        assert_eq!(g.tolerance_us + life.as_micros() as u64, 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn pool_spends_cells_once_and_drops_expired() {
        let p = Pool::new(Digest::of("k"));
        let now = Instant::now();
        let low = Some(1);
        assert_eq!(p.take(now, low), Taken::Empty);
        p.add(3, now + Duration::from_secs(1));
        assert_eq!(p.take(now, low), Taken::Cell { refill: false });
        assert_eq!(p.take(now, low), Taken::Cell { refill: true });
        assert_eq!(
            p.take(now, low),
            Taken::Cell { refill: false },
            "a refill is already asked for"
        );
        assert_eq!(p.take(now, low), Taken::Empty);
        p.refilled();
        p.add(5, now + Duration::from_secs(1));
        assert_eq!(
            p.take(now + Duration::from_secs(1), low),
            Taken::Empty,
            "expired"
        );
        p.add(1, now + Duration::from_secs(1));
        assert_eq!(
            p.take(now, None),
            Taken::Cell { refill: false },
            "no refill asked"
        );
        let later = now + Duration::from_secs(3);
        p.empty_until(later);
        assert_eq!(p.take(now, low), Taken::NotBefore(later));
        assert_eq!(p.take(later, low), Taken::Empty);
    }

    #[test]
    fn pools_are_bounded() {
        let pools = Pools::new(16);
        let a = pools.get("a");
        assert!(Arc::ptr_eq(&a, &pools.get("a")));
        for i in 0..100 {
            pools.get(&format!("k{i}"));
        }
        assert!(pools.map.read().unwrap().len() <= 16);
    }
}
