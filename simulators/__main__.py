"""`python -m simulators --port 8700 --api-key K`: serve the provider simulators in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from simulators.config import SimConfig, SyncSoSimConfig
from simulators.server import serve

# (flag, SyncSoSimConfig field, type); a flag left out keeps the field's default.
_SYNCSO_FLAGS: list[tuple[str, str, type]] = [
    ("--api-key", "api_key", str),
    ("--pending-s", "pending_s", float),
    ("--processing-s", "processing_s", float),
    ("--duration-jitter", "duration_jitter", float),
    ("--fail-share", "fail_share", float),
    ("--reject-share", "reject_share", float),
    ("--create-rate-limit", "create_rate_limit", int),
    ("--other-rate-limit", "other_rate_limit", int),
    ("--rate-window-s", "rate_window_s", float),
    ("--plan", "plan", str),
    ("--concurrency", "concurrency", int),
    ("--max-upload-bytes", "max_upload_bytes", int),
    ("--output-bytes", "output_bytes", int),
    ("--seed", "seed", int),
    ("--max-url-bytes", "max_url_bytes", int),
    ("--webhook-secret", "webhook_secret", str),
    ("--webhook-delay-s", "webhook_delay_s", float),
    ("--webhook-loss-share", "webhook_loss_share", float),
    ("--webhook-duplicate-share", "webhook_duplicate_share", float),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genq sim", description="Serve the provider simulators.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    for flag, field, kind in _SYNCSO_FLAGS:
        parser.add_argument(flag, dest=field, type=kind, default=None, help=f"sync.so {field}")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    overrides: dict[str, Any] = {
        field: getattr(args, field) for _, field, _ in _SYNCSO_FLAGS if getattr(args, field) is not None
    }
    return SimConfig(syncso=SyncSoSimConfig.model_validate(overrides))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    serve(args.host, args.port, config_from_args(args))


if __name__ == "__main__":
    main()
