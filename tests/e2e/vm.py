#!/usr/bin/env python3
"""End to end: a VM joins the mesh with a real `bowline vm bundle`.

Two manifest members on one network (net-west): east and west. west holds the WorkloadGroup
`legacy` (with a probe) and the Service `legacy` selecting it. (Reaching a workload in another
network goes through an east-west gateway with mTLS, which needs a sidecar and an agent beside
the workload: mtls.py checks that.) A scripted ADS client plays the VM's proxy: Python grpcio with the xds-protos stubs,
over TLS to `listen.xdsTls`, trusting the bundle's root certificate for the bundle's discovery
host name, presenting the bundle's token, with node metadata built from the bundle's
cluster.env as Istio's agent builds it. The VM itself is an HTTP server on 127.0.0.50.

Checked, in order:
  1. the token's scope over TLS: the same token for another group or namespace is refused with
     PERMISSION_DENIED naming it; a garbage token gets UNAUTHENTICATED;
  2. the VM registers: its WorkloadEntry appears under west's .bowline/ with the registration
     annotations, and (the group has a probe) is no endpoint yet;
  3. healthy: an Envoy sidecar in east reaches the VM (east is sent its address, weight 1);
  4. unhealthy: the endpoint leaves east's EDS and the entry's Healthy condition is False with
     the proxy's message;
  5. healthy again: back;
  6. the stream closes: the entry is marked istio.io/disconnectedAt, deleted after the grace
     period (vm.gracePeriod: 3s), and the endpoint is gone.

Usage: vm.py PATH_TO_BOWLINE PATH_TO_ENVOY
"""

import http.server
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
# This directory holds envoy.py, which would shadow the `envoy` package of xds-protos.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != os.path.realpath(HERE)]

import grpc  # noqa: E402
import yaml  # noqa: E402
from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402
from google.rpc import status_pb2  # noqa: E402

# envoy.py's helpers (free ports, Envoy bootstrap), loaded by path.
_spec = importlib.util.spec_from_file_location("envoy_e2e", os.path.join(HERE, "envoy.py"))
envoy_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(envoy_e2e)
free_port, bootstrap, start_envoy = envoy_e2e.free_port, envoy_e2e.bootstrap, envoy_e2e.start_envoy

VM_IP = "127.0.0.50"
HOST = "legacy.demo.svc.clusterset.local"
ENTRY = os.path.join("west", ".bowline", "workloadentries", "demo", f"legacy-{VM_IP}-net-west.yaml")
EAST_NODE = "envoy-sotw-east"  # the node id bootstrap() gives east's sidecar
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
HEALTH = "type.googleapis.com/istio.v1.HealthInformation"
GRACE = 3.0
UNHEALTHY = "HTTP GET /ready: 503"


def member_yaml(member, vm_port, service_port):
    head = f"""apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {{name: cluster.clusterset.k8s.io}}
spec: {{value: {member}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
"""
    if member == "east":
        return head
    return head + f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: legacy, namespace: demo}}
spec:
  metadata:
    labels: {{app: legacy}}
  template:
    serviceAccount: legacy
    network: net-west
    ports: {{http: {vm_port}}}
  probe:
    periodSeconds: 5
    httpGet: {{port: {vm_port}, path: /ready}}
---
apiVersion: v1
kind: Service
metadata: {{name: legacy, namespace: demo}}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.40
  selector: {{app: legacy}}
  ports: [{{name: http, port: {service_port}, targetPort: http}}]
