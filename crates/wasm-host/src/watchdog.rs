//! A wall-clock deadline for every guest call, on top of the instruction budget.
//!
//! The budget (wasmer metering) counts Wasm operators, but one operator can take
//! milliseconds: `memory.fill` or `memory.copy` over the whole linear memory is one operator,
//! so a loop of them runs for hours inside a budget of millions of operators (measured here:
//! 100 fills of 64 MiB took 450 ms and counted 1 208 operators). A deadline bounds that.
//!
//! How a call is stopped: the metering middleware keeps the remaining budget in a global of
//! the instance and checks it at the start of every basic block. A watchdog thread looks at
//! the calls in flight every [`Watchdog::period`]; one that runs past its deadline, and whose
//! thread is still burning CPU (at least a quarter of a period between two looks: a worker
//! that was only preempted, on a loaded host, is not blamed for it), gets its remaining
//! budget set to 0, and the guest's next check traps as if the budget had run out (within one
//! bulk operation: a `memory.fill` of the 128 MiB default cap takes ~10 ms here). So a call
//! is stopped at most two periods and one bulk operation after its deadline.
//! wasmer's own wall-clock interrupt (`experimental-host-interrupt`) inserts every call into
//! a process-wide map (a `DashMap` keyed by store) and removes it after, which the issue's
//! prototype measured as doubling a call's cost; this costs a call one store and one swap.
//!
//! The handshake: the worker gives the instance its budget, then publishes the call's due
//! tick ([`CallWatch::begin`]); the watchdog claims an overdue call by swapping its due tick
//! for [`FIRED`] and only then, still holding the watch's lock, zeroes the budget; the worker
//! ends the call by swapping the due tick back to idle and, if it finds [`FIRED`], takes that
//! lock once, so the watchdog's write is done before the instance's next call gets a budget.
//! The lock also guards the budget's address: the instance clears it before it is dropped
//! ([`CallWatch::forget`]), so the watchdog never writes into freed memory.
#![allow(unsafe_code)] // the budget global is written through its address, see `BudgetPtr`

use crate::metrics::clock;
use parking_lot::Mutex;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// `due` of an instance with no call in flight.
const IDLE: u64 = 0;
/// `due` of a call the watchdog stopped.
const FIRED: u64 = 1;

/// The address of an instance's remaining-budget global (an i64 the guest's metering checks
/// read and write).
#[derive(Clone, Copy)]
pub(crate) struct BudgetPtr(NonNull<u64>);

// SAFETY: the pointer is only dereferenced through `AtomicU64::from_ptr` (an aligned 8-byte
// location: wasmer's `VMGlobalDefinition` is 16-byte aligned), by the instance's own thread
// between its calls and by the watchdog under the watch's lock, and never after
// `CallWatch::forget`, which the instance calls before its store (the global's owner) drops.
unsafe impl Send for BudgetPtr {}

impl BudgetPtr {
    /// # Safety
    /// `p` must point to the 8 value bytes of a live i64 global, aligned to 8, that stays
    /// valid until [`CallWatch::forget`] is called.
    pub(crate) unsafe fn new(p: NonNull<u64>) -> BudgetPtr {
        BudgetPtr(p)
    }

    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: see the type's `Send` impl: aligned, live while this value is reachable.
        unsafe { AtomicU64::from_ptr(self.0.as_ptr()) }
    }

    /// Sets the budget (no guest code runs on this instance while its thread calls this).
    pub(crate) fn set(&self, points: u64) {
        self.atomic().store(points, Ordering::Relaxed);
    }

    /// The budget left.
    pub(crate) fn get(&self) -> u64 {
        self.atomic().load(Ordering::Relaxed)
    }
}

/// One instance's call in flight, as the watchdog sees it.
pub(crate) struct CallWatch {
    /// Tick at which the running call is overdue; [`IDLE`] or [`FIRED`].
    due: AtomicU64,
    /// The CPU-time clock of the thread that owns the instance (the one that made it).
    cpu_clock: Option<libc::clockid_t>,
    state: Mutex<WatchState>,
}

struct WatchState {
    /// The instance's budget global; `None` once the instance is gone.
    budget: Option<BudgetPtr>,
    /// The overdue call seen at the last look (its due tick) and its thread's CPU time then.
    seen: Option<(u64, u64)>,
}

/// The calling thread's CPU-time clock.
#[allow(unsafe_code)]
fn this_thread_cpu_clock() -> Option<libc::clockid_t> {
    let mut id: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is always valid for the calling thread; `id` is a valid out-pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
    (rc == 0).then_some(id)
}

/// CPU time of the thread behind `clock`, ns.
#[allow(unsafe_code)]
fn cpu_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; a clock of a thread that has exited gives EINVAL.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
}

impl CallWatch {
    /// A watch over the budget at `budget`, for calls made on this thread, registered with
    /// the process's watchdog, which looks at least every `limit` / 4 (the thread is started
    /// on first use).
    pub(crate) fn new(budget: BudgetPtr, limit: Duration) -> Result<Arc<CallWatch>, String> {
        let w = Arc::new(CallWatch {
            due: AtomicU64::new(IDLE),
            cpu_clock: this_thread_cpu_clock(),
            state: Mutex::new(WatchState {
                budget: Some(budget),
                seen: None,
            }),
        });
        Watchdog::get()?.register(&w, limit);
        Ok(w)
    }

