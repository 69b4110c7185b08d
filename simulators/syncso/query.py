"""Query parsing for `GET /v2/generate/{id}` (long-poll) and `GET /v2/generations` (filters, paging)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.datastructures import QueryParams

from simulators.syncso.state import Status

WAIT_TIMEOUT_DEFAULT_S = 5.0
WAIT_TIMEOUT_RANGE_S = (1.0, 10.0)
LIST_LIMIT_RANGE = (1, 100)
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


class QueryInvalid(Exception):
    """A query parameter failed validation; `messages` is the NestJS message list."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class ListQuery:
    statuses: frozenset[str] | None
    ids: frozenset[str] | None
    limit: int | None
    cursor: str | None


def multi_value(params: QueryParams, name: str) -> list[str] | None:
    """A list parameter given as repeated keys (`a=1&a=2`), comma-separated (`a=1,2`) or both."""
    raw = params.getlist(name)
    if not raw:
        return None
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


def parse_wait(params: QueryParams) -> float | None:
    """The long-poll timeout in seconds when `wait=true`, else None."""
    wait_raw = params.get("wait", "false").lower()
    if wait_raw not in _BOOLS:
        raise QueryInvalid(["wait must be a boolean value"])
    timeout_s = WAIT_TIMEOUT_DEFAULT_S
    if "timeout" in params:
        low, high = WAIT_TIMEOUT_RANGE_S
        try:
            timeout_s = float(params["timeout"])
        except ValueError:
            timeout_s = math.nan
        if not low <= timeout_s <= high:
            raise QueryInvalid([f"timeout must be a number between {low:g} and {high:g}"])
    wait = _BOOLS[wait_raw]
    if wait and "include" in params:
        raise QueryInvalid(["include cannot be combined with wait"])
    return timeout_s if wait else None


def parse_list_query(params: QueryParams) -> ListQuery:
    messages: list[str] = []
    statuses = multi_value(params, "status")
    allowed = [s.value for s in Status]
    if statuses is not None and not set(statuses) <= set(allowed):
        messages.append(f"each value in status must be one of the following values: {', '.join(allowed)}")
    ids = multi_value(params, "ids")
    limit = _parse_limit(params.get("limit"), messages)
    cursor = params.get("cursor")
    if cursor is not None and limit is None:
        messages.append("cursor requires limit")
    if messages:
        raise QueryInvalid(messages)
    return ListQuery(
        statuses=frozenset(statuses) if statuses is not None else None,
        ids=frozenset(ids) if ids is not None else None,
        limit=limit,
        cursor=cursor,
    )


def _parse_limit(raw: str | None, messages: list[str]) -> int | None:
    if raw is None:
        return None
    low, high = LIST_LIMIT_RANGE
    if not raw.lstrip("-").isdigit():
        messages.append("limit must be an integer number")
        return None
    limit = int(raw)
    if not low <= limit <= high:
        messages.append(f"limit must be between {low} and {high}")
        return None
    return limit
