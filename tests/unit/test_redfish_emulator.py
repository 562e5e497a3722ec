"""The emulator in-process: where loopback addresses cannot be bound it serves one port per BMC."""

from __future__ import annotations

import errno

import aiohttp
import pytest

from stat_bot.integrations.redfish_emulator import Emulator, fleet
from stat_bot.integrations.redfish_emulator.server import loopback_addresses


def test_loopback_addresses_skip_network_and_broadcast_ends() -> None:
    assert loopback_addresses("127.0.10.254", 3) == ["127.0.10.254", "127.0.11.1", "127.0.11.2"]
    with pytest.raises(ValueError, match="leave the loopback range"):
        loopback_addresses("127.255.255.254", 3)


@pytest.mark.asyncio
async def test_falls_back_to_distinct_ports_on_127_0_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    async def cannot_bind(self: Emulator) -> None:
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(Emulator, "_bind_addresses", cannot_bind)
    emulator = Emulator(fleet(3, 2), password="pw")
    await emulator.start()
    try:
        assert emulator.distinct_ports
        assert {b.host for b in emulator.bmcs} == {"127.0.0.1"}
        assert len({b.port for b in emulator.bmcs}) == 3
        rows = emulator.inventory_rows()
        assert rows[3]["xname"] == "x1000c0s1b0n1"
        assert rows[3]["bmc"] == emulator.bmcs[1].url
        headers = {"Authorization": aiohttp.encode_basic_auth("root", "pw")}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{emulator.bmcs[1].url}/redfish/v1/Systems/Node1") as response:
                assert (await response.json())["Name"] == "x1000c0s1b0n1"
            async with session.get(f"{emulator.control_url}/stats") as response:
                assert (await response.json()) == {"requests": 1, "bmcs": 3}
    finally:
        await emulator.stop()
