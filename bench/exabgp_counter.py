"""The bare-ExaBGP baseline's API process: count announced prefixes, note when all arrived.

    exabgp_counter.py EXPECTED DONE_FILE

ExaBGP writes one JSON object per UPDATE on stdin; this counts `"nlri"` keys in the lines that
announce (a byte count, no JSON decoding, so the time measured is ExaBGP's own) and, once
EXPECTED prefixes have arrived, writes `time.time()` to DONE_FILE.  It keeps reading until
stdin closes, so ExaBGP never blocks on it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    expected = int(sys.argv[1])
    done_file = Path(sys.argv[2])
    count = 0
    done = False
    for line in sys.stdin.buffer:
        if done or b'"announce"' not in line:
            continue
        count += line.count(b'"nlri"')
        if count >= expected:
            done_file.write_text(f"{time.time():.6f} {count}\n")
            done = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