"""


class Vm(http.server.BaseHTTPRequestHandler):
    """The VM's workload: answers "vm"."""

    def do_GET(self):
        body = b"vm"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Proxy:
    """A VM proxy's ADS stream over TLS: the first request carries the node, every response is
    ACKed, health reports are HealthInformation requests."""

    def __init__(self, address, root_cert, host, token, node, deadline=None):
        self.channel = grpc.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=root_cert),
            options=[("grpc.ssl_target_name_override", host)])
        self.requests = queue.Queue()
        self.requests.put(discovery_pb2.DiscoveryRequest(node=node, type_url=CDS))
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = stub.StreamAggregatedResources(
            iter(self.requests.get, None), metadata=(("authorization", f"Bearer {token}"),), timeout=deadline)
        self.first = threading.Event()
        self.error = None
        self.responses = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for response in self.call:
                self.responses += 1
                self.first.set()
                self.requests.put(discovery_pb2.DiscoveryRequest(
                    type_url=response.type_url, version_info=response.version_info, response_nonce=response.nonce))
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.first.set()

    def answered(self, timeout=10):
        """Waits for the first response; the stream's error if it ended instead."""
        if not self.first.wait(timeout):
            return TimeoutError(f"no answer within {timeout} s")
        return self.error

    def health(self, error=None):
        detail = status_pb2.Status(code=13, message=error) if error else None
        self.requests.put(discovery_pb2.DiscoveryRequest(type_url=HEALTH, error_detail=detail))

    def close(self):
        self.requests.put(None)  # half-close: the proxy goes away
        self.call.cancel()
        self.channel.close()


