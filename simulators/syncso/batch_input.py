"""Validation of a `POST /v2/batch` JSONL file (reference 3.8), NestJS style.

Every non-empty line is one record `{"request_id", "endpoint": "/v2/generate", "payload"}` whose
payload is a create body, checked like `POST /v2/generate` plus the media-library check. Every problem
found is reported; the errorCode is the first `batch_*` code found in BATCH_CODES order, else the
generic validation code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulators.syncso.validate import GENERIC, CreateRejected, CreateRequest, validate_create

MIN_RECORDS = 20
ENDPOINT = "/v2/generate"
BATCH_CODES = (
    "batch_invalid_jsonl",
    "batch_invalid_endpoint",
    "batch_duplicate_request_id",
    "batch_insufficient_records",
    "batch_too_many_requests",
)
INVALID_JSONL, INVALID_ENDPOINT, DUPLICATE, INSUFFICIENT, TOO_MANY = BATCH_CODES
AssetCheck = Callable[[Any], list[str]]  # input items -> media-library problems


@dataclass(frozen=True)
class BatchRecord:
    request_id: str
    request: CreateRequest


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, message: str, code: str = GENERIC) -> None:
        self.items.append((message, code))

    def raise_if_any(self) -> None:
        if self.items:
            codes = {code for _, code in self.items}
            code = next((c for c in BATCH_CODES if c in codes), GENERIC)
            raise CreateRejected([message for message, _ in self.items], code)


def parse_batch_file(
    raw: bytes, max_records: int, asset_problems: AssetCheck, form_problems: Sequence[str] = ()
) -> list[BatchRecord]:
    """The records of a batch file, in file order; raise CreateRejected listing every problem found,
    `form_problems` (of the request's other fields) first."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        messages = [*form_problems, "the input file must be UTF-8 encoded JSONL"]
        raise CreateRejected(messages, INVALID_JSONL) from exc
    problems = _Problems()
    for message in form_problems:
        problems.add(message)
    records: list[BatchRecord] = []
    first_line: dict[str, int] = {}
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        count += 1
        record = _decode(number, line, problems)
        if record is None:
            continue
        request_id = record["request_id"]
        if request_id in first_line:
            message = f"line {number}: request_id {request_id} repeats line {first_line[request_id]}"
            problems.add(message, DUPLICATE)
            continue
        first_line[request_id] = number
        where = f"line {number} (request_id {request_id})"
        if _shape_ok(where, record, problems):
            request = _check_payload(where, record["payload"], asset_problems, problems)
            if request is not None:
                records.append(BatchRecord(request_id, request))
    if count < MIN_RECORDS:
        problems.add(
            f"the input file has {count} records; a batch needs at least {MIN_RECORDS}", INSUFFICIENT
        )
    elif count > max_records:
        problems.add(f"the input file has {count} records; a batch allows at most {max_records}", TOO_MANY)
    problems.raise_if_any()
    return records


def _decode(number: int, line: str, problems: _Problems) -> dict[str, Any] | None:
    """The line's object with a usable `request_id`, or None after reporting why not."""
    try:
        record = json.loads(line)
    except ValueError:
        problems.add(f"line {number}: not valid JSON", INVALID_JSONL)
        return None
    if not isinstance(record, dict):
        problems.add(f"line {number}: must be a JSON object", INVALID_JSONL)
        return None
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        problems.add(f"line {number}: request_id must be a non-empty string", INVALID_JSONL)
        return None
    return record


def _shape_ok(where: str, record: dict[str, Any], problems: _Problems) -> bool:
    # [INF] Other keys of a record are ignored: the format names these three, the file is no DTO.
    before = len(problems.items)
    if record.get("endpoint") != ENDPOINT:
        problems.add(f"{where}: endpoint must be {ENDPOINT}", INVALID_ENDPOINT)
    if not isinstance(record.get("payload"), dict):
        problems.add(f"{where}: payload must be a JSON object", INVALID_JSONL)
    return len(problems.items) == before


def _check_payload(
    where: str, payload: Any, asset_problems: AssetCheck, problems: _Problems
) -> CreateRequest | None:
    try:
        request = validate_create(payload)
    except CreateRejected as exc:
        messages = exc.message if isinstance(exc.message, list) else [exc.message]
        for message in messages:
            problems.add(f"{where}: {message}")
        return None
    missing = asset_problems(request.input)
    for message in missing:
        problems.add(f"{where}: {message}")
    return None if missing else request
