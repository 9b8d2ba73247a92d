"""Command line: ``python -m nndl_fast COMMAND ...``: train, reproduce, sweep, export,
info, bench, baseline, expand, vanishing, figures.

``python -m nndl_fast train`` with no options is the book's chapter-1 run;
``--net`` / ``--preset`` pick chapter 3's or chapter 6's networks.
"""
import argparse
import contextlib
import os
import random
import sys
import time

import numpy as np


def _layer_sizes(text):
    """argparse type of --sizes: comma-separated positive integers."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected comma-separated layer sizes such as 784,30,10, got %r" % text) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            "expected at least two positive layer sizes such as 784,30,10, got %r" % text)
    return sizes


def _int_at_least(text, low, expected):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected %s, got %r" % (expected, text)) from None
    if value < low:
        raise argparse.ArgumentTypeError("expected %s, got %d" % (expected, value))
    return value


def _positive_int(text):
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text):
    return _int_at_least(text, 0, "an integer >= 0")


def _finite_float(text):
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, got %r" % text) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("expected a finite number, got %r" % text)
    return value


def _number_list(kind, expected):
    """argparse type of a comma-separated list of numbers (--eta 0.1,0.5,2.5)."""
    def parse(text):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s such as %s, got %r"
                                             % (expected + (text,))) from None
        return values
    return parse


def _cmd_sweep(args):
    from nndl_fast import mnist_loader, scaleout
    training, validation, _ = mnist_loader.load_data(args.data)
    training = tuple(a[:args.train_size] for a in training)
    validation = tuple(a[:args.eval_size] for a in validation)
    import math
    for name, values in (("eta", args.eta), ("lmbda", args.lmbda)):
        if not all(math.isfinite(v) for v in values):
            raise ValueError("--%s values must be finite numbers, got %s" % (name, values))
    if min(args.mini_batch_size) < 1 or min(args.seeds) < 0:
        raise ValueError("--mini-batch-size values must be >= 1 and --seeds >= 0")
    n_eval = len(validation[1])

    def report(result):
        curve = result["evaluation_accuracy"]
        print("%s: best %.2f%%, final %.2f%% (%.1f s on %s)"
              % (scaleout.describe_setting(result), 100.0 * max(curve) / n_eval if curve else 0,
                 100.0 * curve[-1] / n_eval if curve else 0, result["seconds"],
                 result["worker"]), flush=True)

    settings = scaleout.sweep_settings(args.eta, args.lmbda, args.mini_batch_size, args.seeds)
    print("Sweep of %d settings on %d training and %d validation images; results in %s"
          % (len(settings), len(training[1]), n_eval, args.out), flush=True)
    results = scaleout.sweep(training, validation, eta=args.eta, lmbda=args.lmbda,
                             mini_batch_size=args.mini_batch_size, seeds=args.seeds,
                             sizes=args.sizes, cost=args.cost, epochs=args.epochs, out=args.out,
                             scheduler=args.scheduler, n_jobs=args.n_jobs,
                             threads_per_run=args.threads_per_run, on_result=report)
    print()
    print(scaleout.format_table(results))
    return 0


def _cmd_info(args):
    import nndl_fast
    if nndl_fast._config.use_compiled():
        from nndl_fast import _dense  # noqa: F401  (loads SciPy's BLAS so it is listed)
    nndl_fast.show_config()
    return 0


#: The book's runs by name: chapter 1's and 3's networks, chapter 6's conv nets.
PRESETS = {
    "ch1": {"net": "network", "sizes": "784,30,10", "epochs": 30, "batch": 10, "eta": 3.0},
    "ch1-100": {"net": "network", "sizes": "784,100,10", "epochs": 30, "batch": 10, "eta": 3.0},
    "ch3": {"net": "network2", "sizes": "784,30,10", "epochs": 30, "batch": 10, "eta": 0.5,
            "lmbda": 5.0},
    "ch3-100": {"net": "network2", "sizes": "784,100,10", "epochs": 30, "batch": 10,
                "eta": 0.5, "lmbda": 5.0},
    "ch6-fc": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.1, "lmbda": 0.0},
    "ch6-conv1": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.1, "lmbda": 0.0},
    "ch6-conv2": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.1, "lmbda": 0.0},
    "ch6-conv2-relu": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.03,
                       "lmbda": 0.1},
    "ch6-expanded": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.03, "lmbda": 0.1,
                     "expanded": True},
    "ch6-expanded-2fc": {"net": "network3", "epochs": 60, "batch": 10, "eta": 0.03,
                         "lmbda": 0.1, "expanded": True},
    "ch6-dropout": {"net": "network3", "epochs": 40, "batch": 10, "eta": 0.03, "lmbda": 0.0,
                    "expanded": True},
}
DEFAULT_PRESET = {"network": "ch1", "network2": "ch3", "network3": "ch6-conv1"}
EXPANDED_FILE = "mnist_expanded.pkl.gz"


def _resolve_train_args(args):
    """Fill the options the user left out from the preset (or the net's default one)."""
    if args.preset is not None:
        preset = PRESETS[args.preset]
        if args.net is not None and args.net != preset["net"]:
            raise SystemExit("error: --preset %s trains %s, not --net %s"
                             % (args.preset, preset["net"], args.net))
        name = args.preset
    else:
        name = DEFAULT_PRESET[args.net or "network"]
        preset = PRESETS[name]
    args.preset = name
    args.net = preset["net"]
    for key in ("sizes", "epochs", "batch", "eta", "lmbda"):
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, 0.0 if key == "lmbda" else None))
    for key, minimum in (("epochs", 0), ("batch", 1), ("train_size", 1), ("eval_size", 1)):
        value = getattr(args, key)
        if value is not None and value < minimum:
            raise SystemExit("error: --%s must be at least %d, got %d"
                             % (key.replace("_", "-"), minimum, value))
    if args.activation != "sigmoid" and args.net != "network2":
        raise SystemExit("error: --activation %s: only network2's hidden layers take "
                         "another activation (chapter 1's network is sigmoid; network3's "
                         "presets are the book's nets); add --net network2"
                         % args.activation)
    if preset.get("expanded") and args.data is None:
        if not os.path.exists(EXPANDED_FILE):
            raise SystemExit("error: --preset %s trains on the expanded training set: run "
                             "'python -m nndl_fast expand' first (writes %s) or pass --data"
                             % (name, EXPANDED_FILE))
        args.data = EXPANDED_FILE
    return args


