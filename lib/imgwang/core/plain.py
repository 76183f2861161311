"""Plain Python values from numpy, torch and paths, for JSON, scrapbook and run files: one converter, one rule.

The rule for non-finite floats: NaN and infinities become the strings 'nan', 'inf', '-inf' (JSON has none of
them, and jupyter_client's json_clean writes them so anyway, only after a warning the saved notebook would
show); `from_plain` turns those strings back into floats where a caller computes with them again.
"""

from __future__ import annotations

import math
from pathlib import Path

NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def to_plain(value):
    if hasattr(value, "tolist"):
        return to_plain(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def from_plain(value):
    """`to_plain`'s non-finite strings back to floats, through lists and dicts."""
    if isinstance(value, dict):
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    return NON_FINITE.get(value, value) if isinstance(value, str) else value
