"""The application from create_app, driven over HTTP: plugin routes, lifecycle, docs, health, errors."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from nexus import Health, Plugin, PluginContext, PluginState
from nexus.http.app import NexusApp, create_app, load_app_config

PROBLEM = "application/problem+json"

Routes = Callable[[APIRouter, PluginContext[Any]], None]


class Api(Plugin):
    """An inline plugin serving the routes `routes` adds to its router."""

    def __init__(
        self, name: str, routes: Routes, *, description: str = "", **manifest: Any
    ) -> None:
        self.manifest = {"name": name, "version": "1.0.0", "description": description, **manifest}
        self.routes = routes
        self.health_report = Health.healthy()
        self.setups = 0

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.setups += 1
        router = APIRouter()
        self.routes(router, ctx)
        ctx.http.include_router(router)

    async def health(self) -> Health:
        return self.health_report


def build_app(tmp_path: Path, *plugins: Plugin, **sections: Any) -> NexusApp:
    """An app from a real nexus.yaml holding `sections`, serving the inline `plugins`."""
    document: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "plugin_paths": [], **sections}
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(document))
    return create_app(load_app_config(path, env={}), plugins=plugins, entry_points=False)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client bound to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    return body


class Item(BaseModel):
    name: str
    quantity: int = 1


class PublicUser(BaseModel):
    name: str


PAYLOAD: dict[str, Any] = {
    "name": "Zoë ☃",
    "count": 3,
    "ratio": 0.25,
    "missing": None,
    "ok": True,
    "tags": ["a", "b"],
    "nested": {"deep": [1, 2, {"x": -1.5}]},
    "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def shop_routes(router: APIRouter, ctx: PluginContext[Any]) -> None:
    @router.get("/hello")
    async def hello(name: str = "world") -> dict[str, str]:
        return {"hello": name}

    @router.get("/count")
    async def count(n: int) -> dict[str, int]:
        return {"n": n}

    @router.post("/items", status_code=201)
    async def create_item(item: Item) -> dict[str, Any]:
        return {"name": item.name, "quantity": item.quantity}

    # Unannotated results (no response model) are rendered by the platform's orjson path.
    @router.get("/payload")
    async def payload():
        return PAYLOAD

    @router.get("/rows")
    def rows():  # a sync endpoint, run in the thread pool
        return [{"row": i, "label": f"r{i}"} for i in range(3)]

    @router.get("/user", response_model=PublicUser)
    async def user(broken: bool = False) -> Any:
        return {"nickname": "x"} if broken else {"name": "ada", "password": "hunter2"}

    @router.get("/model")
    async def model() -> Item:
        return Item(name="widget", quantity=7)

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")


def shop(**kwargs: Any) -> Api:
    return Api("shop", shop_routes, description="Orders and items", **kwargs)


def blog(**kwargs: Any) -> Api:
    def routes(router: APIRouter, ctx: PluginContext[Any]) -> None:
        @router.get("/posts")
        async def posts() -> list[str]:
            return ["first"]

    return Api("blog", routes, description="Posts and comments", **kwargs)


# -- routing ---------------------------------------------------------------------------------


async def test_plugin_routes_are_served_under_api_plugin_name(tmp_path: Path) -> None:
    """A plugin's router is served under /api/<plugin>, query and body parameters included."""
    async with serve(build_app(tmp_path, shop(), blog())) as client:
        hello = await client.get("/api/shop/hello", params={"name": "ada"})
        created = await client.post("/api/shop/items", json={"name": "pen", "quantity": 2})
        posts = await client.get("/api/blog/posts")
        unprefixed = await client.get("/hello")
    assert hello.status_code == 200 and hello.json() == {"hello": "ada"}
    assert created.status_code == 201 and created.json() == {"name": "pen", "quantity": 2}
    assert posts.status_code == 200 and posts.json() == ["first"]
    assert_problem(unprefixed, 404)


async def test_unknown_plugin_is_a_404_problem_naming_the_path(tmp_path: Path) -> None:
    """/api/<name> of no plugin, and the bare /api/ prefix, are 404 problems."""
    async with serve(build_app(tmp_path, shop())) as client:
        unknown = await client.get("/api/nobody/hello")
        bare = await client.get("/api/")
    assert assert_problem(unknown, 404)["detail"] == "No plugin serves '/api/nobody/hello'."
    assert_problem(bare, 404)


async def test_unknown_route_inside_a_plugin_is_a_404_problem(tmp_path: Path) -> None:
    """A path the plugin does not route gets the plugin app's 404, as a problem."""
    async with serve(build_app(tmp_path, shop())) as client:
        response = await client.get("/api/shop/nowhere")
    assert assert_problem(response, 404)["title"] == "Not Found"


