"""cluster.yaml against Ray's own schema, and searches on a real two-node Ray cluster on loopback.

The two-node tests start their own cluster (head on 127.0.0.2, worker on 127.0.0.3, token
authentication on every node and the driver) beside the test session's single-node Ray, drive it
with ``visiontune search --address`` in a subprocess, and kill every process they started by id.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from cluster_helpers import HEAD_IP, LoopbackCluster
from helpers import write_shapes

REPO = Path(__file__).resolve().parents[1]
WORKER_IP = "127.0.0.3"


def _cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_the_ray_autoscaler_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _cluster_config()
    # As `ray up` does: merge with the provider's defaults, then check against the schema shipped
    # inside the installed ray package (ray/autoscaler/ray-schema.json).
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert prepared["head_node_type"] == "head"
    # The validator is not a rubber stamp: a misspelt key is refused.
    with pytest.raises(Exception, match="max_wrkers"):
        validate_config(prepare_config({**copy.deepcopy(config), "max_wrkers": 2}))
    broken_provider = copy.deepcopy(config)
    broken_provider["provider"]["security_group"]["Ingress"] = []
    with pytest.raises(Exception, match="Ingress"):
        validate_config(prepare_config(broken_provider))


def test_cluster_yaml_opens_only_ssh_and_keeps_token_auth_on():
    config = _cluster_config()
    assert config["provider"]["security_group"]["IpPermissions"] == []  # nothing beyond the launcher's SSH rule
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "RAY_AUTH_MODE=token" in worker_start
    assert "--dashboard-host=127.0.0.1" in head_start  # reached through `ray dashboard cluster.yaml`
    assert "0.0.0.0" not in head_start
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # one token on every node
    assert "export RAY_AUTH_MODE=token" in " ".join(config["setup_commands"])  # and for the driver
    assert "pip install -q ~/visiontune" in " ".join(config["setup_commands"])  # the driver's own version
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}  # trials go to GPU workers


@pytest.fixture
def two_nodes(tmp_path):
    """A head (1 CPU) on 127.0.0.2 and a worker (1 CPU) on 127.0.0.3, each with its own custom resource."""
    cluster = LoopbackCluster(tmp_path)
    try:
        cluster.start_head(cpus=1, resources={"head_slot": 1})
        cluster.add_worker(WORKER_IP, cpus=1, resources={"worker_slot": 1})
        cluster.nodes_seen = cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.shutdown()
        leftovers = [node.ip for node in cluster.nodes if node.descendants() or node.process.poll() is None]
        assert not leftovers, f"processes of {leftovers} survived the clean-up"


def _search(cluster: LoopbackCluster, storage: Path, name: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "visiontune", "search", "--address", cluster.address,
               "--storage", str(storage), "--name", name, "--cpus-per-trial", "1", "--no-report", *extra]
    env = {**cluster.env, "XDG_CACHE_HOME": str(cluster.node_cache("driver"))}
    return subprocess.Popen(cluster.command(command), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen, timeout_s: float) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _trial_nodes(run: Path) -> dict[str, set[str]]:
    """Per trial, the node addresses it reported from (Ray Tune's node_ip in progress.csv)."""
    import pandas as pd

    nodes = {}
    for progress in run.glob("trial_*/progress.csv"):
        frame = pd.read_csv(progress)
        nodes[progress.parent.name] = set(frame["node_ip"].dropna().astype(str))
    return nodes


def test_search_on_two_nodes_runs_trials_on_both(two_nodes, tmp_path):
    ips = {node["ip"]: node for node in two_nodes.nodes_seen}
    assert set(ips) == {HEAD_IP, WORKER_IP}
    assert ips[HEAD_IP]["resources"].get("head_slot") == 1 and ips[WORKER_IP]["resources"].get("worker_slot") == 1
    _assert_reachable_on_loopback_only(two_nodes)
    _assert_a_wrong_token_is_refused(two_nodes)
    storage = tmp_path / "shared-runs"  # one folder both nodes see, as an NFS mount would be
    # Trials of several seconds: with workers reused between trials, very short trials could all
    # be done by the first node's worker before the second node's worker process has started.
    # A folder of the user's own images, over a tiny data memory budget: the driver decodes it
    # into its cache and puts the entry into the run's storage; each node copies it from there
    # once, whatever its number of trials, and its trials map that copy. The image files
    # themselves stay with the driver.
    data = write_shapes(tmp_path / "driver-data", count=48, size=(96, 128))
    process = _search(two_nodes, storage, "two-nodes", str(data), "--space", "warwick-unet",
                      "--trials", "4", "--max-epochs", "6", "--scheduler", "none", "--data-memory-gb", "0.000001",
                      "--top-k", "4")  # every trial keeps its checkpoints, to check where they were written
    stdout, stderr = _finish(process, timeout_s=300)
    assert process.returncode == 0, stderr[-3000:]
    assert "2 nodes share this search: every node must see --storage" in stdout + stderr

    run = storage / "two-nodes"
    trials = json.loads((run / "trials.json").read_text())
    assert len(trials) == 4 and {t["status"] for t in trials} == {"finished"}
    assert set().union(*(t["node_ips"] for t in trials)) == {HEAD_IP, WORKER_IP}
    assert set().union(*(t["node_ids"] for t in trials)) == {n["id"] for n in two_nodes.nodes_seen}
    for trial in trials:
        assert list((run / trial["path"]).glob("checkpoint_*/state.pt")), trial["trial_id"]
    test = json.loads((run / "test_results.json").read_text())
    assert len(test["trials"]) == 4 and all({"test/dice/square", "test/dice/disc"} <= set(v)
                                            for v in test["trials"].values())
    assert (run / "trials.csv").read_text().count("\n") == 5
    assert json.loads((run / "search.json").read_text())["placement"]["where"] == "disk"
    driver_entries = _cache_entries(two_nodes.node_cache("driver"))
    assert len(driver_entries) == 1
    for ip in (HEAD_IP, WORKER_IP):  # two trials on each node, one copy of the data on each
        copies = (two_nodes.node_cache(ip) / "visiontune" / "datasets" / "copies.log").read_text().splitlines()
        assert [line.split()[0] for line in copies] == driver_entries, ip
        assert _cache_entries(two_nodes.node_cache(ip)) == driver_entries, ip


def _cache_entries(cache_home: Path) -> list[str]:
    folder = cache_home / "visiontune" / "datasets"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_losing_the_worker_node_mid_search_loses_no_trial(two_nodes, tmp_path):
    storage = tmp_path / "shared-runs"
    process = _search(two_nodes, storage, "worker-lost", "warwick", "--synthetic", "--space", "warwick-unet",
                      "--trials", "4", "--max-epochs", "4", "--scheduler", "none", "--max-failures", "3")
    run = storage / "worker-lost"
    worker = next(node for node in two_nodes.nodes if node.ip == WORKER_IP)
    try:
        # Kill the worker node once a trial has finished and another, on the worker, is midway:
        # the one must stay finished, the other must resume from its checkpoint on the head.
        deadline = time.time() + 300
        while True:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.time() < deadline, "never saw a finished trial and a trial midway on the worker"
            rows = {p.parent.name: _trial_rows(p) for p in run.glob("trial_*/progress.csv")}
            finished_before = {name: epochs for name, epochs in rows.items() if len(epochs) >= 4}
            on_worker = [name for name, ips in _trial_nodes(run).items()
                         if WORKER_IP in ips and 1 <= len(rows.get(name, [])) < 4]
            if finished_before and on_worker:
                break
            time.sleep(0.3)
        killed = two_nodes.kill_node(worker)
        assert killed and not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                                  for pid in killed)
    except BaseException:
        process.kill()
        raise
    stdout, stderr = _finish(process, timeout_s=420)
    assert process.returncode == 0, stderr[-3000:]

    trials = {t["trial_id"]: t for t in json.loads((run / "trials.json").read_text())}
    assert len(trials) == 4
    # Every trial accounted for: finished (the lost one retried on the head) or recorded failed.
    assert {t["status"] for t in trials.values()} <= {"finished", "failed"}
    lost = [trials[name.removeprefix("trial_")] for name in on_worker]
    for trial in lost:
        assert trial["status"] == "finished" and HEAD_IP in trial["node_ips"], trial
        epochs = _trial_rows(run / trial["path"] / "progress.csv")
        assert sorted(set(epochs)) == [1, 2, 3, 4] and epochs.count(1) == 1  # resumed, not restarted
    for name, epochs in finished_before.items():  # nothing finished before the loss is lost or re-run
        assert trials[name.removeprefix("trial_")]["status"] == "finished"
        assert _trial_rows(run / name / "progress.csv") == epochs
    assert "retrying from its last checkpoint" in stdout + stderr


