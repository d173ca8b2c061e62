"""deploy/docker: the compose file as ``docker compose config`` reads it, and the proxy in front."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from backend.config import load_settings
from tests.deploy.conftest import DEPLOY, ROOT, require_tool

COMPOSE_FILE = DEPLOY / "docker" / "compose.yaml"
CADDYFILE = DEPLOY / "docker" / "Caddyfile"
KEYS = {
    "INTERLUDE_KEK": "kid-test:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "INTERLUDE_BLIND_INDEX_KEY": "blind-index-from-the-environment",
    "INTERLUDE_TOKEN_SIGNING_KEY": "signing-key-from-the-environment",
}
APP_REPLICAS = ("app1", "app2")


def _compose_command() -> list[str]:
    # Docker's compose plugin when it is there, else Debian's docker-compose (1.29, same spec).
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    return [require_tool("docker-compose", "docker-compose")]


def _config(
    compose_file: Path, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing from the developer's shell (or CI's) fills in a variable.
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        [*_compose_command(), "-p", "interlude", "-f", str(compose_file), "config"],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def _seconds(duration: str | int | float) -> float:
    text = str(duration)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "").isdigit():
            return float(text[: -len(unit)]) * units[unit]
    return float(text) / 1e9  # compose v2 renders durations as nanoseconds in some versions


def test_compose_file_is_valid_and_wires_two_replicas_behind_a_proxy(tmp_path: Path) -> None:
    result = _config(COMPOSE_FILE, KEYS, tmp_path)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "migrate", *APP_REPLICAS, "proxy"}

    # The migration job runs once PostgreSQL is healthy; replicas start only after it succeeded.
    assert services["migrate"]["command"] == ["migrate", "up"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    instance_ids = set()
    for name in APP_REPLICAS:
        app = services[name]
        assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = app["environment"]
        assert env["INTERLUDE_AUTO_MIGRATE"] == "false"
        assert env["INTERLUDE_ENV"] == "production"
        assert "@postgres:5432/" in env["INTERLUDE_DATABASE_URL"]
        # Key material comes from the environment, not from the file.
        for key, value in KEYS.items():
            assert env[key] == value
        # Long enough for uvicorn's 20 s drain plus the timers' 10 s (backend/cli.py, timers.py).
        assert _seconds(app["stop_grace_period"]) > 30
        assert app["restart"] == "unless-stopped"
        instance_ids.add(env["INTERLUDE_INSTANCE_ID"])
        # The settings loader (which refuses unknown INTERLUDE_* names) accepts all of it.
        assert load_settings(env).instance_id == env["INTERLUDE_INSTANCE_ID"]
    assert len(instance_ids) == len(APP_REPLICAS)
    assert (
        services["app1"]["environment"]["INTERLUDE_DATABASE_URL"]
        == services["app2"]["environment"]["INTERLUDE_DATABASE_URL"]
    )
    # Export archives are files in the data directory and a download may reach either replica:
    # both mount one named volume there.
    data_dir = _image_data_dir()
    mounts = [_named_volume_at(services[name], data_dir) for name in APP_REPLICAS]
    assert mounts[0] is not None
    assert mounts == [mounts[0]] * len(APP_REPLICAS)
    assert mounts[0] in config["volumes"]
    # Only the proxy is published, and only on loopback.
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]
    for port in services["proxy"]["ports"]:
        published = port if isinstance(port, str) else port.get("host_ip", "")
        assert str(published).startswith("127.0.0.1")


def _image_data_dir() -> str:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    match = re.search(r"INTERLUDE_DATA_DIR=(\S+)", dockerfile)
    assert match is not None
    return match.group(1)


def _named_volume_at(service: dict[str, Any], target: str) -> str | None:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):  # compose 1.x: "name:/path[:mode]"
            source, _, rest = volume.partition(":")
            if rest.split(":")[0] == target and not source.startswith(("/", ".")):
                return source
        elif volume.get("type") == "volume" and volume.get("target") == target:
            return str(volume["source"])
    return None


def test_compose_refuses_to_render_without_key_material(tmp_path: Path) -> None:
    keys = {k: v for k, v in KEYS.items() if k != "INTERLUDE_KEK"}
    result = _config(COMPOSE_FILE, keys, tmp_path)
    assert result.returncode != 0
    assert "INTERLUDE_KEK" in result.stderr


def test_compose_validation_rejects_a_misspelled_key(tmp_path: Path) -> None:
    # The validator is real: the same file with one key misspelled fails.
    copy = tmp_path / "deploy" / "docker" / "compose.yaml"
    copy.parent.mkdir(parents=True)
    copy.write_text(COMPOSE_FILE.read_text().replace("depends_on:", "depend_on:", 1))
    result = _config(copy, KEYS, tmp_path)
    assert result.returncode != 0
    assert "depend_on" in result.stderr


def _adapted_caddyfile(path: Path) -> dict[str, Any]:
    caddy = require_tool("caddy", "caddy")
    # adapt only: --validate would provision the proxy and probe the upstreams by name.
    result = subprocess.run(
        [caddy, "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    adapted: dict[str, Any] = json.loads(result.stdout)
    return adapted


def _handlers(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "handler" in node:
            found.append(node)
        for value in node.values():
            found.extend(_handlers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_handlers(item))
    return found


def test_proxy_routes_only_to_ready_replicas_and_hides_metrics() -> None:
    adapted = _adapted_caddyfile(CADDYFILE)
    handlers = _handlers(adapted)
    proxies = [h for h in handlers if h["handler"] == "reverse_proxy"]
    assert len(proxies) == 1
    proxy = proxies[0]
    assert {u["dial"] for u in proxy["upstreams"]} == {f"{name}:8000" for name in APP_REPLICAS}
    active = proxy["health_checks"]["active"]
    assert active["uri"] == "/readyz"
    assert active["expect_status"] == 200
    servers = adapted["apps"]["http"]["servers"]
    routes = [route for server in servers.values() for route in server["routes"]]
    metrics_routes = [
        route
        for route in routes
        if any("/metrics" in m.get("path", []) for m in route.get("match", []))
    ]
    assert metrics_routes, "the proxy must answer /metrics itself"
    assert all(
        h["handler"] == "static_response" and h["status_code"] == 404
        for h in _handlers(metrics_routes[0])
    )


def test_proxy_configuration_rejects_an_unknown_directive(tmp_path: Path) -> None:
    require_tool("caddy", "caddy")
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE.read_text().replace("health_uri", "health_url"))
    result = subprocess.run(
        ["caddy", "adapt", "--config", str(broken), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "health_url" in result.stderr


def test_image_copies_every_package_the_wheel_ships() -> None:
    # Docker's engine is not on this machine, so the image is not built here; a package added
    # to the wheel but not copied into the build stage would only fail at `docker build`.
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package
    assert "--require-hashes -r requirements/app.lock" in dockerfile
    final_stage = dockerfile.rsplit("FROM ", 1)[1]
    assert "USER 10001" in final_stage
    assert "HEALTHCHECK" in final_stage
    assert "/readyz" in final_stage
