"""Session-wide real servers shared by every test directory."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.redisserver import RedisServer, start_redis
from tests.support.registry import Registry, start_registry, start_token_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry without auth."""
    running = start_registry(tmp_path_factory.mktemp("registry"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An HTTPS registry whose certificate is signed by the test CA in ``Registry.ca``."""
    running = start_registry(tmp_path_factory.mktemp("tls-registry"), tls=True)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry that requires htpasswd basic auth."""
    credentials = ("trustgate", secrets.token_urlsafe(12))
    running = start_registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=credentials)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry that accepts only Bearer tokens from ``Registry.token_server``."""
    running = start_token_registry(tmp_path_factory.mktemp("token-registry"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Debian's redis-server on 127.0.0.1, without persistence, for the shared cache."""
    running = start_redis(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()
