//! The connections' next deadlines, earliest first: an indexed binary heap.
//!
//! Every connection has at most one deadline that matters to the stack: the earliest of
//! its timers (retransmission, RFC 6298; persist, RFC 9293 3.8.6.1; delayed ACK, RFC 9293
//! 3.8.6.3; TIME-WAIT, RFC 9293 3.10.7.4), which `Connection::poll_at` reports. A stack
//! used to find the due ones by asking every connection on every poll, and `poll_at` did
//! the same, so a poll cost O(connections) however few timers were due: a simulation with
//! ten thousand idle connections paid ten thousand checks per packet.
//!
//! Here each connection with a deadline has one entry, `(deadline, slot)`, in a binary
//! heap, and a table from slot to heap position finds a connection's entry when its
//! deadline moves. So:
//!
//! - the earliest entry is read in O(1) ([`earliest`](Deadlines::earliest));
//! - moving, adding or removing one costs O(log n) ([`set`](Deadlines::set));
//! - taking the due ones costs O(log n) each ([`pop_due`](Deadlines::pop_due)).
//!
//! Entries compare by deadline, then by slot number, so equal deadlines always come out
//! in the same order, whatever order they were set in (no dependence on history, as a
//! simulation needs). Both tables grow only when a new slot number appears, that is when
//! a connection is opened, never per packet.
//!
//! ## Filed early, checked when due
//!
//! Most moves of a connection's deadline are *later*: every ACK of new data restarts the
//! retransmission timer (RFC 6298 5.3), every segment sent cancels a pending delayed ACK
//! and starts the retransmission timer instead. Moving the entry each time cost a TCP
//! round trip about 300 instructions, 5% of it, in `set` and `sift_down`
//! (docs/benchmarks.md, item 31). So the stack keeps an entry at or *before* its
//! connection's real deadline, not always at it ([`refile`](Deadlines::refile)): a
//! deadline that moves earlier moves the entry, one that moves later or goes away leaves
//! it where it is, early. When an early entry comes due, the stack finds its connection
//! with nothing due, files the entry again at the real deadline, and leaves the
//! connection alone: no timer runs early, and none late, since no entry is ever after its
//! deadline. Linux's TCP timer handlers carry the same check: `tcp_write_timer_handler`
//! that finds `icsk_timeout` still ahead arms the timer again for then and does nothing
//! else.
//!
//! An early entry must not make the stack's "when do you next need me" early, so
//! [`earliest_real`](Deadlines::earliest_real) asks the connections of the earliest
//! entries for their real deadlines, in entry order, and stops at the first entry no
//! earlier than the best real one found: every entry is a lower bound of its own
//! connection's deadline, so no later entry can beat it. Each early entry ahead of the
//! answer is one more connection asked, so at most [`STALE_MAX`] entries are left early
//! at once; past that, a deadline that moves later moves its entry. A few connections
//! (a ping-pong, a transfer) then never move an entry later, and ten thousand busy ones
//! cost what they did before: O(log n) per move, and a `poll_at` that asks at most
//! [`STALE_MAX`] + 1 of them.

use loopstack_link::Instant;

/// `pos` entry of a slot with no deadline.
const NONE: u32 = u32::MAX;

/// The most heap entries [`Deadlines::earliest_real`] keeps in view before it scans.
const WALK: usize = 32;

/// The most entries left early at once ([`Deadlines::refile`]). Each is one more entry
/// [`Deadlines::earliest_real`] may visit, so with at most this many the walk stays
/// within [`WALK`] and never scans; a deadline that moves later while the budget is spent
/// moves its entry, as every move did before.
pub(crate) const STALE_MAX: usize = 16;

