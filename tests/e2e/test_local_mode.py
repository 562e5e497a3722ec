"""Local mode, as a newcomer meets it: `stat-bot run` with no Slack tokens, in a terminal.

The shipped job_configs.py and workspace; `run` in a real pseudo-terminal (so it
offers its chat prompt as it would to a person), and `stat-bot console` joining
from another process.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from stat_bot.integrations.local_trac import SAMPLE_TICKETS
from stat_bot.integrations.slack_emulator import EmulatorClient
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import PROXY_VARIABLES
from tests.conftest import ROOT, STAT_BOT, proc_stat
from tests.e2e.slack_service import message_text
from tests.trac_fixtures import require_trac

DASHBOARD = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JOB_CONFIGS", "WORKSPACE_DIR", *PROXY_VARIABLES)
        and not k.startswith(("SLACK_", "TRAC_"))
    }
    env.update(STATE_DIR=str(tmp_path / "var"), LOG_FORMAT="json", TERM="dumb")
    return env


def _read_until(fd: int, needle: str, seen: list[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in "".join(seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {needle!r}; saw:\n{''.join(seen)}"
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            seen.append(chunk.decode(errors="replace"))
    return "".join(seen)


def test_run_in_a_terminal_is_a_chat_with_the_bot(tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: become `stat-bot run` on the terminal
        os.chdir(ROOT)
        os.execve(STAT_BOT, [STAT_BOT, "run"], _env(tmp_path))
    seen: list[str] = []
    try:
        banner = _read_until(fd, "Type a message", seen)
        assert "local mode" in banner
        assert "stat-bot console" in banner
        # Wait until the bot is connected (its log goes to a file in this mode).
        log = tmp_path / "var" / "logs" / "service.log"
        deadline = time.monotonic() + 30
        while '"bot connected"' not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.1)
        os.write(fd, b"@stat-bot system hello Ada\n")
        out = _read_until(fd, "stat-bot: Hello Ada", seen)
        assert "#general admin: @stat-bot system hello Ada" in out
        assert "reacted :crossed_fingers:" in out
        os.write(fd, b"@stat-bot sytem hello\n")
        assert "I didn't understand" in _read_until(fd, "I didn't understand", seen)
        os.kill(pid, signal.SIGINT)  # Ctrl-C
        deadline = time.monotonic() + 40
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "run did not stop on Ctrl-C"
            time.sleep(0.1)
        assert os.waitstatus_to_exitcode(status) == 0
        assert "Traceback" not in "".join(seen)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_console_joins_a_running_local_mode(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = (tmp_path / "run.out").open("w+")
    service = subprocess.Popen(
        [STAT_BOT, "run", "--no-console"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "var" / "local-slack.json").exists():
            assert service.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        console = subprocess.Popen(
            [STAT_BOT, "console"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert console.stdin is not None
        assert console.stdout is not None
        console.stdin.write("@stat-bot system hello Console\n")
        console.stdin.flush()
        lines = []
        deadline = time.monotonic() + 30
        while not any("stat-bot: Hello Console" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(console.stdout.readline())
        console.stdin.write("/quit\n")
        console.stdin.flush()
        assert console.wait(15) == 0
        # The service's own terminal shows the conversation too (once its follower,
        # started after the banner, has caught up).
        deadline = time.monotonic() + 30
        while "Hello Console" not in (tmp_path / "run.out").read_text():
            assert time.monotonic() < deadline, (tmp_path / "run.out").read_text()
            time.sleep(0.1)
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
        out.close()


def test_console_without_local_mode_says_how_to_start_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [STAT_BOT, "console"], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "start `stat-bot run` without Slack tokens first" in result.stderr


def test_parts_stop_when_run_is_killed_outright(tmp_path: Path) -> None:
    env = _env(tmp_path)
    service = subprocess.Popen(
        [STAT_BOT, "run", "--no-console"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "var" / "local-slack.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The Slack emulator, the local Trac, the Redfish emulator, the mail sink, the bot,
        # the dispatcher, the web server (its workers are its own).
        children = _wait_children(service.pid, 7)
        assert any("local-trac" in _cmdline(pid) for pid in children)
        assert any("redfish_emulator" in _cmdline(pid) for pid in children)
        assert any("mail_sink" in _cmdline(pid) for pid in children)
    finally:
        service.kill()  # SIGKILL: it gets no chance to stop them itself
        service.wait()
    deadline = time.monotonic() + 20
    while alive := [pid for pid in children if _running(pid)]:
        assert time.monotonic() < deadline, f"parts outlived `run`: {alive}"
        time.sleep(0.1)


def _wait_children(pid: int, count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(found := _children(pid)) < count:
        assert time.monotonic() < deadline, f"{len(found)} parts, expected {count}"
        time.sleep(0.1)
    assert len(found) == count
    return found


def test_run_serves_the_dashboard_and_says_where(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "WEB_PORT": "0"}
    err = (tmp_path / "run.err").open("w+")
    service = subprocess.Popen(
        [STAT_BOT, "run", "--no-console"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    try:
        deadline = time.monotonic() + 30
        while not (found := DASHBOARD.search((tmp_path / "run.err").read_text())):
            assert service.poll() is None, (tmp_path / "run.err").read_text()
            assert time.monotonic() < deadline, (tmp_path / "run.err").read_text()
            time.sleep(0.05)
        banner = (tmp_path / "run.err").read_text()
        assert "no dashboard users yet: create one with `.venv/bin/stat-bot web-user add NAME`" in (
            banner
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{found[1]}login", timeout=10) as page:
            html = page.read().decode()
        assert page.status == 200
        assert "stat-bot web-user add NAME" in html
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
        err.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(proc_stat(int(entry.name))[1])
            except OSError:
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = proc_stat(pid)[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _start_local_mode(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    err = tmp_path / "run.err"
    with err.open("wb") as sink:
        service = subprocess.Popen(
            [STAT_BOT, "run", "--no-console"],
            cwd=ROOT,
            env={**_env(tmp_path), "WEB_PORT": "0", **extra},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 60
    while "stop with Ctrl-C" not in err.read_text():
        assert service.poll() is None, err.read_text()
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    return service, err


def test_local_mode_brings_a_trac_so_trac_active_answers(tmp_path: Path) -> None:
    """`@stat-bot trac active` answers from the local Trac's sample tickets; a change made
    through the bot comes back through the plugin as a notice in #general."""
    require_trac()
    service, err = _start_local_mode(tmp_path)
    try:
        banner = err.read_text()
        trac_url = re.search(r"Trac: +(http://127\.0\.0\.1:\d+/stat) \(local", banner)
        assert trac_url, banner
        trac = next(pid for pid in _children(service.pid) if "local-trac" in _cmdline(pid))
        slack = EmulatorClient(
            json.loads((tmp_path / "var" / "local-slack.json").read_text())["url"]
        )
        slack.wait_for_connections(timeout=30)

        asked = slack.post("admin", "general", "@stat-bot trac active")
        reply = slack.wait_for_reply(
            *asked,
            lambda m: m["bot_id"] and "ACTIVE TICKETS" in message_text(m).upper(),
            timeout=60,
        )
        text = message_text(reply) + json.dumps(reply.get("blocks"))
        open_ones = [t for t in SAMPLE_TICKETS if t.status != "closed"]
        assert 0 < len(open_ones) < len(SAMPLE_TICKETS)
        for ticket in SAMPLE_TICKETS:
            assert (ticket.summary in text) == (ticket.status != "closed"), text
        assert f"{trac_url[1]}/ticket/1" in text

        # Custom fields, hostname included, in the ticket's detail.
        asked = slack.post("admin", "general", "@stat-bot trac ticket 1")
        detail = slack.wait_for_reply(
            *asked,
            lambda m: m["bot_id"] and SAMPLE_TICKETS[0].hostname in message_text(m),
            timeout=60,
        )
        assert SAMPLE_TICKETS[0].xname in message_text(detail)

        # A change made through the bot reaches #general through the plugin and /trac.
        asked = slack.post("admin", "general", "@stat-bot trac comment 1 Reseated the node")
        slack.wait_for_reply(
            *asked, lambda m: m["bot_id"] and "Commented" in message_text(m), timeout=60
        )
        notice = slack.wait_for_message(
            "general",
            lambda m: (
                m["bot_id"]
                and "STAT ticket" in message_text(m)
                and "Reseated the node" in message_text(m)
            ),
            timeout=30,
        )
        assert SAMPLE_TICKETS[0].summary in message_text(notice)
        # The password is the service's: never in what `run` prints.
        assert "TRAC_PASSWORD" not in banner
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()
    deadline = time.monotonic() + 20
    while _running(trac):
        assert time.monotonic() < deadline, "the local Trac outlived `run`"
        time.sleep(0.1)