def _training_block(args, epochs):
    """A context for the SGD call: a progress bar with --progress, else nothing."""
    if not args.progress:
        return contextlib.nullcontext()
    from nndl_fast.progress import epoch_progress
    return epoch_progress(epochs)


def _start_reading(args):
    """Read the data files in a thread while the training modules import."""
    import threading
    from nndl_fast import mnist_loader
    args.reading = threading.Thread(target=mnist_loader.read_ahead, args=(args.data,),
                                    daemon=True)
    args.reading.start()


def _finish_reading(args):
    if getattr(args, "reading", None) is not None:
        args.reading.join()


def _load_lists(args):
    from nndl_fast import mnist_loader
    t0 = time.perf_counter()
    _finish_reading(args)
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper(args.data)
    if args.train_size is not None:
        training_data = training_data[:args.train_size]
    if args.eval_size is not None:
        validation_data = validation_data[:args.eval_size]
        test_data = test_data[:args.eval_size]
    print("Loaded MNIST in %.2f s: %d training, %d test images"
          % (time.perf_counter() - t0, len(training_data), len(test_data)))
    return training_data, validation_data, test_data


def _train_network(args, sizes):
    import nndl_fast
    from nndl_fast import network
    training_data, _, test_data = _load_lists(args)
    net = network.Network(sizes, dtype=args.dtype)
    net._print_epoch_time = True
    threads = net._epoch_threads(args.threads) if nndl_fast._config.use_compiled() else 1
    print("network.Network(%s), %d epochs, mini-batch %d, eta %g, %s, %d training thread(s)"
          % (sizes, args.epochs, args.batch, args.eta, args.dtype, threads))
    t0 = time.perf_counter()
    with _training_block(args, args.epochs):
        net.SGD(training_data, args.epochs, args.batch, args.eta, test_data=test_data)
    total = time.perf_counter() - t0
    print("Trained in %.2f s (%.3f s per epoch including evaluation)"
          % (total, total / max(args.epochs, 1)))
    if args.save:
        net.save(args.save)
        print("Saved to %s (the book's JSON; network.load and network2.load read it)"
              % args.save)
    if args.plot:
        from nndl_fast.plot import plot_misclassified
        fig = plot_misclassified(net, test_data, args.plot)
        print("Wrote %s (%d misclassified test images)" % (args.plot, fig.misclassified))


