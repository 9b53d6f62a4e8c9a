"""One stand-in API server per test module, holding the small production cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kubeapi import ApiServer, start_api_server
from tests.support.kubecluster import fill_production


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def cluster(api: ApiServer) -> Iterator[ApiServer]:
    """A small production cluster: one Deployment runs an image the policy refuses."""
    fill_production(api)
    yield api
