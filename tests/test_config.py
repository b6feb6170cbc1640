"""Configuration: defaults < TOML file < environment; every problem names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivrstream.config import (
    Config,
    Endpoints,
    client_id,
    client_secret,
    endpoints,
    from_mapping,
    load,
    redacted,
)
from ivrstream.errors import ConfigError

SECRET = "s3cr3t-Do-Not-Print"


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivrstream.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(toml(tmp_path, text), env=env or {})
    return caught.value


# -- defaults ------------------------------------------------------------------------------------


def test_defaults_without_a_file_or_environment():
    config = load(None, env={})
    assert config == Config()
    assert config.source == "eventstreams"
    g = config.genesys
    assert (g.region, g.tenant_url, g.client_id, g.client_secret) == (None, None, None, None)
    assert g.grant == "client_credentials"
    assert g.max_retry_after == 180.0
    es = config.eventstreams
    assert es.event_type == "interaction:updated"
    assert es.data_types == ["interaction"]
    assert es.filters == {"interaction.routing.type": "IVR"}
    assert (es.retry, es.content_type, es.token_in_query) == (60, "application/msgpack", False)
    assert es.max_frame_bytes == 1_048_576
    assert (config.reconnect.base, config.reconnect.cap, config.reconnect.max_attempts) == (
        1.0,
        30.0,
        0,
    )
    assert (config.ordering.window_size, config.ordering.window_seconds) == (1_000, 2.0)
    j = config.journal
    assert (j.path, j.synchronous, j.batch_max, j.max_pending) == (
        "ivrstream.db",
        "normal",
        5_000,
        50_000,
    )


def test_defaults_are_fresh_objects_per_config():
    first, second = load(None, env={}), load(None, env={})
    first.eventstreams.filters["x"] = "y"
    assert "x" not in second.eventstreams.filters


# -- file and environment ------------------------------------------------------------------------


def test_the_file_overrides_defaults(tmp_path):
    path = toml(
        tmp_path,
        """
