"""sync.so's Sync-Signature check, table-driven."""

from __future__ import annotations

import pytest

from worker.providers.syncso.webhook import Refused, sign, verify_sync_signature

SECRET = "whsec_unit"
BODY = b'{"id":"g1","status":"COMPLETED"}'
NOW = 1_800_000_000


def header(t: int = NOW, body: bytes = BODY, secret: str = SECRET) -> str:
    return f"t={t},v1={sign(secret, t, body)}"


def test_a_signature_over_the_timestamp_and_body_verifies() -> None:
    assert verify_sync_signature(SECRET, header(), BODY, now=NOW + 10, tolerance_s=300) == sign(
        SECRET, NOW, BODY
    )


def test_any_of_several_v1_values_may_match_while_a_secret_is_rotated() -> None:
    both = f"t={NOW},v1={sign('whsec_old', NOW, BODY)},v1={sign(SECRET, NOW, BODY)}"
    assert verify_sync_signature(SECRET, both, BODY, now=NOW, tolerance_s=300) == sign(SECRET, NOW, BODY)


@pytest.mark.parametrize(
    ("value", "now", "reason"),
    [
        (None, NOW, "no Sync-Signature"),
        ("v1=abc", NOW, "malformed"),
        (f"t=soon,v1={sign(SECRET, NOW, BODY)}", NOW, "malformed"),
        (f"t={NOW},t={NOW},v1={sign(SECRET, NOW, BODY)}", NOW, "malformed"),
        (f"t=\u00b2,v1={sign(SECRET, NOW, BODY)}", NOW, "malformed"),  # str.isdigit() says yes, int() no
        (f"t={'1' * 5000},v1={sign(SECRET, NOW, BODY)}", NOW, "malformed"),  # past int()'s digit limit
        (header(secret="whsec_other"), NOW, "does not match"),
        (header(body=b"{}"), NOW, "does not match"),
        (f"t={NOW + 1},v1={sign(SECRET, NOW, BODY)}", NOW, "does not match"),  # the timestamp is signed too
        (header(), NOW + 301, "older than"),
        (header(), NOW - 301, "older than"),  # from the future, as far off
    ],
)
def test_a_delivery_that_does_not_verify_is_refused_with_its_reason(
    value: str | None, now: int, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        verify_sync_signature(SECRET, value, BODY, now=now, tolerance_s=300)