async def test_wrong_method_is_a_405_problem_with_allow(tmp_path: Path) -> None:
    """A route reached with a method it does not accept answers 405 listing the allowed ones."""
    async with serve(build_app(tmp_path, shop())) as client:
        response = await client.delete("/api/shop/items")
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


async def test_invalid_query_and_body_are_422_problems(tmp_path: Path) -> None:
    """Validation errors list each problem's location, without echoing the input back."""
    async with serve(build_app(tmp_path, shop())) as client:
        query = await client.get("/api/shop/count", params={"n": "many"})
        body = await client.post("/api/shop/items", json={"quantity": "lots"})
    errors = assert_problem(query, 422)["errors"]
    assert [error["loc"] for error in errors] == [["query", "n"]]
    problem = assert_problem(body, 422)
    assert problem["detail"] == "The request is invalid (2 problems)."
    assert sorted(error["loc"][-1] for error in problem["errors"]) == ["name", "quantity"]
    assert "lots" not in body.text


# -- runtime operations ----------------------------------------------------------------------


async def test_unload_and_load_remove_and_restore_the_routes(tmp_path: Path) -> None:
    """Unloading a plugin takes its routes away at once; loading it again brings them back."""
    app = build_app(tmp_path, shop(), blog())
    async with serve(app) as client:
        assert (await client.get("/api/shop/hello")).status_code == 200
        await app.kernel.plugins.unload("shop")
        gone = await client.get("/api/shop/hello")
        still = await client.get("/api/blog/posts")
        await app.kernel.plugins.load("shop")
        back = await client.get("/api/shop/hello")
    assert assert_problem(gone, 404)["detail"] == "No plugin serves '/api/shop/hello'."
    assert still.status_code == 200
    assert back.status_code == 200 and back.json() == {"hello": "world"}


async def test_disable_and_enable_remove_and_restore_the_routes(tmp_path: Path) -> None:
    """A disabled plugin's routes answer 404; enabling it serves them from a fresh setup."""
    plugin = shop()
    app = build_app(tmp_path, plugin)
    async with serve(app) as client:
        await app.kernel.plugins.disable("shop")
        disabled = await client.get("/api/shop/hello")
        await app.kernel.plugins.enable("shop")
        enabled = await client.get("/api/shop/hello")
    assert_problem(disabled, 404)
    assert enabled.status_code == 200
    assert plugin.setups == 2


async def test_plugin_disabled_in_config_serves_nothing(tmp_path: Path) -> None:
    """`plugins.<name>.enabled: false` keeps the plugin's routes unmounted from the start."""
    app = build_app(tmp_path, shop(), plugins={"shop": {"enabled": False}})
    async with serve(app) as client:
        response = await client.get("/api/shop/hello")
    assert_problem(response, 404)


# -- OpenAPI and docs ------------------------------------------------------------------------


def plugin_paths(schema: dict[str, Any]) -> list[str]:
    return sorted(path for path in schema["paths"] if path.startswith("/api/"))


async def test_openapi_lists_each_plugins_routes_under_one_tag(tmp_path: Path) -> None:
    """Every plugin route is documented with its plugin's tag; each tag carries the description."""
    async with serve(build_app(tmp_path, shop(), blog())) as client:
        schema = (await client.get("/openapi.json")).json()
    assert {"name": "blog", "description": "Posts and comments"} in schema["tags"]
    assert {"name": "shop", "description": "Orders and items"} in schema["tags"]
    assert [tag["name"] for tag in schema["tags"]].count("shop") == 1
    assert "/api/shop/items" in schema["paths"] and "/api/blog/posts" in schema["paths"]
    assert schema["paths"]["/api/shop/items"]["post"]["tags"] == ["shop"]
    assert schema["paths"]["/api/blog/posts"]["get"]["tags"] == ["blog"]
    assert "/livez" in schema["paths"] and "/readyz" in schema["paths"]
    assert "Item" in schema["components"]["schemas"]


