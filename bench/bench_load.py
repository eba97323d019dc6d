"""Mixed read load over 1M contacts (issue 9): locust against gunicorn with 2 workers.

Data, in a database of its own (``woffice_bench_load``): migrations, roles and the demo
data as ``bench._setup.bench_app`` builds them (what ``flask db upgrade``, ``flask
woffice sync-roles`` and ``flask woffice seed-demo`` do), then Acme gets
``BENCH_CONTACTS`` contacts, one conversation each and ``BENCH_MESSAGES`` messages (the
generator of ``bench_contacts_scale``), then ``VACUUM ANALYZE``.

Server: ``gunicorn -c gunicorn.conf.py run:app`` with ``GUNICORN_WORKERS=2`` (sync
workers), access log off, the *testing* configuration (``WOFFICE_ENV=testing``, its
database and Redis URLs pointed at the bench database and Redis db 12; production's
Secure cookies would not travel over the bench's plain HTTP).

Load: locust (this same file, loaded by ``locust -f`` with ``BENCH_LOAD_LOCUST=1``),
headless, one process, ``FastHttpUser`` with no think time: a closed loop, as wrk is —
each virtual user sends its next request when the previous answer arrived. Virtual
users log in through the login form (CSRF token from /login) as owner@acme.example
(3 of 4) and agent@acme.example (1 of 4), each with its own session. For each
concurrency level in ``BENCH_USERS``: ``BENCH_WARMUP`` seconds discarded, then
``BENCH_SECONDS`` measured. Every response must be a 200 (a redirect would be the login
page: counted as an error) and a phone search must find exactly its one contact.
The client shares the 2-core VM with gunicorn and PostgreSQL: the bench reports the CPU
the client, the gunicorn processes and the bench database's PostgreSQL backends used
during the measured window.

Run: ``PYTHONPATH=. flock /tmp/woffice-bench.lock .venv/bin/python -m bench.bench_load``.
Knobs: BENCH_CONTACTS, BENCH_MESSAGES, BENCH_USERS (``4,8,16``), BENCH_SECONDS (60),
BENCH_WARMUP (15), BENCH_PORT (8769), BENCH_REUSE=1 (measure again on the data already
there), BENCH_KEEP=1 (keep the database).
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time

DATABASE = "woffice_bench_load"
DATABASE_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/12"
CONTACTS = int(os.environ.get("BENCH_CONTACTS", 1_000_000))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 5_000_000))
SECONDS = int(os.environ.get("BENCH_SECONDS", 60))
WARMUP = int(os.environ.get("BENCH_WARMUP", 15))
PORT = int(os.environ.get("BENCH_PORT", 8769))
PAGES = 400  # deeper list pages: 2..400 (OFFSET up to ~10,000 rows at 25 a page)


def phone_formats(number: int) -> dict[str, str]:
    """Generated contact ``number`` (+91 9<number, 9 digits>) as people type it."""
    d = f"{number:09d}"
    return {"+91 9xxxx xxxxx": f"+91 9{d[:4]} {d[4:]}", "09xxxxxxxxx": f"09{d}", "digits": f"9{d}"}


# ------------------------------------------------------------- the locust side

if os.environ.get("BENCH_LOAD_LOCUST") == "1":
    import gevent
    import prison
    import psutil
    from locust import FastHttpUser, constant, events, task

    _LO, _HI = (int(x) for x in os.environ["BENCH_LOAD_IDS"].split(","))
    _N = int(os.environ["BENCH_LOAD_CONTACTS"])
    _STATE: dict = {"measuring": False, "samples": {}, "errors": {}}

    def _cpu_seconds(pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def _snapshot() -> dict:
        gunicorn = psutil.Process(int(os.environ["BENCH_LOAD_GUNICORN"]))
        backends = [
            p.pid
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and DATABASE in " ".join(p.info["cmdline"] or [])
        ]
        machine = psutil.cpu_times()
        return {
            "t": time.time(),
            "client": _cpu_seconds([os.getpid()]),
            "gunicorn": _cpu_seconds([gunicorn.pid, *(c.pid for c in gunicorn.children())]),
            "postgres": _cpu_seconds(backends),
            "backends": backends,
            "busy": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        }

    def _window(environment) -> None:
        """Warm up, measure ``SECONDS``, write the samples, stop the run."""
        gevent.sleep(WARMUP)
        start = _snapshot()
        _STATE["measuring"] = True
        gevent.sleep(SECONDS)
        _STATE["measuring"] = False
        end = _snapshot()
        end["postgres"] = _cpu_seconds(start["backends"])  # the same backends at both ends
        seconds = end["t"] - start["t"]
        cpu = {k: (end[k] - start[k]) / seconds for k in ("client", "gunicorn", "postgres", "busy")}
        out = {"seconds": seconds, "cpu": cpu, "samples": _STATE["samples"]}
        out["errors"] = _STATE["errors"]
        with open(os.environ["BENCH_LOAD_OUT"], "w") as fh:
            json.dump(out, fh)
        environment.runner.quit()

    @events.test_start.add_listener
    def _on_start(environment, **_kw) -> None:
        gevent.spawn(_window, environment)

    @events.request.add_listener
    def _on_request(name, response_time, exception, response=None, **_kw) -> None:
        if not _STATE["measuring"]:
            return
        _STATE["samples"].setdefault(name, []).append(response_time)
        if exception is not None:
            errors = _STATE["errors"].setdefault(name, {})
            key = str(getattr(response, "status_code", "")) + " " + str(exception)[:80]
            errors[key] = errors.get(key, 0) + 1

    class _Reader(FastHttpUser):
        abstract = True
        wait_time = constant(0)
        email = ""

        def on_start(self) -> None:
            html = self.client.get("/login", name="login").text
            token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html).group(1)
            data = {"email": self.email, "password": "demo-pass-2026", "csrf_token": token}
            with self.client.post(
                "/login", data=data, name="login", allow_redirects=False, catch_response=True
            ) as resp:
                if resp.status_code != 302:
                    resp.failure(f"login refused: {resp.status_code}")

        def _get(self, url: str, name: str, hits: int | None = None) -> None:
            """GET ``url``: a 200, and when ``hits`` is given exactly that many rows."""
            with self.client.get(url, name=name, allow_redirects=False, catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}")
                elif hits is not None and _rows(name, r) != hits:
                    r.failure(f"expected {hits} row(s), got {_rows(name, r)}")

        def contacts_list(self) -> None:
            self._get("/contacts/list/", "contacts list, page 1")

        def contacts_deep_page(self) -> None:
            page = random.randint(1, PAGES - 1)  # 0-based: pages 2..400
            self._get(f"/contacts/list/?page_ContactModelView={page}", "contacts list, page 2-400")

        def contacts_search(self) -> None:
            fmt, phone = random.choice(list(phone_formats(random.randint(1, _N)).items()))
            self._get(f"/contacts/list/?q={_quote(phone)}", f"contacts search {fmt}", 1)

        def contact_show(self) -> None:
            self._get(f"/contacts/show/{random.randint(_LO, _HI)}", "contact show")

        def conversations_list(self) -> None:
            self._get("/conversations/list/", "conversations list")

        def home(self) -> None:
            self._get("/", "home")

        def api_search(self) -> None:
            phone = phone_formats(random.randint(1, _N))["+91 9xxxx xxxxx"]
            filters = [{"col": "phone", "opr": "contact_search", "value": phone}]
            q = prison.dumps({"filters": filters, "page_size": 25})
            self._get(f"/api/v1/contact/?q={_quote(q)}", "API contact search (phone)", 1)

        def api_page(self) -> None:
            q = prison.dumps({"page": random.randint(0, PAGES - 1), "page_size": 25})
            self._get(f"/api/v1/contact/?q={_quote(q)}", "API contact list, page 1-400")

    def _quote(value: str) -> str:
        from urllib.parse import quote

        return quote(value, safe="")

    def _rows(name: str, response) -> int:
        if name.startswith("API"):
            return len(response.json()["result"])
        return response.text.count("/contacts/show/")

    class Owner(_Reader):
        """The tenant admin: everything the mix has, campaigns included."""

        weight = 3
        email = "owner@acme.example"
        tasks = {
            _Reader.home: 1,
            _Reader.contacts_list: 3,
            _Reader.contacts_deep_page: 2,
            _Reader.contacts_search: 6,
            _Reader.contact_show: 4,
            _Reader.conversations_list: 2,
            _Reader.api_search: 1,
            _Reader.api_page: 1,
        }

        @task(1)
        def campaigns_list(self) -> None:
            self._get("/campaigns/list/", "campaigns list")

    class Agent(_Reader):
        """An agent: contacts (read), their assigned conversations, no campaigns."""

        weight = 1
        email = "agent@acme.example"
        tasks = {
            _Reader.home: 1,
            _Reader.contacts_list: 2,
            _Reader.contacts_search: 3,
            _Reader.contact_show: 4,
            _Reader.conversations_list: 2,
            _Reader.api_search: 1,
        }


# ------------------------------------------------------------- the bench side


def prepare(reuse: bool) -> dict:
    """The data (unless ``reuse``); returns Acme's sizes and its generated id range."""
    from sqlalchemy import select, text

    from app import create_app
    from app.extensions import db
    from app.models import Tenant
    from bench._setup import BenchConfig, bench_app
    from bench.bench_contacts_scale import generate

    start = time.perf_counter()
    if reuse:
        app = create_app(
            type("LoadConfig", (BenchConfig,), {"SQLALCHEMY_DATABASE_URI": DATABASE_URL})
        )
    else:
        app = bench_app(DATABASE)
    with app.app_context():
        acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        if not reuse:
            print(f"generating: {CONTACTS} contacts, {MESSAGES} messages for Acme")
            generate(acme.id, CONTACTS, MESSAGES, offset=0)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE contact, conversation, message"))
        # Generated after the demo data: above every other tenant's ids, one range.
        lo, hi, n = db.session.execute(
            text(
                "SELECT min(id), max(id), count(*) FROM contact WHERE tenant_id = :t "
                "AND id > (SELECT max(id) FROM contact WHERE tenant_id <> :t)"
            ),
            {"t": acme.id},
        ).one()
        assert n == hi - lo + 1, "the generated contacts' ids are not one range"
        sizes = {
            table: db.session.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"),  # noqa: S608
                {"t": acme.id},
            ).scalar_one()
            for table in ("contact", "conversation", "message")
        }
    print(f"data ready in {time.perf_counter() - start:.0f} s: Acme {sizes}, ids {lo}..{hi}")
    return {"sizes": sizes, "ids": (lo, hi), "generated": n}


