"""The process entry point (`dynpath.cli.run`): main's exit code and output, the atexit handlers,
and no interpreter teardown (the reason it exists: docs/performance.md, "Around the training
step")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A module-level object whose finaliser runs only in the interpreter's teardown, an atexit
# handler that writes a file, then the entry point with the given arguments.
PROBE = """
import atexit, os, sys, threading
out = sys.argv[1]
class Teardown:  # module globals may be gone when it runs: all it needs is bound here
    def __del__(self, path=out + ".teardown", flags=os.O_WRONLY | os.O_CREAT,
                open_=os.open, write=os.write, close=os.close):
        fd = open_(path, flags, 0o644)
        write(fd, b"ran")
        close(fd)
KEEP = Teardown()
def handler():
    with open(out + ".atexit", "w") as f:
        f.write("ran")
atexit.register(handler)
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: __import__("time").sleep(0.3)).start()
sys.argv = ["dynpath", *sys.argv[3:]]
from dynpath.cli import run
run()
"""


def _probe(tmp_path: Path, *args: str, thread: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "p"), "thread" if thread else "-", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exit_code_output_and_atexit_handlers_are_kept_and_teardown_skipped(
    tmp_path: Path,
) -> None:
    done = _probe(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: dynpath")  # flushed before the fast exit
    assert (tmp_path / "p.atexit").read_text() == "ran"
    assert not (tmp_path / "p.teardown").exists()  # the teardown did not run


def test_an_error_keeps_its_exit_code_and_its_line(tmp_path: Path) -> None:
    done = _probe(tmp_path, "--params", str(tmp_path / "missing.yaml"), "vocab", "--out", "v")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("dynpath vocab: error: ")
    assert (tmp_path / "p.atexit").read_text() == "ran"


def test_a_live_non_daemon_thread_gets_the_normal_exit(tmp_path: Path) -> None:
    """The fast path would kill it; the normal exit joins it, then runs the teardown."""
    done = _probe(tmp_path, "--help", thread=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.atexit").read_text() == "ran"
    assert (tmp_path / "p.teardown").read_text() == "ran"


def test_python_dash_m_and_the_console_script_use_the_entry_point(tmp_path: Path) -> None:
    main_py = Path(__file__).parents[1] / "src" / "dynpath" / "cli" / "__main__.py"
    assert "run()" in main_py.read_text()
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'dynpath = "dynpath.cli:run"' in pyproject
    # what DVC's stages run: `python -m dynpath.cli` skips the teardown too
    probe = PROBE.replace(
        "from dynpath.cli import run\nrun()",
        "import runpy\nrunpy.run_module('dynpath.cli', run_name='__main__')",
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "p"), "-", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: dynpath"), done.stderr
    assert (tmp_path / "p.atexit").read_text() == "ran"
    assert not (tmp_path / "p.teardown").exists()
