use std::time::Duration;

use slipstream_exporters::Exporter;
use slipstream_exporters::events::EventExporters;
use slipstream_step::publish::EventSink;

use super::EventExportersSink;

#[tokio::test]
async fn shutting_down_takes_the_exporter_out_of_every_clone() {
    let fed = EventExportersSink::new(EventExporters::default());
    let step = fed.clone();
    assert_eq!(fed.name(), "events");
    let first: Box<dyn Exporter> = Box::new(fed.clone());
    assert_eq!(first.shutdown(Duration::from_secs(1)).await, 0);
    assert!(
        step.take().is_none(),
        "the step's clone shares the exporter"
    );
    step.publish(&[]);
    let again: Box<dyn Exporter> = Box::new(fed);
    assert_eq!(again.shutdown(Duration::from_secs(1)).await, 0);
}
