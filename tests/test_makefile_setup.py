"""`make setup`'s install recipe, run by make itself against stub pip/uv/python executables.

Why stubs: the real install takes ~35 s and the network; what can break here is the recipe's
shell (which wheel folder reaches uv, the pin, the pip fallback), and that runs for real.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
if [ "$(basename "$0")" = pip ] && [ "$1" = config ]; then echo "{config_links}"; exit 0; fi
if [ "$(basename "$0")" = uv ]; then exit {uv_rc}; fi
if [ "$(basename "$0")" = pip ] && [ -n "{pip_fails}" ]; then exit 1; fi
exit 0
"""


def _setup(
    tmp_path: Path,
    *,
    env_links: str | None,
    config_links: str = "",
    uv_rc: int = 0,
    pip_fails: bool = False,
) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    log.touch()
    for name in ("python", "pip", "uv"):
        exe = bin_dir / name
        exe.write_text(
            STUB.format(
                log=log, config_links=config_links, uv_rc=uv_rc, pip_fails="1" if pip_fails else ""
            )
        )
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MAKE"))}
    if env_links is not None:
        env["PIP_FIND_LINKS"] = env_links
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "setup", f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, log.read_text().splitlines(), venv / ".installed"


def test_uv_installs_torch_from_the_pip_wheel_folder(tmp_path: Path) -> None:
    wheels, more = tmp_path / "wheels", tmp_path / "more"
    wheels.mkdir()
    more.mkdir()
    # pip's own forms: several folders, a file:// URL, one that does not exist (uv refuses those)
    proc, calls, stamp = _setup(
        tmp_path, env_links=f"{wheels} file://{more} {tmp_path / 'gone'}", config_links="/nowhere"
    )
    assert proc.returncode == 0, proc.stderr
    uv = [c for c in calls if c.startswith("uv ")]
    assert len(uv) == 1
    args = uv[0].split()
    assert "torch==2.13.0" in args and "-e" in args and ".[dev]" in args
    assert args[args.index("-c") + 1] == "constraints.txt"
    links = [args[i + 1] for i, a in enumerate(args) if a == "--find-links"]
    assert links == [str(wheels), str(more)]  # the environment wins over pip config
    # pip only installed uv: torch came through uv
    assert [c for c in calls if c.startswith("pip install")] == ["pip install -q uv==0.13.9"]
    assert stamp.exists()


def test_pip_config_is_read_without_the_environment_variable(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    proc, calls, _ = _setup(tmp_path, env_links=None, config_links=str(wheels))
    assert proc.returncode == 0, proc.stderr
    args = next(c for c in calls if c.startswith("uv ")).split()
    assert args[args.index("--find-links") + 1] == str(wheels)


def test_no_wheel_folder_passes_no_find_links(tmp_path: Path) -> None:
    proc, calls, _ = _setup(tmp_path, env_links=None, config_links="")
    assert proc.returncode == 0, proc.stderr
    assert "--find-links" not in next(c for c in calls if c.startswith("uv "))


def test_pip_installs_everything_when_uv_fails(tmp_path: Path) -> None:
    proc, calls, stamp = _setup(tmp_path, env_links=None, uv_rc=1)
    assert proc.returncode == 0, proc.stderr
    pip = [c for c in calls if c.startswith("pip install")]
    assert pip[-2:] == [
        "pip install -q torch==2.13.0",
        "pip install -q -c constraints.txt -e .[dev]",
    ]
    assert stamp.exists()


def test_a_failed_install_leaves_no_stamp(tmp_path: Path) -> None:
    proc, _, stamp = _setup(tmp_path, env_links=None, uv_rc=1, pip_fails=True)
    assert proc.returncode != 0
    assert not stamp.exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_pip_setting_script_is_shellcheck_clean() -> None:
    out = subprocess.run(
        ["shellcheck", str(ROOT / "scripts" / "pip-setting.sh")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout


def test_pip_setting_script_prefers_the_environment(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "pip-setting.sh")
    pip = tmp_path / "pip"
    pip.write_text('#!/bin/sh\n[ "$1 $2 $3" = "config get global.find-links" ] && echo /conf\n')
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP": str(pip)}
    run = partial(subprocess.run, capture_output=True, text=True, timeout=30)
    assert run([script, "find-links"], env=env).stdout == "/conf\n"
    assert run([script, "find-links"], env=env | {"PIP_FIND_LINKS": "/env"}).stdout == "/env\n"
    assert run([script, "cert"], env=env).stdout == ""  # pip has no such setting: empty
    bad = run([script], env=env)
    assert bad.returncode == 2 and "usage" in bad.stderr
