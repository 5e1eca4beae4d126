"""One typed settings object, read from environment variables and an optional TOML file.

Precedence: built-in defaults < TOML file (``GATEWAY_CONFIG`` or ``--config``) < environment.
Every setting's environment variable is its name in upper case (``redis_url`` ->
``REDIS_URL``). Unknown keys in the TOML file are rejected with the offending name, so a
misspelt setting is an error rather than silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

MIB: Final = 2**20


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # --- where things run
    host: str = "127.0.0.1"
    http_port: int = 8080
    ingest_port: int = 8081
    # The lean device HTTP server (OsmAnd, OwnTracks, batch POST): Traccar's OsmAnd port
    device_http_port: int = 5055
    public_url: str = ""  # base URL for links in messages; default http://{host}:{http_port}
    data_dir: str = "data"
    # redis://host:port/db for one server, redis+cluster://host:port (any node) for a Redis
    # Cluster (rediss:// and rediss+cluster:// with TLS); empty: a private redis-server
    redis_url: str = ""
    # An API request (GET, HEAD, OPTIONS) that finds Redis away is tried again this long
    # before it answers 503
    api_redis_retry_s: float = 2.0
    # > 0: a write batch is acknowledged to devices only once WAIT says this many replicas
    # have it (one server with replicas; not supported on a Redis Cluster yet)
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000  # one WAIT's longest block; short: retried, no ack
    mqtt_url: str = ""  # mqtt://user:pass@host:1883 or mqtts://...; empty: no MQTT ingest
    mqtt_topics: str = "fleet/+/pos,owntracks/+/+"
    mqtt_shared_group: str = ""  # set: subscribe as $share/<group>/... to split the feed
    mqtt_client_id: str = ""  # empty: a random one per process
    # With a fixed client id: how long the broker keeps the gateway's session while it is away
    mqtt_session_expiry_s: int = 86_400
    # MQTT keep-alive, seconds: the gateway sends a PINGREQ at least this often and the broker
    # drops it after 1.5 times as long without a packet (a server keep alive the broker
    # announces wins); 0: none
    mqtt_keep_alive_s: int = 30

    # --- auth
    api_keys: str = ""  # comma separated agent API keys; empty: one is generated in data_dir
    link_secret: str = ""  # signs customer tracking links; empty: generated in data_dir
    link_ttl_s: float = 7 * 86_400.0  # how long a tracking link stays valid

    # --- notifications
    notify: bool = True  # run the notifier (customer messages, alerts, webhooks) here
    # Unconfigured SMS/email go to local capture servers: the demo's and the tests' setting,
    # never a production one (a gateway without Twilio would "send" texts into a sink).
    notify_capture: bool = False
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = "+15005550006"  # sender number
    twilio_messaging_service_sid: str = ""
    twilio_api_url: str = ""  # empty: Twilio's own API
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_from: str = "Deliveries <deliveries@fleetgate.invalid>"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_tls: bool = False  # implicit TLS (port 465)
    quiet_hours: str = "21:00-08:00"  # recipient's local time; empty: none
    oncall_emails: str = ""  # comma separated: critical alerts by email
    oncall_phones: str = ""  # comma separated E.164: critical alerts by SMS
    # A message or event left pending this long by a process (one that crashed) is taken
    # over by another; a send is given at most half of it (and at most 15 s).
    notify_claim_idle_s: float = 60.0

    # --- ingest limits
    max_frame_bytes: int = 1 * MIB
    max_batch_positions: int = 10_000
    device_rate_per_s: float = 50.0  # sustained positions/s per device
    device_burst: int = 20_000  # positions a device may send at once (offline backlog)
    flood_close_after_s: float = 10.0  # throttled continuously this long: closed with 1008
    max_connections_per_device: int = 2  # a further connection replaces the oldest
    max_connections_per_ip: int = 10_000  # device connections from one address (NAT: high)
    bad_auth_burst: int = 20  # failed handshakes from one address before it is refused
    ack_interval_s: float = 0.25  # at most one ack per connection this often
    writer_queue_size: int = 100_000  # positions waiting for the Redis writer (full: block)
    writer_max_batch: int = 5_000  # positions per Redis round trip
    writer_linger_s: float = 0.01  # wait this long for more frames before a round trip

    # --- validation
    future_tolerance_s: float = 60.0
    max_age_s: float = 7 * 86_400.0
    max_speed_mps: float = 70.0  # 252 km/h between consecutive fixes
    max_accuracy_m: float = 500.0

    # --- vehicle state
    stopped_speed_mps: float = 1.0
    offline_after_s: float = 120.0
    track_retention_s: float = 7 * 86_400.0
    events_max_len: int = 1_000_000

    # --- browsers
    ops_tick_s: float = 0.2  # ops browsers get the fleet's changes in one frame this often
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"

    def __post_init__(self) -> None:
        if self.notify_claim_idle_s <= 0:
            raise ValueError("notify_claim_idle_s must be positive")
        if self.redis_wait_replicas < 0 or self.redis_wait_timeout_ms <= 0:
            raise ValueError(
                "redis_wait_replicas must be 0 or more, redis_wait_timeout_ms positive"
            )
        if self.redis_wait_replicas and not self.redis_url:
            raise ValueError(
                "redis_wait_replicas needs redis_url: the private redis-server has no "
                "replicas, so no write would ever be acknowledged"
            )

    def resolved_public_url(self, bound_http_port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        port = bound_http_port if bound_http_port is not None else self.http_port
        return f"http://{self.host}:{port}"

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]


CLUSTER_SUFFIX: Final = "+cluster"  # redis+cluster://, rediss+cluster://


def split_redis_url(url: str) -> tuple[str, bool]:
    """The URL as the Redis client takes it, and whether it names a Redis Cluster.

    ``redis+cluster://host:port`` (or ``rediss+cluster://`` for TLS) is any node of a
    cluster; the client discovers the others from it.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower().endswith(CLUSTER_SUFFIX):
        return f"{scheme[: -len(CLUSTER_SUFFIX)]}://{rest}", True
    return url, False


FIELDS: Final = frozenset(Settings.__struct_fields__)


def _coerce_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        raw = env.get(name.upper())
        if raw is not None:
            out[name] = raw
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment, overrides.

    Raises ConfigError naming the key for an unknown key or a value of the wrong type.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = path or env.get("GATEWAY_CONFIG") or None
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        unknown = sorted(set(data) - FIELDS)
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
        merged.update(data)
    from_env = _coerce_env(env)
    merged.update(from_env)
    unknown = sorted(set(overrides) - FIELDS)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        # strict=False lets environment strings become ints, floats and bools.
        return msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None
