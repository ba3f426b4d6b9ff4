"""Apache Airflow provider for the Campaign External API activity.

Importing this package does no I/O and registers nothing: Airflow discovers it
through the ``apache_airflow_provider`` entry point, and the hook and operator
live in ``airflow_campaign_provider.hooks`` and ``airflow_campaign_provider.operators``.
"""

__version__ = "0.1.0"
