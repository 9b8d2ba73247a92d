"""sweep: one 6-run hyper-parameter search, on local threads and on Dask clusters.

    python bench/bench_sweep.py [--n-train 20000] [--epochs 5] [--json OUT]

The sweep is chapter 3's [784, 30, 10] cross-entropy network for eta in
{0.1, 0.5, 2.5} x lmbda in {0, 5} (6 runs), on the first N training images,
scored on 2,000 validation images. It runs

* serially (one run at a time, each run on every core: the point of comparison),
* on 2 local threads (``n_jobs=2``: the two runs share the cores),
* on a Dask LocalCluster of 1 worker process with 2 threads,
* on a Dask LocalCluster of 2 worker processes with 1 thread each,

and checks that every configuration computes the same accuracy curves. Dask's
workers start with OMP_NUM_THREADS=1, so each of their runs takes one thread.
Times include scattering the data, not starting the cluster (printed apart).
"""
import argparse
import json
import sys
import time

from threadpoolctl import threadpool_info

import nndl_fast
from nndl_fast import mnist_loader


def curves(results):
    return [(r["eta"], r["lmbda"], r["evaluation_accuracy"]) for r in results]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    import distributed

    tr, va, _ = mnist_loader.load_data()
    train = (tr[0][:args.n_train], tr[1][:args.n_train])
    valid = (va[0][:args.n_eval], va[1][:args.n_eval])
    grid = dict(eta=[0.1, 0.5, 2.5], lmbda=[0.0, 5.0], sizes=(784, 30, 10),
                epochs=args.epochs)
    rows = []
    reference = None

    def run(name, **kw):
        nonlocal reference
        t0 = time.perf_counter()
        results = nndl_fast.sweep(train, valid, **grid, **kw)
        wall = time.perf_counter() - t0
        if reference is None:
            reference = curves(results)
        same = curves(results) == reference
        rows.append({"configuration": name, "wall_s": round(wall, 2),
                     "run_s_sum": round(sum(r["seconds"] for r in results), 2),
                     "workers": len({r["worker"] for r in results}), "same_results": same})
        print("  %-34s %7.2f s" % (name, wall), flush=True)

    cores = nndl_fast._config._available_cpus()
    print("6-run sweep, %d training images, %d epochs, %d CPUs" % (args.n_train, args.epochs,
                                                                  cores), flush=True)
    run("serial (1 run at a time, %d threads)" % nndl_fast.get_num_threads())
    run("local threads, n_jobs=2", n_jobs=2)
    startup = {}
    for n_workers, threads in ((1, 2), (2, 1)):
        name = "dask: %d worker%s x %d thread%s" % (n_workers, "s" if n_workers > 1 else "",
                                                   threads, "s" if threads > 1 else "")
        t0 = time.perf_counter()
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads,
                                      processes=True, host="127.0.0.1",
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            client.wait_for_workers(n_workers)
            startup[name] = round(time.perf_counter() - t0, 2)
            run(name, scheduler=client)

    base = rows[0]["wall_s"]
    print()
    print("%-36s %8s %10s %8s %8s %6s" % ("configuration", "wall s", "sum of runs", "speedup",
                                          "workers", "same"))
    for r in rows:
        print("%-36s %8.2f %10.2f %7.2fx %8d %6s" % (r["configuration"], r["wall_s"],
                                                     r["run_s_sum"], base / r["wall_s"],
                                                     r["workers"], r["same_results"]))
    print("cluster start-up (not in the times): %s"
          % ", ".join("%s %.1f s" % kv for kv in startup.items()))
    blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print("BLAS: %s" % blas)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cpus": cores, "rows": rows, "startup_s": startup,
                       "blas": blas, "python": sys.version.split()[0],
                       "nndl_fast": nndl_fast.__version__}, f, indent=1)
    return 0 if all(r["same_results"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