def start_gunicorn(workdir: str):
    import subprocess
    import urllib.request

    env = dict(
        os.environ,
        WOFFICE_ENV="testing",
        TEST_DATABASE_URL=DATABASE_URL,
        TEST_REDIS_URL=REDIS_URL,
        GUNICORN_WORKERS="2",
        GUNICORN_ACCESS_LOG="",
        GUNICORN_LOG_LEVEL="warning",
        GUNICORN_BIND=f"127.0.0.1:{PORT}",
    )
    log = open(os.path.join(workdir, "gunicorn.log"), "w")  # noqa: SIM115 - the server's
    server = subprocess.Popen(
        [".venv/bin/gunicorn", "-c", "gunicorn.conf.py", "run:app"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/login", timeout=5) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"gunicorn did not start: see {log.name}")
        time.sleep(0.5)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))]


def run_level(users: int, data: dict, server_pid: int, workdir: str) -> dict:
    """One locust run at ``users`` virtual users; the parsed samples and CPU use."""
    import subprocess

    out = os.path.join(workdir, f"samples_{users}.json")
    env = dict(
        os.environ,
        BENCH_LOAD_LOCUST="1",
        BENCH_LOAD_IDS="{},{}".format(*data["ids"]),
        BENCH_LOAD_CONTACTS=str(data["generated"]),
        BENCH_LOAD_GUNICORN=str(server_pid),
        BENCH_LOAD_OUT=out,
    )
    command = [
        ".venv/bin/locust", "-f", __file__, "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{WARMUP + SECONDS + 60}s",
        "--host", f"http://127.0.0.1:{PORT}", "--loglevel", "WARNING",
    ]  # fmt: skip
    with open(os.path.join(workdir, f"locust_{users}.log"), "w") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    with open(out) as fh:
        return json.load(fh)


