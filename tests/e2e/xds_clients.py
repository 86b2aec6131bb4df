#!/usr/bin/env python3
"""End to end: gRPC's own xDS clients resolve xds:///echo.shop.svc.clusterset.local through Bowline.

Three members (east and west with IPv4 endpoints, central with an IPv6-only one), with test
gRPC servers on loopback addresses (127.0.0.0/8 and ::1) standing in for pods; the clients are
dual-stack nodes. Each client (Python grpcio in this process, Node @grpc/grpc-js-xds as a long-lived
subprocess), told by its bootstrap that it runs in east, sends real RPCs; every server must get
its even share (round robin over every endpoint of every member). Then an endpoint is removed
from a manifest, and new RPCs stop reaching it without restarting the clients.

Usage: grpc_python.py PATH_TO_BOWLINE [NODE_MODULES_DIR]
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent import futures

# central is IPv6-only: its one endpoint is ::1, reached by the clients (dual-stack nodes).
SERVERS = {"east": ["127.0.0.11", "127.0.0.12"], "west": ["127.0.0.21", "127.0.0.22"], "central": ["::1"]}
# This one is a proxyless gRPC *server*: it serves only once Bowline has sent its listener
# (grpc/server?xds.resource.listening_address=127.0.0.12:PORT, gRFC A36).
XDS_SERVER = "127.0.0.12"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member_yaml(member, addrs, port, service_port):
    endpoints = "\n".join(
        f"- addresses: ['{a}']\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: echo-{member}-{i}, namespace: shop}}"
        for i, a in enumerate(addrs)
    )
    v6 = ":" in addrs[0]
    cluster_ip = {"east": "10.96.0.10", "west": "10.96.0.20", "central": "fd00:96::30"}[member]
    return f"""apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {{name: cluster.clusterset.k8s.io}}
