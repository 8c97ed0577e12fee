//! The timer half of the SLI-series push exporters (remote write, OTLP metrics): every
//! interval collect a snapshot, encode it, and queue the requests for delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipstream_core::{MetricsSnapshot, MetricsSource};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::delivery::{Delivery, DeliveryQueue};

/// Collects and encodes a snapshot every interval into a [`Delivery`] queue.
#[derive(Debug)]
pub(crate) struct Periodic<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    delivery: Delivery<T>,
}

impl<T: Send + Sync + 'static> Periodic<T> {
    /// Starts the timer: the first snapshot is taken at once, then one every `interval`.
    /// Collecting and encoding run on the blocking pool, off the async workers.
    pub(crate) fn start<E>(
        interval: Duration,
        source: Arc<dyn MetricsSource>,
        delivery: Delivery<T>,
        encode: E,
    ) -> Self
    where
        E: Fn(&MetricsSnapshot) -> Vec<T> + Send + Sync + 'static,
    {
        let (stop, mut stopped) = oneshot::channel();
        let queue = delivery.queue();
        let encode = Arc::new(encode);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stopped => break,
                }
                collect_into(&source, &encode, &queue).await;
            }
            // One last snapshot, so the target holds the values as of shutdown.
            collect_into(&source, &encode, &queue).await;
        });
        Periodic {
            stop,
            task,
            delivery,
        }
    }

    /// Takes one last snapshot, then delivers what is queued, all within `deadline`; returns
    /// the number of requests left undelivered (counted as dropped, `reason="shutdown"`).
    pub(crate) async fn shutdown(self, deadline: Duration) -> usize {
        let started = Instant::now();
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
        }
        self.delivery
            .shutdown(deadline.saturating_sub(started.elapsed()))
            .await
    }
}

async fn collect_into<T, E>(
    source: &Arc<dyn MetricsSource>,
    encode: &Arc<E>,
    queue: &DeliveryQueue<T>,
) where
    T: Send + 'static,
    E: Fn(&MetricsSnapshot) -> Vec<T> + Send + Sync + 'static,
{
    let (source, encode) = (source.clone(), encode.clone());
    match tokio::task::spawn_blocking(move || encode(&source.collect())).await {
        Ok(items) => {
            for item in items {
                queue.push(item);
            }
        }
        Err(e) => tracing::error!(error = %e, "collecting SLI series for a push failed"),
    }
}
