"""Python's reference for the tiny-tasks bench (benches/pool.rs, case `tiny`).

multiprocessing.Pool(2).map(square, range(n)) with its default chunksize;
the pool is created (and warmed up) before the clock starts, only the map is
timed, as on the Rust side. Prints key=value lines the Rust bench parses.

    python3 benches/python/tiny_tasks.py --n 1000000 --runs 5
"""
import argparse
import multiprocessing as mp
import statistics
import time


def square(x):
    return x * x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    ctx = mp.get_context("fork")
    times = []
    with ctx.Pool(a.workers) as pool:
        pool.map(square, range(1000))  # warm-up: workers up and running
        for _ in range(a.runs):
            t = time.perf_counter()
            out = pool.map(square, range(a.n))
            times.append(time.perf_counter() - t)
            assert out[-1] == (a.n - 1) ** 2
    med = statistics.median(times)
    print(f"n={a.n}")
    print(f"runs={a.runs}")
    print(f"median_s={med:.6f}")
    print(f"tasks_per_s={a.n / med:.1f}")


if __name__ == "__main__":
    main()
