"""Connection parsing: defaults, both extra spellings, and a clear error naming the field for bad input."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from airflow_campaign_provider.exceptions import ConnectionConfigError
from airflow_campaign_provider.settings import (
    DEFAULT_RETRY_STATUSES,
    EXTRA_FIELDS,
    parse_connection,
)


def parse(host: str = "https://api.example.com/v1", **kw: Any):
    extra = kw.pop("extra", {})
    return parse_connection(host=host, extra=extra, **kw)


def test_defaults() -> None:
    s = parse()
    assert s.base_url == "https://api.example.com/v1"
    assert s.auth.type == "none"
    assert s.timeout == 60
    assert s.max_response_bytes == 5_242_880
    assert s.max_retries == 3
    assert s.retry_statuses == DEFAULT_RETRY_STATUSES == {429, 502, 503, 504}
    assert s.verify is True
    assert s.allow_private_hosts is False
    assert dict(s.headers) == {}
    assert s.auth.api_key_header == "X-API-Key"


def test_basic_is_the_default_when_a_login_is_set() -> None:
    s = parse(login="user", password="pw-12345")
    assert s.auth.type == "basic"
    assert "pw-12345" in s.secrets
    assert base64.b64encode(b"user:pw-12345").decode() in s.secrets


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("api.example.com", None, None, "https://api.example.com"),
        ("api.example.com", "https", 8443, "https://api.example.com:8443"),
        ("https://api.example.com/v1/", None, None, "https://api.example.com/v1"),
        ("https://api.example.com:9443/v1", None, 9443, "https://api.example.com:9443/v1"),
    ],
)
def test_base_url_forms(host: str, schema: str | None, port: int | None, expected: str) -> None:
    assert parse(host, schema=schema, port=port).base_url == expected


def test_plain_and_prefixed_extras_are_both_read() -> None:
    s = parse(extra={"extra__campaign_external_api__timeout": "30", "max_retries": 1})
    assert s.timeout == 30
    assert s.max_retries == 1


def test_blank_values_written_by_the_ui_count_as_unset() -> None:
    s = parse(extra={"timeout": None, "token_url": "", "auth_type": None})
    assert s.timeout == 60
    assert s.auth.type == "none"


def test_uri_form_strings_are_coerced() -> None:
    s = parse(
        extra={
            "retry_statuses": "[500, 503]",
            "allow_private_hosts": "true",
            "headers": '{"X-Tenant": "acme"}',
            "verify": "false",
        }
    )
    assert s.retry_statuses == {500, 503}
    assert s.allow_private_hosts is True
    assert dict(s.headers) == {"X-Tenant": "acme"}
    assert s.verify is False


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"extra": {"X-Tenant": "acme"}}, "extra.X-Tenant", "unknown extra"),
        ({"extra": {"timeout": 601}}, "extra.timeout", "out of range"),
        ({"extra": {"timeout": 0}}, "extra.timeout", "out of range"),
        ({"extra": {"timeout": "soon"}}, "extra.timeout", "expected a number"),
        ({"extra": {"max_response_bytes": 0}}, "extra.max_response_bytes", "out of range"),
        ({"extra": {"max_response_bytes": 10**9}}, "extra.max_response_bytes", "out of range"),
        ({"extra": {"max_retries": -1}}, "extra.max_retries", "out of range"),
        ({"extra": {"max_retries": True}}, "extra.max_retries", "expected an integer"),
        ({"extra": {"max_retries": 11}}, "extra.max_retries", "out of range"),
        ({"extra": {"max_retries": "²"}}, "extra.max_retries", "expected an integer"),
        ({"extra": {"timeout": "nan"}}, "extra.timeout", "expected a number"),
        ({"extra": {"retry_statuses": [200]}}, "extra.retry_statuses", "out of range"),
        ({"extra": {"retry_statuses": {"a": 1}}}, "extra.retry_statuses", "list of HTTP statuses"),
        ({"extra": {"auth_type": "digest"}}, "extra.auth_type", "not one of"),
        ({"extra": {"verify": 3}}, "extra.verify", "CA bundle path"),
        ({"extra": {"headers": {"X-A": 1}}}, "extra.headers", "string values"),
        ({"extra": {"headers": {"Bad Name": "v"}}}, "extra.headers", "RFC 9110 token"),
        ({"extra": {"headers": {"X-A": "a\r\nInjected: 1"}}}, "extra.headers", "CR, LF"),
        ({"extra": {"headers": {"Host": "evil"}}}, "extra.headers", "reserved"),
        ({"extra": {"api_key_header": "X Key"}}, "extra.api_key_header", "RFC 9110 token"),
        ({"extra": {"allow_private_hosts": "yes"}}, "extra.allow_private_hosts", "true or false"),
        ({"extra": {"api_key_header": "***"}}, "extra.api_key_header", "how the web UI masks"),
        ({"extra": {"proxies": {"https": "proxy:3128"}}}, "extra.proxies", "expected"),
        ({"extra": {"auth_type": "bearer"}}, "password", "token from the password"),
        ({"extra": {"auth_type": "api_key"}}, "password", "token from the password"),
        ({"extra": {"auth_type": "basic"}}, "login", "needs a login"),
        ({"extra": {"auth_type": "oauth2_client_credentials"}}, "login", "client id"),
        ({"extra": {"token_url": "https://auth.example.com/token"}}, "extra.token_url", "only apply"),
        ({"host": None}, "host", "required"),
        ({"host": "http://api.example.com"}, "host", "HTTPS only"),
        ({"host": "https://localhost/v1"}, "host", "localhost"),
        ({"host": "https://10.0.0.5/v1"}, "host", "IP address literal"),
        ({"host": "https://user:pw@api.example.com"}, "host", "credentials in the URL"),
        ({"host": "https://api.example.com", "schema": "http"}, "schema", "contradicts"),
        ({"host": "https://api.example.com:444", "port": 443}, "port", "contradicts"),
        ({"host": "https://api.example.com:abc/v1", "port": 443}, "host", "not a number"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_field(kwargs: dict[str, Any], field: str, fragment: str) -> None:
    host = kwargs.pop("host", "https://api.example.com/v1")
    with pytest.raises(ConnectionConfigError) as info:
        parse(host, **kwargs)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert field in str(info.value)


def test_oauth2_needs_a_token_url_and_checks_it() -> None:
    base = {"login": "client", "password": "secret-value"}
    with pytest.raises(ConnectionConfigError, match="needs a token_url"):
        parse(extra={"auth_type": "oauth2_client_credentials"}, **base)
    with pytest.raises(ConnectionConfigError, match="HTTPS only"):
        parse(extra={"auth_type": "oauth2_client_credentials", "token_url": "http://a.example/t"}, **base)
    s = parse(
        extra={
            "auth_type": "oauth2_client_credentials",
            "token_url": "https://auth.example.com/t",
            "scope": "r",
        },
        **base,
    )
    assert s.auth.token_url == "https://auth.example.com/t"
    assert s.auth.scope == "r"


def test_the_two_spellings_of_one_extra_must_agree() -> None:
    with pytest.raises(ConnectionConfigError, match="set twice"):
        parse(extra={"timeout": 10, "extra__campaign_external_api__timeout": 20})


def test_authorization_header_conflicts_with_an_auth_type() -> None:
    with pytest.raises(ConnectionConfigError, match="conflicts"):
        parse(password="tok-12345", extra={"auth_type": "bearer", "headers": {"Authorization": "x"}})


def test_no_secret_in_a_validation_message() -> None:
    with pytest.raises(ConnectionConfigError) as info:
        parse("https://user:hunter2-secret@api.example.com")
    assert "hunter2-secret" not in str(info.value)


def test_json_extras_never_echo_their_text() -> None:
    with pytest.raises(ConnectionConfigError) as info:
        parse(extra={"headers": '{"Authorization": "Bearer leaked-token-42"'})
    assert "leaked-token-42" not in str(info.value)


def test_sensitive_connection_headers_count_as_secrets() -> None:
    s = parse(extra={"headers": {"Authorization": "Token conn-header-secret", "X-Tenant": "acme"}})
    assert "Token conn-header-secret" in s.secrets
    assert "acme" not in s.secrets


def test_oauth2_client_credentials_are_form_encoded() -> None:
    s = parse(
        login="client id",
        password="s3cr+t/=",
        extra={"auth_type": "oauth2_client_credentials", "token_url": "https://auth.example.com/t"},
    )
    assert s.auth.client_credentials == ("client+id", "s3cr%2Bt%2F%3D")
    assert base64.b64encode(b"client+id:s3cr%2Bt%2F%3D").decode() in s.secrets


def test_proxy_passwords_count_as_secrets() -> None:
    s = parse(extra={"proxies": {"https": "http://u:proxy-pass-1@proxy.example:3128"}})
    assert "proxy-pass-1" in s.secrets
    assert "proxy-pass-1" not in repr(s)


def test_every_extra_is_documented_in_the_provider_form() -> None:
    from airflow_campaign_provider.get_provider_info import get_provider_info

    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert set(fields) == set(EXTRA_FIELDS)
    for spec in fields.values():
        assert spec["label"] and spec["description"]


@pytest.mark.parametrize(
    ("login", "password", "auth_type", "field"),
    [
        ("user", "pass-word-1\n", None, "password"),
        ("us\ter", "pass-word-1", None, "login"),
        (None, "tok\x00en-value", "bearer", "password"),
        (None, "ke\x7fy-value", "api_key", "password"),
        ("user", "pass-€-word", None, "password"),
        ("us:er", "pass-word-1", None, "login"),
    ],
)
def test_credentials_http_cannot_carry_are_refused_naming_the_field_not_the_value(
    login: str | None, password: str, auth_type: str | None, field: str
) -> None:
    extra = {"auth_type": auth_type} if auth_type else {}
    with pytest.raises(ConnectionConfigError) as info:
        parse_connection(host="https://api.example.com", login=login, password=password, extra=extra)
    assert info.value.field == field
    assert password.strip() not in str(info.value)


def test_oauth2_client_secrets_may_hold_any_printable_text() -> None:
    settings = parse_connection(
        host="https://api.example.com",
        login="client-é",
        password="sécret-€",
        extra={"auth_type": "oauth2_client_credentials", "token_url": "https://auth.example.com/token"},
    )
    assert settings.auth.client_credentials == ("client-%C3%A9", "s%C3%A9cret-%E2%82%AC")


def test_a_settings_repr_shows_everything_but_the_secrets() -> None:
    settings = parse_connection(
        host="https://api.example.com/v1?api_key=base-secret-1&tenant=acme",
        login="user",
        password="password-secret-2",
        extra={
            "headers": {"X-Auth-Token": "header-secret-3", "X-Tenant": "acme"},
            "proxies": {"https": "http://proxy-user:proxy-secret-4@proxy.example:3128"},
        },
    )
    printed = repr(settings)
    assert "tenant=acme" in printed
    assert "'X-Tenant': 'acme'" in printed
    assert "proxy.example:3128" in printed
    for secret in ("base-secret-1", "password-secret-2", "header-secret-3", "proxy-secret-4", "proxy-user"):
        assert secret not in printed
    assert "base-secret-1" in settings.secrets, "query secrets in the base URL are scrubbed from text too"


def test_an_unknown_extra_suggests_the_closest_known_one() -> None:
    with pytest.raises(ConnectionConfigError) as info:
        parse_connection(host="https://api.example.com", extra={"allow_private_host": True})
    assert info.value.field == "extra.allow_private_host"
    assert "unknown extra (did you mean 'allow_private_hosts'?)" in str(info.value)
    with pytest.raises(ConnectionConfigError, match=r"unknown extra; the known extras are"):
        parse_connection(host="https://api.example.com", extra={"colour": "red"})
