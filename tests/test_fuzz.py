"""A fuzz pass over everything that takes user data: each HTTP route of ``fennec serve`` (a real
server process) and the command-line entries (rank, add-model, add-history, import).

Generated ids (control characters, NUL, lone surrogates, very long), task features (NaN,
inf, huge, wrong types and lengths), JSON of any shape, CSV rows and image bodies (valid,
damaged, random bytes, bombs). Nothing may answer 500 or end in a traceback, and the server's
resident memory after the pass stays within 1.5 times its memory before it. Deterministic
(derandomized) and bounded: a few hundred examples in all.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import urllib.parse

import numpy as np
import pytest

pytest.importorskip("hypothesis")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import fennec  # noqa: E402
from fennec.benchmarks.server import ServerProcess, rss_bytes  # noqa: E402
from fennec.cli import cli  # noqa: E402
from fennec.history import History  # noqa: E402

TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
DESCRIPTOR_WIDTH = 2 * 1280 + 6  # the mobilenet_v2_112 proxy's descriptors


def fuzz(examples: int):  # noqa: ANN201 - a hypothesis settings object
    """A deterministic, time-bounded hypothesis pass of ``examples`` examples."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def build_zoo(path):
    """A small zoo fitted with task descriptors (so both named features and descriptors are
    taken), with metadata to filter on, named as made by the mobilenet_v2_112 proxy."""
    rng = np.random.default_rng(11)
    models, tasks = [f"m{i}" for i in range(24)], [f"t{j}" for j in range(8)]
    zoo = fennec.Zoo.create(path)
    try:
        zoo.add_models([{"id": m, "family": ("resnet", "vit", "swin")[i % 3], "n_params": float(10 ** (6 + i % 4)),
                         "license": "mit"} for i, m in enumerate(models)])
        zoo.add_tasks([{"id": t, "n_classes": int(rng.integers(2, 100)), "n_train": int(rng.integers(100, 10**5))}
                       for t in tasks])
        zoo.add_history(History.from_matrix(models, tasks, 70 + rng.normal(0, 3, (len(models), len(tasks)))))
        for t in tasks:
            zoo.set_task_descriptor(t, rng.normal(0, 1, DESCRIPTOR_WIDTH))
        zoo.set_setting("proxy", "mobilenet_v2_112")
        fennec.fit(zoo)
    finally:
        zoo.close()
    return path


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("fuzzed") / "zoo")


@pytest.fixture(scope="module")
def served(zoo_path):
    """The server, warmed up on every route (the proxy loaded by one image ranking), and its
    resident memory then."""
    with ServerProcess(zoo_path, token=TOKEN) as running, httpx.Client(base_url=running.url, timeout=120) as client:
        assert client.post("/rank", json={"task": {"n_classes": 10, "n_train": 1000}}).status_code == 200
        images = client.post("/rank/images", json={"images": [{"label": "a", "data": _b64(_image("PNG", 16, 12))},
                                                              {"label": "b", "data": _b64(_image("JPEG", 9, 20))}]})
        # 501 only where the zoo's proxy cannot load on this machine (not installed)
        assert images.status_code == 200 or (images.status_code == 501 and "cannot be loaded here"
                                             in images.json()["detail"]), images.text
        for path in ("/healthz", "/metrics", "/models", "/models/m1"):
            assert client.get(path).status_code == 200
        assert client.post("/history", json={"rows": [{"model": "m1", "task": "t1", "score": 71.0}], "replace": True},
                           headers=AUTH).status_code == 200
        state = {"client": client, "server": running, "images_status": images.status_code,
                 "rss_start": rss_bytes(running.pid)}
        yield state
        assert running.process is not None and running.process.poll() is None, running.log()[-3000:]


