#!/usr/bin/env python3
"""End to end: a real Envoy 1.40 routes HTTP through Bowline's xDS, in state-of-the-world and
in delta mode.

Two members with HTTP backends on loopback addresses standing in for pods. Envoy gets an
outbound listener on the service port and routes by Host to echo.shop.svc.clusterset.local;
requests must spread evenly over all backends of both members, and an endpoint removed from a
manifest must stop receiving requests without restarting Envoy. (Across networks, through an
east-west gateway with mTLS: mtls.py.)

Usage: envoy.py PATH_TO_BOWLINE PATH_TO_ENVOY
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

SERVERS = {"east": ["127.0.0.11", "127.0.0.12"], "west": ["127.0.0.21", "127.0.0.22"]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member_yaml(member, addrs, port, service_port):
    endpoints = "\n".join(
        f"- addresses: [{a}]\n  targetRef: {{kind: Pod, name: web-{member}-{i}, namespace: shop}}"
        for i, a in enumerate(addrs)
    )
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
  clusterIP: 10.96.0.{10 if member == 'east' else 20}
  ports: [{{name: http, port: {service_port}, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-{member}
  namespace: shop
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
{endpoints}
"""


def start_backends(port):
    servers = []
    for addrs in SERVERS.values():
        for addr in addrs:
            class Handler(http.server.BaseHTTPRequestHandler):
                name = addr

                def do_GET(self):
                    body = self.name.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args):
                    pass

            server = http.server.ThreadingHTTPServer((addr, port), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
    return servers


def bootstrap(mode, xds_port, admin_port, metadata=None):
    metadata = metadata or {"CLUSTER_ID": "east", "NETWORK": "net-a", "INSTANCE_IPS": "127.0.0.1"}
    return {
        "node": {"id": f"envoy-{mode}-{metadata.get('CLUSTER_ID')}", "cluster": "e2e", "metadata": metadata},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC" if mode == "sotw" else "DELTA_GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]},
        }]},
    }


def start_envoy(envoy, work, name, config):
    path = os.path.join(work, f"envoy-{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return subprocess.Popen([envoy, "-c", path, "--disable-hot-restart", "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"envoy-{name}.log"), "w"))


def get(service_port):
    request = urllib.request.Request(f"http://127.0.0.1:{service_port}/",
                                     headers={"Host": "echo.shop.svc.clusterset.local", "Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def spread(service_port, n):
    return Counter(get(service_port) for _ in range(n))


def main():
    bowline, envoy = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="bowline-envoy-")
    port, service_port = free_port(), free_port()
    for member, addrs in SERVERS.items():
        os.makedirs(os.path.join(work, member))
        with open(os.path.join(work, member, "echo.yaml"), "w") as f:
            f.write(member_yaml(member, addrs, port, service_port))
    admin, xds = free_port(), free_port()
    with open(os.path.join(work, "bowline.yaml"), "w") as f:
        f.write(
            "clusterSet: e2e\n"
            "members:\n  - {manifests: east, network: net-a}\n  - {manifests: west, network: net-a}\n"
            f"listen: {{admin: '127.0.0.1:{admin}', xds: '127.0.0.1:{xds}', xdsTls: '127.0.0.1:{free_port()}', dns: '127.0.0.1:{free_port()}'}}\n"
        )
    proc = subprocess.Popen([bowline, "run", "--config", os.path.join(work, "bowline.yaml")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "bowline.log"), "w"))
    backends = start_backends(port)
    all_addrs = [a for addrs in SERVERS.values() for a in addrs]
    try:
        for mode in ["sotw", "delta"]:
            with open(os.path.join(work, "west", "echo.yaml"), "w") as f:
                f.write(member_yaml("west", SERVERS["west"], port, service_port))
            config = os.path.join(work, f"envoy-{mode}.json")
            with open(config, "w") as f:
                json.dump(bootstrap(mode, xds, free_port()), f)
            envoy_proc = subprocess.Popen([envoy, "-c", config, "--disable-hot-restart", "--log-level", "warn"],
                                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"envoy-{mode}.log"), "w"))
            try:
                deadline = time.time() + 60
                while True:
                    try:
                        counts = spread(service_port, 8)
                        if len(counts) == 4:
                            break
                    except OSError:
                        pass
                    if time.time() > deadline:
                        raise SystemExit(f"Envoy ({mode}) did not route to all 4 backends within 60 s; see {work}")
                    time.sleep(0.3)
                counts = spread(service_port, 200)
                print(f"envoy {mode}: spread over every endpoint of both members: {dict(counts)}")
                for addr in all_addrs:
                    share = counts[addr] / 200
                    assert 0.15 <= share <= 0.35, f"envoy {mode}: {addr} got {share:.0%}: {dict(counts)}"
                removed = SERVERS["west"][1]
                with open(os.path.join(work, "west", "echo.yaml"), "w") as f:
                    f.write(member_yaml("west", SERVERS["west"][:1], port, service_port))
                deadline = time.time() + 30
                while spread(service_port, 40)[removed] != 0:
                    if time.time() > deadline:
                        raise SystemExit(f"envoy {mode}: {removed} still gets requests 30 s after its removal")
                    time.sleep(0.2)
                counts = spread(service_port, 150)
                print(f"envoy {mode}: after removing {removed}: {dict(counts)}")
                assert counts[removed] == 0 and len(counts) == 3, dict(counts)
            finally:
                envoy_proc.terminate()
                envoy_proc.wait(timeout=10)
        print("envoy: ok")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for b in backends:
            b.shutdown()


if __name__ == "__main__":
    main()