async def test_openapi_follows_unload_load_disable_and_enable(tmp_path: Path) -> None:
    """The schema is rebuilt whenever the set of served plugins changes."""
    app = build_app(tmp_path, shop(), blog())

    async def snapshot(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
        schema = (await client.get("/openapi.json")).json()
        tags = sorted(tag["name"] for tag in schema.get("tags", []) if tag["name"] != "platform")
        return tags, plugin_paths(schema)

    async with serve(app) as client:
        before = await snapshot(client)
        await app.kernel.plugins.unload("shop")
        unloaded = await snapshot(client)
        await app.kernel.plugins.load("shop")
        loaded = await snapshot(client)
        await app.kernel.plugins.disable("blog")
        disabled = await snapshot(client)
        await app.kernel.plugins.enable("blog")
        enabled = await snapshot(client)

    shop_paths = [
        "/api/shop/boom",
        "/api/shop/count",
        "/api/shop/hello",
        "/api/shop/items",
        "/api/shop/model",
        "/api/shop/payload",
        "/api/shop/rows",
        "/api/shop/user",
    ]
    assert before == (["blog", "shop"], ["/api/blog/posts", *shop_paths])
    assert unloaded == (["blog"], ["/api/blog/posts"])
    assert loaded == before
    assert disabled == (["shop"], shop_paths)
    assert enabled == before


async def test_docs_serve_the_swagger_page(tmp_path: Path) -> None:
    """/docs is an HTML page pointing at /openapi.json."""
    async with serve(build_app(tmp_path, shop())) as client:
        response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text and "/openapi.json" in response.text


# -- JSON responses --------------------------------------------------------------------------


async def test_dict_and_list_results_are_the_json_fastapi_would_send(tmp_path: Path) -> None:
    """Results render byte for byte as a bare FastAPI app renders the same values.

    `/payload` and `/rows` have no response model (the platform renders them with orjson);
    `/hello` is typed by its annotation (FastAPI validates and renders it).
    """
    reference = APIRouter()
    shop_routes(reference, None)  # type: ignore[arg-type] - the routes never touch the context
    bare = FastAPI()
    bare.include_router(reference)

    async with serve(build_app(tmp_path, shop())) as client, serve(bare) as plain:
        for path in ("/payload", "/rows", "/hello"):
            ours = await client.get("/api/shop" + path)
            theirs = await plain.get(path)
            assert ours.status_code == theirs.status_code == 200
            assert ours.headers["content-type"] == "application/json"
            assert ours.content == theirs.content, path
    assert ours.json() == {"hello": "world"}


async def test_response_model_still_filters_and_validates(tmp_path: Path) -> None:
    """A route with response_model drops undeclared fields, and a result missing one is a 500."""
    async with serve(build_app(tmp_path, shop())) as client:
        filtered = await client.get("/api/shop/user")
        broken = await client.get("/api/shop/user", params={"broken": "true"})
    assert filtered.status_code == 200 and filtered.json() == {"name": "ada"}
    assert_problem(broken, 500)


async def test_pydantic_model_results_are_serialised(tmp_path: Path) -> None:
    """A route returning a model (typed by its return annotation) answers that model as JSON."""
    async with serve(build_app(tmp_path, shop())) as client:
        response = await client.get("/api/shop/model")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"name": "widget", "quantity": 7}


done: list[str] = []


def response_routes(router: APIRouter, ctx: PluginContext[Any]) -> None:
    """Unannotated routes that also tell FastAPI how to respond, which plain JSON must keep."""

    def tag_response(response: Response) -> None:
        response.headers["X-From-Dependency"] = "yes"

    @router.get("/header")
    async def header(response: Response):
        response.headers["X-From-Route"] = "yes"
        response.status_code = 202
        return {"ok": "header"}

    @router.get("/dependency", dependencies=[Depends(tag_response)])
    async def dependency():
        return {"ok": "dependency"}

    @router.post("/later", status_code=201)
    def later(tasks: BackgroundTasks):
        done.append("queued")
        tasks.add_task(done.append, "ran")
        return {"ok": "later"}

    @router.delete("/gone", status_code=204)
    async def gone() -> None:
        return None

    @router.get("/lines")
    async def lines() -> AsyncIterator[dict[str, int]]:
        for i in range(3):
            yield {"line": i}

    @router.get("/text", response_class=PlainTextResponse)
    async def text() -> str:
        return "plain"


async def test_plain_results_keep_what_routes_and_dependencies_set(tmp_path: Path) -> None:
    """Headers, status codes and background tasks set through FastAPI all reach the client."""
    done.clear()
    async with serve(build_app(tmp_path, Api("responses", response_routes))) as client:
        header = await client.get("/api/responses/header")
        dependency = await client.get("/api/responses/dependency")
        later = await client.post("/api/responses/later")
        gone = await client.delete("/api/responses/gone")
        lines = await client.get("/api/responses/lines")
        text = await client.get("/api/responses/text")
    assert (header.status_code, header.headers["x-from-route"]) == (202, "yes")
    assert header.json() == {"ok": "header"}
    assert dependency.headers["x-from-dependency"] == "yes"
    assert dependency.json() == {"ok": "dependency"}
    assert (later.status_code, later.json(), done) == (201, {"ok": "later"}, ["queued", "ran"])
    assert (gone.status_code, gone.content) == (204, b"")
    assert lines.headers["content-type"] == "application/jsonl"
    assert [json.loads(line) for line in lines.text.splitlines()] == [
        {"line": 0},
        {"line": 1},
        {"line": 2},
    ]
    assert (text.headers["content-type"].split(";")[0], text.text) == ("text/plain", "plain")