def test_trac_url_set_means_no_local_trac(tmp_path: Path) -> None:
    service, err = _start_local_mode(tmp_path, TRAC_URL="http://127.0.0.1:9/stat")
    try:
        assert "Trac:       http://127.0.0.1:9/stat\n" in err.read_text()
        assert not any("local-trac" in _cmdline(pid) for pid in _children(service.pid))
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0


def test_a_quick_restart_keeps_the_web_port(tmp_path: Path) -> None:
    """The plugin of the local Trac (and bookmarks) point at WEB_PORT: a restart keeps it,
    though the last run's connections are still in TIME_WAIT."""
    from tests.integration.test_port_reuse import _states
    from tests.trac_fixtures import free_port

    port = free_port()
    for attempt in range(2):
        service, err = _start_local_mode(tmp_path / str(attempt), WEB_PORT=str(port))
        try:
            banner = err.read_text()
            assert f"dashboard: http://127.0.0.1:{port}/\n" in banner, banner
            assert "is in use" not in banner
            # A browser's kept-alive connection, open while the service stops: the server
            # closes it first, so its end waits in TIME_WAIT.
            browser = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            browser.request("GET", "/login")
            assert browser.getresponse().read()
        finally:
            service.send_signal(signal.SIGTERM)
            assert service.wait(40) == 0
        browser.close()
        if attempt == 0:
            assert "TIME_WAIT" in _states(port)  # what used to push the restart elsewhere