def _train_network2(args, sizes):
    import nndl_fast
    network2 = nndl_fast._config.import_optional("network2")
    kwargs = {"dtype": args.dtype}
    if network2 is None:
        from nndl_fast.reference import network2
        kwargs = {}
        print("note: nndl_fast.network2 is not present; training with the pure-NumPy "
              "reference (nndl_fast.reference.network2)", file=sys.stderr)
    training_data, validation_data, _ = _load_lists(args)
    net = network2.Network(sizes, cost=network2.CrossEntropyCost,
                           activation_fn=args.activation, **kwargs)
    act = "" if args.activation == "sigmoid" else ", activation_fn=%s" % args.activation
    print("%s.Network(%s, cost=CrossEntropyCost%s), %d epochs, mini-batch %d, eta %g, "
          "lmbda %g, %d thread(s)" % (network2.__name__.split(".")[-1], sizes, act,
                                      args.epochs, args.batch, args.eta, args.lmbda,
                                      nndl_fast.get_num_threads()))
    t0 = time.perf_counter()
    with _training_block(args, args.epochs):
        monitors = net.SGD(training_data, args.epochs, args.batch, args.eta, lmbda=args.lmbda,
                           evaluation_data=validation_data,
                           monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                           monitor_training_cost=True, monitor_training_accuracy=True)
    total = time.perf_counter() - t0
    print("Trained in %.2f s (%.3f s per epoch including monitoring)"
          % (total, total / max(args.epochs, 1)))
    if args.save:
        net.save(args.save)
        print("Saved to %s" % args.save)
    if args.plot:
        from nndl_fast.plot import plot_monitoring
        plot_monitoring(*monitors, filename=args.plot, n_evaluation=len(validation_data),
                        n_training=len(training_data),
                        title="network2 %s, lmbda %g, eta %g" % (sizes, args.lmbda, args.eta))
        print("Wrote %s" % args.plot)


def _train_network3(args):
    import tempfile
    from nndl_fast import _config, expand_mnist, mnist_loader
    from nndl_fast.reproduce import network3_layers
    network3 = _config.import_optional("network3")
    if network3 is None:
        print("nndl_fast.network3 is not present in this installation: chapter-6 "
              "training is not available", file=sys.stderr)
        return 2
    _finish_reading(args)
    tr, va, te = mnist_loader.load_data(args.data)
    if args.train_size is not None:
        tr = (tr[0][:args.train_size], tr[1][:args.train_size])
    if args.eval_size is not None:
        va = (va[0][:args.eval_size], va[1][:args.eval_size])
        te = (te[0][:args.eval_size], te[1][:args.eval_size])
    if args.train_size is not None or args.eval_size is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "subset.pkl.gz")
            expand_mnist.save(path, tr, va, te, compresslevel=1)
            training, validation, test = network3.load_data_shared(path)
    elif args.data is not None:
        training, validation, test = network3.load_data_shared(args.data)
    else:
        training, validation, test = network3.load_data_shared()
    net = network3.Network(network3_layers(args.preset, args.batch, network3), args.batch)
    print("network3 %s: %d training images, %d epochs, mini-batch %d, eta %g, lmbda %g"
          % (args.preset, tr[0].shape[0], args.epochs, args.batch, args.eta, args.lmbda))
    t0 = time.perf_counter()
    with _training_block(args, args.epochs):
        net.SGD(training, args.epochs, args.batch, args.eta, validation, test,
                lmbda=args.lmbda)
    total = time.perf_counter() - t0
    print("Trained in %.2f s (%.3f s per epoch including evaluation)"
          % (total, total / max(args.epochs, 1)))
    if args.save:
        net.save(args.save)
        print("Saved to %s (.npz archive; network3.load reads it)" % args.save)
    if args.plot:
        from nndl_fast import plot
        if any(isinstance(layer, network3.ConvPoolLayer) for layer in net.layers):
            plot.plot_filters(net, args.plot)
        else:
            plot.plot_misclassified(net, te, args.plot)
        print("Wrote %s" % args.plot)
    return 0


