"""What every benchmark, fault test and soak shares: real processes on loopback, a private
PostgreSQL cluster, a world of staff and patients made through the API, and load generators.

Nothing here is a stand-in for a part of the service: servers are ``interlude serve`` (uvicorn)
processes, PostgreSQL is a real cluster, and accounts are made through the CLI and HTTP API the
way a clinic makes them. Everything listens on 127.0.0.1 only and every wait is bounded.
"""

import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import msgspec
from litestar import Litestar, post
from litestar.params import JSONBody
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

REPO: Final = Path(__file__).resolve().parent.parent
PYTHON: Final = sys.executable
LOOPBACK: Final = "127.0.0.1"
# The harness variable the service's settings already accept (backend/config.py).
ADMIN_POSTGRES_URL: Final = os.environ.get(
    "INTERLUDE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
PHQ9_VERSION: Final = "1.0.0"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """Prefix ``taskset -c cpus`` when pinning is asked for and possible."""
    if cpus is None or shutil.which("taskset") is None or cpu_count() < 2:
        return argv
    return ["taskset", "-c", cpus, *argv]


def phq9_body(values: Mapping[int, int] | None = None, **extra: Any) -> dict[str, Any]:
    """A PHQ-9 submission as the companion app sends it (9 answers, about 0.5 kB); by default a
    moderate score with item 9 (self-harm) at 0, the common case. No ``authored`` unless given:
    the server takes the time it arrives, as for a phone whose patient answered just now (a
    fixed past time would make every load test one long burst of late answers)."""
    from questionnaires.registry import get_instrument

    chosen = {**dict.fromkeys(range(1, 9), 1), 9: 0} if values is None else dict(values)
    return {
        "instrumentId": "phq9",
        "instrumentVersion": get_instrument("phq9").version,
        "answers": [{"linkId": f"phq9-{item}", "value": value} for item, value in chosen.items()],
        **extra,
    }


# --- databases ------------------------------------------------------------------------------


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """A SQLAlchemy PostgreSQL URL as asyncpg takes it (optionally naming another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _postgres_admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass
class Database:
    """A migrated database for one run; ``drop()`` removes it."""

    url: str
    kind: str
    _admin_url: str | None = None
    _name: str | None = None

    def drop(self) -> None:
        if self._admin_url is not None and self._name is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                asyncio.run(
                    _postgres_admin(
                        self._admin_url, f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'
                    )
                )


def migrate(database_url: str, data_dir: Path) -> None:
    """``interlude migrate up`` as an operator runs it."""
    result = subprocess.run(
        [PYTHON, "-m", "backend", "migrate", "up"],
        env=service_env(database_url, data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        msg = f"migration failed: {result.stderr[-2000:]}"
        raise RuntimeError(msg)


def create_database(kind: str, workdir: Path, admin_url: str = ADMIN_POSTGRES_URL) -> Database:
    if kind == "sqlite":
        database = Database(url=f"sqlite+aiosqlite:///{workdir / 'interlude.sqlite3'}", kind=kind)
    else:
        name = f"interlude_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        database = Database(url=url, kind=kind, _admin_url=admin_url, _name=name)
    migrate(database.url, workdir / "var")
    return database


class PrivateCluster:
    """A throw-away PostgreSQL cluster in a temp dir, on a free port, that tests may restart.

    The shared server on 5432 belongs to everyone's tests and is never restarted. ``initdb``
    refuses to run as root, so as root the cluster is owned by the ``postgres`` user.
    """

    def __init__(self, *, cpus: str | None = None) -> None:
        self.port = free_port()
        # Its own directory under /tmp: the ``postgres`` user cannot enter pytest's (mode 700).
        self._workdir = Path(tempfile.mkdtemp(prefix="interlude-pg-"))
        self.dir = self._workdir / "data"
        self.socket_dir = self._workdir / "sock"
        self.log = self._workdir / "postgres.log"
        self.cpus = cpus
        self._bin = _postgres_bin()

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            pinned(command, self.cpus), timeout=timeout, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            msg = f"{Path(argv[0]).name} failed: {result.stderr[-1500:] or result.stdout[-1500:]}"
            raise RuntimeError(msg)

    def init(self) -> "PrivateCluster":
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self._workdir, self.socket_dir):
                shutil.chown(path, "postgres")
        self._run(
            str(self._bin / "initdb"), "-D", str(self.dir), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={LOOPBACK}"
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self._workdir, ignore_errors=True)


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        msg = "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
        raise RuntimeError(msg)
    return found[-1].parent


# --- service processes ----------------------------------------------------------------------


def service_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``interlude`` process: this one's, minus any INTERLUDE_* leak."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    env.update(
        {
            "INTERLUDE_DATA_DIR": str(data_dir),
            "INTERLUDE_DATABASE_URL": database_url,
            "INTERLUDE_LOG_LEVEL": "WARNING",
            "INTERLUDE_AUTO_MIGRATE": "false",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update({f"INTERLUDE_{k.upper()}": v for k, v in extra.items()})
    return env


class Process:
    """One server process on loopback: start, wait until it answers, stop it by its own pid."""

    def __init__(
        self,
        argv: list[str],
        *,
        port: int,
        env: Mapping[str, str],
        log: Path,
        cpus: str | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.argv = argv
        self.port = port
        self.env = dict(env)
        self.log = log
        self.cpus = cpus
        self.ready_path = ready_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, *, ready_timeout: float = 60.0) -> "Process":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                pinned(self.argv, self.cpus),
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                msg = f"server exited with {self.popen.returncode}; log: {self.tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + self.ready_path, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        msg = f"server not ready after {timeout} s; log: {self.tail()}"
        raise RuntimeError(msg)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not end in time."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interlude_serve(
    database_url: str,
    data_dir: Path,
    *,
    log: Path,
    cpus: str | None = None,
    port: int | None = None,
    **settings: str,
) -> Process:
    """An ``interlude serve`` process (uvicorn, one worker), not yet started."""
    port = port or free_port()
    env = service_env(database_url, data_dir, **settings)
    argv = [PYTHON, "-m", "backend", "serve", "--host", LOOPBACK, "--port", str(port)]
    return Process(argv, port=port, env=env, log=log, cpus=cpus)


# --- a bare Litestar endpoint: the yardstick the real one is measured against -------------


def create_bare_app() -> Litestar:
    """Decodes and validates the same body into the same Struct, returns a small JSON; nothing
    else (no middleware, no auth, no database). Same uvicorn settings and GC freeze as the app."""
    from backend.domain.responses.schemas import ResponseSubmission

    @post("/api/v1/responses", status_code=200)
    async def submit(data: JSONBody[ResponseSubmission]) -> dict[str, str]:
        return {"responseId": str(uuid.uuid4()), "status": "accepted"}

    async def freeze(_app: Litestar) -> None:
        gc.collect()
        gc.freeze()

    return Litestar(route_handlers=[submit], on_startup=[freeze], debug=False, logging_config=None)


def bare_server(*, log: Path, cpus: str | None = None) -> Process:
    port = free_port()
    argv = [
        PYTHON, "-m", "uvicorn", "bench.common:create_bare_app", "--factory",
        "--host", LOOPBACK, "--port", str(port), "--workers", "1",
        "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "20",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    env["PYTHONPATH"] = str(REPO)
    return Process(argv, port=port, env=env, log=log, cpus=cpus, ready_path="/schema/openapi.json")


# --- a world of accounts, made the way a clinic makes them ----------------------------------


@dataclass
class PatientLogin:
    id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class StaffLogin:
    id: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class World:
    clinic_id: str
    staff: dict[str, StaffLogin]
    patients: list[PatientLogin] = field(default_factory=list)


def _cli(env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "backend", *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        msg = f"interlude {args[0]} failed: {result.stderr[-1000:]}"
        raise RuntimeError(msg)
    return result.stdout


def _field(output: str, prefix: str) -> str:
    for line in output.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    msg = f"no {prefix!r} line in the command's output"
    raise RuntimeError(msg)


async def _log_in(client: httpx.AsyncClient, email: str, password: str, totp: str | None) -> Any:
    import pyotp

    body: dict[str, Any] = {"email": email, "password": password}
    if totp is not None:
        body["totp_code"] = pyotp.TOTP(totp).now()
    response = await client.post("/api/v1/auth/staff/login", json=body)
    response.raise_for_status()
    result = response.json()
    if result["status"] != "authenticated":
        msg = f"staff login: {result['status']}"
        raise RuntimeError(msg)
    return result["tokens"]


def make_world(
    base_url: str,
    env: Mapping[str, str],
    *,
    patients: int = 1,
    roles: tuple[str, ...] = ("clinician",),
    sessions: int = 0,
) -> World:
    """A clinic (CLI), staff with the given roles (CLI, then login over HTTP), and enrolled
    patients (created by the clinician over HTTP, enrolment code redeemed like the app does).
    ``sessions``: each patient is in an N2O course with that many sessions, a day apart, the
    last one a day ago (as a monitored patient is between sessions)."""
    from urllib.parse import parse_qs, urlparse

    tag = uuid.uuid4().hex[:8]
    clinic_id = _field(_cli(env, "clinic", "create", "--name", f"Bench {tag}"), "clinic ").split()[
        0
    ]
    accounts: list[tuple[str, str, str, str | None]] = []
    for role in dict.fromkeys(("clinician", *roles)):
        email = f"{role}.{tag}@example.org"
        clinic_args = [] if role == "operator" else ["--clinic", clinic_id]
        output = _cli(
            env, "staff", "create", *clinic_args, "--role", role, "--email", email,
            "--name", f"Bench {role}",
        )  # fmt: skip
        password = _field(output, "one-time password:")
        totp = None
        if "TOTP provisioning URI" in output:
            uri = _field(output, "TOTP provisioning URI (scan once):")
            totp = parse_qs(urlparse(uri).query)["secret"][0]
        accounts.append((role, email, password, totp))

    async def run() -> World:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            staff: dict[str, StaffLogin] = {}
            for role, email, password, totp in accounts:
                tokens = await _log_in(client, email, password, totp)
                me = _claims_subject(tokens["access_token"])
                staff[role] = StaffLogin(me, role, tokens["access_token"], tokens["refresh_token"])
            world = World(clinic_id=clinic_id, staff=staff)
            for number in range(patients):
                patient = await _enrol(client, staff["clinician"], f"B{tag}-{number:05d}")
                for day in range(sessions, 0, -1):
                    await _plan_session(client, staff["clinician"], patient, days_ago=day)
                world.patients.append(patient)
            return world

    return asyncio.run(run())


def _claims_subject(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


async def _enrol(client: httpx.AsyncClient, clinician: StaffLogin, mrn: str) -> PatientLogin:
    created = await client.post(
        "/api/v1/patients",
        headers=clinician.headers,
        json={
            "name": f"Bench Patient {mrn}",
            "email": f"{mrn.lower()}@example.org",
            "mrn": mrn,
            "date_of_birth": "1980-02-29",
            "time_zone": "Europe/London",
            "locale": "en-GB",
        },
    )
    created.raise_for_status()
    body = created.json()
    redeemed = await client.post(
        "/api/v1/enrolment/redeem",
        json={
            "code": body["enrolment"]["code"],
            "device": {"platform": "ios", "time_zone": "Europe/London", "locale": "en-GB"},
        },
    )
    redeemed.raise_for_status()
    tokens = redeemed.json()["tokens"]
    return PatientLogin(body["patient"]["id"], tokens["access_token"], tokens["refresh_token"])


async def _plan_session(
    client: httpx.AsyncClient, clinician: StaffLogin, patient: PatientLogin, *, days_ago: int
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_ago)
    response = await client.post(
        f"/api/v1/patients/{patient.id}/sessions",
        headers=clinician.headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    response.raise_for_status()


async def refresh_patient(client: httpx.AsyncClient, patient: PatientLogin) -> None:
    """Access tokens live 15 minutes; long runs (the soak) refresh like the app does."""
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": patient.refresh_token}
    )
    response.raise_for_status()
    tokens = response.json()
    tokens = tokens.get("tokens", tokens)
    patient.access_token = tokens["access_token"]
    patient.refresh_token = tokens["refresh_token"]


# --- load -----------------------------------------------------------------------------------


class LoadResult(msgspec.Struct, kw_only=True):
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    errors: int
    statuses: dict[str, int] = msgspec.field(default_factory=dict)
    generator: str = "httpx"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


_WRK_SCRIPT: Final = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auths = {}
for token in string.gmatch(os.getenv("BENCH_AUTH") or "", "[^\\n]+") do
  auths[#auths + 1] = token
end
local turn = 0
request = function()
  if #auths > 0 then
    turn = turn % #auths + 1
    wrk.headers["Authorization"] = auths[turn]
  end
  return wrk.format()
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50\\": %d, \\"p90\\": %d, " ..
    "\\"p99\\": %d, \\"max\\": %d, \\"status\\": %d, \\"connect\\": %d, \\"read\\": %d, " ..
    "\\"write\\": %d, \\"timeout\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def ensure_wrk() -> str | None:
    """wrk from Debian (allowed for the bench); installed once if missing and we are root."""
    found = shutil.which("wrk")
    if found is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            check=False,
            capture_output=True,
            timeout=300,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


def run_wrk(
    url: str,
    body: bytes,
    *,
    authorization: str | list[str] | None = None,
    connections: int = 64,
    seconds: float = 10.0,
    cpus: str | None = "1",
) -> LoadResult:
    """wrk POSTing ``body``; several authorizations are used in turn (many patients' phones)."""
    wrk = ensure_wrk()
    if isinstance(authorization, list):
        authorization = "\n".join(authorization)
    if wrk is None:
        msg = "wrk is not installed"
        raise RuntimeError(msg)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_AUTH": authorization or ""}
    argv = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", script.name, url,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            pinned(argv, cpus),
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(script.name)
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    elapsed = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return LoadResult(
        requests=data["requests"],
        seconds=elapsed,
        rps=data["requests"] / elapsed,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        non_2xx=data["status"],
        errors=errors,
        generator="wrk",
    )


Send = Callable[[httpx.AsyncClient, int], Awaitable[int]]


async def closed_loop(
    base_urls: list[str],
    send: Send,
    *,
    connections: int = 64,
    seconds: float = 10.0,
    max_requests: int | None = None,
    request_timeout: float = 10.0,
) -> LoadResult:
    """``connections`` workers, each sending one request after another until the time or the
    count runs out; connections are spread over ``base_urls`` round-robin. ``send(client, n)``
    makes request number n and returns its status. Transport errors are counted, not raised."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    sequence = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, sequence
        while time.monotonic() < deadline:
            if max_requests is not None and sequence >= max_requests:
                return
            number = sequence
            sequence += 1
            started = time.perf_counter()
            try:
                status = await send(client, number)
            except httpx.HTTPError:
                errors += 1
                await asyncio.sleep(0.05)  # a refused connection must not spin
                continue
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] += 1

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) for url in base_urls
    ]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(connections)))
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.perf_counter() - started
    latencies.sort()
    non_2xx = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        rps=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else float("nan"),
        non_2xx=non_2xx,
        errors=errors,
        statuses=dict(statuses),
    )


@contextlib.contextmanager
def workdir(prefix: str = "interlude-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def engine_for(database_url: str) -> AsyncEngine:
    """The service's own engine factory, for a harness that reads or writes the database."""
    from backend.config import load_settings
    from backend.db.engine import create_engine

    env = {"INTERLUDE_DATABASE_URL": database_url, "INTERLUDE_DATA_DIR": tempfile.gettempdir()}
    return create_engine(load_settings(env))


# --- a webhook receiver on loopback, and messages to send it --------------------------------


class WebhookReceiver:
    """A real HTTP receiver that verifies each delivery's signature and records its idempotency
    key; ``delay`` slows every answer (to hold sends in flight), ``fail_status`` refuses them."""

    def __init__(self, secret: str = "bench-webhook-secret-0123456789abcdef") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.secret = secret
        self.delay = 0.0
        self.fail_status: int | None = None
        self.keys: list[str] = []
        self.arrived = 0
        self.rejected = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from datetime import UTC, datetime

                from notifications.webhook import WebhookVerificationError, verify_webhook

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.arrived += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.fail_status is not None:
                    self.send_response(receiver.fail_status)
                    self.end_headers()
                    return
                try:
                    verified = verify_webhook(
                        receiver.secret, dict(self.headers.items()), body, datetime.now(UTC)
                    )
                except WebhookVerificationError:
                    with receiver._lock:
                        receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.keys.append(verified.idempotency_key)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    def received(self) -> list[str]:
        with self._lock:
            return list(self.keys)

    def write_config(self, path: Path, endpoint: str = "ops") -> Path:
        """An INTERLUDE_NOTIFICATIONS_CONFIG file with this receiver as webhook ``endpoint``."""
        config = {
            "webhook": {
                "endpoints": {endpoint: {"url": self.url, "secret": self.secret}},
                "timeout_seconds": 10.0,
            }
        }
        path.write_text(json.dumps(config))
        return path


async def enqueue_webhooks(database_url: str, count: int, *, endpoint: str = "ops") -> list[str]:
    """``count`` alert messages to the webhook endpoint, through the outbox's own ``enqueue`` in
    one committed transaction (as a cause would write them); returns their idempotency keys."""
    from datetime import UTC, datetime

    from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
    from notifications.base import Channel, Urgency
    from notifications.templates import MessageKind

    engine = engine_for(database_url)
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    try:
        from sqlmodel.ext.asyncio.session import AsyncSession

        async with AsyncSession(engine) as session:
            for key in keys:
                await enqueue(
                    session,
                    OutboxRequest(
                        idempotency_key=key,
                        channel=Channel.WEBHOOK,
                        kind=MessageKind.ALERT,
                        recipient_type=RecipientType.WEBHOOK,
                        recipient_id=endpoint,
                        urgency=Urgency.HIGH,
                    ),
                    now=datetime.now(UTC),
                )
            await session.commit()
    finally:
        await engine.dispose()
    return keys


async def outbox_statuses(database_url: str) -> dict[str, int]:
    from backend.domain.outbox import repository

    engine = engine_for(database_url)
    try:
        async with engine.connect() as connection:
            return await repository.status_counts(connection)
    finally:
        await engine.dispose()