/// The deadlines of a set of slots, earliest first.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// A binary min-heap of (deadline, slot): every entry is no later than its children
    /// at `2i + 1` and `2i + 2`.
    heap: Vec<(Instant, u32)>,
    /// For each slot number, the index of its entry in `heap`, or [`NONE`].
    pos: Vec<u32>,
    /// For each slot number, whether its entry is early: before the slot's real deadline,
    /// or there though the slot has none. False for a slot without an entry.
    stale: Vec<bool>,
    /// How many entries are early: at most [`STALE_MAX`].
    stale_count: usize,
}

impl Deadlines {
    /// No deadlines.
    pub(crate) fn new() -> Self {
        Deadlines::default()
    }

    /// The earliest entry of all: no later than any slot's real deadline.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.first().map(|&(at, _)| at)
    }

    /// The earliest real deadline, given each entry's slot's real one by `real` (`None`:
    /// no deadline, or not to be counted). Requires every entry to be at or before its
    /// slot's real deadline, which [`refile`](Self::refile) keeps.
    ///
    /// A best-first walk down the heap, in order of entries: it stops at the first entry
    /// no earlier than the best real deadline found so far, since that entry and every one
    /// below it are lower bounds of deadlines that cannot be earlier. With entries at
    /// their real deadlines it visits one; each stale entry ahead of the answer costs one
    /// more visit and up to two more in view, and past [`WALK`] in view it falls back to
    /// asking every slot.
    pub(crate) fn earliest_real(&self, real: impl Fn(u32) -> Option<Instant>) -> Option<Instant> {
        if self.heap.is_empty() {
            return None;
        }
        let mut best: Option<Instant> = None;
        // Heap indices still to visit; the earliest of them is always next.
        let mut frontier = [0usize; WALK];
        let mut n = 1;
        while n > 0 {
            let mut k = 0;
            for j in 1..n {
                if self.heap[frontier[j]] < self.heap[frontier[k]] {
                    k = j;
                }
            }
            let i = frontier[k];
            let (filed, slot) = self.heap[i];
            if best.is_some_and(|b| b <= filed) {
                return best;
            }
            best = Instant::earliest(best, real(slot));
            n -= 1;
            frontier[k] = frontier[n];
            for child in [2 * i + 1, 2 * i + 2] {
                if child < self.heap.len() {
                    if n == WALK {
                        return self.heap.iter().filter_map(|&(_, s)| real(s)).min();
                    }
                    frontier[n] = child;
                    n += 1;
                }
            }
        }
        best
    }

    /// Files `real`, the slot's deadline now (`None`: it has none), the cheap way (see the
    /// module's "Filed early, checked when due"): a deadline earlier than the slot's entry,
    /// or a first one, is filed; one later than the entry, or none, leaves the entry where
    /// it is, early, while fewer than [`STALE_MAX`] entries are; past that budget it is
    /// filed too. So the common move, later, costs O(1), and the rest O(log n) as before.
    #[inline]
    pub(crate) fn refile(&mut self, slot: u32, real: Option<Instant>) {
        let later = match (self.get(slot), real) {
            (None, None) => return,
            (None, Some(_)) => false,
            (Some(filed), Some(at)) if at == filed => {
                self.mark_exact(slot as usize);
                return;
            }
            (Some(filed), Some(at)) => at > filed,
            (Some(_), None) => true,
        };
        if later {
            let s = slot as usize;
            if self.stale[s] {
                return;
            }
            if self.stale_count < STALE_MAX {
                self.stale[s] = true;
                self.stale_count += 1;
                return;
            }
        }
        self.set(slot, real);
    }

    /// Whether `slot`'s entry is early (see [`refile`](Self::refile)).
    pub(crate) fn is_stale(&self, slot: u32) -> bool {
        self.stale.get(slot as usize).copied().unwrap_or(false)
    }

    /// Entries early at the moment.
    #[cfg(test)]
    pub(crate) fn stale_count(&self) -> usize {
        self.stale_count
    }

    /// Notes that the entry of slot `s`, if any, is at the slot's deadline.
    fn mark_exact(&mut self, s: usize) {
        if let Some(flag) = self.stale.get_mut(s) {
            if *flag {
                *flag = false;
                self.stale_count -= 1;
            }
        }
    }

    /// The deadline of `slot`, if it has one.
    pub(crate) fn get(&self, slot: u32) -> Option<Instant> {
        match self.pos.get(slot as usize) {
            Some(&i) if i != NONE => Some(self.heap[i as usize].0),
            _ => None,
        }
    }

    /// Sets the deadline of `slot` exactly (`None` removes it).
    pub(crate) fn set(&mut self, slot: u32, at: Option<Instant>) {
        let s = slot as usize;
        if s >= self.pos.len() {
            if at.is_none() {
                return;
            }
            self.pos.resize(s + 1, NONE);
            self.stale.resize(s + 1, false);
            // Room for every slot, so that `push` below never reallocates on its own.
            self.heap.reserve(self.pos.len() - self.heap.len());
        }
        let i = self.pos[s];
        match (i, at) {
            (NONE, None) => {}
            (NONE, Some(at)) => {
                let i = self.heap.len();
                self.heap.push((at, slot));
                self.pos[s] = i as u32;
                self.sift_up(i);
            }
            (i, None) => self.remove_at(i as usize),
            (i, Some(at)) => {
                self.mark_exact(s);
                let i = i as usize;
                let old = self.heap[i].0;
                if at == old {
                    return;
                }
                self.heap[i].0 = at;
                if at < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// Removes and returns the slot of the earliest deadline, if it is at or before `now`.
    /// Slots with the same deadline come out in slot order.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<u32> {
        let &(at, slot) = self.heap.first()?;
        if at > now {
            return None;
        }
        self.remove_at(0);
        Some(slot)
    }

    /// Removes the entry at heap index `i`.
    fn remove_at(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.swap(i, last);
        if let Some((_, slot)) = self.heap.pop() {
            self.pos[slot as usize] = NONE;
            self.mark_exact(slot as usize);
        }
        if i < self.heap.len() {
            // The entry moved into the hole may belong above it or below it.
            self.sift_up(i);
            self.sift_down(i);
        }
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.pos[self.heap[i].1 as usize] = i as u32;
        self.pos[self.heap[j].1 as usize] = j as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if left < self.heap.len() && self.heap[left] < self.heap[least] {
                least = left;
            }
            if right < self.heap.len() && self.heap[right] < self.heap[least] {
                least = right;
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_link::Rng;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn earliest_first_and_ties_in_slot_order() {
        let mut d = Deadlines::new();
        assert_eq!(d.earliest(), None);
        d.set(3, Some(at(5)));
        d.set(1, Some(at(5)));
        d.set(2, Some(at(9)));
        d.set(0, Some(at(7)));
        assert_eq!(d.earliest(), Some(at(5)));
        assert_eq!(d.pop_due(at(4)), None, "nothing is due before 5 ms");
        assert_eq!(d.pop_due(at(7)), Some(1));
        assert_eq!(d.pop_due(at(7)), Some(3));
        assert_eq!(d.pop_due(at(7)), Some(0));
        assert_eq!(d.pop_due(at(7)), None);
        assert_eq!(d.earliest(), Some(at(9)));
        assert_eq!(d.get(2), Some(at(9)));
        assert_eq!(d.get(1), None, "a popped deadline is gone");
    }

    #[test]
    fn moving_and_removing_deadlines() {
        let mut d = Deadlines::new();
        d.set(0, Some(at(10)));
        d.set(1, Some(at(20)));
        d.set(0, Some(at(30)));
        assert_eq!(d.earliest(), Some(at(20)), "a deadline moved later");
        d.set(0, Some(at(1)));
        assert_eq!(d.earliest(), Some(at(1)), "and earlier again");
        d.set(0, None);
        d.set(0, None);
        assert_eq!(d.earliest(), Some(at(20)));
        d.set(7, None);
        assert_eq!(d.get(7), None, "clearing an unknown slot is a no-op");
        d.set(1, None);
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn earliest_real_skips_slots() {
        let mut d = Deadlines::new();
        for slot in 0..100u32 {
            d.set(slot, Some(at(u64::from(1000 - slot))));
        }
        let filed = |s: u32| Some(at(u64::from(1000 - s)));
        assert_eq!(d.earliest_real(filed), Some(at(901)));
        let not_99 = |s: u32| if s == 99 { None } else { filed(s) };
        assert_eq!(d.earliest_real(not_99), Some(at(902)));
        // Past what the walk keeps in view: the scan gives the same answer.
        let below_20 = |s: u32| if s >= 20 { None } else { filed(s) };
        assert_eq!(d.earliest_real(below_20), Some(at(981)));
        assert_eq!(d.earliest_real(|_| None), None);
        assert_eq!(Deadlines::new().earliest_real(filed), None);
    }

    #[test]
    fn refile_moves_an_entry_earlier_and_leaves_it_for_later() {
        let mut d = Deadlines::new();
        d.refile(4, None);
        assert_eq!(d.get(4), None, "no deadline, no entry");
        d.refile(4, Some(at(10)));
        assert_eq!((d.get(4), d.is_stale(4)), (Some(at(10)), false));
        d.refile(4, Some(at(30)));
        assert_eq!(d.get(4), Some(at(10)), "later: the entry stays");
        assert!(d.is_stale(4));
        d.refile(4, None);
        assert_eq!(d.get(4), Some(at(10)), "gone: the entry stays");
        assert_eq!(d.stale_count(), 1, "counted once");
        d.refile(4, Some(at(10)));
        assert!(!d.is_stale(4), "back at the entry: exact again");
        d.refile(2, Some(at(20)));
        d.refile(4, Some(at(40)));
        d.refile(4, Some(at(5)));
        assert_eq!(
            (d.get(4), d.is_stale(4)),
            (Some(at(5)), false),
            "earlier: moved"
        );
        assert_eq!(d.stale_count(), 0);
        assert_eq!(d.pop_due(at(5)), Some(4));
        // An early entry: slot 4's real deadline is 50 ms, slot 2's is none.
        d.refile(4, Some(at(3)));
        d.refile(4, Some(at(50)));
        d.refile(2, None);
        let real = |s: u32| match s {
            4 => Some(at(50)),
            _ => None,
        };
        assert_eq!(d.earliest(), Some(at(3)));
        assert_eq!(
            d.earliest_real(real),
            Some(at(50)),
            "the real deadline, not the entry"
        );
        assert_eq!(d.pop_due(at(3)), Some(4));
        assert!(!d.is_stale(4), "a popped entry is no longer early");
        assert_eq!(d.stale_count(), 1, "slot 2's still is");
    }

    #[test]
    fn at_most_stale_max_entries_are_early() {
        let mut d = Deadlines::new();
        let n = 3 * STALE_MAX as u32;
        for slot in 0..n {
            d.refile(slot, Some(at(100 + u64::from(slot))));
        }
        // Every deadline moves later: the first STALE_MAX entries stay early, the rest
        // move.
        for slot in 0..n {
            d.refile(slot, Some(at(1000 + u64::from(slot))));
        }
        assert_eq!(d.stale_count(), STALE_MAX);
        for slot in 0..n {
            let want = if (slot as usize) < STALE_MAX {
                at(100 + u64::from(slot))
            } else {
                at(1000 + u64::from(slot))
            };
            assert_eq!(d.get(slot), Some(want), "slot {slot}");
            assert_eq!(d.is_stale(slot), (slot as usize) < STALE_MAX, "slot {slot}");
        }
        let real = |s: u32| Some(at(1000 + u64::from(s)));
        assert_eq!(d.earliest_real(real), Some(at(1000)));
    }

    /// Random operations against a plain list of deadlines, which is what the heap stands
    /// in for: every answer must agree.
    #[test]
    fn agrees_with_a_scan() {
        let mut rng = Rng::new(7);
        let mut d = Deadlines::new();
        let mut plain: Vec<Option<Instant>> = vec![None; 64];
        let mut now = 0;
        for _ in 0..20_000 {
            let slot = rng.below(64) as u32;
            match rng.below(4) {
                0 => {
                    d.set(slot, None);
                    plain[slot as usize] = None;
                }
                1 | 2 => {
                    let t = Some(at(now + rng.below(50)));
                    d.set(slot, t);
                    plain[slot as usize] = t;
                }
                _ => {
                    now += rng.below(10);
                    // Due slots come out earliest first, ties in slot order.
                    let mut due: Vec<(Instant, u32)> = plain
                        .iter()
                        .enumerate()
                        .filter_map(|(s, t)| t.filter(|&t| t <= at(now)).map(|t| (t, s as u32)))
                        .collect();
                    due.sort();
                    for (_, s) in due {
                        assert_eq!(d.pop_due(at(now)), Some(s));
                        plain[s as usize] = None;
                    }
                    assert_eq!(d.pop_due(at(now)), None);
                }
            }
            assert_eq!(d.earliest(), plain.iter().flatten().min().copied());
            let odd = |s: u32| s % 2 == 1;
            let want = plain
                .iter()
                .enumerate()
                .filter(|&(s, _)| !odd(s as u32))
                .filter_map(|(_, t)| *t)
                .min();
            let even_only = |s: u32| if odd(s) { None } else { plain[s as usize] };
            assert_eq!(d.earliest_real(even_only), want);
            for (s, &t) in plain.iter().enumerate() {
                assert_eq!(d.get(s as u32), t, "slot {s}");
            }
        }
    }

    /// The stack's use of the heap, with entries filed early ([`Deadlines::refile`]) and
    /// checked when due, against plain real deadlines: the earliest real deadline is always
    /// what `earliest_real` says, and every real deadline fires when it comes, never
    /// before and never late.
    #[test]
    fn entries_filed_early_fire_every_deadline_on_time() {
        let mut rng = Rng::new(11);
        let mut d = Deadlines::new();
        let mut real: Vec<Option<Instant>> = vec![None; 48];
        let mut now = 0;
        let mut fired = 0;
        for _ in 0..20_000 {
            let slot = rng.below(48) as u32;
            match rng.below(4) {
                0 => real[slot as usize] = None,
                1 | 2 => real[slot as usize] = Some(at(now + rng.below(50))),
                _ => {
                    now += rng.below(10);
                    // What `Tcp::run_timers` does.
                    let mut due = Vec::new();
                    while let Some(s) = d.pop_due(at(now)) {
                        match real[s as usize] {
                            Some(t) if t <= at(now) => due.push(s),
                            later => d.set(s, later),
                        }
                    }
                    for s in due {
                        real[s as usize] = None; // the timer ran
                        fired += 1;
                    }
                    for (s, t) in real.iter().enumerate() {
                        assert!(
                            t.is_none_or(|t| t > at(now)),
                            "slot {s}: deadline {t:?} passed at {now} ms without firing"
                        );
                    }
                }
            }
            // What `Tcp::rearm` does after every change.
            d.refile(slot, real[slot as usize]);
            assert!(d.stale_count() <= STALE_MAX);
            let early = (0..48).filter(|&s| d.is_stale(s)).count();
            assert_eq!(early, d.stale_count(), "the count matches the flags");
            for s in 0..48u32 {
                let (filed, want) = (d.get(s), real[s as usize]);
                if d.is_stale(s) {
                    assert!(
                        filed.is_some_and(|f| want.is_none_or(|r| f < r)),
                        "slot {s}"
                    );
                } else {
                    assert_eq!(filed, want, "slot {s}: an entry not early is exact");
                }
            }
            assert_eq!(
                d.earliest_real(|s| real[s as usize]),
                real.iter().flatten().min().copied()
            );
        }
        assert!(fired > 1000, "the test exercised firing ({fired} fired)");
    }
}
