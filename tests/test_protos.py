"""The committed generated protobuf code matches the .proto sources."""

import subprocess
import sys


def test_generated_code_is_fresh():
    r = subprocess.run([sys.executable, "-m", "orbitmq.protos.build", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
