"""OpenTelemetry export (the `otel` extra): one span per request, built from the finished
record off the request path, and the metrics of /metrics through the OpenTelemetry metrics API,
both sent over OTLP (HTTP/protobuf or gRPC).

`options` decides whether it is on (settings and the standard `OTEL_*` variables, no
OpenTelemetry import); `build` makes the exporter, importing the SDK only then; `exporter`
holds the bounded queue and the thread that exports; `spans` turns a record into a span;
`instruments` turns records, and the rest of the Prometheus registry, into OpenTelemetry
metrics; `otlp` builds the SDK objects; `collector` puts the exporter's own counts (queue,
drops, failures) on /metrics. The request path's part, the W3C `traceparent`, is
`monitor.proxy.tracecontext`.
"""
