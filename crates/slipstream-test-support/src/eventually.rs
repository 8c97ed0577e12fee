//! Waiting for a condition with a deadline: [`eventually`] and [`eventually_async`] poll a
//! check with a short backoff until it holds, and at the deadline panic with what was
//! awaited and what the check saw last. Tests wait with these, never with a fixed sleep.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two checks; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between two checks.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// What one check saw: done (with a value) or not yet (with a description of what it saw,
/// for the message at the deadline).
pub trait Condition {
    /// The value handed back once the condition holds.
    type Output;
    /// `Ok` once the condition holds, else what was seen.
    fn seen(self) -> Result<Self::Output, String>;
}

impl Condition for bool {
    type Output = ();
    fn seen(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

impl<T> Condition for Option<T> {
    type Output = T;
    fn seen(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_owned())
    }
}

/// `Err` carries what was seen instead (e.g. `Err(format!("{n} of 10 requests"))`): a
/// `String` as it is, anything else in its `Debug` form.
impl<T, E: Debug + 'static> Condition for Result<T, E> {
    type Output = T;
    fn seen(self) -> Result<T, String> {
        self.map_err(
            |e| match (&e as &dyn std::any::Any).downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => format!("{e:?}"),
            },
        )
    }
}

/// The pauses between checks, and the deadline.
#[derive(Debug)]
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(timeout: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + timeout,
            pause: FIRST_PAUSE,
        }
    }

    /// How long to wait before the next check, or `None` once the deadline has passed.
    fn next(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Some(pause)
    }
}

#[track_caller]
fn timed_out(what: &str, timeout: Duration, last: &str) -> ! {
    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
}

/// Calls `check` until it reports done, pausing between calls (5 ms, doubling up to 200 ms);
/// returns its value. Panics after `timeout` naming `what` and the last observation. The
/// check runs at least once, and once more at the deadline.
#[track_caller]
pub fn eventually<O: Condition>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> O,
) -> O::Output {
    let mut backoff = Backoff::new(timeout);
    loop {
        let last = match check().seen() {
            Ok(v) => return v,
            Err(last) => last,
        };
        match backoff.next() {
            Some(pause) => std::thread::sleep(pause),
            None => timed_out(what, timeout, &last),
        }
    }
}

/// [`eventually`] for a check that awaits (HTTP requests, a server in the same runtime):
/// pauses with the runtime's timer, so the runtime's other tasks go on meanwhile.
#[track_caller]
pub fn eventually_async<'a, O, F>(
    what: &'a str,
    timeout: Duration,
    mut check: impl FnMut() -> F + 'a,
) -> impl Future<Output = O::Output> + 'a
where
    O: Condition,
    F: Future<Output = O> + 'a,
{
    let caller = std::panic::Location::caller();
    async move {
        let mut backoff = Backoff::new(timeout);
        loop {
            let last = match check().await.seen() {
                Ok(v) => return v,
                Err(last) => last,
            };
            match backoff.next() {
                Some(pause) => tokio::time::sleep(pause).await,
                None => panic!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {last} (at {caller})"
                ),
            }
        }
    }
}
