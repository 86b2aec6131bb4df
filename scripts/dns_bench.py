#!/usr/bin/env python3
"""DNS benchmark: dnsperf against `bowline demo` and, side by side in the same run, against
Knot DNS serving the same names from zone files rendered from the same registry
(`/debug/dns_zone`).

Before measuring, every query of the query file is asked of both servers and their answers
compared (rcode and answer section): the two serve the same data, or the run fails.

Usage: dns_bench.py BOWLINE [--seconds N] [--rounds N]
Run through scripts/bench-dns, which installs dnsperf and Knot (Debian) and builds Bowline.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import dns.message
import dns.query
import dns.rcode


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def start_bowline(bowline, work):
    dns_port = free_port()
    proc = subprocess.Popen(
        [bowline, "demo", "--dir", os.path.join(work, "demo"), "--admin", "127.0.0.1:0",
         "--xds", "127.0.0.1:0", "--xds-tls", "127.0.0.1:0", "--dns", f"127.0.0.1:{dns_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    admin = None
    for line in proc.stdout:
        m = re.search(r"admin: http://(127\.0\.0\.1:\d+)/", line)
        if m:
            admin = m.group(1)
            break
    if not admin:
        sys.exit("bowline demo did not print its admin address")
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{admin}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("bowline demo never became ready")
        time.sleep(0.1)
    # The MCS outcome (and so the DNS view) follows readiness by a debounce.
    deadline = time.time() + 30
    while "IN A" not in get_json(f"http://{admin}/debug/dns_zone?zone=clusterset.local")["zoneFile"]:
        if time.time() > deadline:
            sys.exit("the demo's clusterset.local zone stayed empty")
        time.sleep(0.1)
    time.sleep(1)
    return proc, admin, dns_port


def start_knot(work, zones):
    port = free_port()
    knot = os.path.join(work, "knot")
    os.makedirs(knot)
    for apex, text in zones.items():
        with open(os.path.join(knot, f"{apex}.zone"), "w") as f:
            f.write(text)
    conf = os.path.join(knot, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"server:\n  listen: 127.0.0.1@{port}\n  rundir: {knot}\n"
                f"database:\n  storage: {knot}\n"
                "log:\n  - target: stderr\n    any: warning\n"
                f"template:\n  - id: default\n    storage: {knot}\n    zonefile-sync: -1\n"
                "    journal-content: none\n"
                "zone:\n" + "".join(f"  - domain: {apex}\n    file: {apex}.zone\n" for apex in zones))
    proc = subprocess.Popen(["knotd", "-c", conf, "-s", os.path.join(knot, "knot.sock")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while True:
        try:
            r = dns.query.udp(dns.message.make_query(next(iter(zones)), "SOA"), "127.0.0.1", port=port, timeout=1)
            if r.answer:
                return proc, port
        except (dns.exception.Timeout, OSError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit(f"knotd did not start: {proc.stderr.read()}")
        time.sleep(0.1)


def queries_from(zones):
    """Every (name, type) the zones hold, plus names that do not exist and types a name lacks."""
    out = []
    for text in zones.values():
        for line in text.splitlines():
            if line.startswith("$"):
                continue
            name, _ttl, _class, rtype = line.split()[:4]
            if rtype != "NS" and (name, rtype) not in out:
                out.append((name, rtype))
    out += [("ghost.demo.svc.clusterset.local.", "A"), ("echo.nowhere.svc.clusterset.local.", "A"),
            ("echo.demo.svc.clusterset.local.", "TXT"), ("db.demo.svc.cluster.local.", "AAAA"),
            ("ghost.demo.svc.cluster.local.", "SRV")]
    return out


def answer_of(port, name, rtype):
    r = dns.query.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)
    rrs = sorted(f"{rr.name} {dns.rdatatype.to_text(rr.rdtype)} {x.to_text()}" for rr in r.answer for x in rr)
    return dns.rcode.to_text(r.rcode()), rrs


def dnsperf(port, queries_file, seconds):
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries_file,
                          "-l", str(seconds), "-c", "4", "-q", "200"],
                         capture_output=True, text=True, check=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = re.search(r"Queries lost:\s+(\d+)", out).group(1)
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))
    return qps, int(lost), latency


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bowline")
    parser.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bowline-dns-bench-")
    bowline, knot = None, None
    try:
        bowline, admin, bowline_port = start_bowline(args.bowline, work)
        zones = {apex: get_json(f"http://{admin}/debug/dns_zone?zone={apex}")["zoneFile"]
                 for apex in ("clusterset.local", "cluster.local")}
        knot, knot_port = start_knot(work, zones)
        queries = queries_from(zones)
        mismatches = [(q, a, b) for q in queries
                      if (a := answer_of(bowline_port, *q)) != (b := answer_of(knot_port, *q))]
        for (name, rtype), a, b in mismatches:
            print(f"MISMATCH {name} {rtype}\n  bowline {a}\n  knot    {b}")
        if mismatches:
            sys.exit(f"{len(mismatches)} of {len(queries)} queries answered differently")
        print(f"{len(queries)} distinct queries: Bowline and Knot give the same answers")
        queries_file = os.path.join(work, "queries.txt")
        with open(queries_file, "w") as f:
            f.writelines(f"{name} {rtype}\n" for name, rtype in queries)
        results = {"bowline": [], "knot": []}
        for _ in range(args.rounds):
            for server, port in (("bowline", bowline_port), ("knot", knot_port)):
                results[server].append(dnsperf(port, queries_file, args.seconds))
        print(f"dnsperf -c 4 -q 200 -l {args.seconds}, {args.rounds} alternating rounds, {os.cpu_count()} CPUs")
        print("| server | queries/s (median) | runs | lost | mean latency |")
        print("|---|---|---|---|---|")
        median = {}
        for server, runs in results.items():
            qps = sorted(r[0] for r in runs)
            median[server] = qps[len(qps) // 2]
            print(f"| {server} | {median[server]:,.0f} | {', '.join(f'{q:,.0f}' for q in qps)} | "
                  f"{sum(r[1] for r in runs)} | {sum(r[2] for r in runs) / len(runs) * 1e6:,.0f} µs |")
        print(f"ratio bowline/knot: {median['bowline'] / median['knot']:.2f}")
    finally:
        for proc in (bowline, knot):
            if proc:
                proc.terminate()
                proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
