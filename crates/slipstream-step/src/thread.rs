//! Hop 5 of the life of a span (see [the crate docs](crate)): the thread that runs the
//! steps, one per tick, each merging the aggregator's shards, feeding and evaluating the SLOs
//! and publishing what they give ([`Live::step`]).
//!
//! A step is a burst of CPU work that grows with the number of series. Run at the request
//! workers' priority on a machine with few cores, the steps at 100,000 series held up the
//! Export calls that arrived meanwhile, far more than at 1,000 series. So steps run on a
//! thread of their own, with a nice value [`STEP_NICE`] above the process's: the scheduler
//! lets a request worker that wakes up preempt a step, and the step still gets every CPU
//! cycle the workers leave idle. The tail latencies measured with and without it: see
//! docs/benchmarks.md, "Experiment log", "2026-11-24: the step on a thread of its own at
//! nice +10".

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::evaluate::Step;
use crate::publish::Live;

/// How much nicer (lower CPU priority) than the process the step thread runs, on Linux.
/// With 10, a step competing with a request worker for one core gets about a tenth of it.
pub const STEP_NICE: i32 = 10;

type Job<T> = (bool, tokio::sync::oneshot::Sender<T>);

/// Runs [`Live::step`] (or, in tests, any step function) on a dedicated, lower-priority
/// thread.
#[derive(Debug)]
pub struct StepThread<T = Step> {
    jobs: crossbeam_channel::Sender<Job<T>>,
}

impl StepThread<Step> {
    /// Starts the thread for `live`'s steps; it ends when the last handle is dropped.
    pub fn start(live: Arc<Live>) -> std::io::Result<Self> {
        Self::start_with(move |force| live.step(force))
    }
}

impl<T: Send + 'static> StepThread<T> {
    /// Starts the thread running `step`. A step that panics is logged and answers `None`;
    /// the thread lives on for the next one, as a blocking-pool task would.
    pub fn start_with(mut step: impl FnMut(bool) -> T + Send + 'static) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job<T>>();
        std::thread::Builder::new()
            .name("slipstream-step".into())
            .spawn(move || {
                lower_priority();
                for (force, reply) in rx {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| step(force))) {
                        Ok(out) => {
                            let _ = reply.send(out);
                        }
                        Err(_) => tracing::error!("an evaluation step panicked"),
                    }
                }
            })?;
        Ok(StepThread { jobs })
    }

    /// Runs one step (`force`: evaluating whatever the evaluation interval) and waits for it;
    /// `None` when it panicked.
    pub async fn step(&self, force: bool) -> Option<T> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.jobs.send((force, reply)).ok()?;
        done.await.ok()
    }
}

/// Makes the calling thread nicer than it is by [`STEP_NICE`]. On Linux a nice value
/// set through `setpriority(PRIO_PROCESS, tid)` applies to that one thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        let nice = (now + STEP_NICE).min(19);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::warn!(error = %e, "could not lower the evaluation step thread's priority");
        }
    }
}

/// The nice value of the calling thread (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_step_thread_runs_nicer_than_its_parent() {
        let parent = current_nice();
        let child = std::thread::spawn(|| {
            lower_priority();
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(child, (parent + STEP_NICE).min(19));
        // Only that thread: this one is unchanged.
        assert_eq!(current_nice(), parent);
    }

    #[tokio::test]
    async fn a_panicking_step_does_not_stop_the_next_ones() {
        let mut n = 0;
        let steps = StepThread::start_with(move |force| {
            n += 1;
            assert!(n != 2, "the second step fails");
            (n, force, current_nice())
        })
        .unwrap();
        let parent = current_nice();
        assert_eq!(
            steps.step(false).await,
            Some((1, false, (parent + STEP_NICE).min(19)))
        );
        assert_eq!(steps.step(false).await, None);
        assert_eq!(
            steps.step(true).await,
            Some((3, true, (parent + STEP_NICE).min(19)))
        );
    }
}
