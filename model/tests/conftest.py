import os
import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    """Path of an external tool; skip (or fail in CI, which installs it) when missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    return path


# Property tests: derandomized in CI (CI=1: the same examples on every machine and run),
# random locally (`--hypothesis-seed N` repeats a run). `HYPOTHESIS_PROFILE=ci` locally
# gives CI's examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
