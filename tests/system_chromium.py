"""The system Chromium for the browser tests (the demo page, the MLflow UI), through Playwright
with no browser download: ``$DYNPATH_CHROMIUM``, else the usual names on PATH; the tests skip
without one (README, "What skips on a fresh clone"; ``.ci/run`` installs Debian's ``chromium``).

Import the fixture into a test module (``from system_chromium import chromium``).
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$DYNPATH_CHROMIUM``, else the first of the usual names on PATH."""
    explicit = os.environ.get("DYNPATH_CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium: none of " + ", ".join(CHROMIUM_NAMES) + " is on PATH and "
            "$DYNPATH_CHROMIUM is unset (.ci/run installs the Debian package `chromium`)"
        )
    return path
