"""The CLI's one error path (dynpath.cli.error_message / main): fast unit checks of the mapping
that the bad-input corpus exercises end to end (tests/test_bad_input_corpus.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dynpath import cli
from dynpath.cli import commands
from dynpath.config import ConfigError
from dynpath.errors import CheckpointError, DynpathError


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EROFS, "the file system is read-only; choose an output on a writable disk"),
        (errno.EACCES, "permission denied; fix the permissions or choose another path"),
        (errno.EISDIR, "is a directory, a file was expected; give a file path"),
        (errno.ENOTDIR, "a part of the path is a file, a directory was expected; fix the path"),
        (errno.ENOSPC, "no space left on the device; free some space or choose another disk"),
    ],
)
def test_os_errors_become_one_line_naming_the_file(code: int, advice: str) -> None:
    err = OSError(code, os.strerror(code), "/data/out/best.pt")
    assert cli.error_message(err) == (2, f"/data/out/best.pt: {advice}")


def test_decoding_errors_and_dynpath_errors_exit_2_on_one_line() -> None:
    try:
        b"caf\xe9".decode("utf-8")
    except UnicodeDecodeError as err:
        code, message = cli.error_message(err)
    assert code == 2 and "not valid UTF-8 (byte 3" in message
    assert cli.error_message(ConfigError("p.yaml: a: bad\np.yaml: b: bad")) == (
        2,
        "p.yaml: a: bad; p.yaml: b: bad",
    )
    assert isinstance(ConfigError("x"), DynpathError) and isinstance(ConfigError("x"), ValueError)
    assert cli.error_message(CheckpointError("x.pt: nope"))[0] == 2


def test_ctrl_c_is_130_even_when_a_writer_wrapped_it() -> None:
    wrapped = RuntimeError("unexpected pos 768 vs 662")  # what torch.save raises
    wrapped.__context__ = KeyboardInterrupt()  # ... while handling the Ctrl-C
    assert cli.error_message(wrapped)[0] == 130
    assert cli.error_message(KeyboardInterrupt())[0] == 130


def test_a_bug_is_exit_1_with_a_hint_and_no_traceback_unless_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(commands, "cmd_model_info", broken)  # looked up when the parser is built
    assert cli.main(["model-info"]) == 1
    err = capsys.readouterr().err
    assert "internal error (ZeroDivisionError: boom); rerun with -v" in err
    assert "Traceback" not in err
    assert cli.main(["-v", "model-info"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: boom" in err


def test_verbose_adds_the_traceback_to_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--params", str(tmp_path), "model-info"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(": is a directory; give the params file (params.yaml)")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["-v", "--params", str(tmp_path), "model-info"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_results_are_strict_json() -> None:
    with pytest.raises(DynpathError, match="non-finite number"):
        cli._render({"spans": [{"start": float("inf")}]})
    assert cli._render({"a": 1.5}) == '{\n  "a": 1.5\n}'
