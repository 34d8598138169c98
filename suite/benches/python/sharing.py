"""Python's contrast for the sharing bench (benches/pool.rs, case `sharing`).

A table of Python objects (a list of str, ~`--mib` MiB in all) is built in the
parent; a fork-based multiprocessing.Pool(2) reads every entry in each worker
(in the initializer, so each worker runs it exactly once), then each worker
reports its Private_Dirty from /proc/self/smaps_rollup. Reading an object
touches its reference count, so the pages holding the objects are copied:
most of what is read becomes private to each worker.

    python3 benches/python/sharing.py --mib 512 --runs 5
"""
import argparse
import multiprocessing as mp
import statistics

TABLE = None


def private_dirty_kb():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return -1


def read_all(queue):
    total = 0
    for s in TABLE:
        total += len(s)
    queue.put((total, private_dirty_kb()))


def noop(_):
    return None


def main():
    global TABLE
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    # 100-character ASCII strings: a str object of 149 bytes each (CPython 3.11).
    per = 149
    n = a.mib * (1 << 20) // per
    TABLE = [("%0100d" % i) for i in range(n)]
    ctx = mp.get_context("fork")
    worst = []
    for _ in range(a.runs):
        q = ctx.Queue()
        with ctx.Pool(2, initializer=read_all, initargs=(q,)) as pool:
            got = [q.get(timeout=600) for _ in range(2)]
            pool.map(noop, range(2))
        assert all(t == 100 * n for t, _ in got)
        worst.append(max(kb for _, kb in got))
    med = statistics.median(worst)
    print(f"objects={n}")
    print(f"table_mib={a.mib}")
    print(f"runs={a.runs}")
    print(f"worst_private_dirty_kb={med:.0f}")
    print(f"dirty_fraction={med / (n * per / 1024):.3f}")


if __name__ == "__main__":
    main()
