"""`dynpath pipeline submit`: the real kfp.Client against a loopback HTTP server that records
the Kubeflow Pipelines v2beta1 REST calls and answers them (there is no KFP cluster here)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynpath.cli import main
from dynpath.profiles import use_profile

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class _KfpApi:
    """Just enough of the KFP API server: healthz, experiments (find or create) and runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                api.calls.append((self.command, self.path.split("?")[0], body))
                resp: dict[str, Any] = {}
                if self.path.startswith("/apis/v2beta1/experiments") and body:
                    resp = {"experiment_id": "exp-1", "display_name": body["display_name"]}
                elif self.path.startswith("/apis/v2beta1/runs") and body:
                    resp = {"run_id": "run-42", "display_name": body["display_name"]}
                data = json.dumps(resp).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def kfp_api() -> Iterator[_KfpApi]:
    api = _KfpApi()
    yield api
    api.server.shutdown()
    api.server.server_close()


def test_submit_creates_a_run_in_the_configured_experiment(
    kfp_api: _KfpApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = use_profile("tiny", tmp_path / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["pipeline"].update(experiment="ablation-exp", run_name="ablation-run")
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    package = tmp_path / "out" / "pipeline.yaml"

    argv = ["--params", str(params), "pipeline", "submit", "--host", kfp_api.url]
    assert main([*argv, "--output", str(package)]) == 0
    out = capsys.readouterr().out  # kfp.Client prints links before the CLI's JSON result
    result = json.loads(out[out.rindex("{\n") :])
    assert result["run_id"] == "run-42"
    assert result["url"] == f"{kfp_api.url}/#/runs/details/run-42"

    posts = [(path, body) for method, path, body in kfp_api.calls if method == "POST"]
    (exp,) = [b for p, b in posts if p == "/apis/v2beta1/experiments"]
    assert exp["display_name"] == "ablation-exp"
    (run,) = [b for p, b in posts if p == "/apis/v2beta1/runs"]
    assert run["display_name"] == "ablation-run" and run["experiment_id"] == "exp-1"
    # the run carries the freshly compiled package, platform settings included
    compiled = list(yaml.safe_load_all(package.read_text()))
    assert run["pipeline_spec"]["pipeline_spec"] == compiled[0]
    assert run["pipeline_spec"]["platform_spec"] == compiled[1]
    assert sorted(compiled[0]["root"]["dag"]["tasks"]) == sorted(
        ["synth", "extract", "vocab", "for-loop-2", "report"]
    )


def test_unreachable_api_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from waiting import held_port

    params = use_profile("tiny", tmp_path / "params.yaml")
    with held_port() as sock:  # bound, never listening: refused, and no one else can take it
        host = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = ["--params", str(params), "pipeline", "submit", "--host", host]
        assert main([*argv, "--output", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Kubeflow Pipelines API" in err and host in err
    assert not (tmp_path / "p.yaml").exists()  # a failed submission leaves no package