def _image(fmt: str, width: int, height: int, seed: int = 0, mode: str = "RGB") -> bytes:
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except OSError:  # a mode the format cannot hold (P or 1 as JPEG...): its RGB image then
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dumps(value: object) -> bytes:
    """JSON as a hostile client may send it: NaN and Infinity literals, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def _answered(response: httpx.Response, what: str, allowed: frozenset[int] = frozenset()) -> None:
    assert response.status_code < 500 or response.status_code in allowed, (
        f"{what}: {response.status_code} {response.text[:1000]}")
    if response.status_code >= 400:
        detail = response.json().get("detail")
        assert detail, f"{what}: {response.status_code} without a detail"


# -- what is generated ---------------------------------------------------------------

WEIRD_IDS = ["mobilenet_v2\x00", "m1", "m1 ", " m1", "\ud800", "x\udfff", "\udcff", "a" * 5000, "", " ", "\n",
             "\t\r", "../../etc/passwd", "m1/../m2", "\u202em1", "\U0001f600", "NULL", "'; DROP TABLE models; --",
             "%00", "m1\u0085", "\ufeffm1", "\x7f"]
# Most values are plausible, so that requests get past validation into the zoo and the
# ranking; the rest are hostile.
plain_ids = st.one_of(st.sampled_from(["m1", "m2", "m23", "t1", "t7"]), st.from_regex(r"[a-z][a-z0-9_./-]{0,12}",
                                                                                         fullmatch=True))
ids = st.one_of(plain_ids, plain_ids, st.sampled_from(WEIRD_IDS), st.text(max_size=30),
                st.text(alphabet=st.characters(max_codepoint=0x9f), max_size=6))
finite = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 10**6))
numbers = st.one_of(finite, finite, finite, st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10**30, 10**30),
                    st.sampled_from([0, -1, 1, 1e308, -1e308, 5e-324, 2**63, 2**64, 1e-300, 10**400]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=10)
feature_names = st.one_of(st.sampled_from(["n_classes", "n_train", "descriptor"]), st.text(max_size=10))
descriptors = st.builds(lambda scale, n: [scale] * n, numbers, st.sampled_from([DESCRIPTOR_WIDTH, DESCRIPTOR_WIDTH - 1,
                                                                                  0, 1, 7]))
tasks = st.one_of(st.fixed_dictionaries({"n_classes": finite, "n_train": finite}),
                  st.dictionaries(feature_names, st.one_of(numbers, st.lists(numbers, max_size=4), descriptors,
                                                           json_values), max_size=4),
                  st.fixed_dictionaries({"n_classes": numbers, "n_train": numbers},
                                        optional={"descriptor": descriptors}),
                  st.lists(numbers, max_size=4), json_values)
comparisons = st.fixed_dictionaries({"op": st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "~", ""]),
                                     "value": st.one_of(numbers, st.text(max_size=6), json_values)})
wheres = st.dictionaries(st.one_of(st.sampled_from(["family", "n_params", "license", "id", "fitted"]),
                                   st.text(max_size=8)),
                         st.one_of(scalars, st.lists(scalars, max_size=3), comparisons, json_values), max_size=3)
ks = st.one_of(st.integers(1, 30), st.integers(1, 30), st.integers(-3, 1500), st.sampled_from([10**30, "7", True, 2.5]),
               json_values)


def _optional(**fields):
    return st.fixed_dictionaries({}, optional=fields)


plausible_wheres = st.dictionaries(st.sampled_from(["family", "n_params", "license"]), st.one_of(
    st.sampled_from(["vit", "resnet", "mit", "gpl"]), st.lists(st.sampled_from(["vit", "swin", "x"]), max_size=3),
    st.fixed_dictionaries({"op": st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), "value": finite})), max_size=2)
plausible_rank = _optional(task=st.one_of(
    st.fixed_dictionaries({"n_classes": finite, "n_train": finite}, optional={"descriptor": descriptors}),
    st.lists(finite, min_size=1, max_size=3)), observed=st.dictionaries(plain_ids, finite, max_size=3),
    where=plausible_wheres, k=st.integers(1, 40))
rank_bodies = st.one_of(plausible_rank, plausible_rank, _optional(
    task=tasks, observed=st.dictionaries(ids, st.one_of(numbers, json_values), max_size=3), where=wheres, k=ks,
    extra=json_values))
model_rows = st.fixed_dictionaries({"id": ids}, optional={
    "architecture": st.one_of(ids, json_values), "family": ids, "n_params": numbers, "input_size": numbers,
    "license": ids, "source_dataset": ids, "notes": json_values, "fitted": json_values})
history_rows = st.fixed_dictionaries({"model": ids, "task": ids, "score": numbers}, optional={
    "kind": st.one_of(st.sampled_from(["finetune", "linear_probe"]), ids, json_values),
    "source": st.one_of(ids, json_values)})
flags = st.one_of(st.booleans(), st.booleans(), json_values)
models_bodies = st.one_of(st.fixed_dictionaries({"models": st.lists(model_rows, min_size=1, max_size=3)},
                                                optional={"replace": flags}),
                          _optional(models=st.one_of(st.lists(model_rows, max_size=3), json_values), replace=flags,
                                    other=json_values))
plausible_rows = st.fixed_dictionaries({"model": plain_ids, "task": plain_ids, "score": finite},
                                       optional={"kind": st.sampled_from(["finetune", "linear_probe"])})
history_bodies = st.one_of(st.fixed_dictionaries({"rows": st.lists(plausible_rows, min_size=1, max_size=3)},
                                                 optional={"replace": st.booleans(), "strict": st.booleans()}),
                           st.fixed_dictionaries({"rows": st.lists(history_rows, min_size=1, max_size=3)},
                                                 optional={"replace": flags, "strict": flags}),
                           _optional(rows=st.one_of(st.lists(history_rows, max_size=3), json_values), replace=flags,
                                     strict=flags, other=json_values))
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "DDS", "TGA"]


@st.composite
def image_data(draw) -> str:
    kind = draw(st.sampled_from(["valid", "valid", "valid", "damaged", "damaged", "bytes", "text", "bomb",
                                 "header"]))
    if kind == "text":
        return draw(st.one_of(st.text(max_size=20), st.sampled_from(["%%%", "====", "YQ", "\u00e9t\u00e9"])))
    if kind == "bytes":
        return _b64(draw(st.binary(max_size=200)))
    if kind == "header":  # a header field no decoder implements (DDS pixel-format flags)
        data = bytearray(_image("DDS", 4, 4))
        data[80:84] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
        return _b64(bytes(data))
    if kind == "bomb":  # a small file whose header claims many pixels
        side = draw(st.sampled_from([4097, 6000, 20000]))
        return _b64(_image("PNG", 1, 1)[:16] + side.to_bytes(4, "big") + side.to_bytes(4, "big")
                    + _image("PNG", 1, 1)[24:])
    data = _image(draw(st.sampled_from(FORMATS)), draw(st.integers(1, 40)), draw(st.integers(1, 40)),
                  seed=draw(st.integers(0, 3)), mode=draw(st.sampled_from(["RGB", "L", "P", "1"])))
    if kind == "damaged":
        raw = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(raw) - 1))
            choice = draw(st.integers(0, 2))
            if choice == 0:
                raw[at] = draw(st.integers(0, 255))
            elif choice == 1:
                del raw[at:at + draw(st.integers(1, 40))]
            else:
                raw = raw[:at]
            if not raw:
                raw = bytearray(b"\x89PNG")
        data = bytes(raw)
    return _b64(data)


labelled_images = st.lists(st.fixed_dictionaries({"label": st.one_of(st.sampled_from(["cat", "dog"]), ids),
                                                "data": image_data()}), min_size=1, max_size=4)
image_bodies = st.one_of(st.fixed_dictionaries({"images": labelled_images}, optional={"k": ks, "where": wheres}),
                         _optional(images=st.one_of(labelled_images,
                                          st.lists(st.fixed_dictionaries({}, optional={"label": json_values,
                                                                                       "data": json_values}),
                                                   max_size=2), json_values),
                                   where=wheres, k=ks))
raw_bodies = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"{", b"[" * 3000, b'{"a":' * 2000, b"\xff\xfe",
                                                                b"NaN", b"-Infinity", b"1e99999", b'"\\ud800"']))


def _body(structured):
    """The structured body, most of the time; else any JSON value, or raw bytes."""
    return st.one_of(structured.map(_dumps), structured.map(_dumps), structured.map(_dumps),
                     json_values.map(_dumps), raw_bodies)


# -- the HTTP routes ------------------------------------------------------------------


@fuzz(120)
@given(body=_body(rank_bodies))
def test_fuzz_post_rank(served, body):
    _answered(served["client"].post("/rank", content=body, headers={"Content-Type": "application/json"}),
              f"POST /rank {body[:300]!r}")


@fuzz(60)
@given(body=_body(image_bodies))
def test_fuzz_post_rank_images(served, body):
    # 501 only where the proxy cannot load on this machine (it is then 501 for every image body)
    allowed = frozenset({501}) if served["images_status"] == 501 else frozenset()
    _answered(served["client"].post("/rank/images", content=body, headers={"Content-Type": "application/json"}),
              f"POST /rank/images {body[:300]!r}", allowed)


@fuzz(100)
@given(data=st.lists(image_data(), min_size=1, max_size=3))
def test_fuzz_decode_images(data):
    """The decoder the image route uses, on its own: a refusal it names, or pixels."""
    from fennec.serve.images import decode_base64_images

    try:
        images = decode_base64_images(data, max_pixels=4096 * 4096)
    except (ValueError, OverflowError) as refusal:  # the route's 422 and 413
        assert str(refusal).startswith("images")
    else:
        assert all(image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 for image in images)


@fuzz(60)
@given(body=_body(models_bodies))
def test_fuzz_post_models(served, body):
    _answered(served["client"].post("/models", content=body, headers=AUTH), f"POST /models {body[:300]!r}")


@fuzz(60)
@given(body=_body(history_bodies))
def test_fuzz_post_history(served, body):
    _answered(served["client"].post("/history", content=body, headers=AUTH), f"POST /history {body[:300]!r}")


def _quoted(text: str) -> str:
    # Lone surrogates go out as the bytes a careless client would send (not UTF-8)
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


@fuzz(60)
@given(model=ids, offset=st.one_of(st.integers(-5, 10**25), st.text(max_size=8)),
       limit=st.one_of(st.integers(-5, 5000), st.text(max_size=8)), path=st.sampled_from(["/healthz", "/metrics"]))
def test_fuzz_get_routes(served, model, offset, limit, path):
    client = served["client"]
    _answered(client.get("/models/" + _quoted(model)), f"GET /models/{model[:100]!r}")
    _answered(client.get(f"/models?offset={_quoted(str(offset))}&limit={_quoted(str(limit))}"),
              f"GET /models offset={offset!r} limit={limit!r}")
    _answered(client.get(f"{path}?x={_quoted(model)}"), f"GET {path}")


# -- the command line ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_zoo(tmp_path_factory):
    """A zoo of its own for the command line's writes."""
    return build_zoo(tmp_path_factory.mktemp("fuzzed-cli") / "zoo")


