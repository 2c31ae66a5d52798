"""deploy/: the Kubernetes manifests build with kustomize and validate against Kubernetes' schemas;
docker-compose.yml validates against the Compose specification; both run every service the way
deploy/local/Procfile does, with health checks on /healthz, and the FIX venue (QuickFIX/J's
Executor) where the router's FIX settings point."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from orderstream.ops.platform import SETTINGS, procfile, web_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"  # carries the Compose spec's JSON schema
K8S_VERSION = "1.32.0"
STRIMZI = "kafka.strimzi.io/v1beta2"
NOT_ORDERSTREAM = {"mongo", "fix-exec"}  # the third-party servers among the workloads
FIX_VENUES = "ORDERSTREAM_ROUTER_FIX_VENUES"


def executor_settings() -> configparser.SectionProxy:
    """The session settings the Executor's image runs with."""
    cfg = configparser.ConfigParser(comment_prefixes=("#",))
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    cfg.read(ROOT / "deploy" / "fix-executor" / "executor.cfg")
    return cfg["default"]


def kustomize() -> list[str]:
    """`make test` builds kustomize into .cache/bin (Go module proxy); kubectl's built-in one also works."""
    local = ROOT / ".cache" / "bin" / "kustomize"
    if local.exists():
        return [str(local), "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("no kustomize: run `make tools` (go install sigs.k8s.io/kustomize/kustomize/v5)")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    built = subprocess.run([*kustomize(), str(ROOT / "deploy")], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def test_every_core_object_validates_against_the_kubernetes_schema(manifests: list[dict[str, Any]]) -> None:
    for doc in manifests:
        if doc["apiVersion"] != STRIMZI:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_one_deployment_per_service_with_probes_metrics_and_the_procfile_command(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")
                   and d["metadata"]["name"] not in NOT_ORDERSTREAM}
    commands = procfile()
    assert set(deployments) == set(SETTINGS)
    for name, d in deployments.items():
        if name != "gateway":  # a worker: a stable pod name is its group instance id (static membership)
            assert d["kind"] == "StatefulSet" and d["spec"]["serviceName"] == name
            instance = next(e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
                            if e["name"] == f"ORDERSTREAM_{name.upper()}_INSTANCE_ID")
            assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        pod = d["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        port = container["ports"][0]["containerPort"]
        assert container["image"] == "orderstream:dev"
        assert ["python", *container["command"][1:]] == ["python", *commands[name][1:]]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, (name, probe)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"ORDERSTREAM_{name.upper()}_WEB_PORT"] == str(port)
        assert env[f"ORDERSTREAM_{name.upper()}_WEB_HOST"] == "0.0.0.0"
        assert pod["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        assert d["metadata"]["namespace"] == "orderstream"


def test_the_broker_is_a_strimzi_kafka_resource_in_kraft_mode(manifests: list[dict[str, Any]]) -> None:
    strimzi = {d["kind"]: d for d in manifests if d["apiVersion"] == STRIMZI}
    assert set(strimzi) == {"Kafka", "KafkaNodePool"}
    kafka, pool = strimzi["Kafka"], strimzi["KafkaNodePool"]
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    config = next(
        d
        for d in manifests
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("orderstream-config")
    )
    assert (
        config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
        == f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    )
    assert (
        kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    )  # the setup job creates them


def test_the_router_reaches_the_fix_venue_which_keeps_stdin_and_its_store(
    manifests: list[dict[str, Any]],
) -> None:
    settings = executor_settings()
    assert settings["SocketAcceptAddress"] == "0.0.0.0" and settings["FileStorePath"].startswith("/data/")
    objects = {(d["kind"], d["metadata"]["name"]): d for d in manifests}
    (service_port,) = objects[("Service", "fix-exec")]["spec"]["ports"]
    venue = objects[("StatefulSet", "fix-exec")]
    (container,) = venue["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "orderstream-fix-exec:dev"
    assert container["stdin"] is True and not container.get("stdinOnce")  # EOF on stdin ends it
    assert venue["spec"]["replicas"] == 1  # one acceptor per FIX session
    assert objects[("Service", "fix-exec")]["spec"]["selector"] == venue["spec"]["selector"]["matchLabels"]
    assert service_port["targetPort"] == container["ports"][0]["name"]
    assert service_port["port"] == container["ports"][0]["containerPort"] == int(settings["SocketAcceptPort"])
    assert {"name": "store", "mountPath": "/data"} in container["volumeMounts"]
    assert [t["metadata"]["name"] for t in venue["spec"]["volumeClaimTemplates"]] == ["store"]
    router_set = objects[("StatefulSet", "router")]
    (router,) = router_set["spec"]["template"]["spec"]["containers"]
    venues = json.loads(next(e["value"] for e in router["env"] if e["name"] == FIX_VENUES))
    want = {"host": "fix-exec", "port": service_port["port"], "store": "/fix/FIX-EXEC"}
    assert venues == {"FIX-EXEC": want}
    # the router's side of the session (sequence numbers, sent messages) outlives its pod too
    assert {"name": "fix", "mountPath": "/fix"} in router["volumeMounts"]
    assert [t["metadata"]["name"] for t in router_set["spec"]["volumeClaimTemplates"]] == ["fix"]


def compose_schema() -> dict[str, Any]:
    found = subprocess.run(
        ["go", "mod", "download", "-json", COMPOSE_GO], capture_output=True, text=True, check=True
    )
    schema: dict[str, Any] = json.loads(
        (Path(json.loads(found.stdout)["Dir"]) / "schema" / "compose-spec.json").read_text()
    )
    return schema


def test_the_compose_file_validates_against_the_compose_spec() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, compose_schema())
    services = compose["services"]
    commands = procfile()
    for name in SETTINGS:
        s = services[name]
        assert ["python", *s["command"][1:]] == ["python", *commands[name][1:]]
        assert "healthcheck" in s and "/healthz" in " ".join(s["healthcheck"]["test"])
        assert s["environment"]["PORT"] == str(web_port(name, {}))  # what the health check calls
        for dependency in s.get("depends_on", {}):
            assert dependency in services
    venue, settings = services["fix-exec"], executor_settings()
    assert (ROOT / venue["build"]["context"] / venue["build"]["dockerfile"]).exists()
    assert venue["stdin_open"] is True  # EOF on stdin ends the Executor
    assert any(v.endswith(":/data") for v in venue["volumes"])
    assert json.loads(services["router"]["environment"][FIX_VENUES]) == {
        "FIX-EXEC": {"host": "fix-exec", "port": int(settings["SocketAcceptPort"]), "store": "/fix/FIX-EXEC"}
    }
    assert "router-fix:/fix" in services["router"]["volumes"]  # the router's FIX store outlives it
    assert "fix-exec" in services["router"]["depends_on"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], check=True
        )


def test_workers_run_two_replicas_with_standby_copies_but_the_router_one(
    manifests: list[dict[str, Any]],
) -> None:
    sets = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "StatefulSet"}
    for name in ("collateral", "matcher", "execution", "collector", "router"):
        spec = sets[name]["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        up = name.upper()
        if name == "router":  # FIX venues are configured: a venue accepts one session
            assert spec["replicas"] == 1 and json.loads(env[FIX_VENUES])
            continue
        assert spec["replicas"] == 2, name
        assert env[f"ORDERSTREAM_{up}_SESSION_TIMEOUT_S"] == "6", name  # a lost pod's partitions move soon
        if name != "collector":  # the collector keeps no table
            assert env[f"ORDERSTREAM_{up}_STANDBY_REPLICAS"] == "1", name
