"""Runs every guard (scripts/mobile-check): each packaging fix that a text or symbol check can
prove is still in place. Exits 1 if any is not, naming the fix and why it matters."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mobile_check import android, common, ios  # noqa: E402


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    checks = sorted(android.CHECKS + ios.CHECKS + common.CHECKS, key=lambda c: c[0])
    failed = 0
    for finding, what, check in checks:
        problem = check(root)
        if problem is None:
            print(f"ok    {what}")
        else:
            failed += 1
            print(f"FAIL  {what}: {problem}")
    print(f"{len(checks) - failed} of {len(checks)} packaging guards hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
