"""The example files in the repository stay valid."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_validate(path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    env.update(GENESYS_CLIENT_ID="example", GENESYS_CLIENT_SECRET="example-secret")
    result = subprocess.run(
        [sys.executable, "-m", "ivrstream", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_an_example():
    assert EXAMPLES