def _argument(text: str) -> str:
    return text.replace("\x00", "")  # an argv cannot hold NUL; anything else can reach a command


def _ran(args: list[str], what: str) -> None:
    result = CliRunner().invoke(cli, [_argument(a) for a in args])
    assert result.exit_code in (0, 1, 2), f"{what}: exit {result.exit_code}\n{result.output[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output, f"{what}: {result.output[-2000:]}"


def _text_of(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, allow_nan=True)


@fuzz(40)
@given(features=st.dictionaries(feature_names, st.one_of(numbers, st.text(max_size=8)), max_size=3),
       where=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["family=vit,swin", "n_params<=1e7",
                                                                       "n_params>x", "=", "<=", "license!="])),
                      max_size=2),
       observed=st.dictionaries(ids, st.one_of(numbers, st.text(max_size=5)), max_size=2),
       k=st.one_of(st.integers(-2, 2000), st.text(max_size=4)), as_json=st.booleans(),
       descriptor=st.one_of(st.none(), json_values, descriptors))
def test_fuzz_cli_rank(cli_zoo, tmp_path_factory, features, where, observed, k, as_json, descriptor):
    args = ["rank", "--zoo", str(cli_zoo), "--k", str(k)]
    args += [a for name, value in features.items() for a in ("--task", f"{name}={_text_of(value)}")]
    args += [a for w in where for a in ("--where", w)]
    args += [a for model, value in observed.items() for a in ("--observed", f"{model}={_text_of(value)}")]
    if descriptor is not None:
        path = tmp_path_factory.mktemp("descriptor") / "d.json"
        path.write_bytes(_dumps(descriptor))
        args += ["--descriptor", str(path)]
    _ran(args + (["--json"] if as_json else []), f"fennec {args[:3] + args[4:]}"[:500])


