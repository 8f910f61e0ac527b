"""Azure OpenAI as an upstream kind (issue 24): deployment URLs with api-version for chat completions,
completions and embeddings, the v1 API (/openai/v1/...) with the deployment as the body's model for the
rest, the key in an api-key header. A fake served in memory (tests/memupstream.py) asserts the URL shape,
the query and the headers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from gateway.config.loader import parse_config
from gateway.guard.plan import plan_issues
from gateway.config.errors import ConfigError
from tests.fakeopenai import Fake, fake_app, memory_fake
from tests.inprocess import in_process

KEY = "azure-secret-key-0123456789"


def config(fake: Fake, extra: str = "") -> str:
    return (f"upstreams:\n"
            f"  - name: az\n    kind: azure\n    base_url: '{fake.url}'\n    api_key: {KEY}\n"
            f"    api_version: '2024-10-21'\n    deployments: {{gpt-4o: prod-4o}}\n"
            f"    models: ['gpt-*', 'text-embedding-*']\n{extra}"
            f"applications:\n  - {{id: a, keys: [k-1]}}\n")


def test_azure_deployment_urls_api_version_and_api_key_header(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("az")) as az:
            async with in_process(config(az), tmp_path, upstream_app=fake_app(az)) as (_, http):
                client = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k-1", http_client=http,
                                            max_retries=0)
                answer = await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
                assert answer.choices[0].message.content == "from az"
                seen = az.last()
                assert (seen.method, seen.path) == ("POST", "/openai/deployments/prod-4o/chat/completions")
                assert seen.query == {"api-version": "2024-10-21"}
                assert seen.headers["api-key"] == KEY
                assert "authorization" not in seen.headers  # the client's Bearer k-1 stays at the gateway
                assert seen.json()["model"] == "gpt-4o"

                await client.embeddings.create(model="text-embedding-3-small", input="hello")
                seen = az.last()  # not in deployments: the model name is the deployment name
                assert seen.path == "/openai/deployments/text-embedding-3-small/embeddings"
                assert seen.query == {"api-version": "2024-10-21"} and seen.headers["api-key"] == KEY

                r = await http.post("/v1/responses", json={"model": "gpt-4o", "input": "hi"},
                                    headers={"api-key": "k-1"})
                assert r.status_code == 200, r.text
                seen = az.last()  # the v1 API: no deployment in the URL, no api-version; the body names it
                assert (seen.path, seen.query) == ("/openai/v1/responses", {})
                assert seen.json()["model"] == "prod-4o" and seen.headers["api-key"] == KEY
                assert "k-1" not in str(seen.headers)
    asyncio.run(go())


def test_azure_error_echoing_the_key_is_scrubbed(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("az", status=401, error_text=f"Access denied: key {KEY} is invalid")) as az:
            async with in_process(config(az), tmp_path, upstream_app=fake_app(az)) as (_, http):
                r = await http.post("/v1/chat/completions", headers={"authorization": "Bearer k-1"},
                                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 401 and KEY not in r.text
                assert az.last().path == "/openai/deployments/prod-4o/chat/completions"
    asyncio.run(go())


def test_azure_config_needs_api_version_and_keeps_it_to_azure() -> None:
    bad = "upstreams:\n  - {name: az, kind: azure, base_url: 'https://r.openai.azure.com', models: ['*']}\n"
    with pytest.raises(ConfigError, match="api_version"):
        parse_config(bad, "x.yaml", {}, check=plan_issues)
    other = "upstreams:\n  - {name: o, base_url: 'https://x/v1', api_version: '1', models: ['*']}\n"
    with pytest.raises(ConfigError, match="azure"):
        parse_config(other, "x.yaml", {}, check=plan_issues)


@pytest.mark.parametrize("model,segment", [("..", "%2E%2E"), (".", "%2E"), ("a/b", "a%2Fb"), ("gpt-4o", "gpt-4o")])
def test_a_clients_model_stays_one_deployment_segment(model: str, segment: str) -> None:
    """Found by a review: a model '..' (with a '*' glob, the model is the deployment name) made the URL
    resolve one level up, to /openai/chat/completions."""
    from gateway.config.schema import UpstreamConfig
    from gateway.proxy.upstream import make_upstream

    up = make_upstream(UpstreamConfig(name="az", kind="azure", base_url="https://r.openai.azure.com",
                                      api_version="2024-10-21", models=("*",)))
    url = str(up._make_url("/chat/completions", model))
    assert url == f"https://r.openai.azure.com/openai/deployments/{segment}/chat/completions?api-version=2024-10-21"
