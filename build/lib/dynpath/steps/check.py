"""`python -m dynpath.steps.check`: the first stage of dvc.yaml, which validates params.yaml.

DVC deletes a stage's outputs before it runs the stage's command, so a params value that
``dynpath train`` refuses used to cost the train stage's outputs (its uncached history.json and
train_summary.json for good). This stage depends on the whole params file and every other stage
depends on its output, so DVC runs it first and stops on a bad value before it removes anything.

The output's content is constant (``{"params": "valid"}``): a params change reruns this stage, but
the other stages see an unchanged dependency and still rerun only for the keys they read. Kubeflow
needs no such step: ``dynpath pipeline compile`` loads (validates) the params before a pod runs.
Torch-free, so the check takes about a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynpath.config import DEFAULT_PARAMS, load_config
from dynpath.errors import error_message
from dynpath.io import write_json

#: What the stage writes: the same bytes for every valid params file (see the module doc).
VALID: dict[str, Any] = {"params": "valid"}


def check(params: Path) -> int:
    """Validate ``params`` as every stage reads it: the schema, then every variant's resolved
    config (a variant's override is applied and validated only when its stage runs otherwise).
    Returns the number of variants checked; raises ConfigError naming the key."""
    cfg = load_config(params)
    for name in cfg.variants:
        cfg.variant(name)
    return len(cfg.variants)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dynpath.steps.check", description="validate params.yaml (DVC's check stage)"
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS))
    parser.add_argument("--out", required=True, help="file written when the params are valid")
    args = parser.parse_args(argv)
    try:
        check(Path(args.params))
        write_json(args.out, VALID)
    except (Exception, KeyboardInterrupt) as err:
        code, message = error_message(err)
        print(f"dynpath check: error: {message}", file=sys.stderr)
        return code
    print(f"{args.params}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
