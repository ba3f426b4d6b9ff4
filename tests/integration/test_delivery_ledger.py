"""SqlDeliveryLedger on real SQLite and PostgreSQL: claim before send, takeover rules, concurrent claimers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_campaign_provider.campaign.errors import CampaignConfigError
from airflow_campaign_provider.campaign.ledger import Claimer, DeliveryKey, DeliveryLedger, SqlDeliveryLedger
from tests.support.flow_script import FakeClock

pytestmark = pytest.mark.integration

DAG, RUN = "campaign_coupons", "manual__2026-11-23T08:00:00+00:00"
TRY_1 = Claimer("campaign_coupons/run/deliver/0", 1)
TRY_2 = Claimer("campaign_coupons/run/deliver/0", 2)
OTHER = Claimer("campaign_coupons/run/deliver_fallback/0", 1)


def ids(count: int) -> list[str]:
    return [f"P{i:05d}" for i in range(count)]


def test_the_first_claimer_holds_others_see_it_held_then_delivered(sql_conn: str) -> None:
    with SqlDeliveryLedger(sql_conn) as ledger:
        ledger_: DeliveryLedger = ledger
        first = ledger_.claim(DAG, RUN, ids(3), TRY_1)
        assert (first.mine, first.held, first.delivered) == (ids(3), [], [])
        second = ledger_.claim(DAG, RUN, ids(3), OTHER)
        assert (second.mine, second.held, second.delivered) == ([], ids(3), [])
        assert ledger_.mark_delivered(DeliveryKey(DAG, RUN, "P00001"), "<1@example.com>", TRY_1)
        assert ledger_.is_delivered(DeliveryKey(DAG, RUN, "P00001"))
        assert not ledger_.is_delivered(DeliveryKey(DAG, RUN, "P00000"))
        again = ledger_.claim(DAG, RUN, ids(3), OTHER)
        assert (again.mine, sorted(again.held), again.delivered) == ([], ["P00000", "P00002"], ["P00001"])
        # Another run of the same DAG is another delivery.
        assert ledger_.claim(DAG, "manual__next", ids(3), OTHER).mine == ids(3)


def test_a_later_try_takes_over_its_earlier_tries_claims_at_once(sql_conn: str) -> None:
    clock = FakeClock()
    with SqlDeliveryLedger(sql_conn, lease_seconds=3600, clock=clock) as ledger:
        ledger.claim(DAG, RUN, ids(4), TRY_1)
        ledger.mark_delivered(DeliveryKey(DAG, RUN, "P00000"), "<0@example.com>", TRY_1)
        clock.sleep(0.01)
        retry = ledger.claim(DAG, RUN, ids(4), TRY_2)
        assert (retry.mine, retry.delivered) == (ids(4)[1:], ["P00000"])
        # The earlier try cannot take them back, nor mark one it no longer holds.
        assert ledger.claim(DAG, RUN, ids(4), TRY_1).mine == []
        assert not ledger.mark_delivered(DeliveryKey(DAG, RUN, "P00001"), "<1@example.com>", TRY_1)
        assert not ledger.is_delivered(DeliveryKey(DAG, RUN, "P00001"))
        assert ledger.mark_delivered(DeliveryKey(DAG, RUN, "P00001"), "<1@example.com>", TRY_2)


def test_another_claimer_takes_over_only_after_the_lease(sql_conn: str) -> None:
    clock = FakeClock()
    with SqlDeliveryLedger(sql_conn, lease_seconds=300, clock=clock) as ledger:
        ledger.claim(DAG, RUN, ids(2), TRY_1)
        assert ledger.claim(DAG, RUN, ids(2), OTHER).held == ids(2)
        clock.sleep(150)
        # Renewing keeps the claim alive past its first lease.
        assert ledger.claim(DAG, RUN, ids(1), TRY_1).mine == ids(1)
        clock.sleep(180)
        late = ledger.claim(DAG, RUN, ids(2), OTHER)
        assert (late.mine, late.held) == (["P00001"], ["P00000"])
        assert ledger.claim(DAG, RUN, ids(2), TRY_1).mine == ["P00000"]


def test_two_concurrent_claimers_split_the_keys_and_never_share_one(sql_conn: str) -> None:
    keys = ids(3000)
    claimers = [Claimer(f"worker-{n}", 1) for n in range(2)]

    def claim_in_slices(claimer: Claimer) -> list[str]:
        with SqlDeliveryLedger(sql_conn) as ledger:
            mine: list[str] = []
            for start in range(0, len(keys), 100):
                mine += ledger.claim(DAG, RUN, keys[start : start + 100], claimer).mine
            return mine

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(claim_in_slices, claimers)
    assert not set(first) & set(second), "no key is held by both"
    assert sorted(first + second) == keys


def test_claims_go_in_chunks_so_a_large_batch_fits_every_parameter_limit(sql_conn: str) -> None:
    with SqlDeliveryLedger(sql_conn) as ledger:
        assert len(ledger.claim(DAG, RUN, ids(12_000), TRY_1).mine) == 12_000


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"table": "ledger; DROP TABLE x"}, "letters, digits and underscores"), ({"lease_seconds": 0}, "positive")],
)
def test_bad_settings_are_clear_errors(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(CampaignConfigError, match=problem):
        SqlDeliveryLedger("any", **kwargs)  # type: ignore[arg-type]


def test_an_unsupported_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_LEDGER", '{"conn_type": "smtp", "host": "127.0.0.1"}')
    with pytest.raises(CampaignConfigError, match="not a SQL hook"):
        SqlDeliveryLedger("not_a_ledger").claim(DAG, RUN, ids(1), TRY_1)


def test_the_repr_names_no_credentials(sql_conn: str) -> None:
    assert repr(SqlDeliveryLedger(sql_conn)) == (
        "SqlDeliveryLedger(conn_id='campaign_test_db', table='campaign_delivery_ledger', lease_seconds=300.0)"
    )
