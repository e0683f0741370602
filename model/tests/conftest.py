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
