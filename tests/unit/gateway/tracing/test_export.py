"""The SDK built from the settings: sampler by name, exporter by protocol."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from gateway.tracing.export import otlp_exporter, sampler
from gateway.tracing.settings import TracingSettings


@pytest.mark.parametrize(
    "name, description",
    [
        ("always_on", "AlwaysOnSampler"),
        ("always_off", "AlwaysOffSampler"),
        ("traceidratio", "TraceIdRatioBased{0.25}"),
        ("parentbased_always_on", "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler"),
        ("parentbased_traceidratio", "ParentBased{root:TraceIdRatioBased{0.25}"),
    ],
)
def test_samplers_by_their_specification_names(name, description):
    settings = TracingSettings(endpoint="http://c:4318", sampler=name, sampler_arg=0.25)
    assert sampler(settings).get_description().startswith(description)


def test_the_exporter_follows_the_protocol():
    http = otlp_exporter(TracingSettings(endpoint="http://c:4318", headers={"api-key": "k"}))
    assert isinstance(http, HttpExporter) and http._endpoint == "http://c:4318/v1/traces"
    grpc = otlp_exporter(TracingSettings(endpoint="http://c:4317", protocol="grpc"))
    assert isinstance(grpc, GrpcExporter)
    http.shutdown()
    grpc.shutdown()