def _cmd_train(args):
    import nndl_fast
    args = _resolve_train_args(args)
    if args.progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            raise SystemExit("error: --progress needs tqdm: pip install tqdm "
                             "(or nndl_fast[progress])")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("error: --plot needs matplotlib: pip install matplotlib "
                             "(or nndl_fast[plot])")
    if args.threads is not None:
        nndl_fast.set_num_threads(args.threads)
    if args.seed is not None:
        np.random.seed(args.seed)
        random.seed(args.seed)
    _start_reading(args)
    if args.net == "network3":
        return _train_network3(args)
    sizes = args.sizes if isinstance(args.sizes, list) else _layer_sizes(args.sizes)
    if args.net == "network2":
        _train_network2(args, sizes)
    else:
        _train_network(args, sizes)
    return 0


def _seed_list(text):
    """argparse type of --seeds: comma-separated integers >= 0 (or a range a-b)."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                "expected comma-separated seeds such as 0,1,2 or a range such as 0-4, got %r"
                % text) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            "expected distinct seeds >= 0 such as 0,1,2 or 0-4, got %r" % text)
    return seeds


def _cmd_reproduce(args):
    from nndl_fast import reproduce
    rows = None if args.rows is None else [r.strip() for r in args.rows.split(",") if r.strip()]
    if args.list:
        spec = reproduce.QUICK if args.quick else reproduce.FULL
        out = args.out or reproduce.default_out_dir(spec)
        for line in reproduce.describe_rows(args.chapter, rows, args.seeds, spec):
            print(line)
        tasks = reproduce.plan(args.chapter, out, spec, args.seeds, rows)
        print("%d run(s) to do in %s%s" % (len(tasks), out, ":" if tasks else ""))
        for task in tasks:
            print("  " + task.key)
        return 0
    if args.threads is not None:
        import nndl_fast
        nndl_fast.set_num_threads(args.threads)

    def log(line):
        print(line, flush=True)
    reproduce.reproduce(args.chapter, out_dir=args.out, quick=args.quick, seeds=args.seeds,
                        rows=rows, threads=args.threads, log=log, scheduler=args.scheduler)
    return 0


def _cmd_export(args):
    from nndl_fast import export
    if not (args.onnx or args.torch or args.safetensors):
        raise SystemExit("error: export needs at least one of --onnx, --torch, --safetensors")
    net = export.load_any(args.net_file)
    config, _ = export.describe(net)
    specs = export.layer_specs(config)
    print("Loaded %s from %s: %s" % (config["format"].split(".")[-1], args.net_file,
                                     ", ".join(_spec_text(s) for s in specs)))
    if args.onnx:
        export.to_onnx(net, args.onnx)
        print("Wrote %s (ONNX opset %d: input float32 (N, %d), output probabilities (N, %d))"
              % (args.onnx, export.OPSET, _net_inputs(specs), specs[-1]["n_out"]))
    if args.torch:
        export.save_torch(net, args.torch)
        print("Wrote %s (torch.load(path, weights_only=True): config and state_dict; "
              "nndl_fast.export.load_torch makes the module)" % args.torch)
    if args.safetensors:
        export.save_safetensors(net, args.safetensors)
        print("Wrote %s (safetensors state_dict of the to_torch module)" % args.safetensors)
    return 0


def _net_inputs(specs):
    first = specs[0]
    return first["n_in"] if first["kind"] == "dense" else int(np.prod(first["in_shape"]))


def _spec_text(spec):
    if spec["kind"] == "conv":
        return "conv %dx%d x%d + max-pool %dx%d %s" % (spec["kernel"] + (spec["filters"],)
                                                       + spec["poolsize"]
                                                       + (spec["activation"],))
    text = "%d->%d %s" % (spec["n_in"], spec["n_out"], spec["activation"])
    return text + (" (dropout %g)" % spec["p_dropout"] if spec["p_dropout"] else "")


def _bench_dir():
    """The source checkout's ``bench/`` folder: next to this package, else in the
    current directory; None where neither has one (an installed wheel)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (os.path.join(here, "bench"), os.path.abspath("bench")):
        if os.path.isfile(os.path.join(folder, "suite.py")):
            return folder
    return None