def _assert_reachable_on_loopback_only(cluster: LoopbackCluster) -> None:
    """Ray's ports exist and are reachable on loopback only: inside a namespace holding nothing else
    (Ray 2.60 listens on :: for node addresses other than 127.0.0.1), or else bound to 127.*."""
    if cluster.namespace:
        assert cluster.namespace.interfaces() == ["lo"]
        assert len(cluster.namespace.listening()) >= 4  # GCS, raylets, workers: all inside the namespace
        return
    pids = {process.pid for node in cluster.nodes for process in node.descendants()}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert listening, "found no listening sockets of the cluster to check"
    outside = [c.laddr for c in listening if not c.laddr.ip.startswith("127.")]
    assert not outside, f"cluster ports reachable beyond loopback (run the tests as root to isolate them): {outside}"


def _assert_a_wrong_token_is_refused(cluster: LoopbackCluster) -> None:
    env = {**cluster.env, "RAY_AUTH_TOKEN": "not-the-token"}
    probe = f"import ray; ray.init(address={cluster.address!r}, logging_level='ERROR'); print('CONNECTED')"
    done = subprocess.run(cluster.command([sys.executable, "-c", probe]), env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode != 0 and "CONNECTED" not in done.stdout
    assert "Authentication token is missing or incorrect" in done.stderr


def _trial_rows(progress: Path) -> list[int]:
    import pandas as pd

    try:
        return [int(e) for e in pd.read_csv(progress)["epoch"].dropna()]
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return []
