"""The processes of a deployment: the Procfile's commands, and why cron is not `rq cron`."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from rq.cron import CronJob
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from app.jobs import QUEUES, redis_connection
from tests.ops._jobs import fail_on_purpose

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile() -> dict[str, list[str]]:
    """The Procfile's processes, each command split into words."""
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = shlex.split(command)
    return processes


def test_the_procfile_runs_web_one_cron_and_a_worker_for_every_queue():
    processes = procfile()
    assert processes["web"] == ["gunicorn", "-c", "gunicorn.conf.py", "run:app"]
    assert processes["cron"] == ["flask", "--app", "run", "woffice", "cron"]
    workers = {name: cmd for name, cmd in processes.items() if name.startswith("worker")}
    served = []
    for command in workers.values():
        assert command[:5] == ["flask", "--app", "run", "woffice", "worker"]
        assert command[5:], "a worker with no queue would serve every queue"
        served += command[5:]
    assert sorted(served) == sorted(QUEUES)  # every queue once, in exactly one group
    assert set(processes) == {"web", "cron", *workers}


@pytest.mark.parametrize("command", ["worker", "cron"])
def test_the_procfile_commands_exist(app, command):
    result = app.test_cli_runner().invoke(args=["woffice", command, "--help"])
    assert result.exit_code == 0, result.output


def test_rq_cron_enqueues_jobs_our_json_workers_cannot_read(app):
    """Why `flask woffice cron` stays (docs/deploy.md): RQ 3.0's CronJob enqueues with
    RQ's default (pickle) serializer and has no serializer option, while our queues and
    workers use JSON (no pickle, DESIGN). If a later RQ lets `rq cron` pick the
    serializer, this test fails: then app/jobs/schedule.py can become an `rq cron`
    config."""
    connection = redis_connection()
    enqueued = CronJob(queue_name="default", func=fail_on_purpose, interval=60).enqueue(connection)
    job = Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer)
    with pytest.raises(DeserializationError):
        job.func_name  # noqa: B018 - reading it deserializes the job
