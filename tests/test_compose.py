"""compose.yaml: Redis durability, one scalable worker per provider queue, Flower, the webhook receiver,
the metrics endpoint, the sim profile, every GENQ_ setting of .env passed on, no secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.providers.registry import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
README = ROOT / "README.md"

# The queues genq sends to: a job's start and all its stages go to its provider's queue, never to
# Celery's `default`, so a service consuming `default` alone would idle.
QUEUES = list(PROVIDERS)
# Services that read genq's settings (every GENQ_ variable matters to them).
SETTINGS_READERS = [*(f"worker-{queue}" for queue in QUEUES), "webhooks", "metrics"]
SECRET_NAME = re.compile(r"(API_KEY|USER_KEY|APP_ID|AUTH|PASSWORD|SECRET|TOKEN)$")
# ${VAR}, ${VAR:?message}, ${VAR?message}, ${VAR:-default} ... and nothing around it.
ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?:(?::?[?-])[^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def command_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = command_of(redis)
    assert re.search(r"--appendonly\s+\"?yes", command)
    assert re.search(r"--appendfsync\s+everysec", command)
    assert re.search(r"--maxmemory-policy\s+noeviction", command)
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


@pytest.mark.parametrize("queue", QUEUES)
def test_one_worker_service_per_queue(services: dict[str, dict[str, Any]], queue: str) -> None:
    worker = services[f"worker-{queue}"]
    command = command_of(worker)
    assert re.search(rf"\bcelery -A worker worker -Q {queue}(\s|$)", command), command
    assert f"-n {queue}@%h" in command
    env = environment_of(worker)
    assert env["GENQ_REDIS_URL"] == "redis://redis:6379/0"
    assert env["GENQ_ARTIFACT_DIR"] == "/artifacts"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["stop_grace_period"] == "60s"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("GENQ_SYNCSO__BASE_URL", "https://api.sync.so"),
        ("GENQ_AISTUDIOS__BASE_URL", "https://app.aistudios.com"),
        ("GENQ_AIMI__BASE_URL", "https://api.sync.aimi.fm"),
    ],
)
def test_provider_base_urls_are_overridable(
    services: dict[str, dict[str, Any]], name: str, default: str
) -> None:
    for queue in QUEUES:
        assert environment_of(services[f"worker-{queue}"])[name] == f"${{{name}:-{default}}}"


def test_workers_are_scalable(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
        if name.startswith("worker-"):
            assert "ports" not in service, f"{name}: a fixed host port prevents --scale"


def test_flower(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert command_of(flower).startswith("celery -A worker flower")
    assert any(str(port).split(":")[-1] == "5555" for port in flower["ports"])
    assert ENV_REFERENCE.match(environment_of(flower)["FLOWER_BASIC_AUTH"])


def test_sim_profile(services: dict[str, dict[str, Any]]) -> None:
    sim = services["sim"]
    assert sim["profiles"] == ["sim"]
    assert command_of(sim).startswith("genq sim")
    in_sim_profile = [name for name, service in services.items() if "sim" in service.get("profiles", [])]
    assert in_sim_profile == ["sim"], "only the simulators are optional; workers and Flower always run"


@pytest.mark.parametrize(
    ("value", "is_reference"),
    [
        ("${GENQ_SYNCSO__API_KEY}", True),
        ("${GENQ_SYNCSO__API_KEY:?set it}", True),
        ("${FLOWER_BASIC_AUTH?set it}", True),
        ("${GENQ_AISTUDIOS__USER_KEY:-}", True),
        ("sk-live-123", False),
        ("prefix-${GENQ_SYNCSO__API_KEY}", False),
        ("${GENQ_SYNCSO__API_KEY}suffix", False),
        ("", False),
    ],
)
def test_env_reference_pattern(value: str, is_reference: bool) -> None:
    assert bool(ENV_REFERENCE.match(value)) is is_reference


def test_no_literal_secrets(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if SECRET_NAME.search(key):
                checked += 1
                assert ENV_REFERENCE.match(value), (
                    f"{name}: {key} must come from the environment, not {value!r}"
                )
    assert checked >= 2, "expected provider keys and FLOWER_BASIC_AUTH to be checked"


def test_dockerfile_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "uv sync --locked --no-dev" in dockerfile  # exactly the locked versions
    assert "--require-hashes -r /tmp/uv.txt" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_readme_mentions_every_service(services: dict[str, dict[str, Any]]) -> None:
    if not README.exists():
        pytest.skip("README.md does not exist yet, so the services it documents cannot be checked")
    readme = README.read_text()
    missing = [name for name in services if name not in readme]
    assert not missing, f"README.md does not mention these compose services: {missing}"


def test_webhooks_receiver_runs_on_the_workers_redis_with_its_secret(
    services: dict[str, dict[str, Any]],
) -> None:
    receiver = services["webhooks"]
    assert command_of(receiver).startswith("genq webhooks")
    env = environment_of(receiver)
    assert env["GENQ_REDIS_URL"] == environment_of(services["worker-syncso"])["GENQ_REDIS_URL"]
    assert ENV_REFERENCE.match(env["GENQ_SYNCSO__WEBHOOK_SECRET"])
    assert ENV_REFERENCE.match(env["GENQ_AISTUDIOS__WEBHOOK_SECRET"])
    assert "GENQ_WEBHOOKS__BASE_URL" in environment_of(services["worker-syncso"])


def test_no_service_idles_on_the_default_queue(services: dict[str, dict[str, Any]]) -> None:
    assert "worker-default" not in services
    for name, service in services.items():
        if name.startswith("worker-"):
            assert not re.search(r"-Q\s+default(\s|$)", command_of(service)), name


def env_files_of(service: dict[str, Any]) -> list[dict[str, Any]]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [{"path": f, "required": True} if isinstance(f, str) else f for f in files]


@pytest.mark.parametrize("name", SETTINGS_READERS)
def test_every_genq_setting_of_dot_env_reaches_the_services_that_read_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """A setting compose does not list (GENQ_SYNCSO__CONCURRENCY for PLAN=enterprise) still arrives;
    .env is optional, so a machine that sets everything in the environment needs none."""
    files = env_files_of(services[name])
    assert {"path": ".env", "required": False} in files, files
    assert environment_of(services[name])["GENQ_REDIS_URL"] == "redis://redis:6379/0"


def test_flower_and_the_simulators_get_no_provider_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name in ("flower", "sim"):
        assert not env_files_of(services[name]), f"{name} would receive every secret of .env"


def test_metrics(services: dict[str, dict[str, Any]]) -> None:
    metrics = services["metrics"]
    assert command_of(metrics) == "genq metrics --host 0.0.0.0 --port 9108"
    assert any(str(port).split(":")[-1] == "9108" for port in metrics["ports"])
    assert metrics["depends_on"]["redis"]["condition"] == "service_healthy"
    env = environment_of(metrics)
    # The budgets it reports are the workers': the same Redis and the same provider accounts.
    for key, value in environment_of(services["worker-syncso"]).items():
        assert env[key] == value, key
