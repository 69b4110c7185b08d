"""No provider error repeats a token or a signature a provider echoed from a URL: ``scrub_tokens``, which
every ``ProviderError`` message goes through (job errors, stage details and logs all quote it)."""

from __future__ import annotations

import pytest

from worker.providers.errors import BadRequest, JobRejected, RateLimited, scrub_tokens

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            f"https://h.test/aistudios?job=J&token={TOKEN} failed",
            "https://h.test/aistudios?job=J&token=*** failed",
        ),
        (f"?token={TOKEN}&job=J", "?token=***&job=J"),
        (
            f"webhookUrl%3Dhttps%3A%2F%2Fh%2Fa%3Fjob%3DJ%26token%3D{TOKEN}",
            "webhookUrl%3Dhttps%3A%2F%2Fh%2Fa%3Fjob%3DJ%26token%3D***",
        ),
        (f'"https://h/a?job=J\\u0026token\\u003d{TOKEN}"', '"https://h/a?job=J\\u0026token\\u003d***"'),
        (f"TOKEN={TOKEN}", "TOKEN=***"),
        ("access_token=abc; then", "access_token=***; then"),
        (
            "https://s3.test/o.mp4?X-Amz-Signature=beef&X-Amz-Security-Token=QQ",
            "https://s3.test/o.mp4?X-Amz-Signature=***&X-Amz-Security-Token=***",
        ),
        ("the token is invalid", "the token is invalid"),
        ("tokens=5, token=", "tokens=5, token="),
        ("render failed at 40 %", "render failed at 40 %"),
    ],
)
def test_scrub_tokens(text: str, scrubbed: str) -> None:
    assert scrub_tokens(text) == scrubbed


@pytest.mark.parametrize("error_class", [BadRequest, JobRejected, RateLimited])
def test_every_provider_error_is_scrubbed_at_birth(error_class: type[BadRequest]) -> None:
    error = error_class(f"could not call https://h.test/aistudios?job=J&token={TOKEN}", provider="aistudios")
    for text in (error.message, str(error), repr(error), *map(str, error.args)):
        assert TOKEN not in text
