#!/usr/bin/env python3
"""End to end: dnspython queries `bowline demo`'s DNS server over UDP and TCP.

Covers ClusterSetIP (dual stack) A/AAAA, SRV per named port and on the bare name, headless
A with per-endpoint names, NXDOMAIN with the SOA, the dns-version TXT, case-insensitivity,
east's cluster.local, and a live edit: an endpoint added to a manifest appears in the headless
answer.

Usage: dns_demo.py PATH_TO_BOWLINE
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode


def query(port, name, qtype, tcp=False):
    q = dns.message.make_query(name, qtype)
    r = (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=3)
    return r


def values(r):
    return sorted(x.to_text() for rr in r.answer for x in rr)


def main():
    bowline = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bowline-dns-")
    proc = subprocess.Popen([bowline, "demo", "--dir", work, "--admin", "127.0.0.1:0", "--xds", "127.0.0.1:0", "--xds-tls", "127.0.0.1:0", "--dns", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in proc.stdout:
            m = re.search(r"dns: 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "the demo prints its DNS address"
        deadline = time.time() + 30
        while values(query(port, "echo.demo.svc.clusterset.local", "A")) == []:
            assert time.time() < deadline, "echo never resolved"
            time.sleep(0.2)

        cases = [
            ("echo.demo.svc.clusterset.local", "A", False, "NOERROR", ["241.0.0.1"]),
            ("Echo.Demo.SVC.clusterset.local", "AAAA", True, "NOERROR", ["fd00:241::1"]),
            ("_http._tcp.echo.demo.svc.clusterset.local", "SRV", False, "NOERROR", ["0 100 80 echo.demo.svc.clusterset.local."]),
            ("echo.demo.svc.clusterset.local", "SRV", True, "NOERROR",
             ["0 50 80 echo.demo.svc.clusterset.local.", "0 50 9090 echo.demo.svc.clusterset.local."]),
            ("db.demo.svc.clusterset.local", "A", False, "NOERROR", ["10.1.1.20", "10.1.2.21", "10.2.1.20"]),
            ("db.demo.svc.clusterset.local", "AAAA", False, "NOERROR", ["fd00:2:1::20"]),
            ("db-0.west.db.demo.svc.clusterset.local", "AAAA", False, "NOERROR", ["fd00:2:1::20"]),
            ("db-1.east.db.demo.svc.clusterset.local", "A", True, "NOERROR", ["10.1.2.21"]),
            ("east.db.demo.svc.clusterset.local", "A", False, "NXDOMAIN", []),
            ("ghost.demo.svc.clusterset.local", "A", False, "NXDOMAIN", []),
            ("echo.nowhere.svc.clusterset.local", "A", False, "NXDOMAIN", []),
            ("demo.svc.clusterset.local", "A", False, "NOERROR", []),
            ("dns-version.clusterset.local", "TXT", False, "NOERROR", ['"1.0.0"']),
            # cluster.local: east's own Services (dns.clusterLocalMember: east), for its VMs.
            ("echo.demo.svc.cluster.local", "A", False, "NOERROR", ["10.96.0.10"]),
            ("db.demo.svc.cluster.local", "A", True, "NOERROR", ["10.1.1.20", "10.1.2.21"]),
            ("db-0.db.demo.svc.cluster.local", "A", False, "NOERROR", ["10.1.1.20"]),
            ("db-0.east.db.demo.svc.cluster.local", "A", False, "NXDOMAIN", []),
            ("dns-version.cluster.local", "TXT", False, "NOERROR", ['"1.1.0"']),
            ("echo.demo.svc.example.org", "A", False, "REFUSED", []),
        ]
        for name, qtype, tcp, rcode, want in cases:
            r = query(port, name, qtype, tcp)
            got = (dns.rcode.to_text(r.rcode()), values(r))
            assert got == (rcode, want), f"{name} {qtype} over {'TCP' if tcp else 'UDP'}: {got}, expected {(rcode, want)}"
            if rcode == "REFUSED":
                continue
            assert r.flags & dns.flags.AA, f"{name}: answers are authoritative"
            if not want:
                assert any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority), f"{name}: SOA in the authority section"

        # Live edit: a third db replica in west appears in the answer.
        with open(os.path.join(work, "members", "west", "db-extra.yaml"), "w") as f:
            f.write("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-extra\n  namespace: demo\n"
                    "  labels: {kubernetes.io/service-name: db}\naddressType: IPv4\n"
                    "endpoints:\n- addresses: [10.2.2.29]\n  hostname: db-9\nports: [{name: pg, port: 5432, protocol: TCP}]\n")
        deadline = time.time() + 30
        while "10.2.2.29" not in values(query(port, "db.demo.svc.clusterset.local", "A")):
            assert time.time() < deadline, "the new replica never appeared"
            time.sleep(0.1)
        assert values(query(port, "db-9.west.db.demo.svc.clusterset.local", "A")) == ["10.2.2.29"]
        print("dns: ok")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
