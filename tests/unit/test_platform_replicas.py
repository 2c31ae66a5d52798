"""`orderstream up --replicas N`: which workers run, and each one's environment."""

from __future__ import annotations

import pytest

from orderstream.collateral.settings import CollateralSettings
from orderstream.ops.platform import REPLICA_PORT_STEP, child_env, replica_name, replica_plan


def test_n_workers_per_worker_service_one_gateway_and_one_router_while_fix_venues_are_configured() -> None:
    plan, notes = replica_plan(2, {})  # the router's default names the FIX venue FIX-EXEC
    assert plan == {"gateway": 1, "collateral": 2, "router": 1, "matcher": 2, "execution": 2, "collector": 2}
    assert any("router: one worker" in note for note in notes)
    plan, notes = replica_plan(2, {"ORDERSTREAM_ROUTER_FIX_VENUES": "{}"})
    assert plan["router"] == 2 and notes == []
    assert replica_plan(1, {})[0] == dict.fromkeys(plan, 1)
    assert any("idle" in note for note in replica_plan(3, {"ORDERSTREAM_PARTITIONS": "2"})[1])
    with pytest.raises(ValueError):
        replica_plan(0, {})


def test_each_replica_has_its_own_instance_id_port_and_data_folder_and_standby_copies() -> None:
    base = {"ORDERSTREAM_COLLATERAL_WEB_PORT": "7000", "ORDERSTREAM_COLLATERAL_DATA_DIR": "/d"}
    first, second = (child_env("collateral", i, 2, base) for i in range(2))
    assert first["ORDERSTREAM_COLLATERAL_INSTANCE_ID"] == "collateral-0"
    assert second["ORDERSTREAM_COLLATERAL_INSTANCE_ID"] == "collateral-1"
    assert (first["ORDERSTREAM_COLLATERAL_WEB_PORT"], second["ORDERSTREAM_COLLATERAL_WEB_PORT"]) == (
        "7000", str(7000 + REPLICA_PORT_STEP))
    assert (first["ORDERSTREAM_COLLATERAL_DATA_DIR"], second["ORDERSTREAM_COLLATERAL_DATA_DIR"]) == (
        "/d", "/d/replica-1")
    for env in (first, second):
        assert env["ORDERSTREAM_COLLATERAL_STANDBY_REPLICAS"] == "1"
        assert env["ORDERSTREAM_COLLATERAL_SESSION_TIMEOUT_S"] == "6"
    assert [replica_name("collateral", i) for i in range(2)] == ["collateral", "collateral-1"]



def test_the_worker_reads_its_standby_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in child_env("collateral", 1, 2, {}).items():
        if key.startswith("ORDERSTREAM_COLLATERAL_"):
            monkeypatch.setenv(key, value)
    settings = CollateralSettings()
    assert settings.standby_replicas == 1 and settings.session_timeout_s == 6.0
    assert settings.instance_id == "collateral-1"


def test_one_worker_keeps_what_it_had_and_an_empty_instance_id_keeps_dynamic_membership() -> None:
    env = child_env("matcher", 0, 1, {})
    assert env["ORDERSTREAM_MATCHER_INSTANCE_ID"] == "matcher-0"
    assert env["ORDERSTREAM_MATCHER_STANDBY_REPLICAS"] == "0"
    assert "ORDERSTREAM_MATCHER_SESSION_TIMEOUT_S" not in env and "ORDERSTREAM_MATCHER_WEB_PORT" not in env
    dynamic = child_env("matcher", 1, 2, {"ORDERSTREAM_MATCHER_INSTANCE_ID": ""})
    assert dynamic["ORDERSTREAM_MATCHER_INSTANCE_ID"] == ""
    assert "ORDERSTREAM_GATEWAY_STANDBY_REPLICAS" not in child_env("gateway", 0, 2, {})
