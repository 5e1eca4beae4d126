from pathlib import Path

import pytest

from gateway.app import Endpoints
from gateway.cli import process_env
from gateway.config import ConfigError, load_settings, split_redis_url
from gateway.notifications import notifier_config
from notify import NotifierConfig


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text('http_port = 9000\nmax_speed_mps = 40.0\nhost = "0.0.0.0"\n')
    s = load_settings(f, env={"HTTP_PORT": "9100"})
    assert (s.http_port, s.max_speed_mps, s.host) == (9100, 40.0, "0.0.0.0")


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text("http_prot = 9000\n")
    with pytest.raises(ConfigError, match="http_prot"):
        load_settings(f, env={})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match="ingest_port"):
        load_settings(env={"INGEST_PORT": "lots"})


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match="nope"):
        load_settings(env={}, nope=1)


def test_config_path_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text("offline_after_s = 30.0\n")
    assert load_settings(env={"GATEWAY_CONFIG": str(f)}).offline_after_s == 30.0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("redis://127.0.0.1:6379/0", False)),
        ("redis+cluster://10.0.0.5:7000", ("redis://10.0.0.5:7000", True)),
        ("rediss+cluster://:pw@node:7000", ("rediss://:pw@node:7000", True)),
        ("REDIS+CLUSTER://node:7000", ("REDIS://node:7000", True)),
        ("unix:///run/redis.sock", ("unix:///run/redis.sock", False)),
    ],
)
def test_a_cluster_url_selects_the_cluster_client(url: str, expected: tuple[str, bool]) -> None:
    assert split_redis_url(load_settings(env={"REDIS_URL": url}).redis_url) == expected


def test_claim_idle_time_sets_the_notifier_timings() -> None:
    default = notifier_config(load_settings(env={}))
    built_in = NotifierConfig()
    assert (default.outbox, default.events_claim_idle_s, default.events_claim_interval_s) == (
        built_in.outbox,
        built_in.events_claim_idle_s,
        built_in.events_claim_interval_s,
    )
    short = notifier_config(load_settings(env={"NOTIFY_CLAIM_IDLE_S": "6"}))
    assert (short.outbox.claim_idle_s, short.events_claim_idle_s) == (6.0, 6.0)
    # A send ends well before another process may claim its message.
    assert short.outbox.send_timeout_s == 3.0
    with pytest.raises(ConfigError, match="notify_claim_idle_s"):
        load_settings(env={"NOTIFY_CLAIM_IDLE_S": "0"})


@pytest.mark.parametrize(("client_id", "expected"), [("", None), ("gw", "gw-2")])
def test_each_extra_process_has_its_own_ports_and_mqtt_session(
    client_id: str, expected: str | None
) -> None:
    settings = load_settings(env={}, mqtt_client_id=client_id, http_port=8080, ingest_port=0)
    ep = Endpoints("http://h:8080", "ws://h:1/v1/ingest", "k", "redis://r:6379/0")
    env = process_env(settings, ep, 2)
    assert (env["REDIS_URL"], env["HTTP_PORT"], env["INGEST_PORT"]) == (
        "redis://r:6379/0",
        "8100",
        "0",
    )
    assert env.get("MQTT_CLIENT_ID") == expected
    assert load_settings(env=env).mqtt_client_id == (expected or "")


@pytest.mark.parametrize("capture", [False, True])
def test_extra_processes_keep_the_demos_capture_and_quiet_hours(capture: bool) -> None:
    settings = load_settings(env={}, notify_capture=capture, quiet_hours="")
    ep = Endpoints("http://h:8080", "ws://h:1/v1/ingest", "k", "redis://r:6379/0")
    again = load_settings(env=process_env(settings, ep, 1))
    assert (again.notify_capture, again.quiet_hours) == (capture, "")
