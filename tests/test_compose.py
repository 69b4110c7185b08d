"""compose.yaml: Redis durability, its password and memory cap, one scalable worker per provider queue,
Flower, the webhook receiver, the metrics endpoint, the sim profile, every GENQ_ setting of genq.env
passed on, no secret written in it, each service given only the secrets it needs, and every published
port on 127.0.0.1 unless PUBLISH_ADDRESS says otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from genq.demo import settings_from
from genq.processes import free_port
from genq.redis_server import find_redis_binary
from tests.conftest import until
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
# A user's .env: every secret compose knows of, each value telling whose it is.
DOT_ENV = {
    "REDIS_PASSWORD": "redis-pw-0123456789abcdef",
    "FLOWER_BASIC_AUTH": "admin:flower-pw",
    "GENQ_SYNCSO__API_KEY": "syncso-key",
    "GENQ_SYNCSO__WEBHOOK_SECRET": "whsec_syncso",
    "GENQ_AISTUDIOS__APP_ID": "aistudios-app",
    "GENQ_AISTUDIOS__USER_KEY": "aistudios-key",
    "GENQ_AISTUDIOS__WEBHOOK_SECRET": "aistudios-hook",
    "GENQ_AIMI__API_KEY": "aimi-key",
    "GENQ_OUTPUTS__ACCESS_KEY_ID": "store-key-id",
    "GENQ_OUTPUTS__SECRET_ACCESS_KEY": "store-secret",
}
STORE_KEYS = {"GENQ_OUTPUTS__ACCESS_KEY_ID", "GENQ_OUTPUTS__SECRET_ACCESS_KEY"}
# The secrets each service may get, and no other (the Redis URL, with its password, goes to every service
# that talks to Redis).
SECRETS_OF = {
    "redis": {"REDISCLI_AUTH"},
    "worker-syncso": {"GENQ_SYNCSO__API_KEY", *STORE_KEYS},
    "worker-aistudios": {
        "GENQ_AISTUDIOS__APP_ID",
        "GENQ_AISTUDIOS__USER_KEY",
        "GENQ_AISTUDIOS__WEBHOOK_SECRET",  # signs each render's webhook URL
        *STORE_KEYS,
    },
    "worker-aimi": {"GENQ_AIMI__API_KEY", *STORE_KEYS},
    "s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},  # its one identity: the workers' store keys
    "webhooks": {"GENQ_SYNCSO__WEBHOOK_SECRET", "GENQ_AISTUDIOS__WEBHOOK_SECRET"},
    "metrics": set(),
    "flower": {"FLOWER_BASIC_AUTH"},
    "sim": set(),
}
PUBLISHED = {"flower": 5555, "webhooks": 8780, "metrics": 9108, "s3": 8333}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` as Docker Compose fills it in from ``env`` (.env and the shell): ``${VAR}``,
    ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, nested, and ``$$``."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if value.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= value[j] == "}"
                j += 1
            out.append(_expression(value[i + 2 : j - 1], env))
            i = j
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _expression(body: str, env: Mapping[str, str]) -> str:
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?(.*)", body, re.DOTALL)
    assert match, body
    name, operator, rest = match.groups()
    value = env.get(name)
    missing = value is None or (value == "" and operator is not None and operator.startswith(":"))
    if operator and operator.endswith("-"):
        return interpolate(rest, env) if missing else str(value)
    if operator and operator.endswith("?"):
        if missing:
            raise LookupError(f"{name}: {interpolate(rest, env)}")
        return str(value)
    return value or ""


def resolved_environment(service: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    return {key: interpolate(value, env) for key, value in environment_of(service).items()}


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


@pytest.mark.slow
def test_redis_requires_the_password_of_dot_env_and_caps_its_memory(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The redis service's command, filled in from a .env, run for real: it refuses clients without the
    password, takes at most REDIS_MAXMEMORY (1gb unless set) and never evicts; its health check passes
    only with the password. Without REDIS_PASSWORD compose refuses to start."""
    redis_service = services["redis"]
    with pytest.raises(LookupError, match="REDIS_PASSWORD"):
        [interpolate(part, {}) for part in redis_service["command"]]
    command = [interpolate(part, DOT_ENV) for part in redis_service["command"]]
    assert command[:3] == ["redis-server", "--requirepass", DOT_ENV["REDIS_PASSWORD"]]
    assert command[command.index("--maxmemory") + 1] == "1gb"
    maxmemory = redis_service["command"][command.index("--maxmemory") + 1]
    assert interpolate(maxmemory, {**DOT_ENV, "REDIS_MAXMEMORY": "4gb"}) == "4gb"
    env = resolved_environment(redis_service, DOT_ENV)
    assert env == {"REDISCLI_AUTH": DOT_ENV["REDIS_PASSWORD"]}

    port = free_port()
    binary = str(find_redis_binary())
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    server = subprocess.Popen([binary, *command[1:], *local], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=DOT_ENV["REDIS_PASSWORD"])
        until(lambda: _answers(client), 10, "the compose Redis to start")
        assert client.config_get("maxmemory") == {"maxmemory": str(1024**3)}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).set("k", "v")
        client.close()
        # The health check, as the container runs it (redis-cli, which comes with redis-server).
        [kind, check] = redis_service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        if shutil.which("redis-cli") is None:
            pytest.skip("no redis-cli here to run the health check with")
        check = check.replace("redis-cli", f"redis-cli -p {port}")
        path = {"PATH": os.environ["PATH"]}
        healthy = subprocess.run(["sh", "-c", check], env={**path, **env}, check=False, timeout=10)
        unhealthy = subprocess.run(["sh", "-c", check], env=path, check=False, timeout=10)
        # (`redis-cli ping` alone exits 0 on a NOAUTH answer: the check looks for the PONG.)
        assert (healthy.returncode, unhealthy.returncode) == (0, 1)
    finally:
        server.terminate()
        server.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("queue", QUEUES)
