"""Run DAGs in real Airflow (``dag.test()`` on a SQLite metadata DB) and read what they left behind.

Airflow 3.3's ``dag.test()`` syncs the DAG's bundle first, so the DAG file must sit
in the configured dags folder: :func:`run_dag` copies or writes it there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def migrate_db() -> None:
    """Create the SQLite metadata DB under AIRFLOW_HOME (idempotent)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300)


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """The XCom value pushed by ``task_id`` under ``key`` in this run (None if absent)."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == self.dag_id,
                    XComModel.run_id == self.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                )
            ).first()
            return None if row is None else XComModel.deserialize_value(row)

    def mapped_xcoms(self, task_id: str, key: str = "return_value") -> list[Any]:
        """The XCom values pushed by every map index of the mapped task ``task_id``, in map index order."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.scalars(
                select(XComModel)
                .where(
                    XComModel.dag_id == self.dag_id,
                    XComModel.run_id == self.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                )
                .order_by(XComModel.map_index)
            ).all()
            return [XComModel.deserialize_value(row) for row in rows]

    def xcom_keys(self, task_id: str) -> set[str]:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            return set(
                session.scalars(
                    select(XComModel.key).where(
                        XComModel.dag_id == self.dag_id,
                        XComModel.run_id == self.run_id,
                        XComModel.task_id == task_id,
                    )
                )
            )

    def rendered_fields(self, task_id: str) -> dict[str, Any]:
        """The rendered template fields Airflow stored for ``task_id`` (what the UI shows)."""
        from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalars(
                select(RTIF).where(RTIF.dag_id == self.dag_id, RTIF.run_id == self.run_id, RTIF.task_id == task_id)
            ).first()
            return {} if row is None else dict(row.rendered_fields)


def install_dag(dags_folder: Path, name: str, source: str | Path) -> Path:
    """Put a DAG file into the dags folder: ``source`` is either code or the path of a file to copy."""
    target = dags_folder / f"{name}.py"
    if isinstance(source, Path):
        shutil.copyfile(source, target)
    else:
        target.write_text(textwrap.dedent(source))
    return target


def run_dag(dag_file: Path, dag_id: str, **test_kwargs: Any) -> DagRunResult:
    """Parse ``dag_file`` and run ``dag_id`` once with ``dag.test()``; never raises on task failure."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not found in {dag_file}"
    run = dag.test(**test_kwargs)
    by_task: dict[str, set[str | None]] = {}
    for ti in run.get_task_instances():
        by_task.setdefault(ti.task_id, set()).add(_plain(ti.state))
    # A mapped task whose instances ended differently shows them all, e.g. "failed,success".
    states = {
        task_id: ",".join(sorted(map(str, found))) if len(found) > 1 else found.pop()
        for task_id, found in by_task.items()
    }
    return DagRunResult(dag_id, run.run_id, str(_plain(run.state)), states)


def _plain(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))