def report(users: int, result: dict, load: tuple[float, float, float]) -> dict:
    seconds = result["seconds"]
    rows = []
    everything: list[float] = []
    for name, samples in sorted(result["samples"].items()):
        everything += samples
        errors = sum(result["errors"].get(name, {}).values())
        rows.append((name, sorted(samples), errors))
    total_errors = sum(sum(e.values()) for e in result["errors"].values())
    rows.append(("**all**", sorted(everything), total_errors))
    cpu = result["cpu"]
    print(
        f"\n{users} users, {seconds:.1f} s measured, load average before "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; CPU (cores): client {cpu['client']:.2f}, "
        f"gunicorn {cpu['gunicorn']:.2f}, postgres {cpu['postgres']:.2f}, "
        f"machine busy {cpu['busy']:.2f} of 2"
    )
    print("| endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, ordered, errors in rows:
        if not ordered:
            print(f"| {name} | 0 | 0 | - | - | - | {errors} |")
            continue
        p50, p95, p99 = (percentile(ordered, q) for q in (0.50, 0.95, 0.99))
        print(
            f"| {name} | {len(ordered)} | {len(ordered) / seconds:.1f} | {p50:.0f} | "
            f"{p95:.0f} | {p99:.0f} | {errors} |"
        )
    for name, kinds in result["errors"].items():
        print(f"  errors of {name}: {kinds}")
    overall = rows[-1][1]
    return {
        "users": users,
        "rps": len(overall) / seconds,
        "p95": percentile(overall, 0.95) if overall else float("nan"),
        "errors": total_errors,
    }


def main() -> None:
    from bench._setup import drop_database

    reuse = os.environ.get("BENCH_REUSE") == "1"
    levels = [int(x) for x in os.environ.get("BENCH_USERS", "4,8,16").split(",") if x.strip()]
    data = prepare(reuse)
    server = None
    summary = []
    try:
        if levels:
            workdir = tempfile.mkdtemp(prefix="bench_load_")
            print(f"logs and samples in {workdir}")
            server = start_gunicorn(workdir)
        for users in levels:
            load = os.getloadavg()
            summary.append(report(users, run_level(users, data, server.pid, workdir), load))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if os.environ.get("BENCH_KEEP") != "1":
            drop_database(DATABASE)
    print()
    for row in summary:
        verdict = "met" if row["p95"] <= 200 and row["errors"] == 0 else "NOT met"
        print(
            f"{row['users']:>3} users: {row['rps']:6.1f} req/s, p95 {row['p95']:.0f} ms, "
            f"{row['errors']} errors -> goal p95 <= 200 ms {verdict}"
        )


if __name__ == "__main__":
    main()
