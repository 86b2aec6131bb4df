#!/usr/bin/env python3
"""End to end: Istio mutual TLS across networks with real Envoy 1.40 and `bowline agent`.

Two members on two networks. In east, a client sidecar Envoy; in west, the echo workload
(an HTTP app and a TCP echo app on their own loopback address) behind its server sidecar
Envoy, and west's east-west gateway Envoy. Each sidecar has a `bowline agent` beside it that
gets its workload certificate from Bowline's CA with a VM token and serves it over SDS.

Checked:
- the client sidecar's own xDS goes over TLS with the agent's certificate (from SDS);
- HTTP and raw TCP from east reach west through the gateway; the app sees the client's SPIFFE
  id in x-forwarded-client-cert (the server sidecar terminated mTLS);
- the gateway's config has one SNI filter chain per service port and terminates no TLS;
- a plaintext client is still served in PERMISSIVE mode (the default), and refused once a
  PeerAuthentication makes the namespace STRICT (mTLS clients still served);
- with a 60 s certificate lifetime, the certificates rotate under steady traffic with no
  failed request.

Usage: mtls.py PATH_TO_BOWLINE PATH_TO_ENVOY
"""

import http.client
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLIENT_IP = "127.0.0.11"
SERVER_IP = "127.0.0.21"
APP_IP = "127.0.0.121"
GATEWAY_IP = "127.0.0.30"
HTTP_TARGET, TCP_TARGET = 18080, 19000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def members(http_port, tcp_port):
    property_ = lambda id_: f"""apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {{name: cluster.clusterset.k8s.io}}
spec: {{value: {id_}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
"""
    group = lambda name: f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: {name}, namespace: shop}}
spec:
  metadata: {{labels: {{app: {name}}}}}
  template: {{serviceAccount: {name}}}
"""
    service = f"""---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {{name: http, port: {http_port}, targetPort: {HTTP_TARGET}}}
  - {{name: tcp-echo, port: {tcp_port}, targetPort: {TCP_TARGET}}}
"""
    east = property_("east") + group("client")
    west = property_("west") + group("echo") + service + f"""---
apiVersion: v1
kind: Pod
metadata:
  name: echo-w-0
  namespace: shop
  labels: {{app: echo, security.istio.io/tlsMode: istio}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-west
  namespace: shop
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: http, port: {HTTP_TARGET}, protocol: TCP}}, {{name: tcp-echo, port: {TCP_TARGET}, protocol: TCP}}]
endpoints:
- addresses: [{SERVER_IP}]
  targetRef: {{kind: Pod, name: echo-w-0, namespace: shop}}
---
apiVersion: v1
kind: Service
metadata:
  name: eastwest
  namespace: istio-system
  labels: {{topology.istio.io/network: net-west}}
spec:
  type: LoadBalancer
  clusterIP: 10.96.9.9
  ports: [{{name: tls, port: 15443}}]
  externalIPs: [{GATEWAY_IP}]
"""
    return {"east": east, "west": west}


def start_apps():
    """The echo workload: HTTP answering with the XFCC header it got, TCP echoing a line."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"app": "echo-west", "xfcc": self.headers.get("x-forwarded-client-cert")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            self.wfile.write(b"echo-west: " + line)

    http_server = http.server.ThreadingHTTPServer((APP_IP, HTTP_TARGET), Handler)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    tcp_server = socketserver.ThreadingTCPServer((APP_IP, TCP_TARGET), Echo)
    for s in (http_server, tcp_server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    return [http_server, tcp_server]


def check_sample_bootstrap(envoy, work, root):
    """The sidecar bootstrap users are given (examples/bootstrap/envoy-sidecar.yaml) is one
    Envoy accepts: `envoy --mode validate` loads it, TLS contexts included."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "examples", "bootstrap", "envoy-sidecar.yaml")) as f:
        sample = f.read().replace("/etc/bowline/root-cert.pem", root)
    path = os.path.join(work, "envoy-sample.yaml")
    with open(path, "w") as f:
        f.write(sample)
    result = subprocess.run([envoy, "--mode", "validate", "-c", path, "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the sample bootstrap is refused: {result.stdout}{result.stderr}"
    print("mtls: examples/bootstrap/envoy-sidecar.yaml passes envoy --mode validate")


def sds_secret(name):
    return {"name": name, "sds_config": {"resource_api_version": "V3", "api_config_source": {
        "api_type": "GRPC", "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]}}}


def bootstrap(node_id, xds_port, admin_port, metadata, sds_socket=None, xds_root=None):
    """With `xds_root`, xDS goes to Bowline's TLS port, the agent's certificate (SDS) as the
    client certificate, Bowline's certificate checked against `xds_root`."""
    clusters = [{
        "name": "xds", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]},
    }]
    if xds_root:
        clusters[0]["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "bowline.bowline-system.svc",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [sds_secret("default")],
                "validation_context": {
                    "trusted_ca": {"filename": xds_root},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "bowline.bowline-system.svc"}}]}}}}
    if sds_socket:
        # The node agent's SDS, as docs/operations.md shows it.
        clusters.append({
            "name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"pipe": {"path": sds_socket}}}}]}]},
        })
    return {
        "node": {"id": node_id, "cluster": "e2e", "metadata": metadata},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": clusters},
    }


