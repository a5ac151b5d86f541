"""/readyz through the load balancer answers its status alone; the per-replica
detail (each standby's host, port and database) is for operators: with
METRICS_TOKEN, or on the replica's own address.

A served instance with a read replica configured (the primary itself, named a
second time: its entry is what matters here), behind deploy/haproxy.cfg.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import METRICS_TOKEN
from tests.system.conftest import ServeInstance, haproxy_in_front_of
from tests.system.harness import ServedApp


@pytest.fixture(scope="module")
def with_replica(
    serve_instance: ServeInstance, served_database_url: str
) -> Iterator[ServedApp]:
    with serve_instance(
        "readyz", DATABASE_REPLICA_URL=served_database_url, METRICS_TOKEN=METRICS_TOKEN
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def through_lb(with_replica: ServedApp) -> Iterator[str]:
    with haproxy_in_front_of(with_replica) as url:
        yield url


def readyz(url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", headers=headers, timeout=30)


def test_readyz_through_the_load_balancer_is_the_status_alone(
    through_lb: str,
) -> None:
    response = readyz(through_lb)

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_through_the_load_balancer_with_the_metrics_token_has_the_detail(
    through_lb: str,
) -> None:
    response = readyz(through_lb, Authorization=f"Bearer {METRICS_TOKEN}")

    assert response.status_code == 200
    assert [replica["name"] for replica in response.json()["replicas"]]


def test_readyz_with_a_wrong_token_through_the_load_balancer_is_the_status_alone(
    through_lb: str,
) -> None:
    response = readyz(through_lb, Authorization="Bearer not-the-token")

    assert response.json() == {"status": "ready"}


def test_readyz_on_the_replicas_own_address_has_the_detail(
    with_replica: ServedApp,
) -> None:
    response = readyz(with_replica.base_url)

    assert response.status_code == 200
    assert [replica["name"] for replica in response.json()["replicas"]]


def test_readyz_with_a_forwarded_header_on_the_own_address_is_the_status_alone(
    with_replica: ServedApp,
) -> None:
    response = readyz(with_replica.base_url, **{"X-Forwarded-For": "203.0.113.9"})

    assert response.json() == {"status": "ready"}
