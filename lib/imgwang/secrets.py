"""Keep secrets (COMET_API_KEY and the like) out of everything written: run.json, tracked parameters."""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"api[_-]?key|token|secret|password|credential", re.IGNORECASE)


def secret_values() -> list[str]:
    """The values of secret-looking COMET_* variables in the environment."""
    return [v for k, v in os.environ.items() if k.startswith("COMET_") and SECRET_NAME.search(k) and v]


def scrub_secrets(obj, secrets: list[str] | None = None, redact: bool = False):
    """Recursively drop entries named like a secret; values holding a secret are dropped too, or replaced
    by '<redacted>' with redact=True (so a record keeps its shape)."""
    secrets = secret_values() if secrets is None else secrets

    def holds_secret(value) -> bool:
        return isinstance(value, str) and any(s in value for s in secrets)

    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if SECRET_NAME.search(str(key)) or (holds_secret(value) and not redact):
                continue
            out[key] = scrub_secrets(value, secrets, redact)
        return out
    if isinstance(obj, list):
        return [scrub_secrets(v, secrets, redact) for v in obj if redact or not holds_secret(v)]
    return "<redacted>" if holds_secret(obj) else obj