def test_local_mode_brings_a_demo_chassis_so_hw_check_and_sweep_answer(tmp_path: Path) -> None:
    """`@stat-bot hw check x1000c0s0b0n0` and `@stat-bot hw sweep x1000c0` answer out of the
    box from the Redfish emulator's 16 demo nodes; a node that breaks between two sweeps is
    what the second one reports; power actions reach the emulator."""
    from stat_bot.integrations.redfish_emulator import EmulatorControl

    service, err = _start_local_mode(tmp_path)
    try:
        banner = err.read_text()
        assert "16 demo nodes x1000c0s[0-7]b0n[0-1] on a local Redfish emulator" in banner
        redfish = next(pid for pid in _children(service.pid) if "redfish_emulator" in _cmdline(pid))
        local = json.loads((tmp_path / "var" / "local-redfish.json").read_text())
        control = EmulatorControl(local["control"])
        slack = EmulatorClient(
            json.loads((tmp_path / "var" / "local-slack.json").read_text())["url"]
        )
        slack.wait_for_connections(timeout=30)

        def ask(text: str, wanted: str) -> str:
            asked = slack.post("admin", "general", f"@stat-bot {text}")
            # The job's progress note (quoting its output so far) becomes the report.
            reply = slack.wait_for_reply(
                *asked,
                lambda m: (
                    m["bot_id"]
                    and wanted in message_text(m)
                    and not message_text(m).startswith(":hourglass")
                ),
                timeout=90,
            )
            return message_text(reply)

        checked = ask("hw check x1000c0s0b0n0", "1 node: 1 ok")
        assert checked.splitlines()[0] == "1 node: 1 ok"
        first = ask("hw sweep x1000c0", "Sweep of x1000c0")
        assert first.splitlines()[0] == (
            "Sweep of x1000c0: 16 nodes: 14 ok, 2 critical; "
            "first sweep of this scope: nothing earlier to compare with"
        )
        assert "*x1000c0s2b0n1* (nid000006): PSU 2: Critical" in first
        control.variant("x1000c0s7b0n1", "failed_dimm")
        second = ask("hw sweep x1000c0", "1 new problem")
        assert second.splitlines()[0] == (
            "Sweep of x1000c0: 16 nodes: 13 ok, 3 critical; 1 new problem, 2 problems unchanged"
        )
        assert "*New problems* (1)\n:red_circle: *x1000c0s7b0n1* (nid000016)" in second
        shown = ask("hw show x1000c0s7b0n1", "selects 1 node")
        assert "latest known: 1 node: 1 critical" in shown
        # Power is guarded: the answer is an offer with buttons; the requester confirms.
        asked = slack.post("admin", "general", "@stat-bot hw power x1000c0s0b0n0 off")
        offer = slack.wait_for_reply(
            *asked,
            lambda m: any(b.get("type") == "actions" for b in m.get("blocks") or []),
            timeout=90,
        )
        assert "x1000c0s0b0n0" in message_text(offer)
        slack.click("admin", asked[0], offer["ts"], "stat_confirm", wait_ack=True)
        off = message_text(
            slack.wait_for_reply(
                *asked,
                lambda m: (
                    m["bot_id"]
                    and "power off on 1 node" in message_text(m)
                    and not message_text(m).startswith(":hourglass")
                ),
                timeout=90,
            )
        )
        assert "GracefulShutdown sent (was On)" in off
        assert re.search(r"Confirmed by (@admin|<@U\w+>)\.", off), off
        assert ask("hw power x1000c0s0b0n0 status", "1 node:").startswith("1 node: 0 on, 1 off")
        assert "REDFISH_PASSWORD" not in banner
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()
    deadline = time.monotonic() + 20
    while _running(redfish):
        assert time.monotonic() < deadline, "the Redfish emulator outlived `run`"
        time.sleep(0.1)


