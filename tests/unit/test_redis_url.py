"""The Redis URL is a secret: its password shows in no repr, str, JSON or log line of the settings (nor in
the Celery configuration Flower and `celery inspect conf` show); a rediss:// URL gets verified TLS
(certificate required, against GENQ_REDIS_CA_FILE or the system's CAs) in every client genq makes."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
from celery.app.utils import filter_hidden_settings

from producers import Producer
from schemas.redis_url import RedisUrl, redacted, tls_options
from worker.app import create_app
from worker.settings import Settings, redis_client

PASSWORD = "s3cret-Redis-pw-0123456789"
URLS = [
    f"redis://:{PASSWORD}@redis.internal:6379/0",
    f"redis://genq:{PASSWORD}@redis.internal:6379/0",
    f"rediss://default:{PASSWORD}@redis.example.com:6380/2",
    f"redis://{PASSWORD}@redis.internal:6379/0",  # one part: a user name, often meant as a password
    f"unix:///run/redis.sock?db=1&password={PASSWORD}",
]


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # read only when a TLS connection is made
    return path


@pytest.mark.parametrize("url", URLS)
def test_the_settings_never_show_the_redis_password(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENQ_REDIS_URL", url)
    settings = Settings()
    assert settings.redis_url.get_secret_value() == url  # what clients connect with
    shown = [repr(settings), str(settings), repr(settings.redis_url), str(settings.redis_url),
             f"{settings.redis_url}", settings.model_dump_json(), str(settings.model_dump())]  # fmt: skip
    with caplog.at_level(logging.INFO):
        logging.getLogger("genq.test").info("settings %s, url %s, %r", settings, settings.redis_url, settings)
    shown += [record.getMessage() for record in caplog.records]
    assert [text for text in shown if PASSWORD in text] == []
    assert all(redacted(url) in text for text in shown[:6]), shown  # the host and database stay readable


def test_a_settings_copy_for_another_redis_keeps_it_secret() -> None:
    settings = Settings().with_redis_url(URLS[0])
    assert isinstance(settings.redis_url, RedisUrl)
    assert PASSWORD not in repr(settings)
    assert settings.redis_url.get_secret_value() == URLS[0]


def test_celery_shows_the_broker_url_without_its_password() -> None:
    """What the worker's banner, `celery inspect conf` and Flower's worker page print of the broker."""
    app = create_app(Settings(redis_url=URLS[0]))  # type: ignore[arg-type]
    assert app.conf.broker_url == URLS[0]
    with app.connection_for_write() as connection:
        assert connection.as_uri() == "redis://:**@redis.internal:6379/0"  # the banner's `transport:`
    shown = str(filter_hidden_settings(app.conf.table())) + app.conf.humanize()
    assert "redis.internal" in shown
    assert PASSWORD not in shown


@pytest.mark.parametrize(
    ("url", "ca", "options"),
    [
        ("redis://h:6379/0", "/ca.pem", {}),
        ("unix:///run/redis.sock", "/ca.pem", {}),
        ("rediss://h:6380/0", None, {"ssl_cert_reqs": ssl.CERT_REQUIRED}),
        ("rediss://h:6380/0", "/ca.pem", {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}),
    ],
)
def test_tls_options(url: str, ca: str | None, options: dict[str, object]) -> None:
    assert tls_options(url, ca) == options


def test_a_rediss_url_gets_verified_tls_in_every_client(ca_file: Path) -> None:
    url = f"rediss://:{PASSWORD}@redis.example.com:6380/0"
    settings = Settings(redis_url=url, redis_ca_file=ca_file)  # type: ignore[arg-type]
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca_file)}
    # The broker (kombu would default a bare rediss:// URL to CERT_NONE, with a warning).
    app = create_app(settings)
    assert app.conf.broker_use_ssl == expected
    with app.connection_for_write() as connection:
        assert connection.ssl == expected
    # The workers' job store, budgets and metrics; the webhook receiver; `genq` commands.
    kwargs = redis_client(settings).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == (ssl.CERT_REQUIRED, str(ca_file))
    # Producers: GENQ_REDIS_CA_FILE, or their own argument.
    producer = Producer(url, ca_file=str(ca_file))
    kwargs = producer.redis.connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == (ssl.CERT_REQUIRED, str(ca_file))


def test_the_producer_reads_the_ca_file_from_the_environment(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENQ_REDIS_CA_FILE", str(ca_file))
    kwargs = Producer("rediss://redis.example.com:6380/0").redis.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(ca_file)
    assert "ssl_ca_certs" not in Producer("redis://h:6379/0").redis.connection_pool.connection_kwargs


def test_a_plain_url_gets_no_tls_and_the_ca_file_must_exist(tmp_path: Path) -> None:
    assert create_app(Settings(redis_url="redis://h:6379/0")).conf.broker_use_ssl is False  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis_ca_file"):
        Settings(redis_ca_file=tmp_path / "missing.pem")  # type: ignore[call-arg]
