"""docker-compose.yml, docker/couchbase-init.sh and docker/cbembed.toml, checked without a
Docker engine: the YAML parses and wires the services together, the mounted config loads and
renders its indexes, and the init script runs (against stub couchbase-cli and curl) with
only the subcommands and options the couchbase-cli reference documents."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_settings
from index_defs import ServerVersion, plan_indexes

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "docker" / "couchbase-init.sh"
CONFIG = ROOT / "docker" / "cbembed.toml"

# couchbase-cli reference (couchbase/couchbase-cli docs/modules/cli/pages/cbcli/*.adoc):
# the options each subcommand documents, besides -c/-u/-p.
DOCUMENTED = {
    "server-list": set(),
    "node-init": {"--node-init-data-path", "--node-init-index-path", "--node-init-hostname",
                  "--node-init-analytics-path", "--node-init-java-home"},
    "cluster-init": {"--cluster-username", "--cluster-password", "--cluster-port",
                     "--cluster-ramsize", "--cluster-name", "--cluster-index-ramsize",
                     "--cluster-fts-ramsize", "--cluster-eventing-ramsize",
                     "--cluster-analytics-ramsize", "--cluster-query-ramsize",
                     "--index-storage-setting", "--services", "--update-notifications"},
    "bucket-create": {"--bucket", "--bucket-type", "--bucket-ramsize", "--bucket-replica",
                      "--bucket-priority", "--bucket-eviction-policy", "--max-ttl",
                      "--compression-mode", "--enable-flush", "--enable-index-replica",
                      "--conflict-resolution", "--wait"},
    "collection-manage": {"--bucket", "--create-scope", "--drop-scope", "--list-scopes",
                          "--create-collection", "--edit-collection", "--drop-collection",
                          "--list-collections", "--max-ttl", "--enable-history-retention"},
    "setting-alternate-address": {"--list", "--set", "--remove", "--hostname", "--ports"},
    "setting-query": {"--get", "--set", "--curl-restricted", "--allowed-urls",
                      "--disallowed-urls"},
}
COMMON = {"-c", "-u", "-p"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_wires_the_services(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert set(s) == {"couchbase", "couchbase-init", "cbembed", "cbembed-embed"}
    assert "enterprise-8." in s["couchbase"]["image"]
    assert {"8091-8097:8091-8097", "11210:11210"} <= set(s["couchbase"]["ports"])
    assert s["couchbase-init"]["depends_on"]["couchbase"]["condition"] == "service_healthy"
    for name in ("cbembed", "cbembed-embed"):
        svc = s[name]
        assert svc["depends_on"]["couchbase-init"]["condition"] == \
            "service_completed_successfully"
        assert "CBEMBED_COUCHBASE__PASSWORD" in svc["environment"]
        (mount,) = svc["volumes"]
        src, dst, mode = mount.split(":")
        assert (ROOT / src).resolve() == CONFIG and mode == "ro"
        assert svc["environment"]["CBEMBED_CONFIG"] == dst
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
    script_src = s["couchbase-init"]["volumes"][0].split(":")[0]
    assert (ROOT / script_src).resolve() == INIT
    assert "index apply" in " ".join(s["cbembed"]["command"])
    embed = s["cbembed-embed"]
    assert embed["ports"] == ["8765:8765"] and "serve-embed" in embed["command"]
    # the init script allows CURL() to reach exactly the embed service
    url = s["couchbase-init"]["environment"]["CB_EMBED_URL"]
    assert url == "http://cbembed-embed:8765/embed"


def test_gpu_override_reserves_a_gpu() -> None:
    yaml = pytest.importorskip("yaml")
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    (device,) = gpu["services"]["cbembed"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_mounted_config_loads_and_matches_the_init(compose: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBEMBED_COUCHBASE__PASSWORD", "from-env")
    s = load_settings(CONFIG)
    assert s.couchbase.password.get_secret_value() == "from-env"
    env = compose["services"]["couchbase-init"]["environment"]
    (p,) = s.pipelines
    assert p.keyspace == f"{env['CB_BUCKET']}.{env['CB_SCOPE']}.{env['CB_COLLECTION']}"
    assert s.couchbase.metadata_keyspace == f"{env['CB_BUCKET']}.cbembed.meta"
    assert s.storage == "couchbase://couchbase"
    plan = plan_indexes(s, {p.name: 384}, ServerVersion(8, 0, 0))
    assert [i.kind for i in plan.indexes] == ["search", "hyperscale"]
    assert plan.indexes[1].gsi is not None and '"description": "IVF8,SQ8"' in \
        plan.indexes[1].gsi.create_statement()


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_init(tmp_path: Path, initialised: bool) -> list[list[str]]:
    log = tmp_path / "calls.log"
    _stub(tmp_path / "couchbase-cli", f"""
printf '%q ' "$@" >> {log}; echo >> {log}
case "$1" in
  server-list) exit {0 if initialised else 1} ;;
  collection-manage) [[ "$*" == *"--create-scope cbembed"* ]] && {{
      echo "ERROR: Scope with this name already exists"; exit 1; }} ;;
esac
echo SUCCESS
""")
    _stub(tmp_path / "curl", "exit 0\n")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "COUCHBASE_CLI": str(tmp_path / "couchbase-cli"), "CB_PASSWORD": "pw"}
    out = subprocess.run(["bash", str(INIT)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "already exists: cbembed" in out.stdout and "Couchbase is ready" in out.stdout
    return [shlex.split(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("initialised", [False, True])
def test_init_script_uses_documented_commands_only(tmp_path: Path, initialised: bool) -> None:
    calls = run_init(tmp_path, initialised)
    subs = [c[0] for c in calls]
    expected = ["server-list"] + ([] if initialised else ["node-init", "cluster-init"]) + [
        "bucket-create", *["collection-manage"] * 4, "setting-alternate-address",
        "setting-query"]
    assert subs == expected
    for call in calls:
        options = {a for a in call[1:] if a.startswith("-")}
        assert options <= DOCUMENTED[call[0]] | COMMON, (call[0], options - DOCUMENTED[call[0]])
    by_sub = {c[0]: c for c in calls}
    if not initialised:
        init = by_sub["cluster-init"]
        assert init[init.index("--services") + 1] == "data,index,query,fts"
    q = by_sub["setting-query"]
    assert q[q.index("--allowed-urls") + 1] == "http://cbembed-embed:8765/embed"
    created = [c[c.index("--create-collection") + 1] for c in calls
               if "--create-collection" in c]
    assert created == ["inventory.listings", "cbembed.meta"]


def test_init_script_fails_on_a_real_error(tmp_path: Path) -> None:
    _stub(tmp_path / "couchbase-cli", """
[[ "$1" == bucket-create ]] && { echo "ERROR: RAM quota too low"; exit 1; }
exit 0
""")
    _stub(tmp_path / "curl", "exit 0\n")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "COUCHBASE_CLI": str(tmp_path / "couchbase-cli"), "CB_PASSWORD": "pw"}
    out = subprocess.run(["bash", str(INIT)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "RAM quota too low" in out.stderr
