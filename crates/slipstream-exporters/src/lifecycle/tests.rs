use std::sync::Arc;
use std::time::Duration;

use slipstream_config::exporters::{ExportersConfig, RemoteWriteConfig};
use slipstream_core::{MetricsSnapshot, MetricsSource, Registry};
use tokio::sync::Barrier;

use super::*;

/// Drains only once every other `Meeting` exporter has started draining too.
#[derive(Debug)]
struct Meeting {
    name: &'static str,
    barrier: Arc<Barrier>,
    left: usize,
}

impl Exporter for Meeting {
    fn name(&self) -> &'static str {
        self.name
    }

    fn shutdown(self: Box<Self>, _deadline: Duration) -> Drain {
        Box::pin(async move {
            self.barrier.wait().await;
            self.left
        })
    }
}

#[tokio::test]
async fn shutdown_all_drains_every_exporter_at_once_and_names_each() {
    let barrier = Arc::new(Barrier::new(3));
    let exporters: Vec<Box<dyn Exporter>> = [("a", 2), ("b", 0), ("c", 5)]
        .into_iter()
        .map(|(name, left)| -> Box<dyn Exporter> {
            Box::new(Meeting {
                name,
                barrier: barrier.clone(),
                left,
            })
        })
        .collect();
    let drained = tokio::time::timeout(
        Duration::from_secs(10),
        shutdown_all(exporters, Duration::from_secs(1)),
    )
    .await
    .expect("the drains wait on each other, so they must run at once");
    assert_eq!(drained, vec![("a", 2), ("b", 0), ("c", 5)]);
}

fn empty_source() -> Arc<dyn MetricsSource> {
    Arc::new(MetricsSnapshot::default)
}

#[tokio::test]
async fn series_exporters_start_as_configured() {
    let registry = Registry::new();
    let none = start_series_exporters(&ExportersConfig::default(), &|_| empty_source(), &registry)
        .unwrap();
    assert!(none.is_empty());

    let mut cfg = ExportersConfig::default();
    cfg.remote_write = Some(RemoteWriteConfig {
        endpoint: "http://127.0.0.1:9/api/v1/write".to_owned(),
        ..RemoteWriteConfig::default()
    });
    let started = start_series_exporters(&cfg, &|_| empty_source(), &registry).unwrap();
    let names: Vec<&str> = started.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["remote_write"]);
    let drained = shutdown_all(started, Duration::from_millis(50)).await;
    assert_eq!(drained.len(), 1);

    cfg.remote_write.as_mut().unwrap().endpoint = "example.com/write".to_owned();
    let err = start_series_exporters(&cfg, &|_| empty_source(), &registry).unwrap_err();
    assert!(
        err.to_string().contains("exporters.remote_write.endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn stdout_has_nothing_to_drain() {
    let mut cfg = ExportersConfig::default();
    cfg.stdout.enabled = true;
    let events = crate::events::EventExporters::start(&cfg, &Registry::new()).unwrap();
    assert!(!events.is_empty());
    let all: Vec<Box<dyn Exporter>> = vec![Box::new(events)];
    assert_eq!(
        shutdown_all(all, Duration::from_secs(1)).await,
        vec![("events", 0)]
    );
}

#[test]
fn the_replica_label_is_set_on_every_pushed_point_in_label_order() {
    use slipstream_core::export::{MetricFamily, MetricKind, Point, PointValue};
    let point = |labels: &[(&str, &str)]| Point {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        service: None,
        value: PointValue::Number(1.0),
        start_time: 0,
        exemplars: Vec::new(),
    };
    let snapshot = MetricsSnapshot {
        at: 1,
        families: vec![MetricFamily {
            name: "slipstream_sli_requests_total".into(),
            help: String::new(),
            unit: "",
            kind: MetricKind::Counter,
            points: vec![
                point(&[("service", "cart"), ("slo", "cart-availability")]),
                point(&[("replica", "old"), ("service", "auth")]),
                point(&[]),
            ],
        }],
    };
    let inner: Arc<dyn MetricsSource> = {
        let s = snapshot.clone();
        Arc::new(move || s.clone())
    };
    // Without the option, the source is the series' own.
    assert_eq!(labelled(inner.clone(), None).collect(), snapshot);
    let got = labelled(inner, Some(("replica".into(), "gateway-1".into()))).collect();
    let labels: Vec<Vec<(String, String)>> = got.families[0]
        .points
        .iter()
        .map(|p| p.labels.clone())
        .collect();
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        labels,
        [
            pairs(&[
                ("replica", "gateway-1"),
                ("service", "cart"),
                ("slo", "cart-availability")
            ]),
            pairs(&[("replica", "gateway-1"), ("service", "auth")]),
            pairs(&[("replica", "gateway-1")]),
        ]
    );
}