class Check:
    """The running set-up, and failure reports with what Bowline and the Envoys saw."""

    def __init__(self, work, admin, east_admin, service_port):
        self.work, self.admin, self.east_admin = work, admin, east_admin
        self.cluster = f"outbound|{service_port}||{HOST}"
        self.service_port = service_port

    def http(self, port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.read().decode()
        except (OSError, urllib.error.URLError) as e:
            return f"({path}: {e})"

    def fail(self, message):
        print(f"FAILED: {message}", file=sys.stderr)
        with open(os.path.join(self.work, "bowline.log")) as f:
            print("--- bowline log (tail)\n" + "".join(f.readlines()[-40:]), end="", file=sys.stderr)
        for path in ["/debug/services/demo/legacy", "/debug/rejected"]:
            print(f"--- bowline {path}\n{self.http(self.admin, path)[:4000]}", file=sys.stderr)
        path = f"/debug/config_dump?node={EAST_NODE}"
        try:
            dump = json.loads(self.http(self.admin, path))
            mine = {kind: [r for r in resources if HOST in json.dumps(r)]
                    for kind, resources in dump.items() if isinstance(resources, list)}
        except ValueError as e:
            mine = f"({e})"
        print(f"--- bowline {path} (what mentions {HOST})\n{json.dumps(mine)[:4000]}", file=sys.stderr)
        clusters = [line for line in self.http(self.east_admin, "/clusters").splitlines()
                    if HOST in line and re.search(r"::(health_flags|rq_total|rq_error|cx_connect_fail)::", line)]
        print("--- east's Envoy /clusters (legacy)", *clusters, sep="\n", file=sys.stderr)
        path = os.path.join(self.work, ENTRY)
        print(f"--- {ENTRY}", open(path).read() if os.path.exists(path) else "(absent)", sep="\n", file=sys.stderr)
        print(f"(everything is in {self.work})", file=sys.stderr)
        raise SystemExit(f"vm: {message}")

    def wait(self, what, check, timeout=15):
        deadline = time.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.time() > deadline:
                self.fail(f"{what}: not within {timeout} s")
            time.sleep(0.1)

    def get(self):
        """A request to legacy through east's Envoy: (status, body); (0, error) if none."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.service_port}/",
                                         headers={"Host": HOST, "Connection": "close"})
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def envoy_hosts(self, admin):
        """The hosts (address:port) of each cluster of an Envoy, from its admin /clusters."""
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/clusters?format=json", timeout=5) as r:
            statuses = json.load(r).get("cluster_statuses", [])
        return {c["name"]: [(f"{h['address']['socket_address']['address']}:{h['address']['socket_address']['port_value']}",
                             h.get("stats", []))
                            for h in c.get("host_statuses", [])]
                for c in statuses}

    def east_hosts(self):
        """Hosts of the legacy cluster in east's Envoy; None while it has no such cluster."""
        try:
            hosts = self.envoy_hosts(self.east_admin).get(self.cluster)
        except OSError:
            return None
        return None if hosts is None else [a for a, _ in hosts]

    def sent_to_east(self):
        """What Bowline sends east's Envoy for legacy: sorted (address, weight)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/debug/config_dump?node={EAST_NODE}", timeout=5) as r:
            dump = json.load(r)
        cla = [e for e in dump.get("endpoints", []) if e["cluster"] == self.cluster]
        return sorted((ep["address"], ep["weight"]) for e in cla for l in e["localities"] for ep in l["endpoints"])

    def entry(self):
        try:
            with open(os.path.join(self.work, ENTRY)) as f:
                return yaml.safe_load(f)
        except FileNotFoundError:
            return None

    def healthy_condition(self):
        entry = self.entry() or {}
        return next((c for c in (entry.get("status") or {}).get("conditions", []) if c.get("type") == "Healthy"), None)


def read_bundle(directory):
    env = {}
    with open(os.path.join(directory, "cluster.env")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                key, _, value = shlex.split(line)[0].partition("=")
                env[key] = value
    files = {}
    for name in ["root-cert.pem", "token", "hosts", "mesh.yaml"]:
        with open(os.path.join(directory, name), "rb") as f:
            files[name] = f.read()
    return env, files


def node_of(env, node_id):
    """The xDS node Istio's agent would send from this cluster.env."""
    metadata = {key[len("ISTIO_META_"):]: value for key, value in env.items() if key.startswith("ISTIO_META_")}
    metadata["LABELS"] = json.loads(env["ISTIO_METAJSON_LABELS"])
    metadata["NAMESPACE"] = env["POD_NAMESPACE"]
    metadata["INSTANCE_IPS"] = env["ISTIO_SVC_IP"]
    struct = struct_pb2.Struct()
    struct.update(metadata)
    return base_pb2.Node(id=node_id, cluster=f"{env['CANONICAL_SERVICE']}.{env['POD_NAMESPACE']}",
                         user_agent_name="envoy", metadata=struct)


def refused(address, root_cert, host, token, node, code, *words):
    """A registering stream is refused with `code`, its message naming `words`; else the failure."""
    proxy = Proxy(address, root_cert, host, token, node, deadline=10)
    error = proxy.answered()
    proxy.close()
    if not isinstance(error, grpc.RpcError):
        return f"expected {code.name}, got {'a response' if error is None else error}"
    if error.code() != code or not all(w in (error.details() or "") for w in words):
        return f"expected {code.name} naming {words}, got {error.code().name}: {error.details()}"
    print(f"refused as expected: {error.code().name}: {error.details()}")
    return None


def parse_time(text):
    """An RFC 3339 timestamp (nanoseconds allowed) as seconds since the epoch."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def main():
    bowline, envoy = sys.argv[1], sys.argv[2]
    started = time.time()
    work = tempfile.mkdtemp(prefix="bowline-vm-")
    vm_port, service_port = free_port(), free_port()
    for member in ["east", "west"]:
        os.makedirs(os.path.join(work, member))
        with open(os.path.join(work, member, "objects.yaml"), "w") as f:
            f.write(member_yaml(member, vm_port, service_port))
    xds, xds_tls, admin, dns = free_port(), free_port(), free_port(), free_port()
    config = os.path.join(work, "bowline.yaml")
    with open(config, "w") as f:
        f.write(
            "clusterSet: e2e\n"
            "members:\n  - {manifests: east, network: net-west}\n  - {manifests: west, network: net-west}\n"
            f"listen: {{xds: '127.0.0.1:{xds}', xdsTls: '127.0.0.1:{xds_tls}', admin: '127.0.0.1:{admin}', "
            f"dns: '127.0.0.1:{dns}'}}\n"
            f"vm: {{gracePeriod: {GRACE:.0f}s}}\n"
        )
    east_admin = free_port()
    check = Check(work, admin, east_admin, service_port)
    processes, closers = [], []
    passed = False
    try:
        processes.append(subprocess.Popen([bowline, "run", "--config", config], stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(work, "bowline.log"), "w")))
        vm = http.server.ThreadingHTTPServer((VM_IP, vm_port), Vm)
        threading.Thread(target=vm.serve_forever, daemon=True).start()
        closers.append(vm.shutdown)
        processes.append(start_envoy(envoy, work, "sidecar", bootstrap("sotw", xds, east_admin, {
            "CLUSTER_ID": "east", "NETWORK": "net-west", "INSTANCE_IPS": "127.0.0.1"})))
        check.wait("Bowline ready", lambda: check.http(admin, "/readyz").startswith("ready"))

        # The bundle, as an operator makes it.
        bundle = os.path.join(work, "bundle")
        made = subprocess.run([bowline, "vm", "bundle", "--group", "legacy", "-n", "demo", "-o", bundle,
                               "--member", "west", "--config", config, "--vm-address", VM_IP],
                              capture_output=True, text=True, timeout=30)
        if made.returncode != 0:
            check.fail(f"bowline vm bundle failed ({made.returncode}): {made.stderr}")
        env, files = read_bundle(bundle)
        hosts = files["hosts"].decode().split()
        discovery = yaml.safe_load(files["mesh.yaml"])["defaultConfig"]["discoveryAddress"]
        host, _, port = discovery.rpartition(":")
        assert hosts == ["127.0.0.1", host], f"hosts should map Bowline's address to {host}: {hosts}"
        assert port == str(xds_tls), f"mesh.yaml discoveryAddress {discovery} is not the TLS port {xds_tls}"
        assert env["PILOT_ADDRESS"] == discovery, env
        assert env["ISTIO_META_NETWORK"] == "net-west" and env["ISTIO_META_CLUSTER_ID"] == "west", env
        assert env["ISTIO_SVC_IP"] == VM_IP, env
        token, root_cert = files["token"].decode().strip(), files["root-cert.pem"]
        address = f"127.0.0.1:{xds_tls}"
        node = node_of(env, f"sidecar~{VM_IP}~vm-1.demo~demo.svc.cluster.local")
        print(f"bundle: discovery {discovery} (hosts: {' '.join(hosts)}), node metadata "
              f"{json.dumps(json_format.MessageToDict(node.metadata), sort_keys=True)}")

        # east's Envoy has the imported service, without endpoints.
        check.wait("east's Envoy has the cluster of legacy (no hosts) and answers 503",
                   lambda: check.east_hosts() == [] and check.get()[0] == 503)

        # 1. The token's scope, over TLS.
        for what, key, value, words in [("group", "AUTO_REGISTER_GROUP", "other", ['group "other"']),
                                        ("namespace", "NAMESPACE", "other", ['namespace "other"'])]:
            other = base_pb2.Node()
            other.CopyFrom(node)
            other.metadata.update({key: value})
            problem = refused(address, root_cert, host, token, other, grpc.StatusCode.PERMISSION_DENIED,
                              *words, 'group "legacy" in namespace "demo"')
            if problem:
                check.fail(f"the bundle's token used for another {what}: {problem}")
        problem = refused(address, root_cert, host, "garbage", node, grpc.StatusCode.UNAUTHENTICATED,
                          'group "legacy"', "malformed")
        if problem:
            check.fail(f"a garbage token: {problem}")
        forged = "bwl.0123456789abcdef." + "A" * 43
        problem = refused(address, root_cert, host, forged, node, grpc.StatusCode.UNAUTHENTICATED, "unknown")
        if problem:
            check.fail(f"an unknown token: {problem}")
        if os.path.exists(os.path.join(work, os.path.dirname(ENTRY))):
            check.fail(f"refused proxies left entries: {os.listdir(os.path.join(work, os.path.dirname(ENTRY)))}")

        # 2. The VM registers: an entry, not yet an endpoint (the group has a probe).
        proxy = Proxy(address, root_cert, host, token, node)
        closers.append(proxy.close)
        error = proxy.answered()
        if error is not None:
            check.fail(f"the VM's proxy was not answered: {error}")
        entry = check.wait(f"the entry {ENTRY} is written", check.entry)
        annotations = entry["metadata"].get("annotations", {})
        for key in ["istio.io/autoRegistrationGroup", "istio.io/workloadController", "istio.io/connectedAt"]:
            if not annotations.get(key):
                check.fail(f"the entry has no {key}: {annotations}")
        if annotations["istio.io/autoRegistrationGroup"] != "legacy" or "istio.io/disconnectedAt" in annotations:
            check.fail(f"the entry's annotations: {annotations}")
        spec = entry["spec"]
        if (spec.get("address"), spec.get("network"), spec.get("labels", {}).get("app")) != (VM_IP, "net-west", "legacy"):
            check.fail(f"the entry's spec: {spec}")
        print(f"registered: {ENTRY} with {sorted(annotations)}")
        time.sleep(1)  # time to be read back and pushed, were it (wrongly) an endpoint
        if check.sent_to_east() != [] or check.east_hosts() != [] or check.get()[0] != 503:
            check.fail("an entry of a probed group is an endpoint before its first health report")
        print("not an endpoint before it reports healthy: east's Envoy answers 503")

        # 3. Healthy: east's Envoy reaches the VM.
        proxy.health()
        check.wait("healthy: east's Envoy reaches the VM", lambda: check.get() == (200, "vm"))
        sent = check.sent_to_east()
        if sent != [(f"{VM_IP}:{vm_port}", 1)]:
            check.fail(f"east should be sent the VM alone, is sent {sent}")
        if check.east_hosts() != [f"{VM_IP}:{vm_port}"]:
            check.fail(f"east's Envoy should have only the VM as host, has {check.east_hosts()}")
        condition = check.healthy_condition()
        if not condition or condition.get("status") != "True":
            check.fail(f"the entry's Healthy condition should be True: {condition}")
        print(f"healthy: east's Envoy is sent {sent}")

        # 4. Unhealthy: out of east's EDS, condition False with the message.
        proxy.health(UNHEALTHY)
        check.wait("unhealthy: no host in east's Envoy and 503",
                   lambda: check.east_hosts() == [] and check.get()[0] == 503)
        if check.sent_to_east() != []:
            check.fail(f"unhealthy, yet east is sent {check.sent_to_east()}")
        condition = check.wait("the entry's Healthy condition turns False", lambda: (
            c if (c := check.healthy_condition()) and c.get("status") == "False" else None))
        if condition.get("message") != UNHEALTHY:
            check.fail(f"the Healthy condition should carry the proxy's message {UNHEALTHY!r}: {condition}")
        print(f"unhealthy: gone from east's EDS; condition {condition}")

        # 5. Healthy again: back.
        proxy.health()
        check.wait("healthy again: east's Envoy reaches the VM", lambda: check.get() == (200, "vm"))
        print("healthy again: back")

        # 6. The proxy disconnects: marked, deleted after the grace period, no endpoint.
        if proxy.error is not None:
            check.fail(f"the VM's stream ended early: {proxy.error}")
        print(f"the VM's proxy got {proxy.responses} responses (ACKed) on its stream; it disconnects")
        proxy.close()
        closed = time.time()
        entry = check.wait("the entry is marked istio.io/disconnectedAt", lambda: (
            e if (e := check.entry()) and "istio.io/disconnectedAt" in e["metadata"].get("annotations", {}) else None))
        disconnected = parse_time(entry["metadata"]["annotations"]["istio.io/disconnectedAt"])
        check.wait("the entry is deleted after the grace period", lambda: check.entry() is None, timeout=GRACE + 10)
        deleted = time.time()
        if deleted - disconnected < GRACE - 0.2 or deleted - closed < GRACE - 0.2:
            check.fail(f"the entry was deleted {deleted - disconnected:.1f} s after its disconnectedAt, "
                       f"before the {GRACE} s grace period")
        check.wait("deleted: no host in east's Envoy and 503",
                   lambda: check.east_hosts() == [] and check.get()[0] == 503)
        if check.sent_to_east() != []:
            check.fail(f"deleted, yet east is sent {check.sent_to_east()}")
        print(f"disconnected: entry deleted {deleted - disconnected:.1f} s after istio.io/disconnectedAt "
              f"(grace {GRACE:.0f} s), endpoint gone")
        print(f"vm: ok ({time.time() - started:.1f} s)")
        passed = True
    finally:
        for close in reversed(closers):
            close()
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if passed:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
