"""The local demo environment: a campaign API over HTTPS, an SMTP sink and a synthetic audience in a database.

It lives beside the provider, not in its wheel: the provider and the sample DAGs import
nothing from it. ``make demo`` (:mod:`.run`), ``make ui`` (:mod:`.ui`) and ``make scale``
(:mod:`.scale`, with the throwaway servers of :mod:`.services`) run it.
"""
