"""Keep secrets (COMET_API_KEY and the like) out of everything written: run.json, error texts, tracked parameters.

A secret is the value of any environment variable whose name looks like one (`*_KEY`, `*_TOKEN`, `*_SECRET`,
`*PASSWORD*`, `*API_KEY*`, `*CREDENTIAL*`), at least MIN_SECRET_LEN characters long so that a short value
such as `1` does not blank every number in a text.
"""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"api[_-]?key|token|secret|password|credential", re.IGNORECASE)  # dict keys
SECRET_ENV = re.compile(r"(_KEY|_TOKEN|_SECRET)$|PASSWORD|API_?KEY|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_LEN = 8
REDACTED = "<redacted>"


def secret_values() -> list[str]:
    """Values of secret-looking environment variables, longest first (so a longer one is replaced whole)."""
    values = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """Every occurrence of a secret replaced by <redacted>. Scrub the whole text first, cut it afterwards:
    a cut through a key leaves a part no longer equal to the key."""
    secrets = secret_values() if secrets is None else secrets
    for s in secrets:
        text = text.replace(s, REDACTED)
    return text


def scrub_secrets(obj, secrets: list[str] | None = None, redact: bool = False):
    """Recursively drop entries named like a secret; values holding a secret are dropped too, or have the
    secret replaced by '<redacted>' with redact=True (so a record keeps its shape)."""
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
    return scrub_text(obj, secrets) if holds_secret(obj) else obj
