"""The local demo environment: a campaign API over HTTPS, an SMTP sink and a synthetic audience.

It runs beside the provider; the provider's hook and operator never import it.
"""
