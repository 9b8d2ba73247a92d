"""Seconds per 50,000-image epoch of the book's first conv net (chapter 6).

    python bench/bench_network3.py [--images N] [--quick] [--threads T] [--dtype D]
    python bench/bench_network3.py --net dropout --images 10000 --skip-reference

Network: ConvPoolLayer(20 x 5x5 on 28x28, pool 2x2) -> FullyConnectedLayer(2880, 100)
-> SoftmaxLayer(100, 10), sigmoid, mini-batch 10, eta 0.1 (the book's first conv net);
with --net, another row of the book's chapter-6 table (bench/ch6_table.py: conv2,
relu, dropout), at its eta.
Measured in the same run: nndl_fast (compiled), the pure-NumPy reference
(nndl_fast.reference.network3) and PyTorch on the CPU when it is installed (the same
net; training only, no L2 term in any of them). Each is timed on a slice of the
training data and scaled to 50,000 images; ratios are against the measurements of
this run. Results (with threadpoolctl's view of the BLAS and OpenMP libraries) go
to bench/results/bench_network3.json.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ch6_table import M, hyper, layers_for  # noqa: E402  (the book's chapter-6 nets)

EPOCH = 50000
NETS = ["conv1", "conv2", "relu", "dropout"]


def time_nndl_fast(x, y, dtype, threads, repeats, net_name="conv1"):
    from nndl_fast import network3
    np.random.seed(0)
    eta = hyper(net_name)[0]
    net = network3.Network(layers_for(net_name, network3), M, dtype=dtype,
                           num_threads=threads)
    x = np.ascontiguousarray(x, dtype=dtype)
    n_batches = len(x) // M
    net._train_batches(x, y, 0, min(n_batches, 100), eta, 0.0, n_batches)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        # as SGD does it: runs of up to 1000 mini-batches per compiled call
        for first in range(0, n_batches, 1000):
            net._train_batches(x, y, first, min(1000, n_batches - first), eta, 0.0, n_batches)
        best = min(best, time.perf_counter() - t0)
    return best * EPOCH / (n_batches * M)


def time_reference(x, y, dtype, net_name="conv1"):
    from nndl_fast.reference import network3 as ref
    np.random.seed(0)
    eta = hyper(net_name)[0]
    net = ref.Network(layers_for(net_name, ref), M, dtype=dtype)
    x = np.ascontiguousarray(x, dtype=dtype)
    n_batches = len(x) // M
    net._train_batches(x, y, 0, min(n_batches, 10), eta, 0.0, n_batches)
    t0 = time.perf_counter()
    net._train_batches(x, y, 0, n_batches, eta, 0.0, n_batches)
    return (time.perf_counter() - t0) * EPOCH / (n_batches * M)


def torch_net(torch, net_name):
    """The chapter-6 net in PyTorch: ConvPoolLayer = conv, max-pool, activation (the
    book adds the bias before pooling; the same for these monotonic activations);
    p_dropout = dropout on the layer's input; softmax + log-likelihood = the
    cross-entropy loss on the last layer's outputs."""
    nn = torch.nn
    act = nn.ReLU if net_name in ("relu", "dropout") else nn.Sigmoid
    layers = [nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), act()]
    if net_name == "conv1":
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2880, 100), act(),
                             nn.Linear(100, 10))
    layers += [nn.Conv2d(20, 40, 5), nn.MaxPool2d(2), act(), nn.Flatten()]
    if net_name == "dropout":
        return nn.Sequential(*layers, nn.Dropout(0.5), nn.Linear(640, 1000), act(),
                             nn.Dropout(0.5), nn.Linear(1000, 1000), act(),
                             nn.Dropout(0.5), nn.Linear(1000, 10))
    return nn.Sequential(*layers, nn.Linear(640, 100), act(), nn.Linear(100, 10))


