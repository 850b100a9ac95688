"""The tracing block: OTEL_* variables read at the edge, the file's keys, what wins."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.tracing.settings import TracingSettings, parse_headers, tracing_from_env

BASE = {"TAXGATE_UPSTREAMS": "http://vllm:8000"}


def test_off_unless_an_endpoint_is_configured():
    assert not TracingSettings().enabled
    assert TracingSettings(endpoint="http://c:4318").enabled
    assert TracingSettings(traces_endpoint="http://c:4318/v1/traces").enabled
    assert not TracingSettings(endpoint="http://c:4318", disabled=True).enabled
    assert not load_settings(env=BASE).tracing.enabled


def test_the_standard_variables_map_to_keys():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "gw-eu",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcret,X-Tenant=a",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "UNRELATED": "x",
        "OTEL_SERVICE_NAME_TYPO": "y",
    }
    tracing = load_settings(env={**BASE, **env}).tracing
    assert tracing.enabled and tracing.protocol == "grpc"
    assert tracing.export_url() == "http://collector:4317"  # gRPC: host and port, no path
    assert (tracing.service_name, tracing.sampler, tracing.sampler_arg) == ("gw-eu", "parentbased_traceidratio", 0.25)
    assert {k: v.get_secret_value() for k, v in tracing.headers.items()} == {"api-key": "s=cret", "x-tenant": "a"}
    assert tracing.timeout_s == 2.5  # the variable is in milliseconds
    assert tracing.schedule_delay_ms == 200
    assert "s=cret" not in repr(tracing)  # headers may hold keys: never printed


def test_http_appends_the_signal_path_and_the_traces_variables_win():
    tracing = load_settings(env={**BASE, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}).tracing
    assert tracing.export_url() == "http://c:4318/v1/traces"
    tracing = load_settings(
        env={
            **BASE,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        }
    ).tracing
    assert (tracing.protocol, tracing.export_url()) == ("http/protobuf", "http://t:9/traces")


@pytest.mark.parametrize("value, enabled", [("true", False), ("TRUE", False), ("false", True), ("", True)])
def test_sdk_disabled_turns_it_off_whatever_else_says(value, enabled):
    env = {**BASE, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": value}
    assert load_settings(env=env).tracing.enabled is enabled


def test_env_wins_over_the_file_and_taxgate_variables_over_otel(tmp_path):
    config = tmp_path / "taxgate.yaml"
    config.write_text("upstreams: [http://vllm:8000]\ntracing: {endpoint: http://file:4318, service_name: from-file}\n")
    assert load_settings(config).tracing.endpoint == "http://file:4318"
    tracing = load_settings(config, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}).tracing
    assert (tracing.endpoint, tracing.service_name) == ("http://env:4318", "from-file")
    tracing = load_settings(
        config, env={"OTEL_SERVICE_NAME": "otel", "TAXGATE_TRACING__SERVICE_NAME": "taxgate"}
    ).tracing
    assert tracing.service_name == "taxgate"


@pytest.mark.parametrize(
    "env, key",
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "tracing.protocol"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "tracing.sampler"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "tracing.sampler_arg"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "tracing.endpoint"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "tracing.timeout_s"),
    ],
)
def test_a_bad_variable_is_named_by_its_key(env, key):
    with pytest.raises(SettingsError, match=key):
        load_settings(env={**BASE, **env})


def test_unset_and_empty_variables_set_nothing():
    assert tracing_from_env({"OTEL_SERVICE_NAME": "  ", "PATH": "/bin"}) == {}
    assert parse_headers("a=1,,=x,b") == {"a": "1"}
