"""docker/compose.yaml (issue 9, item 4), checked without a Docker engine: it parses, it has
the promised topology, and every GATEWAY_* variable it sets is a real, documented setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.settings import SETTINGS_DOC

DOCKER = Path(__file__).parents[2] / "docker"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def test_every_gateway_variable_is_a_documented_setting() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    named = set(re.findall(r"\bGATEWAY_[A-Z0-9_]+\b", text))
    known = {name for name, _, _ in SETTINGS_DOC}
    assert named, "compose.yaml sets no GATEWAY_* variable"
    assert named <= known, f"not settings of gateway/settings.py: {sorted(named - known)}"
    readme = (DOCKER.parent / "README.md").read_text()
    assert "docker/compose.yaml" in readme


def test_three_replicas_wait_for_the_one_shot_migration() -> None:
    services = _services()
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] == 3
    assert gateway["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert gateway["environment"]["GATEWAY_AUTO_MIGRATE"] == "false"
    migrate = services["migrate"]
    assert migrate["command"] == ["init"]
    assert migrate["restart"] == "no"
    # The migration and the replicas run the same image with the same settings.
    assert migrate["image"] == gateway["image"]
    assert all(gateway["environment"][k] == v for k, v in migrate["environment"].items())


def test_databases_have_healthchecks_and_volumes_and_are_waited_for() -> None:
    services = _services()
    volumes = set(_compose()["volumes"])
    for name in ("postgres", "valkey"):
        service = services[name]
        assert service["healthcheck"]["test"], name
        mounted = {str(v).split(":", 1)[0] for v in service["volumes"]}
        assert mounted & volumes, name
        for dependent in ("migrate", "gateway"):
            assert services[dependent]["depends_on"][name] == {"condition": "service_healthy"}
    assert "healthcheck" in services["gateway"]


def test_the_load_balancer_fronts_the_replicas_and_hides_metrics() -> None:
    services = _services()
    lb = services["lb"]
    assert lb["depends_on"]["gateway"] == {"condition": "service_healthy"}
    address = lb["networks"]["backend"]["ipv4_address"]
    assert services["gateway"]["environment"]["GATEWAY_TRUSTED_PROXIES"] == address
    mounted = [v for v in lb["volumes"] if "nginx.conf" in v]
    assert mounted, "nginx.conf is not mounted"
    nginx = (DOCKER / "nginx.conf").read_text()
    assert "server gateway:8000" in nginx
    assert re.search(r"location = /metrics \{\s*return 404;", nginx)
    assert "ports" not in services["gateway"]  # replicas are reached through the balancer
