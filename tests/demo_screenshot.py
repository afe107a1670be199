"""Screenshot of a running `dynpath demo` after a query (how docs/demo.png is made).

    .venv/bin/dynpath demo &                      # after `make run`: the synthetic default
    .venv/bin/python tests/demo_screenshot.py --video S0003 --out docs/demo.png

Picks ``--video`` from the page's list of the configured data, takes its first annotated
sentence (or ``--query``), presses Localize, plays the best span and saves the page. Uses the
system Chromium as the browser test does (tests/test_demo_browser.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from system_chromium import find_chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--video", required=True, help="id of a listed video, e.g. S0003")
    parser.add_argument("--query", help="sentence (default: the video's first annotated one)")
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(120_000)
        page.goto(args.url)
        page.click("#dynpath-listed input")
        page.keyboard.type(args.video)  # filters the list, which shows its first 100
        page.get_by_role("option", name=args.video, exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#dynpath-query textarea').value.length > 0"
        )
        if args.query:
            page.fill("#dynpath-query textarea", args.query)
        page.click("#dynpath-run")
        page.wait_for_selector("#dynpath-timeline rect.dynpath-span")
        page.locator("#dynpath-timeline tr.dynpath-row").first.click()
        page.wait_for_timeout(1500)  # a frame inside the span
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
