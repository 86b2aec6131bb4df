#!/usr/bin/env python3
"""End to end: proxyless gRPC over mTLS with xDS credentials (gRFC A29) and `bowline agent`.

One member. A grpcio xDS server (xds_server_credentials) and a grpcio client
(xds_channel_credentials), each in its own process with the gRPC xDS bootstrap its
`bowline agent` wrote: Bowline's TLS port with `tls` channel credentials from the agent's
files, and the certificate provider `default` (`file_watcher`) that Bowline's xDS security
names. Checked: the call is made over TLS and the server sees the client's SPIFFE id; a
plaintext client of the server is refused.

Usage: grpc_mtls.py PATH_TO_BOWLINE
       grpc_mtls.py --serve ADDRESS PORT        (the server, run by the above)
       grpc_mtls.py --call TARGET               (one call, prints the answer as JSON)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures

SERVER_IP = "127.0.0.41"
HOST = "echo.shop.svc.clusterset.local"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(address, port):
    import grpc
    import grpc.experimental  # noqa: F401 - insecure_channel_credentials

    def handler(request, context):
        auth = {k: [v.decode(errors="replace") for v in vs] for k, vs in context.auth_context().items()}
        return json.dumps({"auth": auth, "identities": [i.decode() for i in (context.peer_identities() or [])]}).encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "echo.Echo", {"Call": grpc.unary_unary_rpc_method_handler(handler)}),))
    server.add_secure_port(f"{address}:{port}", grpc.xds_server_credentials(grpc.insecure_server_credentials()))
    server.start()
    server.wait_for_termination()


def call(target):
    import grpc
    import grpc.experimental  # noqa: F401 - insecure_channel_credentials
    creds = grpc.xds_channel_credentials(fallback_credentials=grpc.experimental.insecure_channel_credentials())
    with grpc.secure_channel(target, creds) as channel:
        print(channel.unary_unary("/echo.Echo/Call")(b"hi", timeout=10).decode())


def members(port):
    group = lambda name: f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: {name}, namespace: shop}}
spec:
  metadata: {{labels: {{app: {name}}}}}
  template: {{serviceAccount: {name}}}
"""
    return f"""apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {{name: cluster.clusterset.k8s.io}}
spec: {{value: east}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  clusterIP: 10.96.0.30
  ports: [{{name: grpc, port: {port}}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-0
  namespace: shop
  labels: {{app: echo, security.istio.io/tlsMode: istio}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo
  namespace: shop
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: grpc, port: {port}, protocol: TCP}}]
endpoints:
- addresses: [{SERVER_IP}]
  targetRef: {{kind: Pod, name: echo-0, namespace: shop}}
""" + group("client") + group("echo")


def main():
    bowline = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bowline-grpc-mtls-")
    port = free_port()
    os.makedirs(os.path.join(work, "east"))
    with open(os.path.join(work, "east", "objects.yaml"), "w") as f:
        f.write(members(port))
    admin, xds, xds_tls = free_port(), free_port(), free_port()
    config = os.path.join(work, "bowline.yaml")
    with open(config, "w") as f:
        f.write("clusterSet: e2e\nmembers:\n  - {manifests: east, network: net-a}\n"
                f"listen: {{admin: '127.0.0.1:{admin}', xds: '127.0.0.1:{xds}', xdsTls: '127.0.0.1:{xds_tls}', dns: '127.0.0.1:{free_port()}'}}\n")
    log = lambda name: open(os.path.join(work, f"{name}.log"), "w")
    procs = [subprocess.Popen([bowline, "run", "--config", config], stdout=subprocess.DEVNULL, stderr=log("bowline"))]
    try:
        root = os.path.join(work, ".bowline-data", "ca", "root-cert.pem")
        deadline = time.time() + 30
        while not os.path.exists(root):
            if time.time() > deadline:
                raise SystemExit(f"no root CA within 30 s; see {work}")
            time.sleep(0.2)
        bootstraps = {}
        for name, group, node, labels in [("client", "client", "client-0.shop", "client"),
                                          ("server", "echo", "echo-0.shop", "echo")]:
            d = os.path.join(work, f"agent-{name}")
            os.makedirs(d)
            token = subprocess.run([bowline, "vm", "token", "--config", config, "--group", group, "-n", "shop",
                                    "--ttl", "1h"], check=True, capture_output=True, text=True).stdout.strip()
            with open(os.path.join(d, "token"), "w") as f:
                f.write(token)
            metadata = {"CLUSTER_ID": "east", "NETWORK": "net-a", "NAMESPACE": "shop",
                        "INSTANCE_IPS": SERVER_IP if name == "server" else "127.0.0.42", "LABELS": {"app": labels}}
            with open(os.path.join(d, "agent.yaml"), "w") as f:
                f.write(f"discovery: bowline.bowline-system.svc:{xds_tls}\naddress: 127.0.0.1:{xds_tls}\n"
                        f"rootCert: {root}\ntoken: token\nclusterId: east\nsdsSocket: ''\ncertDir: certs\n"
                        f"grpcBootstrap: {{path: bootstrap.json, nodeId: {node}, metadata: {json.dumps(metadata)}}}\n")
            procs.append(subprocess.Popen([bowline, "agent", "--config", os.path.join(d, "agent.yaml")],
                                          stdout=subprocess.DEVNULL, stderr=log(f"agent-{name}")))
            bootstraps[name] = os.path.join(d, "bootstrap.json")
        deadline = time.time() + 30
        while not all(os.path.exists(b) for b in bootstraps.values()):
            if time.time() > deadline:
                raise SystemExit(f"the agents wrote no gRPC bootstrap within 30 s; see {work}")
            time.sleep(0.2)
        env = lambda name: {**os.environ, "GRPC_XDS_BOOTSTRAP": bootstraps[name]}
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve", SERVER_IP, str(port)],
                                      env=env("server"), stdout=subprocess.DEVNULL, stderr=log("server")))
        deadline = time.time() + 60
        while True:
            made = subprocess.run([sys.executable, __file__, "--call", f"xds:///{HOST}:{port}"], env=env("client"),
                                  capture_output=True, text=True, timeout=30)
            if made.returncode == 0:
                break
            if time.time() > deadline:
                raise SystemExit(f"no call over xDS mTLS succeeded within 60 s: {made.stderr[-2000:]}; see {work}")
            time.sleep(1)
        answer = json.loads(made.stdout)
        auth = answer["auth"]
        assert auth.get("transport_security_type") == ["tls"], answer
        assert auth.get("peer_spiffe_id") == ["spiffe://cluster.local/ns/shop/sa/client"], answer
        print(f"grpc mtls: the proxyless server saw {auth['peer_spiffe_id']} over {auth['ssl_tls_version']}")
        # A plaintext client of the server is refused.
        import grpc
        with grpc.insecure_channel(f"{SERVER_IP}:{port}") as channel:
            try:
                channel.unary_unary("/echo.Echo/Call")(b"hi", timeout=5)
                raise SystemExit("the proxyless server answered a plaintext client")
            except grpc.RpcError as e:
                print(f"grpc mtls: a plaintext client is refused ({e.code().name})")
        print("grpc mtls: ok")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--call"]:
        call(sys.argv[2])
    else:
        main()
