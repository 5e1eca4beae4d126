"""The HTTP API fuzzed from its own OpenAPI description (schemathesis) against a running
gateway: no request gets a 500, and every operation answers only what the description says,
accepts what it allows and refuses what it forbids."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

from tests.gateway.conftest import API_KEY, GatewayHandle

SEED = "20261207"  # reproducible in CI; change it to explore
# 422 is the gateway's answer to input its schema allows but a rule no schema can state
# refuses: a zone's ring that is not simple or has no area, a window that ends before it
# starts, a route for a vehicle that is not registered, `failed` without a reason. So
# schema-valid data may get 422; 400 remains a failure of the description.
SEMANTIC_422 = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""
# A proof of delivery's files must decode as JPEG or PNG: bytes that do not are refused
# with 415 (or 413 past the pixel limit), which the form's schema (binary parts) cannot say.
IMAGES = """
[[operations]]
include-name = "POST /v1/deliveries/{id}/pod"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "413", "415", "422", "429", "5xx"]
"""


async def schemathesis(
    base_url: str, workdir: Path, *args: str, extra: str = ""
) -> tuple[int, str]:
    config = workdir / "schemathesis.toml"
    config.write_text(
        f'[auth.openapi.apiKey]\napi_key = "{API_KEY}"\n' + SEMANTIC_422 + IMAGES + extra
    )
    st = Path(sys.executable).with_name("st")
    result = await trio.run_process(
        [
            str(st),
            "--config-file",
            str(config),
            "run",
            f"{base_url}/openapi.json",
            "--seed",
            SEED,
            "-w",
            "1",
            "--no-color",
            *args,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=workdir,
    )
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


async def seed(gw: GatewayHandle) -> str:
    """A device with a few positions, so the read operations find something; its token."""
    token = await gw.register("fuzz-van")
    t0 = time.time() - 100
    body = [{"seq": i, "ts": t0 + i, "lat": 52.0, "lon": 4.0} for i in range(1, 4)]
    r = await gw.http.post("/v1/positions", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return token


def credentials(token: str) -> str:
    """Schemathesis sends no credentials to operations that need no agent key; these take
    a device token, or the key, in a header: give them one, to reach past the 401."""
    device = f'headers = {{ Authorization = "Bearer {token}" }}'
    return "".join(
        f"""
[[operations]]
include-name = "{name}"
{header}
"""
        for name, header in (
            ("POST /v1/positions", device),
            ("POST /v1/owntracks", device),
            ("POST /v1/deliveries/{id}/pod", f'headers = {{ X-API-Key = "{API_KEY}" }}'),
        )
    )


async def test_no_request_gets_a_server_error(gateway: GatewayHandle, tmp_path: Path) -> None:
    await seed(gateway)
    code, out = await schemathesis(
        gateway.ep.http_url, tmp_path,
        "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15",
    )  # fmt: skip
    assert code == 0, out[-6000:]
    assert "API Operations:" in out and "Tested:" in out


async def test_every_operation_conforms_to_its_description(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    token = await seed(gateway)
    code, out = await schemathesis(
        gateway.ep.http_url, tmp_path,
        "--checks", "all", "--max-examples", "40", extra=credentials(token),
    )  # fmt: skip
    assert code == 0, out[-6000:]
    selected, total = out.split("Selected:")[1].split()[0].split("/")
    tested = out.split("Tested:")[1].split()[0]
    assert tested == selected == total, out[-2000:]
