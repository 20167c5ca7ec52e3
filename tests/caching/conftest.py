"""Make `playground` importable when the editable install does not map it.

The venv's editable install of this project currently has an empty package mapping, and
`pytest` (unlike `python -m pytest`) does not put the repository root on sys.path. Until the
project config sets `pythonpath` (or the package is reinstalled), add the root here, only if the
import fails, so these Django-free tests run with `-p no:django`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("playground") is None:  # pragma: no cover - environment dependent
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
