"""What Python's pools do when user serialization code fails: the peers'
columns of the README's serde rows (tests/serde_faults.rs is ours).

Each case pickles or unpickles a value whose __reduce__ (or the function
that rebuilds it) raises or calls os._exit, at the stage the case names, in
a map of three inputs whose second is the bad one; then one more call on the
same pool. Fork start method; every wait bounded (15 s: "HANGS").

    for c in arg_unpickle_raise arg_unpickle_exit result_pickle_raise \
             result_pickle_exit result_unpickle_raise arg_pickle_raise; do
      for k in pool exec; do python3 benches/python/serde_faults_peers.py $c $k; done
    done
"""
import multiprocessing as mp, concurrent.futures as cf, os, sys, time, signal

class BadUnpickle:
    """Unpickling raises (in the worker for an argument, in the parent for a result)."""
    def __init__(self, mode): self.mode = mode
    def __reduce__(self): return (_restore, (self.mode,))
def _restore(mode):
    if mode == 'raise': raise ValueError("refuses to unpickle")
    if mode == 'exit': os._exit(7)
    return BadUnpickle(mode)

class BadPickle:
    def __init__(self, mode): self.mode = mode
    def __reduce__(self):
        if self.mode == 'raise': raise ValueError("refuses to pickle")
        if self.mode == 'exit': os._exit(7)
        return (BadPickle, (self.mode,))

def ident(x): return x
def make_bad_result(mode): return BadPickle(mode) if isinstance(mode, str) else mode
def make_bad_unpickle_result(mode): return BadUnpickle(mode) if isinstance(mode, str) else mode

def run(label, fn):
    import threading
    out = {}
    def go():
        try: out['r'] = repr(fn())[:150]
        except BaseException as e: out['r'] = f"raises {type(e).__name__}: {str(e)[:100]}"
    t = threading.Thread(target=go, daemon=True); t.start(); t.join(15)
    print(f"{label}: {out.get('r', 'HANGS (no outcome after 15 s)')}", flush=True)

if __name__ == '__main__':
    mp.set_start_method('fork')
    which = sys.argv[1]
    cases = {
      'arg_unpickle_raise': (ident, lambda m: [1, BadUnpickle('raise'), 3]),
      'arg_unpickle_exit': (ident, lambda m: [1, BadUnpickle('exit'), 3]),
      'result_pickle_raise': (make_bad_result, lambda m: [1, 'raise', 3]),
      'result_pickle_exit': (make_bad_result, lambda m: [1, 'exit', 3]),
      'result_unpickle_raise': (make_bad_unpickle_result, lambda m: [1, 'raise', 3]),
      'arg_pickle_raise': (ident, lambda m: [1, BadPickle('raise'), 3]),
    }
    f, inputs = cases[which]
    if sys.argv[2] == 'pool':
        p = mp.Pool(2)
        run(f"Pool.map {which}", lambda: p.map(f, inputs(0)))
        run(f"  then Pool.map(ident, [5])", lambda: p.map(ident, [5]))
        p.terminate()
    else:
        ex = cf.ProcessPoolExecutor(2)
        def per_future():
            futs = [ex.submit(f, x) for x in inputs(0)]
            res = []
            for fu in futs:
                try: res.append(repr(fu.result(timeout=10))[:40])
                except BaseException as e: res.append(f"{type(e).__name__}")
            return res
        run(f"ProcessPoolExecutor {which}", per_future)
        run(f"  then submit(ident, 5)", lambda: ex.submit(ident, 5).result(timeout=5))
        ex.shutdown(wait=False, cancel_futures=True)
    os._exit(0)
