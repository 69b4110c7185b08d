"""Input roots: a local input is accepted only when its real path lies under a configured root, and is
read through one descriptor whose file was checked (``open_input``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from producers import InvalidRequest, validate
from schemas import inputs
from schemas.inputs import InputRefused, open_input, outside_roots, parse_roots


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


# --- open_input: the file is opened once, and what was opened is checked --------------------------


def test_open_input_reads_a_file_under_a_root(tree: Path) -> None:
    with open_input(tree / "inputs/v.mp4", [tree / "inputs"], field="video") as file:
        assert (file.name, file.read()) == (str(tree / "inputs/v.mp4"), b"x")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("inputs/link.mp4", "{path} is outside the input roots ({root})"),
        ("other/secret.mp4", "{path} is outside the input roots ({root})"),
        ("inputs/missing.mp4", "no such file: {path}"),
        ("inputs", "{path} is not a regular file"),
    ],
)
def test_open_input_refuses_naming_the_field(tree: Path, path: str, problem: str) -> None:
    root = tree / "inputs"
    with pytest.raises(InputRefused) as caught:
        open_input(tree / path, [root], field="audio")
    assert str(caught.value) == "audio: " + problem.format(path=tree / path, root=root)


def test_open_input_refuses_a_fifo_without_waiting_for_a_writer(tree: Path) -> None:
    fifo = tree / "inputs" / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InputRefused, match=r"pipe.mp4 is not a regular file"):
        open_input(fifo, [tree / "inputs"], field="video")


def test_without_roots_open_input_refuses(tree: Path) -> None:
    with pytest.raises(InputRefused, match=r"^video: local files are refused: no input roots"):
        open_input(tree / "inputs/v.mp4", [], field="video")


def _swap(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one step (rename over it), as an attacker racing a check would."""
    new = link.with_name(link.name + ".new")
    new.symlink_to(target)
    new.replace(link)


def test_a_link_swapped_after_the_check_is_refused_when_opened(tree: Path) -> None:
    root, link = tree / "inputs", tree / "inputs" / "swapped.mp4"
    link.symlink_to(tree / "inputs/v.mp4")
    assert outside_roots({"video": str(link)}, [root]) == []  # the check passes ...
    _swap(link, tree / "other/secret.mp4")  # ... and the link changes right after it
    with pytest.raises(InputRefused) as caught:
        open_input(link, [root], field="video")
    assert str(caught.value) == f"video: {link} is outside the input roots ({root})"


@pytest.mark.parametrize("proc", [True, False], ids=["proc-fd", "no-proc"])
def test_a_link_swapped_around_the_open_is_refused(
    tree: Path, monkeypatch: pytest.MonkeyPatch, proc: bool
) -> None:
    """The link names the secret only while ``os.open`` follows it: the name checks before and after the
    open see a file under the root, and only the descriptor tells what was opened (its path in
    /proc/self/fd, or else its device and inode against the file the name leads to now)."""
    root, link, inside = tree / "inputs", tree / "inputs" / "swapped.mp4", tree / "inputs" / "v.mp4"
    link.symlink_to(inside)
    real_open = os.open

    def open_while_swapped(path: str, flags: int, *args: int) -> int:
        if path != str(link):  # another thread's open
            return real_open(path, flags, *args)
        _swap(link, tree / "other/secret.mp4")
        try:
            return real_open(path, flags, *args)
        finally:
            _swap(link, inside)

    monkeypatch.setattr(inputs.os, "open", open_while_swapped)
    if not proc:
        monkeypatch.setattr(inputs, "_PROC_FD", tree / "no-proc")
    with pytest.raises(InputRefused, match=r"swapped.mp4 is outside the input roots"):
        open_input(link, [root], field="video")
    monkeypatch.setattr(inputs.os, "open", real_open)
    with open_input(link, [root], field="video") as file:  # left alone, the same link is read
        assert file.read() == b"x"
