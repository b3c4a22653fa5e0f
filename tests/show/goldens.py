"""Golden files for the inspection tests.

Each golden file holds text a person checked by eye.  When a change is intended, rewrite
them with ``ADJIT_UPDATE_GOLDEN=1 python -m pytest tests/show`` and read the diff before
committing it.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import adjit as aj
from adjit.show import load_model

GOLDEN = Path(__file__).parent / "golden"
MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
UPDATE = os.environ.get("ADJIT_UPDATE_GOLDEN") == "1"


def model(name: str):
    """A shipped model file, loaded the way ``adjit`` loads it."""
    return load_model(str(MODELS / f"{name}.py"))


def compiled(name: str):
    m = model(name)
    return m, aj.compile(m.outputs, backend="interp")


def check_golden(filename: str, text: str) -> None:
    path = GOLDEN / filename
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}; create it with ADJIT_UPDATE_GOLDEN=1"
    want = path.read_text(encoding="utf-8")
    if text != want:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), text.splitlines(),
                                              "golden", "now", lineterm=""))
        raise AssertionError(f"{filename} differs from its golden file "
                             f"(ADJIT_UPDATE_GOLDEN=1 rewrites it):\n{diff}")
