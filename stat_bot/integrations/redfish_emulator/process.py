"""The emulator as a child process, and its control API, for tests, benchmarks and local mode.

A separate process so that a client under test does not share the emulator's
interpreter (and GIL): what is measured is the client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from stat_bot.integrations.redfish_emulator.server import DEFAULT_PASSWORD, DEFAULT_USERNAME
from stat_bot.lifeline import stop_process


class EmulatorControl:
    """The control API (`/_emulator/...`) of a running emulator."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def bmcs(self) -> list[dict[str, Any]]:
        """Each BMC: xname, url, fault, reset_delay, connections (TCP connections accepted
        since the start or the last reset), nodes (xname, system, variant, power_state)."""
        return self._call("GET", "/bmcs")

    def fault(self, name: str, fault: str) -> dict[str, Any]:
        """none, refuse, hang, garbage or down, for the BMC named by its or a node's xname."""
        return self._call("POST", f"/bmcs/{name}", {"fault": fault})

    def reset_delay(self, name: str, seconds: float) -> dict[str, Any]:
        return self._call("POST", f"/bmcs/{name}", {"reset_delay": seconds})

    def variant(self, node_xname: str, variant: str) -> dict[str, Any]:
        return self._call("POST", f"/nodes/{node_xname}", {"variant": variant})

    def patch(self, name: str, patches: dict[str, Any]) -> dict[str, Any]:
        """Merge {path: patch} into the BMC's resources (see mockups.merge)."""
        return self._call("POST", f"/bmcs/{name}/patch", patches)

    def stats(self) -> dict[str, Any]:
        """{"requests": answered so far by all BMCs, "bmcs": how many}"""
        return self._call("GET", "/stats")

    def reset(self) -> list[dict[str, Any]]:
        return self._call("POST", "/reset", {})


class EmulatorProcess:
    """`python -m stat_bot.integrations.redfish_emulator ARGS` until `stop()`.

    `.inventory` is the CSV it wrote, `.control` its control API, `.username` and
    `.password` the credentials its BMCs accept.
    """

    def __init__(
        self,
        folder: Path,
        *args: str,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        start_timeout: float = 60.0,
    ) -> None:
        self.folder = folder
        self.inventory = folder / "inventory.csv"
        self.stdout_path = folder / "redfish-emulator.out"
        self.username = username
        self.password = password
        self.args = [
            "--inventory-out",
            str(self.inventory),
            # One argument each ("--password=-x..."): a generated password may begin with "-".
            f"--username={username}",
            f"--password={password}",
            *args,
        ]
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.control: EmulatorControl | None = None
        self.lines: list[str] = []

    def start(self) -> EmulatorProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stat_bot.integrations.redfish_emulator", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            text = self.stdout_path.read_text(errors="replace")
            self.lines = text.splitlines()
            if "ready" in self.lines:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Redfish emulator did not start:\n{text}")
            time.sleep(0.05)
        control = next(line for line in self.lines if line.startswith("control: "))
        self.control = EmulatorControl(control.removeprefix("control: "))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)
        self.process = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
