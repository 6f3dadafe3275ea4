"""A real multi-node Ray cluster on loopback for the cluster tests, and its clean-up by process id.

Each node is a ``ray start --block`` process: Ray's processes for that node are its descendants,
so a node is stopped by killing exactly those process ids (never ``ray stop``, which would stop
every Ray node on the machine, the test session's own included, and never a kill by name).

Ray 2.60's servers (GCS, raylet, workers) listen on every interface (``::``) whenever the node
address is not 127.0.0.1, even with ``--node-ip-address 127.0.0.2``. Where the tests may create
one (root, util-linux, iproute2), the cluster therefore runs in a private network namespace that
has nothing but a loopback interface: its ports are reachable from nowhere else. Elsewhere it
runs on the host's network, protected by its token only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HEAD_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the machine's external address; 127.0.0.2+ stay put


def free_port(host: str) -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def cluster_environment(token: str) -> dict[str, str]:
    """The environment of every node and driver: token authentication on, one shared token."""
    env = dict(os.environ)
    # The test session sets this for its own single-node Ray; nodes with explicit loopback
    # addresses must not inherit it (it pins a node to 127.0.0.1).
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               RAY_DISABLE_IMPORT_WARNING="1", PYTHONUNBUFFERED="1")
    return env


class LoopbackNamespace:
    """A network namespace with only an up loopback interface, held open by a sleeping process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        own = os.readlink("/proc/self/ns/net")
        deadline = time.time() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == own:  # until unshare has run
            if time.time() > deadline or self.holder.poll() is not None:
                self.close()
                raise RuntimeError("unshare --net did not create a network namespace")
            time.sleep(0.05)
        subprocess.run(self.prefix() + ["ip", "link", "set", "lo", "up"], check=True)

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip"))

    def prefix(self) -> list[str]:
        """Run a command inside the namespace (nsenter execs it: the process id stays the command's)."""
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    def interfaces(self) -> list[str]:
        lines = open(f"/proc/{self.holder.pid}/net/dev").read().splitlines()[2:]
        return [line.split(":")[0].strip() for line in lines]

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every listening TCP socket in the namespace."""
        found = []
        for table in ("tcp", "tcp6"):
            for line in open(f"/proc/{self.holder.pid}/net/{table}").read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":  # LISTEN
                    address, port = local.split(":")
                    found.append((address, int(port, 16)))
        return found

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=10)


@dataclass
class Node:
    ip: str
    process: subprocess.Popen
    log: Path

    def descendants(self) -> list[psutil.Process]:
        """The node's Ray processes (raylet, workers, agents; GCS on the head), by id."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


@dataclass
class LoopbackCluster:
    """A head node on 127.0.0.2 and worker nodes on 127.0.0.3 and up, all with token auth."""

    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    nodes: list[Node] = field(default_factory=list)
    address: str = ""
    namespace: LoopbackNamespace | None = None

    def __post_init__(self) -> None:
        if LoopbackNamespace.available():
            self.namespace = LoopbackNamespace()

    def command(self, args: list[str]) -> list[str]:
        """``args`` as run on the cluster's network (inside its namespace where there is one)."""
        return (self.namespace.prefix() if self.namespace else []) + args

    @property
    def env(self) -> dict[str, str]:
        return cluster_environment(self.token)

    def node_cache(self, ip: str) -> Path:
        """The cache folder (XDG_CACHE_HOME) of the node at ``ip`` ("driver": the driver's)."""
        return self.workdir / f"cache-{ip}"

    def _ray_start(self, ip: str, args: list[str]) -> Node:
        log = self.workdir / f"node-{ip}.log"
        ray_cli = str(Path(sys.executable).with_name("ray"))
        command = [ray_cli, "start", "--block", "--node-ip-address", ip, "--disable-usage-stats", *args]
        # Each node its own cache folder, as separate machines have: the node's trials find a
        # cached data set there or copy it there from the run's storage.
        env = {**self.env, "XDG_CACHE_HOME": str(self.node_cache(ip))}
        with open(log, "w") as stream:
            process = subprocess.Popen(self.command(command), env=env, stdout=stream, stderr=subprocess.STDOUT)
        node = Node(ip, process, log)
        self.nodes.append(node)
        return node

    def start_head(self, cpus: int, resources: dict[str, float]) -> None:
        port = free_port(HEAD_IP)
        # A short temp dir: Ray's Unix socket paths under it must stay within 107 characters.
        temp_dir = tempfile.mkdtemp(prefix="vt-ray-", dir="/tmp")
        self._ray_start(HEAD_IP, ["--head", "--port", str(port), "--num-cpus", str(cpus),
                                  "--resources", json.dumps(resources), "--include-dashboard", "false",
                                  "--temp-dir", temp_dir])
        self.address = f"{HEAD_IP}:{port}"

    def add_worker(self, ip: str, cpus: int, resources: dict[str, float]) -> Node:
        return self._ray_start(ip, ["--address", self.address, "--num-cpus", str(cpus),
                                    "--resources", json.dumps(resources)])

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> list[dict]:
        """Block until ``count`` nodes are alive; their ids, addresses and resources, from a driver."""
        probe = ("import json, sys, time, ray\n"
                 f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
                 f"deadline = time.time() + {timeout_s}\n"
                 "while True:\n"
                 "    alive = [n for n in ray.nodes() if n['Alive']]\n"
                 f"    if len(alive) >= {count} or time.time() > deadline: break\n"
                 "    time.sleep(0.5)\n"
                 "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'],\n"
                 "                   'resources': n['Resources']} for n in alive]))\n")
        for node in self.nodes:
            if node.process.poll() is not None:
                raise RuntimeError(f"ray start for {node.ip} exited: {node.log.read_text()[-2000:]}")
        done = subprocess.run(self.command([sys.executable, "-c", probe]), env=self.env, capture_output=True, text=True,
                              timeout=timeout_s + 60)
        if done.returncode != 0:
            raise RuntimeError(f"cannot reach the cluster at {self.address}: {done.stderr[-2000:]}")
        nodes = json.loads(done.stdout.strip().splitlines()[-1])
        if len(nodes) < count:
            logs = "\n".join(node.log.read_text()[-1000:] for node in self.nodes)
            raise RuntimeError(f"only {len(nodes)} of {count} nodes came up:\n{logs}")
        return nodes

    def kill_node(self, node: Node) -> list[int]:
        """SIGKILL one node's processes by id (descendants first, then its ray start); their ids."""
        victims = node.descendants()
        for process in victims:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        node.process.kill()
        node.process.wait(timeout=30)
        psutil.wait_procs(victims, timeout=30)
        return [process.pid for process in victims]

    def shutdown(self) -> None:
        """Kill every process this cluster started, workers first; waits until they are gone."""
        for node in reversed(self.nodes):
            if node.process.poll() is None or node.descendants():
                self.kill_node(node)
        if self.namespace:
            self.namespace.close()
