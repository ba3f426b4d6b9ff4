"""Campaign building blocks for sample DAGs: pick the audience, personalize, deliver exactly once.

* :mod:`.audience`: pure helpers over lists of row dicts (consent filter, distinct values, joins, best row per group).
* :mod:`.personalize`: one localized message per profile from a folder of Jinja2 templates (sandboxed).
* :mod:`.ledger`: the delivery ledger interface and its embedded SQLite implementation.
* :mod:`.delivery`: SMTP delivery through Airflow's ``SmtpHook``, at most one message per profile and run.

Importing this package imports none of them, so DAG files that only need one stay cheap to parse.
"""
