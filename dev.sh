#!/usr/bin/env bash
# One entry point for a fresh Debian machine with Python 3.11:
#   ./dev.sh run    set up what is missing, then run the gateway with a simulated fleet
#   ./dev.sh test   set up what is missing, then lint, type-check and run the whole test suite
#   ./dev.sh vendor install the pages' pinned browser libraries (web/package-lock.json) with npm
#                   and copy them into gateway/http/static/vendor/ (the copies are committed)
# Re-running either is fast: system packages and the virtual environment are only
# installed when missing or when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_system() {
    # $1: command that must exist, $2: Debian package that provides it
    local missing=()
    while [ $# -gt 0 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing system packages: ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
        exit 1
    fi
}

need_python() {
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Python 3.11 or newer is needed as '$PY' (set PYTHON=...)" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV" || { need_system _never_ python3-venv; "$PY" -m venv "$VENV"; }
    fi
    local stamp="$VENV/.installed" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing Python dependencies into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
    setup)
        need_system redis-server redis-server redis-cli redis-tools mosquitto mosquitto chromium chromium
        need_python
        ;;
    run)
        need_system redis-server redis-server
        need_python
        exec "$VENV/bin/python" -m gateway demo "$@"
        ;;
    test)
        need_system redis-server redis-server redis-cli redis-tools mosquitto mosquitto chromium chromium
        need_python
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    vendor)
        need_system npm npm
        (cd web && npm ci --ignore-scripts --no-audit --no-fund && node vendor.mjs)
        ;;
    bench)
        need_system redis-server redis-server
        need_python
        for b in bench/*.py; do
            case "$b" in *load.py) continue ;; esac  # load generators, run by the benchmarks
            "$VENV/bin/python" "$b"
        done
        ;;
    *)
        echo "usage: ./dev.sh run [--vehicles N] [--http-port P] [--ingest-port P] [-- simulator options]" >&2
        echo "       ./dev.sh test [pytest args] | bench | setup | vendor" >&2
        exit 2
        ;;
esac