def test_an_incident_runs_from_opening_to_postmortem_in_local_mode(tmp_path: Path) -> None:
    """Local mode alone runs an incident: `/incident` opens the channel (the digest in
    #incidents, @hpc-admins invited), the pinned message's buttons and select change it,
    and resolving writes the postmortem into the local Trac's wiki; the public status page
    shows it without its description."""
    require_trac()
    service, err = _start_local_mode(tmp_path)
    try:
        banner = err.read_text()
        trac_url = re.search(r"Trac: +(http://127\.0\.0\.1:\d+/stat) \(local", banner)
        dashboard = DASHBOARD.search(banner)
        assert trac_url, banner
        assert dashboard, banner
        slack = EmulatorClient(
            json.loads((tmp_path / "var" / "local-slack.json").read_text())["url"]
        )
        slack.wait_for_connections(timeout=30)

        slack.command(
            "admin", "general", "/incident", "Slurm controller unreachable --xname x1000c0s2b0n1"
        )
        opened = slack.wait_for_ephemeral(
            lambda e: "is open" in (e.get("text") or ""), user="admin", timeout=60
        )
        channel = re.search(r"<#(C\w+)>", opened["text"])[1]  # type: ignore[index]
        pinned = slack.wait_for_message(channel, lambda m: m["pinned_to"], timeout=60)
        slack.wait_for_message(
            "incidents", lambda m: "Slurm controller unreachable" in message_text(m), timeout=60
        )
        # The linked node's check (the demo chassis' critical PSU) and the snapshot.
        slack.wait_for_message(
            channel,
            lambda m: (
                "PSU 2: Critical" in message_text(m)
                and not message_text(m).startswith(":hourglass")
            ),
            timeout=90,
        )
        slack.wait_for_message(
            channel, lambda m: "Trac active tickets:" in message_text(m), timeout=90
        )

        slack.click("admin", channel, pinned["ts"], "incident_claim-commander", wait_ack=True)
        slack.click(
            "admin", channel, pinned["ts"], "incident_status", option="identified", wait_ack=True
        )
        slack.wait_for_message(
            channel, lambda m: "set the status to *identified*" in message_text(m), timeout=60
        )
        slack.click(
            "admin", channel, pinned["ts"], "incident_status", option="resolved", wait_ack=True
        )
        link = slack.wait_for_message(
            channel, lambda m: "Postmortem draft:" in message_text(m), timeout=90
        )
        page = re.search(r"/wiki/(Incidents/[\w-]+)", message_text(link))
        assert page, message_text(link)
        with urllib.request.urlopen(
            f"{trac_url[1]}/wiki/{page[1]}?format=txt", timeout=30
        ) as answer:
            wiki = answer.read().decode()
        assert "Slurm controller unreachable" in wiki
        assert "x1000c0s2b0n1" in wiki
        assert "== Timeline ==" in wiki

        with urllib.request.urlopen(f"{dashboard[1]}status.json", timeout=30) as answer:
            public = json.loads(answer.read())
        assert "Slurm controller unreachable" not in json.dumps(public)
        assert any("x1000c0" in json.dumps(i) for i in public["incidents"]), public
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()


