"""Command line of ``python -m simulator``.

Every option can also be given as an environment variable named ``SIM_`` plus the option name
upper-cased with dashes as underscores (``--vehicles`` is ``SIM_VEHICLES``); the API key may
also come from ``API_KEY``. The command line wins over the environment, which wins over the
defaults. An unknown ``SIM_`` variable is an error, so a misspelling is not silently ignored.

Progress lines go to stderr; the summary goes to stdout, and with ``--report-json`` the last
line of stdout is the report as JSON (the hook for load tests). Exit codes: 0 after a clean run
(also when stopped with Ctrl-C or SIGTERM), 1 if registration failed or no device ever
connected, 2 for bad options, 130 if a second Ctrl-C cut the shutdown short.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
import trio

from .fleet import DEFAULT_CENTER, PROTOCOLS, FleetConfig, format_status, run_fleet
from .registry import RegistrationError
from .stats import FleetReport
from .wire import Encoding

ENV_PREFIX: Final = "SIM_"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # registration failed, or no device ever connected
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # stopped hard by a second Ctrl-C


def _center(text: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAT,LON, got {text!r}") from None
    if not (-85 < lat < 85 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable city centre")
    return lat, lon


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    d = FleetConfig()
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Drive a fleet of virtual delivery vans that report to the gateway "
        "over its device WebSocket, like real devices.",
        epilog="Every option can also be set as SIM_<OPTION> in the environment "
        "(e.g. SIM_VEHICLES=200); the API key also as API_KEY.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--api", default=d.api, help="gateway REST API base URL")
    p.add_argument("--ingest", default=d.ingest, help="device WebSocket URL")
    p.add_argument(
        "--device-http", default=d.device_http, help="device HTTP URL (OsmAnd, Traccar Client)"
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=d.protocol,
        help="ws: the WebSocket; osmand: the Traccar Client's HTTP; owntracks-http: "
        "OwnTracks' HTTP mode; mix: some of each",
    )
    p.add_argument("--api-key", default=d.api_key, help="API key for device registration")
    p.add_argument("--vehicles", type=_positive_int, default=d.vehicles)
    p.add_argument(
        "--center",
        type=_center,
        default=DEFAULT_CENTER,
        metavar="LAT,LON",
        help="centre of the synthetic city",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="makes city and vans repeatable")
    p.add_argument("--interval", type=_positive_float, default=d.interval, help="seconds per fix")
    p.add_argument(
        "--time-scale",
        type=_positive_float,
        default=d.time_scale,
        help="simulated seconds per real second; fix timestamps stay real wall-clock time, "
        "so the vans appear this many times faster to the gateway",
    )
    p.add_argument("--encoding", choices=[e.value for e in Encoding], default=d.encoding.value)
    p.add_argument("--batch", type=_positive_int, default=d.batch, help="positions per frame")
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="seconds to run (default: until Ctrl-C)",
    )
    p.add_argument("--stops-per-route", type=_positive_int, default=d.stops_per_route)
    p.add_argument("--id-prefix", default=d.id_prefix, help="device ids are PREFIX001...")
    p.add_argument("--city-km", type=_positive_float, default=d.city_km, help="city width")
    p.add_argument("--reefer-share", type=_share, default=d.reefer_share)
    p.add_argument("--outlier-rate", type=_share, default=d.outlier_rate, help="per fix")
    p.add_argument("--dropout-rate", type=_share, default=d.dropout_rate, help="per fix")
    p.add_argument("--disconnect-rate", type=_share, default=d.disconnect_rate, help="per frame")
    p.add_argument("--max-backlog", type=_positive_int, default=d.max_backlog)
    p.add_argument("--drain", type=float, default=d.drain, help="seconds to await acks on exit")
    p.add_argument(
        "--status-interval", type=float, default=d.status_interval, help="0 turns progress off"
    )
    p.add_argument("--register-timeout", type=float, default=d.register_timeout)
    p.add_argument("--token-in-query", type=_flag, nargs="?", const=True, default=False)
    p.add_argument(
        "--no-routes",
        type=_flag,
        nargs="?",
        const=True,
        default=not d.routes,
        help="do not import routes nor report stops through the routes API (load tests)",
    )
    p.add_argument(
        "--fail-rate",
        type=_share,
        default=d.fail_rate,
        help="share of stops the driver reports failed (nobody home, no access, ...)",
    )
    p.add_argument(
        "--run-id",
        default=d.run_id,
        help="part of every route's external id (VAN-RUNID-N); default: the start time",
    )
    p.add_argument(
        "--timezone",
        default=d.timezone,
        help="IANA time zone of the recipients; default: guessed from --center "
        "(Europe/Amsterdam for the default centre)",
    )
    p.add_argument(
        "--report-json",
        type=_flag,
        nargs="?",
        const=True,
        default=False,
        help="print the final figures as one JSON line on stdout, last",
    )
    p.add_argument("--log-level", default="WARNING", help="Python logging level")
    return p


def _apply_environment(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Turn SIM_* variables into parser defaults, checked like command-line values."""
    actions = {
        a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"
    }  # argparse has no public listing of its actions
    known = {ENV_PREFIX + dest.upper(): dest for dest in actions}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            parser.error(
                f"unknown environment variable {name}"
                + (f" (did you mean {hint[0]}?)" if hint else "")
            )
        action = actions[known[name]]
        convert: Callable[[str], Any] = action.type if callable(action.type) else str
        try:
            value = convert(raw)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"{name}={raw!r}: {exc}")
        if action.choices is not None and value not in action.choices:
            parser.error(f"{name}={raw!r}: choose from {', '.join(map(str, action.choices))}")
        parser.set_defaults(**{action.dest: value})
    if "SIM_API_KEY" not in env and "API_KEY" in env:
        parser.set_defaults(api_key=env["API_KEY"])


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Options from the command line over the environment over the defaults."""
    parser = build_parser()
    _apply_environment(parser, os.environ if env is None else env)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(
        api=args.api,
        ingest=args.ingest,
        device_http=args.device_http,
        protocol=args.protocol,
        api_key=args.api_key,
        vehicles=args.vehicles,
        center=args.center,
        seed=args.seed,
        interval=args.interval,
        time_scale=args.time_scale,
        encoding=Encoding(args.encoding),
        batch=args.batch,
        duration=args.duration,
        stops_per_route=args.stops_per_route,
        id_prefix=args.id_prefix,
        city_km=args.city_km,
        reefer_share=args.reefer_share,
        outlier_rate=args.outlier_rate,
        dropout_rate=args.dropout_rate,
        disconnect_rate=args.disconnect_rate,
        max_backlog=args.max_backlog,
        drain=args.drain,
        status_interval=args.status_interval,
        register_timeout=args.register_timeout,
        token_in_query=args.token_in_query,
        routes=not args.no_routes,
        fail_rate=args.fail_rate,
        run_id=args.run_id,
        timezone=args.timezone,
    )


async def _watch_signals(stop: trio.Event, hard: trio.CancelScope) -> None:
    """First Ctrl-C (or SIGTERM) stops the fleet cleanly; a second one stops it at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                hard.cancel()
                return
            print("stopping: waiting for the last acks (Ctrl-C again to quit now)", file=sys.stderr)
            stop.set()


