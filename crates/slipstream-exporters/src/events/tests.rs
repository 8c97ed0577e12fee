use std::time::Duration;

use slipstream_config::exporters::{
    AlertmanagerConfig, ExportersConfig, OtlpExportConfig, WebhookConfig,
};
use slipstream_config::forward::ForwardProtocol;
use slipstream_core::Registry;
use slipstream_core::export::EventState;

use super::EventExporters;
use super::fixture::{Recorder, event, fast_retry};

#[tokio::test]
async fn every_configured_exporter_gets_the_events_of_one_publish() {
    let (am, hook, logs) = (
        Recorder::start([]).await,
        Recorder::start([]).await,
        Recorder::start([]).await,
    );
    let mut cfg = ExportersConfig::default();
    cfg.alertmanager = Some(AlertmanagerConfig {
        endpoints: vec![am.url()],
        retry: fast_retry(),
        ..AlertmanagerConfig::default()
    });
    cfg.webhook = Some(WebhookConfig {
        url: format!("{}/hook", hook.url()),
        retry: fast_retry(),
        ..WebhookConfig::default()
    });
    cfg.otlp_logs = Some(OtlpExportConfig {
        endpoint: logs.url(),
        protocol: ForwardProtocol::Http,
        retry: fast_retry(),
        ..OtlpExportConfig::default()
    });
    let registry = Registry::new();
    let exporters = EventExporters::start(&cfg, &registry).unwrap();
    assert!(!exporters.is_empty());
    exporters.publish(&[]);
    exporters.publish(&[event(EventState::Firing), event(EventState::Resolved)]);
    assert_eq!(exporters.shutdown(Duration::from_secs(2)).await, 0);
    // One Alertmanager request with both alerts, one webhook POST per event, one OTLP request.
    assert_eq!(am.received().len(), 1);
    assert_eq!(am.received()[0].path, "/api/v2/alerts");
    assert_eq!(hook.received().len(), 2);
    assert_eq!(logs.received().len(), 1);
    for (exporter, sent) in [("alertmanager", 1), ("webhook", 2), ("otlp_logs", 1)] {
        assert_eq!(
            registry.value("slipstream_exporter_sent_total", &[exporter]),
            Some(sent),
            "{exporter}"
        );
    }
}

#[tokio::test]
async fn nothing_configured_is_empty_and_a_bad_url_names_its_field() {
    let registry = Registry::new();
    assert!(
        EventExporters::start(&ExportersConfig::default(), &registry)
            .unwrap()
            .is_empty()
    );
    let mut cfg = ExportersConfig::default();
    cfg.alertmanager = Some(AlertmanagerConfig {
        endpoints: vec!["http://127.0.0.1:9".to_owned(), "am:9093".to_owned()],
        ..AlertmanagerConfig::default()
    });
    let err = EventExporters::start(&cfg, &registry)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exporters.alertmanager.endpoints[1]"), "{err}");
}
