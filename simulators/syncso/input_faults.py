"""Failures keyed on a generation's inputs (`Generation.inputs`, see `simulators.syncso.inputs`).

An `InputFault` (`POST /_sim/faults` with route "syncso.input") fails the generations whose inputs
match it, until `DELETE /_sim/faults` or for its next `times` matches; the config's
`fail_input_contains` / `fail_input_sha256` do the same until set back to [].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.media import MediaInput
from simulators.syncso.generations import REJECT_ERRORS, TRANSIENT_ERRORS, Outcome, Status
from simulators.syncso.inputs import input_matches

SHA256_HEX = r"^[0-9a-fA-F]{64}$"
# The failure an input-keyed rule gives when it names none: a documented transient code, which a replay
# of the same inputs may get past once the rule is gone.
INPUT_FAILURE_CODE = "generation_pipeline_failed"
INPUT_REJECT_CODE = "generation_input_validation_failed"


def matches_any(
    inputs: Sequence[tuple[str, MediaInput]], contains: Iterable[str], sha256: Iterable[str]
) -> bool:
    """Whether an input holds one of the substrings `contains` or has one of the digests `sha256`
    (the config's `fail_input_contains` and `fail_input_sha256`)."""
    return any(input_matches(inputs, contains=text) for text in contains) or any(
        input_matches(inputs, sha256=digest) for digest in sha256
    )


class InputFault(BaseModel):
    """`POST /_sim/faults` body failing the generations whose inputs match, e.g.
    `{"route": "syncso.input", "contains": "/fr/"}`: every create from now on whose inputs match ends
    `status` (FAILED), until `DELETE /_sim/faults`, or for the next `times` matching ones only.

    An input matches when it has everything given: `input` (a field name such as "audio:fr", or a
    type, "audio"), `contains` (a substring of its URL, asset name or file name), `sha256` (its digest).
    """

    model_config = ConfigDict(extra="forbid")

    route: Literal["syncso.input"]
    contains: str | None = Field(None, min_length=1)
    sha256: str | None = Field(None, pattern=SHA256_HEX)
    input: str | None = Field(None, min_length=1)
    status: Literal["FAILED", "REJECTED"] = "FAILED"
    error_code: str | None = Field(None, min_length=1)
    error: str | None = Field(None, min_length=1)
    times: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _names_an_input(self) -> Self:
        if self.contains is None and self.sha256 is None and self.input is None:
            raise ValueError("give contains, sha256 or input")
        return self

    def matches(self, inputs: Sequence[tuple[str, MediaInput]]) -> bool:
        return input_matches(inputs, contains=self.contains, sha256=self.sha256, field=self.input)

    def outcome(self) -> Outcome:
        status = Status(self.status)
        default = INPUT_FAILURE_CODE if status is Status.FAILED else INPUT_REJECT_CODE
        code = self.error_code or default
        message = (
            self.error or TRANSIENT_ERRORS.get(code) or REJECT_ERRORS.get(code) or "Input validation failed."
        )
        return Outcome(status, code, message)


def config_failure() -> Outcome:
    """The outcome of a generation matched by `fail_input_contains` or `fail_input_sha256`."""
    return Outcome(Status.FAILED, INPUT_FAILURE_CODE, TRANSIENT_ERRORS[INPUT_FAILURE_CODE])


@dataclass
class _Queued:
    rule: InputFault
    remaining: int | None  # None: until cleared


class InputFaults:
    """The queued input-keyed rules, oldest first; a rule with `times` goes once it has failed that many."""

    def __init__(self) -> None:
        self._rules: list[_Queued] = []

    def push(self, rule: InputFault) -> None:
        self._rules.append(_Queued(rule, rule.times))

    def take(self, inputs: Sequence[tuple[str, MediaInput]]) -> InputFault | None:
        """The oldest rule matching `inputs`, one of its uses spent; None when none matches."""
        for queued in self._rules:
            if not queued.rule.matches(inputs):
                continue
            if queued.remaining is not None:
                queued.remaining -= 1
                if queued.remaining <= 0:
                    self._rules.remove(queued)
            return queued.rule
        return None

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        if not self._rules:
            return {}
        return {"syncso.input": [{**q.rule.model_dump(), "remaining": q.remaining} for q in self._rules]}

    def clear(self) -> None:
        self._rules.clear()