def start(work, name, argv):
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"))


def start_envoy(envoy, work, name, config):
    path = os.path.join(work, f"envoy-{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return start(work, f"envoy-{name}", [envoy, "-c", path, "--disable-hot-restart", "--log-level", "warn",
                                         "--base-id", str(abs(hash(name)) % 10000)])


def http_get(port):
    request = urllib.request.Request(f"http://{CLIENT_IP}:{port}/",
                                     headers={"Host": "echo.shop.svc.clusterset.local", "Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def tcp_echo(port, text):
    with socket.create_connection((CLIENT_IP, port), timeout=5) as s:
        s.sendall(text.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def admin(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def serials(admin_port):
    certs = json.loads(admin(admin_port, "/certs"))["certificates"]
    return sorted(c["serial_number"] for entry in certs for c in entry.get("cert_chain", []))


def eventually(what, check, work, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.3)
    raise SystemExit(f"{what} did not happen within {timeout} s (last error: {last}); see {work}")


def main():
    bowline, envoy = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="bowline-mtls-")
    http_port, tcp_port = free_port(), free_port()
    for member, text in members(http_port, tcp_port).items():
        os.makedirs(os.path.join(work, member))
        with open(os.path.join(work, member, "objects.yaml"), "w") as f:
            f.write(text)
    admin_port, xds, xds_tls = free_port(), free_port(), free_port()
    config = os.path.join(work, "bowline.yaml")
    with open(config, "w") as f:
        f.write(
            "clusterSet: e2e\n"
            "members:\n  - {manifests: east, network: net-east}\n  - {manifests: west, network: net-west}\n"
            f"listen: {{admin: '127.0.0.1:{admin_port}', xds: '127.0.0.1:{xds}', xdsTls: '127.0.0.1:{xds_tls}', dns: '127.0.0.1:{free_port()}'}}\n"
        )
    procs = [start(work, "bowline", [bowline, "run", "--config", config])]
    apps = start_apps()
    try:
        root = os.path.join(work, ".bowline-data", "ca", "root-cert.pem")
        eventually("Bowline's root CA", lambda: os.path.exists(root), work)
        check_sample_bootstrap(envoy, work, root)
        agents = {}
        for name, group in [("client", "client"), ("server", "echo")]:
            d = os.path.join(work, f"agent-{name}")
            os.makedirs(d)
            token = subprocess.run([bowline, "vm", "token", "--config", config, "--group", group, "-n", "shop",
                                    "--ttl", "1h"], check=True, capture_output=True, text=True).stdout.strip()
            with open(os.path.join(d, "token"), "w") as f:
                f.write(token)
            with open(os.path.join(d, "agent.yaml"), "w") as f:
                f.write(f"discovery: bowline.bowline-system.svc:{xds_tls}\naddress: 127.0.0.1:{xds_tls}\n"
                        f"rootCert: {root}\ntoken: token\nclusterId: {'east' if name == 'client' else 'west'}\n"
                        "ttl: 60s\nsdsSocket: sds.sock\ncertDir: certs\n")
            procs.append(start(work, f"agent-{name}", [bowline, "agent", "--config", os.path.join(d, "agent.yaml")]))
            agents[name] = os.path.join(d, "sds.sock")
        client_admin, server_admin, gateway_admin = free_port(), free_port(), free_port()
        procs.append(start_envoy(envoy, work, "gateway", bootstrap("gateway-west", xds, gateway_admin, {
            "CLUSTER_ID": "west", "NETWORK": "net-west", "INSTANCE_IPS": GATEWAY_IP,
            "BOWLINE_GATEWAY": "eastwest", "BOWLINE_LISTEN_ADDRESS": GATEWAY_IP})))
        procs.append(start_envoy(envoy, work, "server", bootstrap("echo-w-0.shop", xds, server_admin, {
            "CLUSTER_ID": "west", "NETWORK": "net-west", "INSTANCE_IPS": SERVER_IP, "BOWLINE_SDS": "true",
            "NAMESPACE": "shop", "LABELS": {"app": "echo"},
            "BOWLINE_LISTEN_ADDRESS": SERVER_IP, "BOWLINE_APP_ADDRESS": APP_IP,
            "POD_PORTS": json.dumps([{"name": "http", "containerPort": HTTP_TARGET, "protocol": "TCP"},
                                     {"name": "tcp-echo", "containerPort": TCP_TARGET, "protocol": "TCP"}])},
            agents["server"])))
        # The client sidecar's own xDS goes over TLS with the agent's certificate.
        procs.append(start_envoy(envoy, work, "client", bootstrap("client-east.shop", xds_tls, client_admin, {
            "CLUSTER_ID": "east", "NETWORK": "net-east", "INSTANCE_IPS": CLIENT_IP, "BOWLINE_SDS": "true",
            "NAMESPACE": "shop", "BOWLINE_LISTEN_ADDRESS": CLIENT_IP}, agents["client"], xds_root=root)))

        # HTTP through the gateway; the app sees who called.
        answer = eventually("an HTTP request from east through west's gateway", lambda: http_get(http_port), work)
        xfcc = answer["xfcc"] or ""
        assert "URI=spiffe://cluster.local/ns/shop/sa/client" in xfcc, answer
        print(f"mtls: HTTP east -> gateway -> west's sidecar: {answer}")
        # Raw TCP through the same gateway.
        reply = eventually("a TCP exchange through the gateway", lambda: tcp_echo(tcp_port, "ping"), work)
        assert reply == "echo-west: ping", reply
        print(f"mtls: TCP east -> gateway -> west's sidecar: {reply!r}")

        # The gateway routes by SNI and terminates nothing.
        dump = json.loads(admin(gateway_admin, "/config_dump?resource=dynamic_listeners"))
        listener = next(c["active_state"]["listener"] for c in dump["configs"]
                        if c["name"] == "eastwest_15443")
        chains = {tuple(ch["filter_chain_match"].get("server_names", [])): ch for ch in listener["filter_chains"]}
        for port in (http_port, tcp_port):
            sni = f"outbound_.{port}_._.echo.shop.svc.clusterset.local"
            assert (sni,) in chains, sorted(chains)
            assert "transport_socket" not in chains[(sni,)], chains[(sni,)]
        assert any(f["name"] == "envoy.filters.listener.tls_inspector" for f in listener["listener_filters"])
        print(f"mtls: gateway has {len(chains)} SNI filter chains, none terminating TLS")

        # PERMISSIVE (the default): a plaintext client of the server sidecar is still served.
        with urllib.request.urlopen(f"http://{SERVER_IP}:{HTTP_TARGET}/", timeout=5) as r:
            plain = json.loads(r.read())
        assert plain["xfcc"] is None, plain
        print("mtls: PERMISSIVE serves plaintext too, without a client identity")

        # STRICT: the namespace's PeerAuthentication leaves the server sidecar only its mTLS chain.
        with open(os.path.join(work, "west", "strict.yaml"), "w") as f:
            f.write("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
                    "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n")

        def plaintext_refused():
            try:
                with urllib.request.urlopen(f"http://{SERVER_IP}:{HTTP_TARGET}/", timeout=5) as r:
                    r.read()
                return False
            except (OSError, http.client.HTTPException):
                return True
        eventually("STRICT refusing a plaintext client", plaintext_refused, work)
        assert "sa/client" in (http_get(http_port)["xfcc"] or "")
        print("mtls: STRICT refuses a plaintext client; the mTLS client is still served")

        # Rotation: 60 s certificates renew at about half; steady traffic sees no failure.
        before = {"client": serials(client_admin), "server": serials(server_admin)}
        failures, requests = 0, 0
        deadline = time.time() + 75
        while time.time() < deadline:
            try:
                got = http_get(http_port)
                assert "sa/client" in (got["xfcc"] or ""), got
            except Exception as e:  # noqa: BLE001 - counted
                failures += 1
                print(f"mtls: request failed during rotation: {e}")
            requests += 1
            now = {"client": serials(client_admin), "server": serials(server_admin)}
            if all(set(now[k]) - set(before[k]) for k in now) and time.time() > deadline - 40:
                break
            time.sleep(0.05)
        after = {"client": serials(client_admin), "server": serials(server_admin)}
        rotated = {k: bool(set(after[k]) - set(before[k])) for k in after}
        assert all(rotated.values()), f"certificates did not rotate within 75 s: {before} -> {after}"
        assert failures == 0, f"{failures} of {requests} requests failed during rotation"
        print(f"mtls: both certificates rotated under {requests} requests, none failed")
        print("mtls: ok")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for a in apps:
            a.shutdown()


if __name__ == "__main__":
    main()