def _cmd_bench(args):
    import runpy
    folder = _bench_dir()
    if folder is None:
        print("python -m nndl_fast bench: the benchmarks are not part of the installed "
              "package; they run from a source checkout (its bench/ folder). From the "
              "checkout's root: pip install -e . && python -m nndl_fast bench %s"
              % " ".join([args.what] + args.rest), file=sys.stderr)
        return 2
    sys.path.insert(0, folder)         # the scripts import the suite module from there
    script = os.path.join(folder, "bench_%s.py" % args.what)
    if args.what != "suite" and os.path.exists(script):
        sys.argv = [script] + args.rest
        runpy.run_path(script, run_name="__main__")
        return 0
    import suite
    return suite.main([args.what] + args.rest)


def _cmd_baseline(args):
    from nndl_fast import baselines
    data = None
    if args.data is not None:
        from nndl_fast import mnist_loader
        tr, _, te = mnist_loader.load_data(args.data)
        data = (tr, te)
    t0 = time.perf_counter()
    if args.method == "darkness":
        correct, n = baselines.average_darkness(*(data or ()))
        name = "Average darkness"
    else:
        correct, n = baselines.svm_baseline(*(data or ()), train_size=args.train_size,
                                            test_size=args.test_size, seed=args.seed)
        name = "svm.SVC() trained on %s images" % (
            "all training" if args.train_size is None else "%d" % args.train_size)
    print("%s: %d of %d test images correct (%.2f%%) in %.2f s"
          % (name, correct, n, 100.0 * correct / n, time.perf_counter() - t0))
    return 0


def _cmd_expand(args):
    from nndl_fast import expand_mnist
    expand_mnist.main(args.out, seed=args.seed, shuffle=not args.no_shuffle, data=args.data,
                      compresslevel=args.compresslevel)
    return 0


def _cmd_vanishing(args):
    from nndl_fast import mnist_loader, vanishing
    if args.seed is not None:
        random.seed(args.seed)
    sizes = args.sizes
    training_data = list(mnist_loader.load_data_wrapper(args.data)[0][:args.train_size])
    net = vanishing.deep_network(sizes, seed=args.seed)
    history = vanishing.track_speed_of_learning(net, training_data, args.epochs, args.batch,
                                                args.eta)
    print("Speed of learning ||dC/db|| per layer, averaged over %d training images"
          % len(training_data))
    print("epoch  " + "  ".join("layer %-5d" % (l + 1) for l in range(history.shape[1])))
    for e, row in enumerate(history):
        print("%5d  " % e + "  ".join("%11.4e" % v for v in row))
    if args.out:
        vanishing.plot_speed_of_learning(history, args.out)
        print("Wrote %s" % args.out)
    return 0