def time_torch(x, y, dtype, threads, repeats=1, net_name="conv1"):
    try:
        import torch
    except ImportError:
        return None, "not installed"
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    net = torch_net(torch, net_name).to(tdt)
    opt = torch.optim.SGD(net.parameters(), lr=hyper(net_name)[0])
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)).reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    n_batches = len(x) // M

    def run(count):
        for k in range(count):
            opt.zero_grad()
            loss = loss_fn(net(xt[k * M:(k + 1) * M]), yt[k * M:(k + 1) * M])
            loss.backward()
            opt.step()
    run(min(n_batches, 50))
    best = float("inf")
    for _ in range(repeats):   # best of, as for nndl_fast
        t0 = time.perf_counter()
        run(n_batches)
        best = min(best, time.perf_counter() - t0)
    return best * EPOCH / (n_batches * M), torch.__version__


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=EPOCH,
                   help="training images timed for nndl_fast (scaled to 50,000)")
    p.add_argument("--reference-images", type=int, default=2000,
                   help="images timed for the NumPy reference (it is slow)")
    p.add_argument("--torch-images", type=int, default=5000)
    p.add_argument("--quick", action="store_true",
                   help="5,000 images for nndl_fast, 500 for the reference, 2,000 for torch")
    p.add_argument("--threads", type=int, default=None,
                   help="nndl_fast threads (default: the package's policy)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeats", type=int, default=1,
                   help="best of this many timings, for nndl_fast and for PyTorch")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--scaling", default=None, metavar="T1,T2,...",
                   help="also time nndl_fast at these thread counts (speed-up table)")
    p.add_argument("--net", choices=NETS, default="conv1",
                   help="the chapter-6 row to time (default conv1, the first conv net)")
    p.add_argument("--json", default=os.path.join(HERE, "results", "bench_network3.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.reference_images, args.torch_images = 5000, 500, 2000

    import nndl_fast
    from nndl_fast import mnist_loader
    from threadpoolctl import threadpool_info
    dtype = np.dtype(args.dtype).type
    (x, y), _, _ = mnist_loader.load_data()
    threads = args.threads or nndl_fast.get_num_threads()

    rows = []
    t = time_nndl_fast(x[:args.images], y[:args.images], dtype, threads, args.repeats,
                       args.net)
    rows.append(("nndl_fast (%d threads)" % threads, t, args.images))
    if not args.skip_reference:
        t = time_reference(x[:args.reference_images], y[:args.reference_images], dtype,
                           args.net)
        rows.append(("NumPy reference", t, args.reference_images))
    torch_note = "skipped"
    if not args.skip_torch:
        t, torch_note = time_torch(x[:args.torch_images], y[:args.torch_images], dtype,
                                   args.threads, args.repeats, args.net)
        if t is not None:
            rows.append(("PyTorch %s CPU" % torch_note, t, args.torch_images))

    fast = rows[0][1]
    print("Book's chapter-6 net %s, mini-batch %d, eta %g, %s: seconds per 50,000-image "
          "epoch" % (args.net, M, hyper(args.net)[0], args.dtype))
    print("%-28s %14s %12s %16s" % ("implementation", "s / epoch", "images", "x nndl_fast"))
    for name, t, n in rows:
        print("%-28s %14.3f %12d %16.1f" % (name, t, n, t / fast))
    if torch_note != "skipped" and not any(r[0].startswith("PyTorch") for r in rows):
        print("PyTorch: %s" % torch_note)
    scaling = []
    if args.scaling:
        counts = [int(t) for t in args.scaling.split(",") if t.strip()]
        for t in counts:
            scaling.append((t, time_nndl_fast(x[:args.images], y[:args.images], dtype, t,
                                              args.repeats, args.net)))
        base = dict(scaling).get(1, scaling[0][1])
        print("nndl_fast thread scaling (mini-batch %d, %d images, best of %d):"
              % (M, args.images, args.repeats))
        print("%8s %12s %10s" % ("threads", "s / epoch", "speed-up"))
        for t, sec in scaling:
            print("%8d %12.3f %10.2f" % (t, sec, base / sec))
    info = threadpool_info()
    print("threadpoolctl.threadpool_info():")
    for lib in info:
        print("  %s %s (%s) %s threads: %s" % (lib.get("user_api"), lib.get("internal_api"),
                                               lib.get("version"), lib.get("num_threads"),
                                               lib.get("filepath")))
    result = {
        "benchmark": "network3 chapter-6 net epoch", "net": args.net,
        "dtype": args.dtype, "mini_batch_size": M, "eta": hyper(args.net)[0],
        "threads": threads, "cpus": os.cpu_count(), "platform": platform.platform(),
        "rows": [{"name": n, "seconds_per_50k_epoch": t, "images_timed": k,
                  "ratio_to_nndl_fast": t / fast} for n, t, k in rows],
        "scaling": [{"threads": t, "seconds_per_50k_epoch": sec} for t, sec in scaling],
        "threadpool_info": info,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print("wrote %s" % args.json)
    return result


if __name__ == "__main__":
    main()
