"""Python's reference for the start bench (benches/pool.rs, case `start`).

With a `--mib` MiB heap (every page touched), the time from creating a
fork-based multiprocessing.Pool(2) to the first result of `apply`.
Prints key=value lines the Rust bench parses.

    python3 benches/python/start.py --mib 1024 --runs 7
"""
import argparse
import multiprocessing as mp
import statistics
import time


def square(x):
    return x * x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    heap = bytearray(a.mib << 20)
    heap[:: 4096] = b"\1" * len(range(0, len(heap), 4096))  # touch every page
    ctx = mp.get_context("fork")
    times = []
    for _ in range(a.runs + 1):
        t = time.perf_counter()
        pool = ctx.Pool(2)
        assert pool.apply(square, (7,)) == 49
        times.append(time.perf_counter() - t)
        pool.terminate()
        pool.join()
    times = times[1:]  # the first run warms up the interpreter's imports
    print(f"mib={a.mib}")
    print(f"runs={a.runs}")
    print(f"median_s={statistics.median(times):.6f}")


if __name__ == "__main__":
    main()
