"""Job functions for the ops tests (importable by an RQ worker by their dotted path)."""

from __future__ import annotations

from app.jobs._runtime import job


def fail_on_purpose(phone: str) -> None:
    """A job that fails; its argument stands for personal data the dashboard must not show."""
    raise RuntimeError("the job failed on purpose")


@job
def fail_in_job(phone: str, tenant_id: int | None = None) -> None:
    """A job wearing the job decorator that fails: its log lines carry the job id."""
    raise RuntimeError("the wrapped job failed on purpose")
