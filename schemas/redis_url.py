"""The Redis URL as producers and workers both use it: a secret that shows without its password, and
the TLS options of a ``rediss://`` URL. Pure: nothing here connects.

A URL may carry a password (``redis://:<password>@host:6379/0``, ``redis://user:<password>@…``, or a
``password`` query parameter), so it is shown only through ``redacted`` and kept as a ``RedisUrl``
(pydantic's ``Secret``), whose ``repr``, ``str`` and JSON form are the redacted URL.
"""

from __future__ import annotations

import ssl
import urllib.parse
from typing import Any

from pydantic import Secret

# The CA certificate(s) a rediss:// server's certificate is verified against (a PEM file); unset: the
# system's CAs. Workers read it as the setting GENQ_REDIS_CA_FILE; producers read the same variable.
CA_FILE_ENV = "GENQ_REDIS_CA_FILE"
TLS_SCHEMES = frozenset({"rediss"})


def redacted(url: str) -> str:
    """``url`` with its password (in the user part, or a ``password`` query parameter) as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(the configured URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        # redis://secret@host is read as a user name, but is often meant as a password: hide it too.
        netloc = f"{user}:***@{host}" if colon and user else f"***@{host}"
    query = urllib.parse.urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in urllib.parse.parse_qsl(parts.query)],
        safe="*",
    )
    # Not urlunsplit: it writes unix:///path as unix:/path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def password_of(url: str) -> str | None:
    """What ``redacted`` hides of ``url``: its password, or a lone user name (see there)."""
    try:
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        lone_user = parts.username if ":" not in userinfo else None
        return parts.password or lone_user or dict(urllib.parse.parse_qsl(parts.query)).get("password")
    except ValueError:
        return None


class RedisUrl(Secret[str]):
    """A Redis URL kept secret: ``repr``, ``str``, logs and JSON show it redacted (its host, port and
    database stay readable); ``get_secret_value()`` is the URL to connect with."""

    def _display(self) -> str:
        return redacted(self.get_secret_value())


def tls_options(url: str, ca_file: str | None = None) -> dict[str, Any]:
    """The TLS keywords of redis-py (and of Celery's ``broker_use_ssl``) for ``url``: none unless it is
    ``rediss://``; then the server's certificate is required and verified, against ``ca_file`` if given,
    else against the system's CAs. ``ssl_*`` query parameters of the URL (``ssl_cert_reqs=none`` …) are
    the user's explicit choice: redis-py and kombu both let them override these."""
    if urllib.parse.urlsplit(url).scheme not in TLS_SCHEMES:
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    return options