def _print_status(report: FleetReport, rate: float) -> None:
    print(format_status(report, rate), file=sys.stderr, flush=True)


def _print_notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _main(config: FleetConfig) -> FleetReport | None:
    stop = trio.Event()
    report: FleetReport | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, stop, nursery.cancel_scope)
        report = await run_fleet(
            config, stop=stop, on_status=_print_status, on_notice=_print_notice
        )
        nursery.cancel_scope.cancel()
    return report


def _leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _targets(config: FleetConfig) -> str:
    if config.protocol == "ws":
        return config.ingest
    if config.protocol in ("osmand", "owntracks-http"):
        return config.device_http
    return f"{config.ingest} and {config.device_http}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"simulator: {config.vehicles} vans around {config.center[0]:.4f},{config.center[1]:.4f}"
        f" -> {_targets(config)} ({config.protocol}; {config.encoding.value}, "
        f"batch {config.batch}, "
        f"time scale {config.time_scale:g})" + ("" if config.routes else ", no routes"),
        file=sys.stderr,
    )
    try:
        report = trio.run(_main, config)
    except KeyboardInterrupt:  # before the signal handler was installed
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        registration = group.subgroup(RegistrationError)
        if registration is not None:
            print(f"error: cannot register devices: {_leaf(registration)}", file=sys.stderr)
            return EXIT_FAILED
        invalid = group.subgroup(ValueError)
        if invalid is not None:
            print(f"error: {_leaf(invalid)}", file=sys.stderr)
            return EXIT_USAGE
        raise
    if report is None:
        return EXIT_INTERRUPTED
    print(report.summary(), flush=True)
    if args.report_json:
        print(msgspec.json.encode(report).decode(), flush=True)
    if report.devices and not report.connects:
        print("error: no device could connect to the ingest endpoint", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
