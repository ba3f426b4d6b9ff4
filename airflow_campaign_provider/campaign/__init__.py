"""Campaign building blocks for sample DAGs: select the audience with SQL, personalize, deliver exactly once.

* :mod:`.audience`: pure helpers over lists of row dicts (consent filter, distinct values, joins, best row per group).
* :mod:`.sql`, :mod:`.audience_db`, :mod:`.batches`: the audience read through any ``DbApiHook``, whole or in
  batches of consecutive keys.
* :mod:`.personalize`: one localized message per profile from a folder of Jinja2 templates (sandboxed).
* :mod:`.ledger`: the claim-before-send delivery ledger and its SQL implementation (SQLite, PostgreSQL, MySQL).
* :mod:`.delivery`: SMTP delivery through Airflow's ``SmtpHook``, once per profile and run, whoever sends.
* :mod:`.tasks`: ready-made TaskFlow tasks: ``query_rows``, ``plan_batches`` and the mapped ``deliver_batch``.
* :mod:`.errors`: ``CampaignError`` and its subclasses.

Importing this package imports none of them, so DAG files that only need one stay cheap to parse.
The extra ``campaign`` installs the providers they use (common SQL, SMTP).
"""