def _cmd_figures(args):
    from nndl_fast import figures
    t0 = time.perf_counter()
    written = figures.make_figures(args.chapter, args.out, quick=args.quick, seed=args.seed)
    print("Wrote %d figures to %s in %.1f s" % (len(written), args.out,
                                                 time.perf_counter() - t0))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m nndl_fast",
                                     description="The book's networks, compiled.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print version, OpenMP, threads and BLAS")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train one of the book's networks on MNIST (default: "
                       "chapter 1's, the main job)")
    p.add_argument("--net", choices=["network", "network2", "network3"], default=None,
                   help="which chapter's module (default network, or the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="one of the book's runs by name (default: ch1, ch3 or ch6-conv1 "
                   "for --net network, network2, network3); other options override it")
    p.add_argument("--sizes", type=_layer_sizes, default=None,
                   help="layer sizes (default 784,30,10)")
    p.add_argument("--epochs", type=_non_negative_int, default=None)
    p.add_argument("--batch", type=_positive_int, default=None, help="mini-batch size")
    p.add_argument("--eta", type=_finite_float, default=None, help="learning rate")
    p.add_argument("--lmbda", type=_finite_float, default=None,
                   help="L2 regularisation (network2, network3)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--activation", choices=["sigmoid", "tanh", "ReLU", "linear"],
                   default="sigmoid", help="the hidden layers' activation (network2; "
                   "default sigmoid, the book's)")
    p.add_argument("--threads", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None,
                   help="train on the first N training images (quick runs)")
    p.add_argument("--eval-size", type=int, default=None,
                   help="evaluate on the first N validation/test images")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained network: the book's JSON (network, network2) or "
                   "an .npz archive (network3); 'export' converts it to ONNX or PyTorch")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="plot: misclassified digits (network), monitoring curves "
                   "(network2), learned filters (network3); needs matplotlib")
    p.add_argument("--progress", action="store_true",
                   help="a progress bar over epochs on stderr (needs tqdm)")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sweep", help="chapter 3's hyper-parameter search: one network2 "
                       "network per setting, on local threads or a Dask cluster")
    p.add_argument("--eta", type=_number_list(float, ("numbers", "0.1,0.5,2.5")),
                   default=[0.5], help="learning rates, comma-separated (default 0.5)")
    p.add_argument("--lmbda", type=_number_list(float, ("numbers", "0,1,5")), default=[0.0],
                   help="L2 regularisation values (default 0)")
    p.add_argument("--mini-batch-size", type=_number_list(int, ("integers", "10,100")),
                   default=[10], help="mini-batch sizes (default 10)")
    p.add_argument("--seeds", type=_number_list(int, ("integers", "0,1,2")), default=[0],
                   help="seeds, one run per seed and setting (default 0)")
    p.add_argument("--sizes", type=_layer_sizes, default=[784, 30, 10],
                   help="layer sizes (default 784,30,10)")
    p.add_argument("--cost", choices=["cross-entropy", "quadratic", "log-likelihood"],
                   default="cross-entropy")
    p.add_argument("--epochs", type=_non_negative_int, default=30)
    p.add_argument("--out", default="sweep.jsonl", metavar="PATH",
                   help="JSON-lines file the results are appended to as they finish; "
                   "settings already in it are skipped (default sweep.jsonl)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a Dask scheduler such as tcp://host:8786 (needs "
                   "'nndl_fast[dask]'); default: local threads")
    p.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="runs at once on local threads (default 1)")
    p.add_argument("--threads-per-run", type=_positive_int, default=None,
                   help="threads of each run's kernels (default: the cores shared among "
                   "the runs of a process; 1 per task slot on Dask workers)")
    p.add_argument("--train-size", type=_positive_int, default=None,
                   help="train on the first N training images (quick runs)")
    p.add_argument("--eval-size", type=_positive_int, default=None,
                   help="evaluate on the first N validation images")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("reproduce", help="run the book's reported results again (chapter 1, "
                       "3 or 6, or all): results JSON, Markdown table, plots; resumable")
    p.add_argument("chapter", choices=["ch1", "ch3", "ch6", "all"])
    p.add_argument("--quick", action="store_true",
                   help="every row on small data and 2 epochs (a check in seconds)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results directory (default nndl_fast_results, or "
                   "nndl_fast_results_quick with --quick); a rerun skips finished runs")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="seeds for every row, e.g. 0,1,2 or 0-4 (default: each row's own: "
                   "three for chapter 1's best of three, five dropout nets for the ensemble)")
    p.add_argument("--rows", default=None, metavar="NAME,...",
                   help="only these rows (see --list), e.g. dropout,ensemble")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of the compiled kernels (default: all available CPUs)")
    p.add_argument("--list", action="store_true",
                   help="list the rows and the runs left to do, and stop")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the runs on a Dask cluster, e.g. tcp://host:8786 (needs "
                   "'nndl_fast[dask]' and --out on a file system the workers share)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("export", help="convert a saved network (any chapter's) to ONNX, "
                       "PyTorch or safetensors")
    p.add_argument("net_file", metavar="NET_FILE",
                   help="a file written by save (the book's JSON, network3's .npz), "
                   "save_safetensors or save_torch")
    p.add_argument("--onnx", default=None, metavar="OUT.onnx",
                   help="an ONNX model (needs onnx: pip install 'nndl_fast[export]')")
    p.add_argument("--torch", default=None, metavar="OUT.pt",
                   help="a torch.save file of config and state_dict (needs torch)")
    p.add_argument("--safetensors", default=None, metavar="OUT.safetensors",
                   help="the parameters as safetensors (needs safetensors)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("baseline", help="chapter 1's baselines: average darkness or an SVM")
    p.add_argument("method", choices=["darkness", "svm"])
    p.add_argument("--train-size", type=_positive_int, default=None,
                   help="svm: fit on a random subset of this many training images "
                   "(all 50,000 take minutes)")
    p.add_argument("--test-size", type=_positive_int, default=None,
                   help="svm: score on a random subset of this many test images")
    p.add_argument("--seed", type=int, default=0, help="svm: seed of the subsets")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("expand", help="write the 250,000-image expanded MNIST training set "
                       "(chapter 6)")
    p.add_argument("--out", default="mnist_expanded.pkl.gz",
                   help="output file, a gzipped pickle (default mnist_expanded.pkl.gz)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.add_argument("--no-shuffle", action="store_true",
                   help="keep each original next to its four shifts")
    p.add_argument("--compresslevel", type=int, default=6, help="gzip level 0-9 (default 6)")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_expand)

    p = sub.add_parser("vanishing", help="per-layer speed of learning of a deep sigmoid "
                       "network (chapter 5)")
    p.add_argument("--sizes", type=_layer_sizes, default=[784, 30, 30, 30, 30, 10])
    p.add_argument("--epochs", type=_non_negative_int, default=30)
    p.add_argument("--batch", type=_positive_int, default=10, help="mini-batch size")
    p.add_argument("--eta", type=_finite_float, default=0.1, help="learning rate")
    p.add_argument("--train-size", type=_positive_int, default=1000,
                   help="train on, and average gradients over, this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also plot to this PNG (needs matplotlib)")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_vanishing)

    p = sub.add_parser("figures", help="the book's figures from its own experiments, as PNGs "
                       "(chapters 1, 3, 5 and 6; needs matplotlib)")
    p.add_argument("chapter", choices=["ch1", "ch3", "ch5", "ch6", "all"])
    p.add_argument("--out", default="figures", help="output folder (default ./figures)")
    p.add_argument("--quick", action="store_true",
                   help="a few hundred images for a few epochs: seconds, not the book's curves")
    p.add_argument("--seed", type=_non_negative_int, default=12345678,
                   help="seeds random and np.random before each run (default: the book's "
                   "figure scripts' 12345678)")
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser("bench", help="run the benchmark suite, or one benchmark by name "
                       "(from a source checkout: bench/)",
                       description="Benchmarks, from a source checkout's bench/ folder (an "
                       "installed wheel does not ship them). 'bench NAME --help' lists a "
                       "benchmark's options.")
    p.add_argument("what", nargs="?", default="suite",
                   help="suite (default), network, network2, network3, expand_mnist, "
                   "gradient_check, kernel_paths, ...: bench/bench_NAME.py")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1].startswith("-") \
            and argv[1] not in ("-h", "--help"):
        # Options straight after bench belong to the suite (``bench --quick``).
        argv = ["bench", "suite"] + argv[1:]
    from nndl_fast.scaleout import TaskError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("%s: interrupted" % parser.prog, file=sys.stderr)
        return 130
    except (ImportError, ValueError, TypeError, OSError, MemoryError, TaskError) as exc:
        # Bad data files, sizes or options, an unbuilt checkout: one line, not a
        # traceback.
        print("%s %s: error: %s" % (parser.prog, args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
