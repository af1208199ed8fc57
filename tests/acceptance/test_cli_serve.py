"""``apx serve`` and ``apx principals``, driven as an operator drives them.

The server is a real ``apx serve`` subprocess on 127.0.0.1 with ``--port 0`` (it
prints the port it got). Its output goes to files, so nothing blocks on a full
pipe; every wait is a bounded loop, and the process is always stopped (SIGTERM,
then SIGKILL if it ignores that) when a test ends. ``test_cli_remote.py`` uses
:func:`serving` too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from test_cli import APX, EXAMPLES, apx

#: Building the App (policy bundle, migrations) and starting uvicorn on a busy 2-core runner.
START_TIMEOUT = 120.0
#: A stop is bounded by apx serve itself (about 45 s at worst); this is a margin over that.
STOP_TIMEOUT = 90.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    out: Path
    err: Path

    def output(self) -> str:
        return self.out.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait (bounded) for the exit code; SIGKILL if it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"apx serve did not stop within {STOP_TIMEOUT}s of {sig}") from None


def cli_env(home: Path | None = None, token: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of an ``apx`` run: no stray server, token or database from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("APX_SERVER", "APX_TOKEN", "APX_HOME")}
    env.pop("APX_DATABASE_URL", None)
    if home is not None:
        env["APX_HOME"] = str(home)
    if token is not None:
        env["APX_TOKEN"] = token
    env.update(extra)
    return env


@contextmanager
def serving(home: Path, logs: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``apx serve --port 0`` on ``home`` until the block ends; waits until /readyz says ok."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "serve.out", logs / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [APX, "serve", "--port", "0", *args],
            stdout=stdout,
            stderr=stderr,
            env=env or cli_env(home),
        )
    server = Server(process=process, url="", out=out, err=err)
    try:
        server.url = _wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def _wait_until_ready(server: Server) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    url = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"apx serve exited with {server.process.returncode}: {server.err.read_text()[-2000:]}"
            )
        if url is None:
            found = re.search(r"listening on (http://\S+)", server.output())
            url = found.group(1) if found else None
        if url is not None:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"apx serve was not ready within {START_TIMEOUT}s: {server.output()}")


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    made = apx("init", home=home)
    assert made.returncode == 0, made.stderr
    return home


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APX, *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_listens_on_loopback_runs_the_worker_and_stops_cleanly(
    fresh_home: Path, tmp_path: Path, sig: int
) -> None:
    with serving(fresh_home, tmp_path / "logs") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/openapi.json", timeout=10).json()["info"]["title"]
        assert "drain worker running" in server.output()

        # Queued by another process (no waiting): the server's worker decides it.
        queued = apx(
            "submit",
            str(EXAMPLES / "optimizer-scale-checkout.yaml"),
            "--agent",
            "optimizer",
            "--no-wait",
            "--json",
            home=fresh_home,
        )
        assert queued.returncode == 0, queued.stderr
        intent_id = _json_field(queued.stdout, "intent_id")
        assert _json_field(queued.stdout, "status") == "queued"
        assert _eventually_status(fresh_home, intent_id) == "applied"

        assert server.stop(sig) == 0
    output = server.output()
    assert "apx serve: stopping" in output and "apx serve: stopped" in output


def test_a_port_in_use_is_one_clear_error(fresh_home: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), env=cli_env(fresh_home))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_principals_are_added_with_a_token_shown_once_listed_without_it_and_revoked(
    fresh_home: Path,
) -> None:
    env = cli_env(fresh_home)
    added = run("principals", "add", "ci-builder", "--role", "agent:builder", "--tenant", "acme", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert re.fullmatch(r"apx_[A-Za-z0-9_-]{40,}", token)  # stdout is the token alone, for scripts
    assert "cannot be shown again" in added.stderr
    reviewer = run(
        "principals", "add", "alice", "--role", "reviewer", "--tenant", "acme", "--tenant", "globex", env=env
    )
    assert reviewer.returncode == 0, reviewer.stderr

    stored = fresh_home / "principals.yaml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert token not in stored.read_text()

    listed = run("principals", "list", env=env)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert re.match(r"ci-builder\s+agent:builder\s+acme$", lines[0])
    assert re.match(r"alice\s+reviewer\s+acme, globex$", lines[1])
    as_json = run("principals", "list", "--json", env=env)
    for secret_part in (token, "sha256", "token"):
        assert secret_part not in listed.stdout and secret_part not in as_json.stdout

    again = run("principals", "add", "alice", "--role", "reviewer", "--tenant", "acme", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad_role = run("principals", "add", "bot", "--role", "root", "--tenant", "acme", env=env)
    assert bad_role.returncode == 2 and "unknown role 'root'" in bad_role.stderr
    no_tenant = run("principals", "add", "bot", "--role", "engineer", env=env)
    assert no_tenant.returncode == 2

    revoked = run("principals", "revoke", "ci-builder", env=env)
    assert revoked.returncode == 0 and "revoked ci-builder" in revoked.stdout
    assert "ci-builder" not in run("principals", "list", env=env).stdout
    unknown = run("principals", "revoke", "ci-builder", env=env)
    assert unknown.returncode == 2 and "no principal named 'ci-builder'" in unknown.stderr


def _json_field(stdout: str, key: str) -> str:
    import json

    return str(json.loads(stdout)[key])


def _eventually_status(home: Path, intent_id: str, *, want: str = "applied", timeout: float = 60.0) -> str:
    """The intent's status once it is ``want``, or the last one seen after ``timeout`` seconds."""
    import json

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        shown = apx("intents", "show", intent_id, "--json", home=home)
        status = json.loads(shown.stdout)["status"] if shown.returncode == 0 else f"exit {shown.returncode}"
        if status == want:
            break
        time.sleep(0.5)
    return status
