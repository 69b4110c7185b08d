"""Query parsing of `GET /v2/generate/{id}` (long-poll), `GET /v2/generations`, `/v2/assets`, `/v2/batch`."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.datastructures import QueryParams

from simulators.syncso.assets import SORT_VALUES, AssetQuery, AssetType
from simulators.syncso.batch import BatchStatus
from simulators.syncso.generations import Status

WAIT_TIMEOUT_DEFAULT_S = 5.0
WAIT_TIMEOUT_RANGE_S = (1.0, 10.0)
LIST_LIMIT_RANGE = (1, 100)
ASSET_LIMIT_DEFAULT = 20
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
    limit = parse_limit(params.get("limit"), messages)
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


def parse_limit(raw: str | None, messages: list[str]) -> int | None:
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


def parse_asset_query(params: QueryParams) -> AssetQuery:
    messages: list[str] = []
    limit = parse_limit(params.get("limit"), messages)
    sort_by = params.get("sortBy", "dateDesc")
    if sort_by not in SORT_VALUES:
        messages.append(f"sortBy must be one of the following values: {', '.join(SORT_VALUES)}")
    types = multi_value(params, "types")
    allowed = [t.value for t in AssetType]
    if types is not None and not set(types) <= set(allowed):
        messages.append(f"each value in types must be one of the following values: {', '.join(allowed)}")
    project_id = params.get("projectId")
    if project_id is not None and not _is_uuid(project_id):
        messages.append("projectId must be a UUID")
    if messages:
        raise QueryInvalid(messages)
    return AssetQuery(
        limit=ASSET_LIMIT_DEFAULT if limit is None else limit,
        cursor=params.get("cursor") or None,
        search=params.get("searchQuery") or None,
        sort_by=sort_by,
        types=frozenset(AssetType(t) for t in types) if types is not None else None,
        project_id=project_id,
    )


@dataclass(frozen=True)
class BatchQuery:
    statuses: frozenset[str] | None
    created_after: float | None  # unix seconds, exclusive
    created_before: float | None


def parse_batch_query(params: QueryParams) -> BatchQuery:
    messages: list[str] = []
    statuses = multi_value(params, "status")
    allowed = [s.value for s in BatchStatus]
    if statuses is not None and not set(statuses) <= set(allowed):
        messages.append(f"status must be one of the following values: {', '.join(allowed)}")
    after = _parse_time(params, "created_after", messages)
    before = _parse_time(params, "created_before", messages)
    if messages:
        raise QueryInvalid(messages)
    return BatchQuery(frozenset(statuses) if statuses is not None else None, after, before)


def _parse_time(params: QueryParams, name: str, messages: list[str]) -> float | None:
    """An ISO 8601 query value as unix seconds; a value without a zone is UTC."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        messages.append(f"{name} must be a valid ISO 8601 date string")
        return None
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).timestamp()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
