"""Run one benchmark measurement in a fresh Python process (so that its peak RSS is its own)."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import List, Optional


def run_measurement(cmd: List[str], label: str) -> Optional[dict]:
    """Run ``cmd``; its last stdout line is a JSON row. Returns the row (also echoed to stderr), or None when the
    process failed (its stderr tail is printed, labelled)."""
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{label}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row