# -- health ----------------------------------------------------------------------------------


async def test_livez_answers_while_the_process_runs(tmp_path: Path) -> None:
    """/livez is 200 whatever the plugins' state."""
    broken = shop()
    broken.health_report = Health.unhealthy("database unreachable")
    async with serve(build_app(tmp_path, broken)) as client:
        response = await client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


async def test_readyz_is_200_when_every_enabled_plugin_is_active_and_healthy(
    tmp_path: Path,
) -> None:
    """Ready lists each plugin's state; a plugin disabled on purpose does not hold it back."""
    app = build_app(tmp_path, shop(), blog(), plugins={"blog": {"enabled": False}})
    async with serve(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "events": {"healthy": True, "detail": "MemoryTransport is running"},
        "plugins": {
            "blog": {
                "state": "disabled",
                "healthy": False,
                "ready": False,
                "detail": "plugin is disabled",
            },
            "shop": {"state": "active", "healthy": True, "ready": True, "detail": ""},
        },
    }


async def test_readyz_is_503_when_a_plugin_reports_unhealthy(tmp_path: Path) -> None:
    """A plugin's failing health check makes the app not ready, with the plugin's detail."""
    sick = shop()
    app = build_app(tmp_path, sick, blog())
    async with serve(app) as client:
        ready = await client.get("/readyz")
        sick.health_report = Health.unhealthy("database unreachable")
        not_ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert body["status"] == "not ready"
    assert body["plugins"]["shop"] == {
        "state": "active",
        "healthy": False,
        "ready": False,
        "detail": "database unreachable",
    }
    assert body["plugins"]["blog"]["healthy"] is True


async def test_readyz_is_503_when_a_plugin_failed_to_start(tmp_path: Path) -> None:
    """A plugin whose setup raised is reported failed, with the reason, and the app not ready."""

    class Broken(Plugin):
        manifest = {"name": "broken", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            raise ConnectionError("cannot reach the mail server")

    async with serve(build_app(tmp_path, Broken(), shop())) as client:
        response = await client.get("/readyz")
        served = await client.get("/api/shop/hello")
    assert response.status_code == 503
    broken = response.json()["plugins"]["broken"]
    assert broken["state"] == "failed" and broken["healthy"] is False
    assert "ConnectionError: cannot reach the mail server" in broken["detail"]
    assert response.json()["plugins"]["shop"]["state"] == "active"
    assert served.status_code == 200


async def test_readyz_is_503_after_the_app_stopped_a_plugin_for_a_missing_dependency(
    tmp_path: Path,
) -> None:
    """A plugin blocked by its disabled requirement keeps the app not ready."""
    app = build_app(tmp_path, shop(), blog(requires={"shop": ">=1.0"}))
    async with serve(app) as client:
        await app.kernel.plugins.disable("shop")
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["plugins"]["blog"]["state"] == PluginState.BLOCKED.value


# -- server errors ---------------------------------------------------------------------------


async def test_server_error_in_production_hides_the_exception(tmp_path: Path) -> None:
    """In production a crashing route answers a generic 500 problem with the request id."""
    app = build_app(tmp_path, shop(), app={"environment": "production"})
    async with serve(app) as client:
        response = await client.get("/api/shop/boom", headers={"X-Request-ID": "req-500"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "req-500"
    assert "traceback" not in body
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert "Traceback" not in response.text


async def test_server_error_in_development_shows_the_traceback(tmp_path: Path) -> None:
    """In development the 500 problem names the exception and carries its traceback."""
    app = build_app(tmp_path, shop(), app={"environment": "development"})
    async with serve(app) as client:
        response = await client.get("/api/shop/boom")
    body = assert_problem(response, 500)
    assert body["detail"] == "RuntimeError: database password is hunter2"
    assert body["exception"] == "builtins.RuntimeError"
    assert body["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("database password is hunter2")' in body["traceback"]


@pytest.mark.parametrize("environment", ["production", "development"])
async def test_platform_routes_survive_a_crashing_plugin_route(
    tmp_path: Path, environment: str
) -> None:
    """After a route crashed, the same plugin and the platform keep answering."""
    app = build_app(tmp_path, shop(), app={"environment": environment})
    async with serve(app) as client:
        assert_problem(await client.get("/api/shop/boom"), 500)
        after = await client.get("/api/shop/hello")
        livez = await client.get("/livez")
    assert after.status_code == 200 and livez.status_code == 200