def test_one_worker_service_per_queue(services: dict[str, dict[str, Any]], queue: str) -> None:
    worker = services[f"worker-{queue}"]
    command = command_of(worker)
    assert re.search(rf"\bcelery -A worker worker -Q {queue}(\s|$)", command), command
    assert f"-n {queue}@%h" in command
    env = resolved_environment(worker, DOT_ENV)
    assert env["GENQ_REDIS_URL"] == f"redis://:{DOT_ENV['REDIS_PASSWORD']}@redis:6379/0"
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


def test_the_image_holds_every_package_the_project_ships() -> None:
    """Each package pyproject.toml ships is copied into the image: one left out imports nowhere."""
    include = re.search(r"^include = \[(.*)\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert include is not None
    packages = [p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")]
    copied = re.findall(r"^COPY (\S+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert sorted(packages) == sorted(copied)


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
    worker_env = environment_of(services["worker-syncso"])
    assert (env["GENQ_REDIS_URL"], env["GENQ_WEBHOOKS__BASE_URL"]) == (
        worker_env["GENQ_REDIS_URL"], worker_env["GENQ_WEBHOOKS__BASE_URL"]
    )  # fmt: skip
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
def test_every_genq_setting_of_genq_env_reaches_the_services_that_read_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """A setting compose does not list (GENQ_SYNCSO__CONCURRENCY for PLAN=enterprise) still arrives;
    genq.env is optional, so a machine that sets everything in the environment needs none. .env, where
    the secrets are, is never passed whole."""
    files = env_files_of(services[name])
    assert files == [{"path": "genq.env", "required": False}], files


def test_no_service_gets_dot_env_whole(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert all(f["path"] != ".env" for f in env_files_of(service)), f"{name} would get every secret"


@pytest.mark.parametrize("name", sorted(SECRETS_OF))
def test_each_service_gets_only_the_secrets_it_needs(services: dict[str, dict[str, Any]], name: str) -> None:
    """Filled in from a .env holding every secret: a worker gets its own provider's credentials and no
    other's, the receiver the webhook secrets, metrics none (it reports the accounts the workers' sweeps
    register), Flower its login, each Redis client the Redis URL with the password."""
    env = resolved_environment(services[name], DOT_ENV)
    secrets = {key for key, value in env.items() if value in DOT_ENV.values()}
    assert secrets == SECRETS_OF[name], env
    if "GENQ_REDIS_URL" in env:
        assert env["GENQ_REDIS_URL"] == f"redis://:{DOT_ENV['REDIS_PASSWORD']}@redis:6379/0"


@pytest.mark.parametrize("queue", QUEUES)
def test_each_worker_is_in_use_for_its_own_provider_only(
    services: dict[str, dict[str, Any]], queue: str
) -> None:
    settings = settings_from(resolved_environment(services[f"worker-{queue}"], DOT_ENV))
    configured = [name for name in PROVIDERS if getattr(settings, name).configured]
    assert configured == [queue]
    assert settings.redis_url.get_secret_value().startswith("redis://:")


def test_the_redis_url_comes_from_dot_env(services: dict[str, dict[str, Any]]) -> None:
    """Another Redis (TLS, managed): GENQ_REDIS_URL in .env is what every Redis client gets."""
    url = "rediss://default:other-pw@redis.example.com:6380/0"
    for name in [*SETTINGS_READERS, "flower"]:
        env = resolved_environment(services[name], {**DOT_ENV, "GENQ_REDIS_URL": url})
        assert env["GENQ_REDIS_URL"] == url, name


@pytest.mark.parametrize(("name", "port"), sorted(PUBLISHED.items()))
def test_published_ports_listen_on_loopback_unless_told(
    services: dict[str, dict[str, Any]], name: str, port: int
) -> None:
    [published] = services[name]["ports"]
    assert interpolate(published, {}) == f"127.0.0.1:{port}:{port}"
    assert interpolate(published, {"PUBLISH_ADDRESS": "0.0.0.0"}) == f"0.0.0.0:{port}:{port}"
    published_anywhere = [n for n, s in services.items() if "ports" in s]
    assert sorted(published_anywhere) == sorted(PUBLISHED)  # Redis is reached on compose's network only


def test_flower_and_the_simulators_get_no_provider_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name in ("flower", "sim"):
        assert not env_files_of(services[name]), f"{name} would receive every setting of genq.env"


def test_metrics(services: dict[str, dict[str, Any]]) -> None:
    metrics = services["metrics"]
    assert command_of(metrics) == "genq metrics --host 0.0.0.0 --port 9108"
    assert metrics["depends_on"]["redis"]["condition"] == "service_healthy"
    env = environment_of(metrics)
    # The budgets it reports are the workers': the same Redis and the same settings, less the secrets.
    for key, value in environment_of(services["worker-syncso"]).items():
        if key not in SECRETS_OF["worker-syncso"]:
            assert env[key] == value, key
    assert not SECRETS_OF["worker-syncso"] & set(env)