source = "notifications"
[genesys]
region = "eu-west-1"
client_id = "from-file"
[eventstreams]
content_type = "application/json"
filters = { "interaction.id" = "eq:abc" }
[reconnect]
base = 2          # an integer where a float is expected is fine
max_attempts = 10
[journal]
path = "/var/lib/ivrstream/journal.db"
synchronous = "full"
""",
    )
    config = load(path, env={})
    assert config.source == "notifications"
    assert (config.genesys.region, config.genesys.client_id) == ("eu-west-1", "from-file")
    assert config.eventstreams.content_type == "application/json"
    assert config.eventstreams.filters == {"interaction.id": "eq:abc"}
    assert (config.reconnect.base, config.reconnect.max_attempts) == (2.0, 10)
    assert config.reconnect.cap == 30.0  # untouched keys keep their defaults
    assert (config.journal.path, config.journal.synchronous) == (
        "/var/lib/ivrstream/journal.db",
        "full",
    )


def test_the_environment_overrides_the_file(tmp_path):
    path = toml(
        tmp_path,
        '[genesys]\nregion = "eu-west-1"\nclient_id = "from-file"\ntenant_url = "http://file"\n',
    )
    env = {
        "GENESYS_ENV": "us-east-1",
        "GENESYS_CLIENT_ID": "from-env",
        "GENESYS_CLIENT_SECRET": SECRET,
        "GENESYS_TENANT_URL": "http://127.0.0.1:8080",
    }
    g = load(path, env=env).genesys
    assert (g.region, g.client_id, g.client_secret, g.tenant_url) == (
        "us-east-1",
        "from-env",
        SECRET,
        "http://127.0.0.1:8080",
    )


def test_the_environment_alone_is_enough():
    config = load(None, env={"GENESYS_ENV": "mypurecloud.ie", "GENESYS_CLIENT_ID": "id"})
    assert (config.genesys.region, config.genesys.client_id) == ("mypurecloud.ie", "id")


def test_empty_or_unrelated_environment_variables_change_nothing(tmp_path):
    path = toml(tmp_path, '[genesys]\nregion = "eu-west-1"\n')
    config = load(path, env={"GENESYS_ENV": "", "HOME": "/root", "WEBHOOK_URL": "http://x"})
    assert config.genesys.region == "eu-west-1"


def test_from_mapping_checks_types_like_the_file():
    config = from_mapping({"ordering": {"window_size": 10}})
    assert config.ordering.window_size == 10
    with pytest.raises(ConfigError):
        from_mapping({"ordering": {"window_size": "10"}})


# -- every problem names its field ---------------------------------------------------------------


def test_an_unknown_key_in_a_section_is_named_with_its_section(tmp_path):
    error = config_error(tmp_path, "[journal]\nbatchmax = 10\n")
    assert error.field == "journal.batchmax"
    assert "batchmax" in str(error)


def test_an_unknown_section_is_named(tmp_path):
    error = config_error(tmp_path, "[metrix]\nurl = 'x'\n")
    assert error.field == "metrix"


def test_an_unknown_key_in_a_sink_is_named(tmp_path):
    error = config_error(tmp_path, "[sinks.webhook]\nurll = 'x'\n")
    assert error.field == "sinks.webhook.urll"


def test_sink_environment_variables_switch_sinks_on():
    config = load(env={"WEBHOOK_URL": "https://hooks.example.com/ivr", "WEBHOOK_SECRET": "whsec_x"})
    assert config.sinks.webhook is not None
    assert config.sinks.webhook.url == "https://hooks.example.com/ivr"
    assert config.sinks.webhook.secret == "whsec_x"
    assert config.sinks.postgres is None
    assert load(env={"WEBHOOK_SECRET": "whsec_x"}).sinks.webhook is None  # a secret alone: off


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[journal]\nbatch_max = "x"\n', "journal.batch_max"),
        ("[journal]\nbatch_max = 1.5\n", "journal.batch_max"),
        ("[journal]\nbatch_max = true\n", "journal.batch_max"),
        ('[journal]\nsynchronous = "sometimes"\n', "journal.synchronous"),
        ("[reconnect]\ncap = 'long'\n", "reconnect.cap"),
        ('[genesys]\ngrant = "saml"\n', "genesys.grant"),
        ("[genesys]\nclient_id = 42\n", "genesys.client_id"),
        ("[eventstreams]\ndata_types = 'interaction'\n", "eventstreams.data_types"),
        ('source = "carrier-pigeon"\n', "source"),
        ('journal = "x"\n', "journal"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_field(tmp_path, text, field):
    error = config_error(tmp_path, text)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[eventstreams]\nidle_timeout = 0\n", "eventstreams.idle_timeout"),
        ("[eventstreams]\nsubscribe_timeout = -1\n", "eventstreams.subscribe_timeout"),
        ("[eventstreams]\nmax_frame_bytes = 0\n", "eventstreams.max_frame_bytes"),
        ("[reconnect]\nbase = -0.5\n", "reconnect.base"),
        ("[reconnect]\ncap = 0\n", "reconnect.cap"),
        ("[reconnect]\nmax_attempts = -1\n", "reconnect.max_attempts"),
        ("[ordering]\nwindow_size = 0\n", "ordering.window_size"),
        ("[ordering]\nwindow_seconds = -1\n", "ordering.window_seconds"),
        ("[journal]\nbatch_max = -5\n", "journal.batch_max"),
        ("[journal]\nmax_pending = 0\n", "journal.max_pending"),
        ("[journal]\nflush_interval = -0.001\n", "journal.flush_interval"),
    ],
)
def test_a_value_out_of_range_names_its_field(tmp_path, text, field):
    error = config_error(tmp_path, text)
    assert error.field == field
    assert field in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "[reconnect]\nmax_attempts = 0\n",
        "[ordering]\nwindow_seconds = 0\n",
        "[journal]\nflush_interval = 0\n",
    ],
)
def test_zero_is_allowed_where_it_has_a_meaning(tmp_path, text):
    load(toml(tmp_path, text), env={})


def test_a_jwt_grant_needs_a_key_file(tmp_path):
    error = config_error(tmp_path, '[genesys]\ngrant = "jwt"\n')
    assert error.field == "genesys.jwt_private_key_file"
    config = load(
        toml(tmp_path, '[genesys]\ngrant = "jwt"\njwt_private_key_file = "key.pem"\n'), env={}
    )
    assert config.genesys.jwt_private_key_file == "key.pem"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "nope.toml", env={})
    assert caught.value.field == "--config"
    assert "nope.toml" in str(caught.value)


def test_invalid_toml_is_named_with_where_it_broke(tmp_path):
    error = config_error(tmp_path, "[journal\npath = 1\n")
    assert error.field == "--config"
    assert "not valid TOML" in str(error)
    assert "line 1" in str(error)


def test_a_file_that_cannot_be_read_as_text_is_a_config_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[journal]\n")
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert caught.value.field == "--config"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})  # a directory
    assert caught.value.field == "--config"


def test_a_file_in_utf8_is_read_as_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes('[journal]\npath = "/data/événements.db"\n'.encode())
    assert load(path, env={}).journal.path == "/data/événements.db"


def test_a_section_that_is_not_a_table_is_named_even_with_environment(tmp_path):
    error = config_error(tmp_path, "genesys = 5\n", env={"GENESYS_ENV": "us-east-1"})
    assert error.field == "genesys"


def test_no_config_error_ever_shows_the_secret(tmp_path):
    error = config_error(
        tmp_path, "[journal]\nbatch_max = -1\n", env={"GENESYS_CLIENT_SECRET": SECRET}
    )
    assert SECRET not in str(error)
    error = config_error(
        tmp_path, "[genesys]\nclient_secret = 7\n", env={"GENESYS_CLIENT_SECRET": ""}
    )
    assert error.field == "genesys.client_secret"


# -- endpoints -----------------------------------------------------------------------------------


def config_with(**genesys: str) -> Config:
    return from_mapping({"genesys": genesys})


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        (
            "http://127.0.0.1:8080",
            Endpoints(
                "http://127.0.0.1:8080/oauth/token",
                "http://127.0.0.1:8080",
                "ws://127.0.0.1:8080/api/v2/events",
            ),
        ),
        (
            "https://genesys.example.com/",
            Endpoints(
                "https://genesys.example.com/oauth/token",
                "https://genesys.example.com",
                "wss://genesys.example.com/api/v2/events",
            ),
        ),
    ],
)
def test_endpoints_for_a_tenant_url(tenant, expected):
    assert endpoints(config_with(tenant_url=tenant)) == expected


def test_a_tenant_url_wins_over_a_region():
    ends = endpoints(config_with(tenant_url="http://localhost:1", region="eu-west-1"))
    assert ends.api_url == "http://localhost:1"


@pytest.mark.parametrize("region", ["us-east-1", "us_east_1", "US-EAST-1", " us-east-1 "])
def test_endpoints_for_a_region_name(region):
    assert endpoints(config_with(region=region)) == Endpoints(
        "https://login.mypurecloud.com/oauth/token",
        "https://api.mypurecloud.com",
        "wss://api.mypurecloud.com/api/v2/events",
    )


@pytest.mark.parametrize("region", ["mypurecloud.ie", "eu-west-1", "eu_west_1"])
def test_endpoints_for_a_region_domain(region):
    assert endpoints(config_with(region=region)) == Endpoints(
        "https://login.mypurecloud.ie/oauth/token",
        "https://api.mypurecloud.ie",
        "wss://api.mypurecloud.ie/api/v2/events",
    )


def test_explicit_urls_override_the_derived_ones():
    config = from_mapping(
        {
            "genesys": {
                "region": "us-east-1",
                "token_url": "https://auth.example/token",
                "api_url": "https://gw.example",
            },
            "eventstreams": {"url": "wss://events.example/stream"},
        }
    )
    assert endpoints(config) == Endpoints(
        "https://auth.example/token", "https://gw.example", "wss://events.example/stream"
    )


def test_an_api_url_override_also_moves_the_events_url():
    config = config_with(region="us-east-1", api_url="http://gw.example")
    assert endpoints(config).events_url == "ws://gw.example/api/v2/events"


@pytest.mark.parametrize("region", ["mars-north-1", "mypurecloud.example", ""])
def test_an_unknown_region_is_named(region):
    config = config_with(region=region) if region else Config()
    with pytest.raises(ConfigError) as caught:
        endpoints(config)
    assert caught.value.field == "genesys.region"


def test_neither_region_nor_tenant_url_says_what_to_set():
    with pytest.raises(ConfigError) as caught:
        endpoints(load(None, env={}))
    assert caught.value.field == "genesys.region"
    assert "GENESYS_ENV" in str(caught.value)
    assert "GENESYS_TENANT_URL" in str(caught.value)


@pytest.mark.parametrize("tenant", ["localhost:8080", "ftp://x", "ws://localhost"])
def test_a_tenant_url_without_an_http_scheme_is_named(tenant):
    with pytest.raises(ConfigError) as caught:
        endpoints(config_with(tenant_url=tenant))
    assert caught.value.field == "genesys.tenant_url"


# -- credentials and redaction -------------------------------------------------------------------


def test_client_id_and_secret_are_required_when_asked_for():
    with pytest.raises(ConfigError) as caught:
        client_id(Config())
    assert caught.value.field == "genesys.client_id"
    with pytest.raises(ConfigError) as caught:
        client_secret(Config())
    assert caught.value.field == "genesys.client_secret"
    assert client_id(config_with(client_id="abc")) == "abc"
    assert client_secret(config_with(client_secret=SECRET)) == SECRET


def test_the_secret_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    assert client_secret(config_with(client_secret_file=str(secret_file))) == SECRET
    with pytest.raises(ConfigError) as caught:
        client_secret(config_with(client_secret_file=str(tmp_path / "missing")))
    assert caught.value.field == "genesys.client_secret_file"


def test_redacted_hides_the_secret_and_keeps_everything_else():
    config = load(
        None, env={"GENESYS_CLIENT_SECRET": SECRET, "GENESYS_CLIENT_ID": "id", "GENESYS_ENV": "x"}
    )
    shown = redacted(config)
    assert shown["genesys"]["client_secret"] == "[redacted]"
    assert SECRET not in repr(shown)
    assert shown["genesys"]["client_id"] == "id"
    assert shown["journal"]["batch_max"] == 5_000
    assert config.genesys.client_secret == SECRET  # the config itself is untouched


def test_redacted_leaves_an_unset_secret_unset():
    assert redacted(Config())["genesys"]["client_secret"] is None


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9464", ("127.0.0.1", 9464)),  # a bare port never binds every interface
        (":9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),  # noqa: S104 - asked for explicitly
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_metrics_listen_addresses(text, address):
    from ivrstream.config import listen_address

    assert listen_address(text) == address
    assert from_mapping({"metrics": {"listen": text}}).metrics.listen == text


@pytest.mark.parametrize("text", ["nowhere", "host:", "127.0.0.1:70000", "1.2.3.4:x"])
def test_a_bad_metrics_address_names_the_field(text, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[metrics]\nlisten = "{text}"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert caught.value.field == "metrics.listen"


def test_metrics_are_off_by_default():
    assert Config().metrics.listen is None
