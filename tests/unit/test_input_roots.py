"""Input roots: a local input is accepted only when its real path lies under a configured root."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers import InvalidRequest, validate
from schemas.inputs import outside_roots, parse_roots


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("inputs", "inputs-evil", "other"):
        (tmp_path / name).mkdir()
    for path in ("inputs/v.mp4", "inputs-evil/v.mp4", "other/secret.mp4"):
        (tmp_path / path).write_bytes(b"x")
    (tmp_path / "inputs" / "link.mp4").symlink_to(tmp_path / "other" / "secret.mp4")
    return tmp_path


def test_roots_parse_like_path_and_with_commas() -> None:
    assert parse_roots("/a:/b, /c") == (Path("/a"), Path("/b"), Path("/c"))
    assert parse_roots("") == ()


def test_a_file_under_a_root_is_accepted(tree: Path) -> None:
    assert outside_roots({"video": str(tree / "inputs/v.mp4")}, [tree / "inputs"]) == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("other/secret.mp4", "outside"),
        ("inputs-evil/v.mp4", "outside"),  # a sibling whose name starts like the root
        ("inputs/link.mp4", "outside"),  # a symlink under the root pointing out of it
        ("inputs/../other/secret.mp4", "outside"),
    ],
)
def test_a_file_outside_every_root_is_refused_naming_the_field(tree: Path, path: str, why: str) -> None:
    root = tree / "inputs"
    assert outside_roots({"audio": str(tree / path)}, [root]) == [
        f"audio: {tree / path} is outside the input roots ({root})"
    ]


def test_without_roots_every_local_input_is_refused(tree: Path) -> None:
    assert outside_roots({"video": str(tree / "inputs/v.mp4")}, []) == [
        "video: local files are refused: no input roots are configured (GENQ_INPUT_ROOTS)"
    ]


def test_validate_refuses_etc_shadow_at_submit(monkeypatch: pytest.MonkeyPatch, tree: Path) -> None:
    request = {
        "kind": "lipsync",
        "model": "lipsync-2",
        "video": "/etc/shadow",
        "audio": "https://x.test/a.wav",
    }
    monkeypatch.setenv("GENQ_INPUT_ROOTS", str(tree / "inputs"))
    with pytest.raises(InvalidRequest) as caught:
        validate(request)
    assert caught.value.problems == [f"video: /etc/shadow is outside the input roots ({tree / 'inputs'})"]
    monkeypatch.delenv("GENQ_INPUT_ROOTS")
    with pytest.raises(InvalidRequest) as unset:
        validate(request)
    assert unset.value.problems == [
        "video: local files are refused: no input roots are configured (GENQ_INPUT_ROOTS)"
    ]