def test_an_alert_in_local_mode_gets_its_runbook_steps_from_the_trac_wiki(
    tmp_path: Path,
) -> None:
    """Local mode indexes its Trac's sample runbooks at start; an Alertmanager alert
    `NodeDown` posted to the web server gets the wiki page's steps in its thread."""
    require_trac()
    # The repository's runbooks/ are indexed too: the wiki page written for the alert wins.
    service, err = _start_local_mode(tmp_path / "home")
    try:
        banner = err.read_text()
        # No ALERTMANAGER_TOKEN set: local mode made one, kept in a file only its user reads.
        token_file = tmp_path / "home" / "var" / "local-alertmanager-token"
        assert f'Bearer $(cat {token_file})"' in banner, banner
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 24
        assert token not in banner
        dashboard = DASHBOARD.search(banner)
        trac_url = re.search(r"Trac: +(http://127\.0\.0\.1:\d+/stat) \(local", banner)
        assert dashboard, banner
        assert trac_url, banner
        queue = SQLiteQueue(tmp_path / "home" / "var" / "stat-bot.sqlite3")
        try:
            deadline = time.monotonic() + 90
            while not queue.runbook_pages("trac"):
                assert service.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "local mode never indexed its runbooks"
                time.sleep(0.2)
        finally:
            queue.close()
        alert = {
            "status": "firing",
            "labels": {"alertname": "NodeDown", "severity": "critical", "xname": "x1000c0s0b0n0"},
            "annotations": {"summary": "x1000c0s0b0n0 stopped answering"},
            "startsAt": "2026-12-01T08:00:00Z",
            "fingerprint": "local-node-down",
        }
        request = urllib.request.Request(
            dashboard[1] + "alerts/alertmanager",
            data=json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        slack = EmulatorClient(
            json.loads((tmp_path / "home" / "var" / "local-slack.json").read_text())["url"]
        )
        parent = slack.wait_for_message(
            "oncall", lambda m: m["bot_id"] and "NodeDown" in m.get("text", ""), timeout=30
        )
        reply = slack.wait_for_reply(
            "oncall", parent["ts"], lambda m: "Runbook" in message_text(m), timeout=30
        )
        text = message_text(reply)
        assert (
            f"<{trac_url[1]}/wiki/Runbooks/NodeDown#NodeDown:anodestoppedanswering|"
            "NodeDown: a node stopped answering>"
        ) in text, text
        assert "Drain it before touching it" in text
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()


def test_local_mode_keeps_the_handoff_mail_in_the_data_folder(tmp_path: Path) -> None:
    """`@stat-bot oncall handoff` in local mode: the summary in the thread, and the mail
    (plain text, HTML and its PNG chart) in STATE_DIR/mail/*.eml, said in the banner."""
    require_trac()
    service, err = _start_local_mode(tmp_path)
    mail_dir = tmp_path / "var" / "mail"
    try:
        banner = err.read_text()
        assert f"mail:       kept in {mail_dir}/*.eml" in banner
        slack = EmulatorClient(
            json.loads((tmp_path / "var" / "local-slack.json").read_text())["url"]
        )
        slack.wait_for_connections(timeout=30)
        asked = slack.post("admin", "general", "@stat-bot oncall handoff")
        reply = slack.wait_for_reply(
            *asked, lambda m: m["bot_id"] and "On-call handoff" in message_text(m), timeout=90
        )
        assert "Most frequent alerts" in message_text(reply)
        deadline = time.monotonic() + 30
        while not list(mail_dir.glob("*.eml")):
            assert time.monotonic() < deadline, "no mail in " + str(mail_dir)
            time.sleep(0.1)
        (mail,) = mail_dir.glob("*.eml")
        message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
        assert message["To"] == "oncall@localhost"
        types = [part.get_content_type() for part in message.walk()]
        assert types == [
            "multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png",
        ]  # fmt: skip
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()