@fuzz(40)
@given(model=ids, task=ids, score=st.one_of(numbers, st.text(max_size=6)), kind=st.one_of(st.none(), ids),
       fields=st.dictionaries(st.text(max_size=6), st.one_of(numbers, st.text(max_size=6)), max_size=2),
       n_params=st.one_of(st.none(), numbers, st.text(max_size=4)))
def test_fuzz_cli_add_history_and_add_model(cli_zoo, model, task, score, kind, fields, n_params):
    args = ["zoo", "add-history", str(cli_zoo), "--model", model, "--task", task, "--score", _text_of(score)]
    _ran(args + (["--kind", kind] if kind is not None else []), f"add-history {model[:50]!r} {task[:50]!r}")
    args = ["zoo", "add-model", str(cli_zoo), "--id", model]
    args += [a for key, value in fields.items() for a in ("--field", f"{key}={_text_of(value)}")]
    _ran(args + (["--n-params", _text_of(n_params)] if n_params is not None else []), f"add-model {model[:50]!r}")


cells = st.one_of(ids, numbers.map(str), st.sampled_from(['"', '""', '"a,b"', "\r\n", "nan", "inf", "-0", "1e309"]))


@fuzz(40)
@given(header=st.one_of(st.sampled_from(["model,task,score", "model,task,score,kind,source", "model,score",
                                         "score,task,model", "", "\ufeffmodel,task,score", "model,model,score"]),
                        st.lists(st.text(max_size=6), max_size=4).map(",".join)),
       rows=st.lists(st.lists(cells, max_size=5), max_size=6), wide=st.booleans(), strict=st.booleans(),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_fuzz_cli_import_csv_rows(cli_zoo, tmp_path_factory, header, rows, wide, strict, encoding):
    text = "\n".join([header, *(",".join(row) for row in rows)]) + "\n"
    path = tmp_path_factory.mktemp("csv") / "history.csv"
    path.write_bytes(text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace"))
    args = ["zoo", "import", str(cli_zoo), "--history", str(path)]
    _ran(args + (["--wide"] if wide else []) + (["--strict"] if strict else []), f"import {text[:300]!r}")


def test_fuzz_cli_zoo_still_fits_and_ranks_after_the_writes(cli_zoo):
    """What the command-line pass stored is fitted (or refused with a message) and ranked, and no
    two stored ids came out as one."""
    _ran(["zoo", "fit", str(cli_zoo)], "zoo fit after the fuzzed writes")
    with fennec.Zoo.open(cli_zoo) as zoo:
        arrays, _ = zoo.read_fitted()
        fitted = [str(m) for m in arrays["model_ids"]]
        stored = {m["id"] for m in zoo.models()}
    assert len(set(fitted)) == len(fitted), "two models were fitted under one id"
    assert set(fitted) <= stored, sorted(set(fitted) - stored)[:5]
    _ran(["rank", "--zoo", str(cli_zoo), "--task", "n_classes=10", "--task", "n_train=1000"], "rank after fit")


# -- after the pass ----------------------------------------------------------------------


def test_fuzz_left_the_server_answering_with_bounded_memory_and_no_traceback(served):
    server, client = served["server"], served["client"]
    assert client.get("/healthz").status_code == 200
    assert client.post("/rank", json={"task": {"n_classes": 10, "n_train": 1000}}).status_code == 200
    end = rss_bytes(server.pid)
    print(f"server RSS: {(served['rss_start'] or 0) / 2**20:.1f} MB after the warm-up, {(end or 0) / 2**20:.1f} MB "
          f"after the fuzz pass")  # shown with pytest -s
    if served["rss_start"] is not None and end is not None:
        assert end <= 1.5 * served["rss_start"], (served["rss_start"] / 2**20, end / 2**20)
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-5000:]
