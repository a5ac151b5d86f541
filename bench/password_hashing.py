"""The event loop while passwords hash: its longest stall, next to a hash's time.

From the repository root:  .venv/bin/python bench/password_hashing.py [--hashes 8]

tests/security/test_passwords.py proves deterministically that hashes run on the
pool's threads; this measures what that buys on this machine: a loop ticking every
5 ms through `--hashes` concurrent hashes, its longest gap against one hash's time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from service.security.passwords import PasswordHasher

TICK = 0.005


async def measure(hashes: int, threads: int) -> tuple[float, float]:
    hasher = PasswordHasher(threads=threads)
    try:
        started = time.perf_counter()
        await hasher.hash("benchpass123")
        one_hash = time.perf_counter() - started

        work = asyncio.gather(*(hasher.hash(f"pw{n}") for n in range(hashes)))
        longest, last = 0.0, time.perf_counter()
        while not work.done():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        await work
        return one_hash, longest
    finally:
        hasher.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    one_hash, longest = asyncio.run(measure(args.hashes, args.threads))
    sys.stdout.write(
        f"one hash {one_hash * 1000:.1f} ms; longest loop gap through "
        f"{args.hashes} hashes on {args.threads} threads {longest * 1000:.1f} ms "
        f"(tick {TICK * 1000:.0f} ms)\n"
    )


if __name__ == "__main__":
    main()
