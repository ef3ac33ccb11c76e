"""Peak-memory helper shared by the benchmark scripts."""
from __future__ import annotations

import resource


def peak_rss_kb() -> int:
    """Peak resident memory of this process in kB.

    ``VmHWM`` is per address space and starts afresh at ``exec``; ``ru_maxrss`` is only a fallback, because a child
    inherits its parent's high-water mark across fork + exec, which would charge the parent's memory to it.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
