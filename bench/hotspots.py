"""Where the time goes in a py-spy profile: the frames that hold the most samples.

Record a running process (web worker, service worker, or the bench itself during the relay and
rebuild scenarios) in py-spy's raw format, then summarise the stacks that pass through a frame:

    py-spy record --pid PID --duration 30 --format raw --nonblocking -o profile.txt
    .venv/bin/python -m bench.hotspots profile.txt --through publish_pending --top 15
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_name(frame: str) -> str:
    """`function (path/to/module.py:12)` → `function (module.py)`: lines vary, files don't."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    module = "/".join(Path(match["file"]).parts[-2:])
    return f"{match['function']} ({module})"


def summarise(path: Path, through: str | None, top: int) -> str:
    selves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        if through and not any(through in f for f in frames):
            continue
        samples = int(count)
        total += samples
        selves[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if total == 0:
        return f"no samples{f' through {through}' if through else ''}"
    lines = [f"{total} samples{f' through {through}' if through else ''}", "", "self time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in selves.most_common(top)]
    lines += ["", "inclusive (caretrail code and the libraries it calls):"]
    ours = [(f, n) for f, n in inclusive.most_common() if n < total]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in ours[:top]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="a py-spy profile in raw (collapsed) format")
    parser.add_argument("--through", help="keep only the stacks with a frame containing this")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.profile, args.through, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
