"""The engine slot the HTTP lifespan fills, and the transport checks for each bind address."""

from __future__ import annotations

import pytest

from flowrun.flows.errors import StartRefused
from flowrun.server import transport_security
from flowrun.tools.face import EngineSlot


def test_an_empty_slot_refuses_as_warming_up() -> None:
    with pytest.raises(StartRefused) as caught:
        EngineSlot().get()
    assert caught.value.code == "warming_up" and caught.value.retryable
    assert caught.value.details["retry_after"] == 2.0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_binds_keep_the_sdks_own_origin_and_host_checks(host: str) -> None:
    assert transport_security(host, "http://127.0.0.1:8765") is None


def test_other_binds_keep_the_checks_on_for_loopback_and_the_public_url() -> None:
    security = transport_security("0.0.0.0", "https://flowrun.example.com")
    assert security is not None and security.enable_dns_rebinding_protection
    assert "flowrun.example.com" in security.allowed_hosts and "127.0.0.1:*" in security.allowed_hosts
    assert "https://flowrun.example.com" in security.allowed_origins
    assert "http://localhost:*" in security.allowed_origins
