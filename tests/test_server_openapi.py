"""The API's documentation and the server mounted under a sub-path.

``/api/docs`` is Swagger UI with its files served by the app itself (no CDN: it works offline),
``/api/openapi.json`` documents every route's body and answer, and an app mounted at ``/riff``
hands out links under ``/riff`` that work. Fast and offline: the tiny model, two steps.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from riffusion.inputs import InferenceInput, InferencePrompt
from riffusion.server import create_app, routes_stream
from riffusion.server.api_docs import ASSETS_URL, DOCS_URL, OPENAPI_URL
from riffusion.server.errors import add_error_handlers
from riffusion.server.schemas import (
    BODY_MODELS,
    ClipAnswer,
    ClipPromptBody,
    ClipRecipeBody,
    InferenceAnswer,
    MaskInfo,
    PromptBody,
    RunInferenceBody,
    SeedImageInfo,
    StreamClipAnswer,
    StreamCreateBody,
    StreamCreated,
    StreamTargetBody,
)
from riffusion.testing import web_app_request
from tests.server_fixtures import LOCAL

STEPS = 2
CLIP = {"start": {"prompt": "ambient pad", "seed": 3}, "num_inference_steps": STEPS}
KEY = "a-long-enough-key"
_CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _mounted(sub: FastAPI, prefix: str = "/riff") -> FastAPI:
    """A parent app serving ``sub`` at ``prefix``, running its lifespan (as create_app says)."""

    @contextlib.asynccontextmanager
    async def lifespan(parent: FastAPI):
        async with sub.router.lifespan_context(sub):
            yield

    parent = FastAPI(lifespan=lifespan)
    parent.mount(prefix, sub)
    return parent


@pytest.fixture(scope="module")
def mounted(riffuser):
    with TestClient(_mounted(create_app(riffuser)), base_url=LOCAL) as client:
        yield client


@pytest.fixture(scope="module")
def schema(client):
    response = client.get(OPENAPI_URL)
    assert response.status_code == 200, response.text
    return response.json()


def _api_routes(routes):
    """The APIRoutes of ``app.routes``, in included routers too (FastAPI >= 0.16x keeps them
    there rather than copying them into the app's list)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def _operations(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _local_asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def _check_docs_page(client, prefix: str = "") -> None:
    page = client.get(f"{prefix}{DOCS_URL}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle" in html and f"url: '{prefix}{OPENAPI_URL}'" in html
    # Offline: nothing but the app's own files (no CDN, no validator badge).
    assert re.search(r"https?:|//[a-z]", html) is None, html
    assert '"validatorUrl": null' in html
    urls = _local_asset_urls(html)
    assert {url.rsplit("/", 1)[-1] for url in urls} == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon.png",
    }
    for url in urls:
        assert url.startswith(f"{prefix}{ASSETS_URL}/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert _CONTENT_TYPES[suffix] in asset.headers["content-type"], url
        assert len(asset.content) > 100, url
    assert "SwaggerUIBundle" in client.get(f"{prefix}{ASSETS_URL}/swagger-ui-bundle.js").text


# ---------------------------------------------------------------------------- the docs page
def test_the_docs_page_is_swagger_ui_with_its_files_served_here(client):
    _check_docs_page(client)


def test_docs_redirects_to_the_docs_page(client):
    response = client.get("/docs", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == DOCS_URL
    assert client.get("/docs").url.path == DOCS_URL


def test_the_schema_describes_the_api_and_its_conventions(schema):
    assert schema["openapi"].startswith("3.")  # Swagger UI 5 reads 3.0 and 3.1
    assert schema["info"]["title"] == "riffusion"
    assert '{"error": message, "field": name}' in schema["info"]["description"]
    assert "servers" not in schema  # served at the root: no prefix


# --------------------------------------------------------------------- bodies and answers
def test_every_route_has_a_response_model_or_documented_responses(client, schema):
    routes = [r for r in _api_routes(client.app.routes) if r.include_in_schema]
    assert len(routes) >= 12
    for route in routes:
        documented = route.responses.get(200, {}).get("content")
        assert route.response_model is not None or documented, route.path
    for method, path, operation in _operations(schema):
        content = operation["responses"]["200"].get("content")
        assert content, (method, path)
        assert all(kind.get("schema") for kind in content.values()), (method, path)


def test_every_post_route_documents_its_request_body(schema):
    posts = [(path, op) for method, path, op in _operations(schema) if method == "POST"]
    assert {path for path, _ in posts} >= {
        "/run_inference/",
        "/api/clip",
        "/api/stream",
        "/api/stream/{stream_id}/target",
        "/api/seed_image",
    }
    for path, operation in posts:
        body = operation.get("requestBody")
        assert body and body["required"] and body["content"], path
    clip = schema["paths"]["/api/clip"]["post"]["requestBody"]["content"]["application/json"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in clip["schema"]["anyOf"]} == {
        "ClipPromptBody",
        "ClipRecipeBody",
    }
    upload = schema["paths"]["/api/seed_image"]["post"]["requestBody"]["content"]
    assert upload["audio/*"]["schema"]["format"] == "binary"


def test_every_reference_resolves_and_errors_are_the_error_body(schema):
    text = str(schema)
    names = set(re.findall(r"#/components/schemas/([A-Za-z0-9_-]+)", text))
    assert names <= set(schema["components"]["schemas"]), names
    assert {"PromptBody", "RunInferenceBody", "StreamTargetBody", "ErrorBody"} <= names
    for method, path, operation in _operations(schema):
        assert "422" not in operation["responses"], (method, path)  # the server answers 400
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, status)


def test_the_body_schemas_carry_the_limits(schema):
    schemas = schema["components"]["schemas"]
    for model in BODY_MODELS:  # the request models' own schemas, not same-named others
        assert schemas[model.__name__]["additionalProperties"] is False, model.__name__
    prompt = schemas["PromptBody"]
    assert prompt["required"] == ["prompt", "seed"]
    assert prompt["properties"]["prompt"]["maxLength"] == 1000
    assert prompt["additionalProperties"] is False
    assert schemas["RunInferenceBody"]["properties"]["num_inference_steps"]["maximum"] == 200
    scheduler = schemas["StreamCreateBody"]["properties"]["scheduler"]
    assert "default" in scheduler["enum"] and "default" not in scheduler  # server's own
    assert schemas["StreamTargetBody"]["minProperties"] == 1


def test_the_body_models_take_the_fields_the_routes_take():
    def names(model):
        return set(model.model_fields)

    assert names(PromptBody) == set(InferencePrompt.__dataclass_fields__)
    assert names(RunInferenceBody) == set(InferenceInput.__dataclass_fields__)
    assert names(StreamCreateBody) == set(routes_stream._CREATE_FIELDS)
    assert names(StreamTargetBody) == set(routes_stream._TARGET_FIELDS)
    assert names(ClipPromptBody) == names(RunInferenceBody) | {"scheduler"}
    RunInferenceBody.model_validate(web_app_request())
    ClipPromptBody.model_validate(CLIP)
    ClipRecipeBody.model_validate({"recipe": "riffusion:1:abc"})
    StreamCreateBody.model_validate({"prompts": ["jazz", {"prompt": "rock", "seed": 2}]})
    StreamTargetBody.model_validate({"mask_image_id": None, "denoising": None})


def test_the_bodies_are_still_checked_by_hand_with_the_field_named(client):
    bad = client.post("/api/clip", json={"start": {"prompt": "x", "seed": -1}})
    assert bad.status_code == 400 and bad.json()["field"] == "start.seed"
    too_big = client.post("/run_inference/", content=b"{" + b" " * 70_000 + b"}")
    assert too_big.status_code == 413 and "65536" in too_big.json()["error"]


def test_a_parameter_fastapi_checks_is_answered_400_naming_it():
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/n")
    async def number(n: int) -> dict[str, int]:
        return {"n": n}

    with TestClient(app) as client:
        response = client.get("/n", params={"n": "abc"})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "n" and "'abc'" in body["error"] and "integer" in body["error"]


def test_the_answers_are_what_their_models_say(client):
    def check(model, answer):
        assert set(answer) == set(model.model_fields), model.__name__
        model.model_validate(answer)

    check(InferenceAnswer, client.post("/run_inference/", json=web_app_request(alpha=0)).json())
    check(ClipAnswer, client.post("/api/clip", json=CLIP).json())
    for item in client.get("/seed_images").json():
        check(SeedImageInfo, item)
    for item in client.get("/masks").json():
        check(MaskInfo, item)


# ------------------------------------------------------------------------ under a sub-path
def test_mounted_the_links_in_answers_carry_the_mount_point_and_work(mounted):
    health = mounted.get("/riff/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    clip = mounted.post("/riff/api/clip", json=CLIP)
    assert clip.status_code == 200, clip.text
    files = ClipAnswer.model_validate(clip.json()).files
    kinds = {
        files.wav: "audio/wav",
        files.mp3: "audio/mpeg",
        files.png: "image/png",
        files.recipe: "application/json",
    }
    for url, kind in kinds.items():
        assert url.startswith(f"/riff/api/clips/{clip.json()['id']}/"), url
        response = mounted.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(kind), url
        assert len(response.content) > 100, url


def test_mounted_a_stream_hands_out_links_under_the_mount_point(mounted):
    created = mounted.post(
        "/riff/api/stream",
        json={"prompts": ["jazz"], "num_inference_steps": STEPS, "buffer_ahead": 0},
    )
    assert created.status_code == 200, created.text
    links = StreamCreated.model_validate(created.json())
    assert links.stream == f"/riff/api/stream/{links.id}"
    assert (links.next, links.target) == (f"{links.stream}/next", f"{links.stream}/target")
    following = mounted.get(links.next)
    assert following.status_code == 200, following.text
    clip = StreamClipAnswer.model_validate(following.json())
    assert clip.files.wav.startswith("/riff/api/clips/") and mounted.get(clip.files.wav).is_success
    assert mounted.post(links.target, json={"prompt": "rock"}).json()["id"] == links.id
    assert mounted.delete(links.stream).json() == {"id": links.id, "closed": True}


def test_mounted_the_docs_and_the_schema_are_under_the_mount_point(mounted):
    _check_docs_page(mounted, "/riff")
    redirect = mounted.get("/riff/docs", follow_redirects=False)
    assert redirect.headers["location"] == f"/riff{DOCS_URL}"
    schema = mounted.get(f"/riff{OPENAPI_URL}").json()
    assert schema["servers"] == [{"url": "/riff"}]  # "Try it out" calls /riff/api/...
    assert "/api/clip" in schema["paths"]


def test_mounted_the_access_checks_and_the_token_cookie_work(riffuser):
    sub = create_app(riffuser, api_key=KEY)
    with TestClient(_mounted(sub), base_url=LOCAL) as client:
        refused = client.get("/riff/health")
        assert refused.status_code == 401 and refused.json()["field"] == "Authorization"
        assert client.get(f"/riff{DOCS_URL}").status_code == 401
        assert client.get(f"/riff{ASSETS_URL}/swagger-ui.css").status_code == 200  # public
        assert client.get("/riff/static/does-not-exist.js").status_code == 404  # public: no 401
        opened = client.get("/riff/", params={"token": KEY})
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith("riffusion_token=") and "Path=/riff;" in cookie
        assert client.get("/riff/health").status_code == 200  # the cookie, sent back
        assert client.get(f"/riff{DOCS_URL}").status_code == 200
        foreign = client.get("/riff/health", headers={"Origin": "https://attacker.example"})
        assert foreign.status_code == 403 and foreign.json()["field"] == "Origin"
        own = client.get("/riff/health", headers={"Origin": LOCAL})
        assert own.status_code == 200
        renamed = client.get("/riff/health", headers={"Host": "rebound.example"})
        assert renamed.status_code == 403 and renamed.json()["field"] == "Host"
