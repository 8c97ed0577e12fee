"""Sends spans to an OTLP endpoint with the OpenTelemetry Python SDK, then flushes.

Used by slipstream's end-to-end tests as a real SDK client:
    python send_spans.py --protocol grpc|http/protobuf --endpoint URL --spans N --service NAME
Exits non-zero if the exporter reports a failure.
"""

import argparse
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult


class Recording:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failed += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", required=True, choices=["grpc", "http/protobuf"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--spans", type=int, default=100)
    p.add_argument("--service", default="python-e2e")
    a = p.parse_args()
    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=a.endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=a.endpoint)
    recording = Recording(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": a.service}))
    provider.add_span_processor(BatchSpanProcessor(recording, max_export_batch_size=50))
    tracer = provider.get_tracer("slipstream-e2e")
    for i in range(a.spans):
        with tracer.start_as_current_span(f"GET /py/{i % 5}", kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.response.status_code", 500 if i % 20 == 0 else 200)
    provider.force_flush()
    provider.shutdown()
    if recording.failed:
        print(f"{recording.failed} exports failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
