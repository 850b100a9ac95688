import pytest

from gateway.settings import SettingsError, load_settings


def write(tmp_path, text):
    path = tmp_path / "taxgate.yaml"
    path.write_text(text)
    return path


def test_yaml_env_and_flags_merge_in_order(tmp_path):
    path = write(tmp_path, "upstreams: [http://a:8000]\nport: 9000\naudit: {path: x.db}\n")
    settings = load_settings(
        path,
        env={
            "TAXGATE_PORT": "9100",
            "TAXGATE_AUDIT__SYNC": "always",
            "TAXGATE_API_KEYS": "k1, k2",
            "OTHER": "ignored",
            "TAXGATE_LOG_LEVEL": "debug",
        },
        overrides={"port": 9200, "host": None},
    )
    assert settings.port == 9200
    assert settings.audit.path == "x.db" and settings.audit.sync == "always"
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1", "k2"]
    assert settings.upstreams == ["http://a:8000"]


def test_upstream_urls_normalised():
    settings = load_settings(overrides={"upstreams": ["http://h:1/v1/", "https://g"]})
    assert settings.upstreams == ["http://h:1", "https://g"]


@pytest.mark.parametrize(
    "text, key",
    [
        ("upstreams: [http://a]\nprot: 1\n", "prot"),
        ("upstreams: [http://a]\ntimeouts: {conect_s: 1}\n", "timeouts.conect_s"),
        ("upstreams: [ftp://a]\n", "upstreams"),
        ("upstreams: [http://a]\nmonitors: [{name: pii, action: nuke}]\n", "monitors.0.action"),
        ("upstreams: [http://a]\nstreaming: {window_chars: 10}\n", "streaming"),
        ("port: 1\n", "upstreams"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, text, key):
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, text))
    assert f"  {key}" in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(write(tmp_path, "upstreams: [\n"))
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_monitor_specific_options_kept():
    settings = load_settings(
        overrides={
            "upstreams": ["http://a"],
            "monitors": [{"name": "blocklist", "id": "words", "keywords": ["x"], "stages": ["output"]}],
        }
    )
    spec = settings.monitors[0]
    assert spec.id == "words" and spec.options == {"keywords": ["x"]}


def test_api_keys_are_not_printed():
    settings = load_settings(overrides={"upstreams": ["http://a"], "api_keys": ["s3cret"]})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_edge_defaults_bound_every_client_read():
    settings = load_settings(overrides={"upstreams": ["http://a"]})
    assert settings.timeouts.client_header_s == 10 and settings.timeouts.client_body_s == 30
    assert settings.shutdown_grace_s == 10 and settings.max_header_bytes == 65536
    assert settings.metrics.listen is None and settings.metrics.auth is False


def test_metrics_listen_is_host_and_port():
    settings = load_settings(overrides={"upstreams": ["http://a"], "metrics": {"listen": "[::1]:9464"}})
    assert settings.metrics.address == ("::1", 9464)


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"listen": "9464"}, "metrics.listen"),
        ({"listen": "host:0"}, "metrics.listen"),
        ({"listen": "127.0.0.1:8080"}, "metrics.listen '127.0.0.1:8080' uses the main port"),
        ({"auth": True}, "metrics.auth is true but api_keys is empty"),
    ],
)
def test_bad_metrics_endpoint_settings(metrics, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(overrides={"upstreams": ["http://a"], "metrics": metrics})