    /// Gives the instance `points` and starts a call that may run `limit_ticks`; returns the
    /// call's start tick.
    pub(crate) fn begin(&self, budget: &BudgetPtr, points: u64, limit_ticks: u64) -> u64 {
        budget.set(points);
        let t0 = clock::now();
        self.due.store(
            t0.saturating_add(limit_ticks).max(FIRED + 1),
            Ordering::Release,
        );
        t0
    }

    /// Ends the call; true when the watchdog stopped it.
    pub(crate) fn end(&self) -> bool {
        if self.due.swap(IDLE, Ordering::AcqRel) == FIRED {
            // The watchdog may still be writing the budget: wait for its lock.
            drop(self.state.lock());
            return true;
        }
        false
    }

    /// The instance is about to go: the watchdog must not touch its budget any more.
    pub(crate) fn forget(&self) {
        self.state.lock().budget = None;
    }

    /// Stops the call if it is overdue at `now` and its thread used at least `min_cpu_ns`
    /// of CPU since the last look (which saw it overdue already).
    fn check(&self, now: u64, min_cpu_ns: u64) {
        let due = self.due.load(Ordering::Acquire);
        if due <= FIRED || now < due {
            return;
        }
        let mut st = self.state.lock();
        let cpu = self.cpu_clock.and_then(cpu_ns);
        let running = match (st.seen, cpu) {
            (Some((seen_due, before)), Some(c)) => {
                seen_due == due && c.saturating_sub(before) >= min_cpu_ns
            }
            // No CPU clock to ask: the wall clock alone decides.
            (_, None) => true,
            (None, Some(_)) => false,
        };
        st.seen = cpu.map(|c| (due, c));
        if !running {
            return;
        }
        if self
            .due
            .compare_exchange(due, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if let Some(b) = st.budget.as_ref() {
                b.set(0);
            }
        }
    }
}

/// The process's one watchdog thread and the watches it checks.
struct Watchdog {
    watches: Mutex<Vec<Weak<CallWatch>>>,
    /// How often the thread checks, ns (a quarter of the shortest limit registered, 1–25 ms).
    period_ns: AtomicU64,
}

static WATCHDOG: OnceLock<Result<Arc<Watchdog>, String>> = OnceLock::new();

impl Watchdog {
    const LONGEST_PERIOD: Duration = Duration::from_millis(25);
    const SHORTEST_PERIOD: Duration = Duration::from_millis(1);

    fn get() -> Result<&'static Arc<Watchdog>, String> {
        WATCHDOG
            .get_or_init(|| {
                let w = Arc::new(Watchdog {
                    watches: Mutex::new(Vec::new()),
                    period_ns: AtomicU64::new(Self::LONGEST_PERIOD.as_nanos() as u64),
                });
                let w2 = Arc::clone(&w);
                std::thread::Builder::new()
                    .name("l7tap-wasm-watchdog".into())
                    .spawn(move || w2.run())
                    .map_err(|e| format!("cannot start the plugin watchdog thread: {e}"))?;
                Ok(w)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn register(&self, w: &Arc<CallWatch>, limit: Duration) {
        let period = (limit / 4).clamp(Self::SHORTEST_PERIOD, Self::LONGEST_PERIOD);
        self.period_ns
            .fetch_min(period.as_nanos() as u64, Ordering::Relaxed);
        let mut list = self.watches.lock();
        list.retain(|x| x.strong_count() > 0);
        list.push(Arc::downgrade(w));
    }

    /// The check interval now in force.
    fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.load(Ordering::Relaxed))
    }

    fn run(&self) {
        loop {
            let period = self.period();
            std::thread::sleep(period);
            let now = clock::now();
            let min_cpu = period.as_nanos() as u64 / 4;
            let list = self.watches.lock();
            for w in list.iter().filter_map(Weak::upgrade) {
                w.check(now, min_cpu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn watch(limit: Duration) -> (Arc<CallWatch>, BudgetPtr, Box<u64>) {
        let mut cell = Box::new(0u64);
        // SAFETY: the box outlives the watch's use in each test (forgotten before it drops).
        let b = unsafe { BudgetPtr::new(NonNull::from(&mut *cell)) };
        (CallWatch::new(b, limit).unwrap(), b, cell)
    }

    /// Burns this thread's CPU until the budget is zeroed or `max` passes.
    fn spin_until_stopped(b: &BudgetPtr, max: Duration) {
        let t = Instant::now();
        while b.get() != 0 && t.elapsed() < max {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn an_overdue_busy_call_loses_its_budget_a_prompt_or_idle_one_keeps_it() {
        clock::init();
        let (w, b, cell) = watch(Duration::from_millis(4));
        let ticks = clock::from_ns(4_000_000);
        // Prompt: ends before the deadline, keeps what it has.
        w.begin(&b, 1000, ticks);
        assert!(!w.end());
        assert_eq!(b.get(), 1000);
        // Overdue but not running (as a preempted worker): 20 deadlines later, still whole.
        w.begin(&b, 1000, ticks);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(b.get(), 1000);
        assert!(!w.end());
        // Overdue and burning CPU: the watchdog zeroes the budget within a few periods.
        w.begin(&b, 1000, ticks);
        spin_until_stopped(&b, Duration::from_secs(5));
        assert_eq!(b.get(), 0);
        assert!(w.end());
        // The next call starts clean.
        w.begin(&b, 7, ticks);
        assert!(!w.end());
        assert_eq!(b.get(), 7);
        w.forget();
        drop(cell);
    }
}
