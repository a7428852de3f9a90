"""The ``fennec`` command.

``fennec info`` prints what the compiled core was built with. ``fennec demo``
runs the ranking step on an embedded, self-contained zoo: it draws model
vectors and a task vector, ranks every model with the fused top-k kernel, and
checks the answer against numpy, so a fresh install shows the core working
without any data or server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import __version__, kernels


def _info(args: argparse.Namespace) -> int:
    info = kernels.build_info()
    info["version"] = __version__
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:18s} {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    dtype = np.float16 if args.fp16 else np.float32
    model_vectors = rng.standard_normal((args.models, args.dim), dtype=np.float32).astype(dtype)
    task_vector = rng.standard_normal(args.dim, dtype=np.float32)
    kernels.topk(model_vectors, task_vector, args.k)  # warm the worker threads
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        scores, indices = kernels.topk(model_vectors, task_vector, args.k)
        times.append(time.perf_counter() - start)
    exact = model_vectors.astype(np.float32) @ task_vector
    numpy_top = np.argsort(-exact, kind="stable")[: args.k]
    agree = bool(np.allclose(np.sort(exact[indices]), np.sort(exact[numpy_top]), rtol=1e-4))
    result = {
        "models": args.models,
        "dim": args.dim,
        "storage": np.dtype(dtype).name,
        "k": args.k,
        "median_ms": float(np.median(times) * 1e3),
        "simd_level": kernels.build_info()["simd_level"],
        "matches_numpy": agree,
        "top": [{"rank": r + 1, "model": int(i), "score": float(s)}
                for r, (i, s) in enumerate(zip(indices, scores))],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"ranked {args.models:,} models (d={args.dim}, {result['storage']}) in "
              f"{result['median_ms']:.2f} ms median over {args.repeat} runs "
              f"[{result['simd_level']}]; matches numpy: {agree}")
        print(f"{'rank':>4}  {'model':>9}  {'score':>9}")
        for row in result["top"]:
            print(f"{row['rank']:>4}  {row['model']:>9}  {row['score']:>9.4f}")
    return 0 if agree else 1


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_table, load_eval_data

    data = load_eval_data(
        args.history, wide=args.wide, model_col=args.model_col, task_col=args.task_col,
        score_col=args.score_col, models_path=args.models, model_key=args.model_key,
        type_col=args.type_col, tasks_path=args.tasks, task_key=args.task_key,
        task_distance_path=args.task_distance, forward_scores_path=args.forward_scores,
        exclude_tasks=args.exclude_task or ())
    result = evaluate(data, args.protocol, shots=args.shots, probe=args.probe, seed=args.seed)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _key_values(items, what, number=True):
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        if number:
            try:
                out[key] = float(value)
            except ValueError:
                raise ValueError(f"{what}: {key} must be a number, got {value!r}") from None
        else:
            out[key] = value
    return out


def _zoo(args: argparse.Namespace) -> int:
    from .recommend import fit
    from .zoo import Zoo

    if args.zoo_command == "create":
        Zoo.create(args.path).close()
        print(f"created an empty zoo at {args.path}")
        return 0
    with Zoo.open(args.path) as zoo:
        if args.zoo_command == "import":
            history = zoo.import_history_csv(args.history, wide=args.wide, strict=args.strict,
                                             model_col=args.model_col, task_col=args.task_col,
                                             score_col=args.score_col)
            print(f"imported {len(history)} results: {history.n_models} models x {history.n_tasks} tasks")
        elif args.zoo_command == "fit":
            summary = fit(zoo, seed=args.seed)
            print(json.dumps(summary, indent=1) if args.json else
                  f"fitted version {summary['version']}: {summary['n_models']} models, "
                  f"{summary['n_tasks']} tasks, side information: {summary['ridge'] is not None}")
        elif args.zoo_command == "export":
            zoo.export_history_csv(args.out, wide=args.wide)
            print(f"wrote {args.out}")
        elif args.zoo_command == "info":
            history = zoo.history()
            info = {"path": str(zoo.path), "models": len(zoo.models()), "tasks": len(zoo.tasks()),
                    "results": len(history), "fitted_version": zoo.fitted_version()}
            print(json.dumps(info, indent=1) if args.json else
                  "\n".join(f"{k:15s} {v}" for k, v in info.items()))
    return 0


def _rank(args: argparse.Namespace) -> int:
    from .recommend import rank
    from .zoo import Zoo

    with Zoo.open(args.zoo) as zoo:
        where = _key_values(args.where, "--where", number=False)
        ranking = rank(zoo, _key_values(args.task, "--task") or None, k=args.k, where=where or None,
                       observed=_key_values(args.observed, "--observed") or None)
    print(json.dumps(ranking.to_dict(), indent=1) if args.json else ranking)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fennec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"fennec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="what the compiled core was built with")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)

    demo = sub.add_parser("demo", help="rank an embedded synthetic zoo with the fused top-k kernel")
    demo.add_argument("--models", type=int, default=1_000_000, help="models in the zoo (default 1,000,000)")
    demo.add_argument("--dim", type=int, default=64, help="transfer-space dimension (default 64)")
    demo.add_argument("--k", type=int, default=10, help="models to return (default 10)")
    demo.add_argument("--fp16", action="store_true", help="store model vectors as float16")
    demo.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(run=_demo)

    ev = sub.add_parser(
        "eval", help="evaluate recommendation on a history table, with baselines in the same run",
        description="Holds out tasks (lodo, kshot) or models (cold-model) and scores each method's "
                    "ranking: weighted Kendall tau, Kendall tau, Pearson, top-1 regret, top-3 hit.")
    ev.add_argument("--history", required=True, help="past results: long CSV (model,task,score) or --wide")
    ev.add_argument("--wide", action="store_true", help="the history is a model x task table")
    ev.add_argument("--model-col", default="model", help="long form: model column (default model)")
    ev.add_argument("--task-col", default="task", help="long form: task column (default task)")
    ev.add_argument("--score-col", default="score", help="long form: score column (default score)")
    ev.add_argument("--models", help="CSV of model side information, keyed by --model-key")
    ev.add_argument("--model-key", default="model")
    ev.add_argument("--type-col", help="model-type column for the type_mean baseline "
                                       "(default: model_type, family or architecture when present)")
    ev.add_argument("--tasks", help="CSV of task side information, keyed by --task-key")
    ev.add_argument("--task-key", default="task")
    ev.add_argument("--task-distance", help="square CSV of distances between tasks")
    ev.add_argument("--forward-scores", help="long CSV of forward-pass scores (model, task, method, score)")
    ev.add_argument("--exclude-task", action="append", help="leave this task out (repeatable)")
    ev.add_argument("--protocol", choices=["lodo", "kshot", "cold-model"], default="lodo")
    ev.add_argument("--shots", type=int, default=3, help="kshot: scores known on the new task")
    ev.add_argument("--probe", choices=["top", "random"], default="top",
                    help="kshot: which models were fine-tuned (the method's own top, or random)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(run=_eval)

    zoo = sub.add_parser("zoo", help="create, fill, fit and inspect a zoo")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    for name, text in (("create", "a new empty zoo"), ("info", "what the zoo holds"),
                       ("import", "import past results from a CSV"), ("fit", "fit the transfer space"),
                       ("export", "export the history to a CSV")):
        command = zoo_sub.add_parser(name, help=text)
        command.add_argument("path", help="the zoo folder")
        command.set_defaults(run=_zoo)
        if name == "import":
            command.add_argument("--history", required=True)
            command.add_argument("--wide", action="store_true")
            command.add_argument("--strict", action="store_true", help="duplicates are errors")
            command.add_argument("--model-col", default="model")
            command.add_argument("--task-col", default="task")
            command.add_argument("--score-col", default="score")
        if name == "fit":
            command.add_argument("--seed", type=int, default=0)
        if name == "export":
            command.add_argument("--out", required=True)
            command.add_argument("--wide", action="store_true")
        if name in ("fit", "info"):
            command.add_argument("--json", action="store_true")

    rk = sub.add_parser("rank", help="rank a fitted zoo's models for a new task")
    rk.add_argument("--zoo", required=True)
    rk.add_argument("--k", type=int, default=10)
    rk.add_argument("--task", action="append", metavar="NAME=VALUE",
                    help="task feature, e.g. n_train=5000 (repeatable); none: rank by the prior")
    rk.add_argument("--observed", action="append", metavar="MODEL=SCORE",
                    help="a score already measured on the new task (repeatable)")
    rk.add_argument("--where", action="append", metavar="FIELD=VALUE", help="keep models whose metadata match")
    rk.add_argument("--json", action="store_true")
    rk.set_defaults(run=_rank)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (TypeError, ValueError, OSError) as error:
        print(f"fennec: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
