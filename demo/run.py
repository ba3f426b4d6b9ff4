"""``make demo``: run every sample DAG end to end against the local campaign API and SMTP server.

It sets up a local ``AIRFLOW_HOME`` (SQLite, migrated), starts the demo environment,
runs each DAG with ``airflow dags test``, prints what each run fetched, delivered and
skipped with one rendered message, stops the servers, and exits non-zero on any failure.
A second run needs no cleanup: the CA is kept, and the delivery ledger only stops a
message being sent twice in the same DAG run.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from demo.environment import DemoEnvironment


@dataclass(frozen=True)
class DemoRun:
    """One ``airflow dags test`` call: which DAG, with which conf, and the task names to report on."""

    dag_id: str
    fetch_task: str
    deliveries: tuple[str, ...]
    conf: str | None = None

    @property
    def title(self) -> str:
        return f"{self.dag_id} (conf {self.conf})" if self.conf else self.dag_id


RUNS = (
    DemoRun("campaign_coupons", "fetch_coupons", ("deliver_coupons",)),
    DemoRun("campaign_weather", "fetch_weather", ("deliver_batch",)),
    DemoRun("campaign_offers", "fetch_offers", ("deliver_batch",)),
    DemoRun("campaign_lineup", "fetch_lineup", ("deliver_lineup",)),
    DemoRun("campaign_coupons", "fetch_coupons", ("deliver_fallback",), conf='{"demo_fail": "job_failed"}'),
)


def _latest_run(dag_id: str) -> tuple[str, str, dict[tuple[str, str], list[Any]]]:
    """The newest run of ``dag_id``: its id, state and XComs keyed by (task id, key), one per map index."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(1)
        ).one()
        xcoms = session.scalars(
            select(XComModel)
            .where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id)
            .order_by(XComModel.map_index)
        ).all()
        values: dict[tuple[str, str], list[Any]] = {}
        for xcom in xcoms:
            values.setdefault((xcom.task_id, xcom.key), []).append(XComModel.deserialize_value(xcom))
        return run.run_id, str(run.state), values


def _report(demo_run: DemoRun, seconds: float, new_mail: list[Path]) -> str:
    run_id, state, xcoms = _latest_run(demo_run.dag_id)
    lines = [f"{demo_run.title}: {state} in {seconds:.1f} s ({run_id})"]
    [summary] = xcoms.get((demo_run.fetch_task, "summary"), [None])
    [error] = xcoms.get((demo_run.fetch_task, "error"), [None])
    if summary:
        pages = f" in {summary['pages']} pages" if summary.get("pages", 1) > 1 else ""
        job = summary.get("job")
        lines.append(
            f"  fetched    {summary['rows']:,} rows ({summary['rejected']} rejected) from {summary['url']}{pages}, "
            f"HTTP {summary['status']}, {summary['bytes']:,} bytes in {summary['elapsed_ms']} ms"
            + (f"; async job {job['status']} after {job['polls']} polls, deferred meanwhile" if job else "")
        )
    if error:
        status = f" (HTTP {error['status']})" if error["status"] else ""
        lines.append(f"  failed     {error['type']}{status} from {error['url']} -> failure branch taken")
    for task_id in demo_run.deliveries:
        batches = xcoms.get((task_id, "return_value"), [])
        if batches:
            total = Counter[str]()
            for batch in batches:
                total.update(batch["delivery"])
            plural = "es" * (len(batches) != 1)
            lines.append(
                f"  delivered  {total['sent']:,} messages in {len(batches)} batch{plural} ({task_id}); skipped: "
                f"{total['skipped_no_consent']:,} without consent, {total['skipped_already_sent']:,} already sent"
            )
    if new_mail:
        sample = message_from_bytes(new_mail[0].read_bytes(), _class=EmailMessage, policy=policy.default)
        part = sample.get_body(("html", "plain"))
        text = re.sub(r"<[^>]+>", " ", str(part.get_content())) if part is not None else ""
        body = textwrap.indent(textwrap.shorten(html.unescape(text), 160), "             ")
        lines += [f"  message    to {sample['To']}: {sample['Subject']}", body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags-folder", type=Path, default=Path("dags"))
    parser.add_argument("--airflow-home", type=Path, default=Path(".airflow"))
    parser.add_argument("--state-dir", type=Path, default=Path(".demo"))
    args = parser.parse_args(argv)

    os.environ["AIRFLOW_HOME"] = str(args.airflow_home.resolve())
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(args.dags_folder.resolve())
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    logs = args.state_dir.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    airflow = [sys.executable, "-m", "airflow"]

    print(f"AIRFLOW_HOME={os.environ['AIRFLOW_HOME']}; migrating the SQLite metadata DB ...", flush=True)
    with (logs / "db-migrate.log").open("w") as log:
        subprocess.run([*airflow, "db", "migrate"], stdout=log, stderr=subprocess.STDOUT, check=True)

    failures = 0
    with DemoEnvironment(args.state_dir) as demo:
        print(f"Demo API {demo.api.base_url}, SMTP 127.0.0.1:{demo.smtp.port}, outbox {demo.smtp.outbox}\n", flush=True)
        env = {**os.environ, **demo.env_vars()}
        for number, demo_run in enumerate(RUNS, start=1):
            command = [*airflow, "dags", "test", demo_run.dag_id, *(["--conf", demo_run.conf] if demo_run.conf else [])]
            log_path = logs / f"{number}-{demo_run.dag_id}.log"
            seen = set(demo.smtp.outbox.glob("*.eml"))
            started = time.monotonic()
            with log_path.open("w") as log:
                code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            new_mail = sorted(set(demo.smtp.outbox.glob("*.eml")) - seen)
            print(_report(demo_run, time.monotonic() - started, new_mail), flush=True)
            if code != 0:
                failures += 1
                print(f"  FAILED (exit {code}); log: {log_path}", flush=True)
            print(flush=True)
    print(f"{len(RUNS) - failures} of {len(RUNS)} runs succeeded; task logs in {logs}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
