"""Dramatiq on the same Redis as the pool's Redis bench (`benches/redis.rs`).

Usage: dramatiq_redis.py <redis unix socket> <tasks> <apply calls>

Two worker processes (the pool's bench runs two hosts of one worker) with
Dramatiq's default of 8 threads each (`DRAMATIQ_BENCH_THREADS`; with 1 it
does about a seventh of the rate), the Redis broker, and the Redis result
backend for the round trip. Prints `key=value` lines:

  rate       tasks/s: `square.send(i)` for every i, until the queue is drained
             (`broker.join`), one message per task (Dramatiq has no batching)
  apply_p50  seconds: median of `square.send(x).get_result(block=True)`
"""

import os
import statistics
import subprocess
import sys
import time

SOCKET = os.environ.get("DRAMATIQ_BENCH_SOCKET") or (sys.argv[1] if len(sys.argv) > 1 else "")

import dramatiq  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402
from dramatiq.results import Results  # noqa: E402
from dramatiq.results.backends.redis import RedisBackend  # noqa: E402

broker = RedisBroker(url=f"unix://{SOCKET}", namespace="dramatiq-bench")
backend = RedisBackend(url=f"unix://{SOCKET}", namespace="dramatiq-bench-results")
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def square(x):
    return x * x


@dramatiq.actor(max_retries=0, store_results=True)
def square_result(x):
    return x * x


def main():
    n, calls = int(sys.argv[2]), int(sys.argv[3])
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH", "")] if p)
    env = dict(os.environ, DRAMATIQ_BENCH_SOCKET=SOCKET, PYTHONPATH=path)
    workers = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "dramatiq_redis", "--processes", "2", "--threads", os.environ.get("DRAMATIQ_BENCH_THREADS", "8")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Warm up: the workers are up once one result comes back.
        square_result.send(1).get_result(block=True, timeout=60_000)
        t = time.perf_counter()
        for i in range(n):
            square.send(i)
        broker.join(square.queue_name, interval=10)
        print(f"rate={n / (time.perf_counter() - t)}")
        times = []
        for i in range(calls):
            t = time.perf_counter()
            assert square_result.send(i).get_result(block=True, timeout=60_000) == i * i
            times.append(time.perf_counter() - t)
        print(f"apply_p50={statistics.median(times)}")
    finally:
        workers.terminate()
        try:
            workers.wait(timeout=20)
        except subprocess.TimeoutExpired:
            workers.kill()
            workers.wait()
        broker.flush_all()


if __name__ == "__main__":
    main()