spec: {{value: {member}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  clusterIP: '{cluster_ip}'
  ports: [{{name: grpc, port: {service_port}, targetPort: {port}}}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {{name: echo, namespace: shop}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-{member}
  namespace: shop
  labels: {{kubernetes.io/service-name: echo}}
addressType: {"IPv6" if v6 else "IPv4"}
ports: [{{name: grpc, port: {port}, protocol: TCP}}]
endpoints:
{endpoints}
"""


def start_servers(grpc, port):
    servers = []
    for addrs in SERVERS.values():
        for addr in addrs:
            def handler(request, context, name=addr):
                return name.encode()

            generic = grpc.method_handlers_generic_handler(
                "echo.Echo", {"Call": grpc.unary_unary_rpc_method_handler(handler)}
            )
            if addr == XDS_SERVER:
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
                server.add_generic_rpc_handlers((generic,))
                server.add_secure_port(f"{addr}:{port}", grpc.xds_server_credentials(grpc.insecure_server_credentials()))
            else:
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
                server.add_generic_rpc_handlers((generic,))
                server.add_insecure_port(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
            server.start()
            servers.append(server)
    return servers


def main():
    bowline = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bowline-e2e-")
    port, service_port = free_port(), 50051
    for member, addrs in SERVERS.items():
        os.makedirs(os.path.join(work, member))
        with open(os.path.join(work, member, "echo.yaml"), "w") as f:
            f.write(member_yaml(member, addrs, port, service_port))
    admin, xds = free_port(), free_port()
    with open(os.path.join(work, "bowline.yaml"), "w") as f:
        f.write(
            "clusterSet: e2e\n"
            "members:\n  - {manifests: east, network: net-a}\n  - {manifests: west, network: net-a}\n"
            "  - {manifests: central, network: net-a}\n"
            f"listen: {{admin: '127.0.0.1:{admin}', xds: '127.0.0.1:{xds}', xdsTls: '127.0.0.1:{free_port()}', dns: '127.0.0.1:{free_port()}'}}\n"
        )
    # The sample users are given (examples/bootstrap/grpc-xds-bootstrap.json), pointed at this
    # Bowline and this test's member and addresses.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "examples", "bootstrap", "grpc-xds-bootstrap.json")) as f:
        bootstrap = json.load(f)
    bootstrap["xds_servers"][0]["server_uri"] = f"127.0.0.1:{xds}"
    bootstrap["node"].update({"id": "e2e-python", "cluster": "e2e", "locality": {"region": "r", "zone": "z"}})
    bootstrap["node"]["metadata"] = {"CLUSTER_ID": "east", "NETWORK": "net-a", "INSTANCE_IPS": "127.0.0.1,::1"}
    os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps(bootstrap)
    import grpc  # after the bootstrap is in the environment

    proc = subprocess.Popen([bowline, "run", "--config", os.path.join(work, "bowline.yaml")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "bowline.log"), "w"))
    servers = start_servers(grpc, port)
    try:
        target = f"xds:///echo.shop.svc.clusterset.local:{service_port}"
        channel = grpc.insecure_channel(target)
        call = channel.unary_unary("/echo.Echo/Call")
        deadline = time.time() + 60
        while True:
            try:
                call(b"hi", timeout=5)
                break
            except grpc.RpcError as e:
                if time.time() > deadline:
                    raise SystemExit(f"no RPC succeeded through xDS within 60 s: {e}")
                time.sleep(0.5)

        def python_spread(n):
            return Counter(call(b"hi", timeout=5).decode() for _ in range(n))

        clients = [("python grpcio", python_spread)]
        node = None
        if len(sys.argv) > 2:
            env = dict(os.environ, NODE_PATH=sys.argv[2])
            node = subprocess.Popen(["node", os.path.join(os.path.dirname(__file__), "grpc_node_client.js"), target],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

            def node_spread(n):
                node.stdin.write(f"spread {n}\n")
                node.stdin.flush()
                reply = json.loads(node.stdout.readline())
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return Counter(reply["counts"])

            deadline = time.time() + 60
            while True:
                try:
                    node_spread(1)
                    break
                except RuntimeError as e:
                    if time.time() > deadline:
                        raise SystemExit(f"the Node client made no RPC through xDS within 60 s: {e}")
                    time.sleep(0.5)
            clients.append(("node grpc-js-xds", node_spread))
        try:
            check(clients, port, service_port, work)
        finally:
            if node:
                node.stdin.close()
                node.wait(timeout=10)
        print("xds clients: ok")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in servers:
            s.stop(0)


def check(clients, port, service_port, work):
    all_addrs = [a for addrs in SERVERS.values() for a in addrs]
    for name, spread in clients:
        counts = spread(500)
        print(f"{name}: spread over every endpoint of the three members: {dict(counts)}")
        for addr in all_addrs:
            share = counts[addr] / 500
            assert 0.12 <= share <= 0.28, f"{name}: {addr} got {share:.0%} of the RPCs, expected about 20%: {dict(counts)}"

    # Remove one west endpoint from its manifest: new RPCs stop reaching it, no restart.
    removed = SERVERS["west"][1]
    with open(os.path.join(work, "west", "echo.yaml"), "w") as f:
        f.write(member_yaml("west", SERVERS["west"][:1], port, service_port))
    for name, spread in clients:
        deadline = time.time() + 30
        while True:
            counts = spread(60)
            if counts[removed] == 0:
                break
            if time.time() > deadline:
                raise SystemExit(f"{name}: {removed} still receives RPCs 30 s after its removal: {dict(counts)}")
            time.sleep(0.2)
        counts = spread(400)
        print(f"{name}: after removing {removed}: {dict(counts)}")
        assert counts[removed] == 0
        for addr in [a for a in all_addrs if a != removed]:
            share = counts[addr] / 400
            assert 0.15 <= share <= 0.35, f"{name}: {addr} got {share:.0%}, expected about 25%: {dict(counts)}"


if __name__ == "__main__":
    main()
