#!/usr/bin/env python3
"""End to end, table-driven: Bowline's DNS server against the MCS DNS specification.

Starts `bowline run` on a copy of the fixture tests/e2e/dns/ (members v4: IPv4-only, v6:
IPv6-only, ds: dual-stack), waits until it has synced, reads the ClusterSetIPs it allocated
from the ServiceImports it wrote (as conformance spec 22 does; never hard-coded), and asks
every row of the table below four ways: dnspython over UDP and over TCP, `dig +notcp +ignore`
and `dig +tcp` (the UDP clients advertise EDNS(0) with 1232 bytes, like dig and today's
resolvers). Each reply must
  - be a well-formed message with the row's response code, not truncated (TC clear);
  - be authoritative (AA) when NOERROR or NXDOMAIN;
  - have exactly the row's answer records, owned by the query name;
  - carry the zone's SOA alone in the authority section when NXDOMAIN or NODATA, and no
    authority records otherwise;
  - have TTL 5 s on every record (the dns.ttl default; SOA minimum too), 28800 on the
    dns-version TXT;
  - have exactly the row's additional records, for rows that give them (SRV).
Every row is also asked once over UDP without EDNS (glibc's and nslookup's way): the reply
must be at most 512 bytes and well formed, with the same answer; only its additional section
may be a subset of the row's (RFC 1035 §4.2.1, RFC 2181 §9).

The rows cover the records of the MCS DNS specification (kubernetes-sigs/mcs-api
docs/dns.md: the record table and the forbidden <clusterid>.<svc> name), CoreDNS's multicluster
plugin's parsing and NXDOMAIN/NODATA rules, and the mcs-api conformance specs 22, 23, 25, 26
and 27 (the DNS ones), for IPv4-only,
IPv6-only and dual-stack services.

A second Bowline instance runs with `dns: {clusterLocalMember: v4}` and must answer
cluster.local from member v4's own Services (Kubernetes cluster-local DNS; conformance spec
24), and the clusterset rows exactly as before. Set DNS_TABLE_SKIP_CLUSTER_LOCAL=1 to skip it
(for a Bowline without that setting).

Usage: dns_table.py PATH_TO_BOWLINE [--cluster-local]
  --cluster-local   run only the second instance
Prints `dns table: N rows x 4 clients ok`, or every failing row with every client it fails
for, and exits 1.
"""

import ipaddress
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "dns")
MEMBERS = ["v4", "v6", "ds"]
DIG = shutil.which("dig") or "/usr/bin/dig"  # Debian bind9-dnsutils

TTL = 5  # dns.ttl default: every record, and the SOA (min(300, ttl))
TXT_TTL = 28800  # the dns-version TXT

# ClusterSetIP services whose addresses the table needs, read from Bowline's ServiceImports.
CLUSTERSET_IP_SERVICES = [
    "mesh/web4", "mesh/raw4", "mesh/web6", "mesh/raw6", "mesh/web46", "mesh/api",
    "solo/only6", "conf-clusterip/hello",
]

NOERROR, NXDOMAIN, REFUSED = "NOERROR", "NXDOMAIN", "REFUSED"
NODATA = frozenset()  # NOERROR with no answer records


# ---------------------------------------------------------------------------------------------
# The table. A row: (name, qtype, rcode, answer records, additional records or None).
#   answer records:      {"TYPE rdata"}; the owner of each must be the query name.
#   additional records:  {"owner TYPE rdata"}, or None: not checked.
# `ip("ns/svc", 4 or 6)` is the ClusterSetIP Bowline allocated (never hard-coded).
# ---------------------------------------------------------------------------------------------

def clusterset_rows(ip):
    def A(key):
        return "A " + ip(key, 4)

    def AAAA(key):
        return "AAAA " + ip(key, 6)

    def addr(owner, key, *families):  # the additional records of a ClusterSetIP SRV answer
        return {f"{owner}.svc.clusterset.local. {A(key) if f == 4 else AAAA(key)}" for f in families}

    return [
        # --- §3.1 row 1: dns-version TXT, only there ------------------------------------------
        ("dns-version.clusterset.local", "TXT", NOERROR, {'TXT "1.0.0"'}, None),
        ("DNS-Version.ClusterSet.LOCAL", "TXT", NOERROR, {'TXT "1.0.0"'}, None),
        ("dns-version.clusterset.local", "A", NOERROR, NODATA, None),
        ("web4.mesh.svc.clusterset.local", "TXT", NOERROR, NODATA, None),
        ("db.mesh.svc.clusterset.local", "TXT", NOERROR, NODATA, None),
        ("nope.mesh.svc.clusterset.local", "TXT", NXDOMAIN, NODATA, None),
        ("empty.mesh.svc.clusterset.local", "TXT", NXDOMAIN, NODATA, None),

        # --- §3.1 row 2: ClusterSetIP A/AAAA: the ClusterSetIPs of the query's family ---------
        ("web4.mesh.svc.clusterset.local", "A", NOERROR, {A("mesh/web4")}, None),
        ("web4.mesh.svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("raw4.mesh.svc.clusterset.local", "A", NOERROR, {A("mesh/raw4")}, None),
        ("web6.mesh.svc.clusterset.local", "AAAA", NOERROR, {AAAA("mesh/web6")}, None),
        ("web6.mesh.svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("raw6.mesh.svc.clusterset.local", "AAAA", NOERROR, {AAAA("mesh/raw6")}, None),
        ("web46.mesh.svc.clusterset.local", "A", NOERROR, {A("mesh/web46")}, None),
        ("web46.mesh.svc.clusterset.local", "AAAA", NOERROR, {AAAA("mesh/web46")}, None),
        ("Web46.MESH.Svc.ClusterSet.LOCAL", "AAAA", NOERROR, {AAAA("mesh/web46")}, None),
        # api: exported by v4 (IPv4) and ds (dual-stack): the import has both families.
        ("api.mesh.svc.clusterset.local", "A", NOERROR, {A("mesh/api")}, None),
        ("api.mesh.svc.clusterset.local", "AAAA", NOERROR, {AAAA("mesh/api")}, None),
        # A namespace only v6 has.
        ("only6.solo.svc.clusterset.local", "AAAA", NOERROR, {AAAA("solo/only6")}, None),
        ("only6.solo.svc.clusterset.local", "A", NOERROR, NODATA, None),
        # Not exported (local4), and ExternalName (never exported): no import, NXDOMAIN.
        ("local4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("ext.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("ext.mesh.svc.clusterset.local", "CNAME", NXDOMAIN, NODATA, None),
        # Conformance spec 22: hello resolves to the ClusterSetIP of each family (only ds
        # exports it; v4's own hello is not exported and changes nothing).
        ("hello.conf-clusterip.svc.clusterset.local", "A", NOERROR, {A("conf-clusterip/hello")}, None),
        ("hello.conf-clusterip.svc.clusterset.local", "AAAA", NOERROR, {AAAA("conf-clusterip/hello")}, None),

        # --- §3.1 row 3: ClusterSetIP SRV, one per named port; bare name: every port,
        #     deduplicated by (target, port); the additional section has the ClusterSetIPs ----
        ("_http._tcp.web4.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 80 web4.mesh.svc.clusterset.local."}, addr("web4.mesh", "mesh/web4", 4)),
        ("_dns._udp.web4.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 53 web4.mesh.svc.clusterset.local."}, addr("web4.mesh", "mesh/web4", 4)),
        ("_HTTP._TCP.Web4.Mesh.SVC.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 80 web4.mesh.svc.clusterset.local."}, addr("web4.mesh", "mesh/web4", 4)),
        ("web4.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 80 web4.mesh.svc.clusterset.local.", "SRV 0 50 53 web4.mesh.svc.clusterset.local."},
         addr("web4.mesh", "mesh/web4", 4)),
        ("_http._tcp.web6.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 80 web6.mesh.svc.clusterset.local."}, addr("web6.mesh", "mesh/web6", 6)),
        ("_syslog._udp.web6.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 514 web6.mesh.svc.clusterset.local."}, addr("web6.mesh", "mesh/web6", 6)),
        ("web6.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 80 web6.mesh.svc.clusterset.local.", "SRV 0 50 514 web6.mesh.svc.clusterset.local."},
         addr("web6.mesh", "mesh/web6", 6)),
        ("_dns._udp.web46.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 53 web46.mesh.svc.clusterset.local."}, addr("web46.mesh", "mesh/web46", 4, 6)),
        ("_dns-tcp._tcp.web46.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 53 web46.mesh.svc.clusterset.local."}, addr("web46.mesh", "mesh/web46", 4, 6)),
        # dns 53/UDP and dns-tcp 53/TCP are one (target, port).
        ("web46.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 80 web46.mesh.svc.clusterset.local.", "SRV 0 50 53 web46.mesh.svc.clusterset.local."},
         addr("web46.mesh", "mesh/web46", 4, 6)),
        # api: the union of v4's http and ds's grpc.
        ("api.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 80 api.mesh.svc.clusterset.local.", "SRV 0 50 9090 api.mesh.svc.clusterset.local."},
         addr("api.mesh", "mesh/api", 4, 6)),
        ("_grpc._tcp.api.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 9090 api.mesh.svc.clusterset.local."}, addr("api.mesh", "mesh/api", 4, 6)),
        # Unnamed ports: in the bare-name SRV, never under a _port._proto name.
        ("raw4.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 9000 raw4.mesh.svc.clusterset.local."}, addr("raw4.mesh", "mesh/raw4", 4)),
        ("raw6.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 5353 raw6.mesh.svc.clusterset.local."}, addr("raw6.mesh", "mesh/raw6", 6)),
        ("_http._tcp.raw4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_9000._tcp.raw4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_._tcp.raw4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_dns._udp.raw6.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # Wrong protocol, unknown protocol, unknown port name, unknown service.
        ("_dns._tcp.web4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_http._udp.web4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_syslog._tcp.web6.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_http._xyz.web46.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_nope._tcp.web46.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_http._tcp.nope.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # Conformance spec 23: the bare-name SRV of hello is exactly ONE record, port 42.
        ("hello.conf-clusterip.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 42 hello.conf-clusterip.svc.clusterset.local."},
         addr("hello.conf-clusterip", "conf-clusterip/hello", 4, 6)),
        ("_tcp._tcp.hello.conf-clusterip.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 42 hello.conf-clusterip.svc.clusterset.local."},
         addr("hello.conf-clusterip", "conf-clusterip/hello", 4, 6)),
        ("_udp._udp.hello.conf-clusterip.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 42 hello.conf-clusterip.svc.clusterset.local."},
         addr("hello.conf-clusterip", "conf-clusterip/hello", 4, 6)),
        ("_tcp._udp.hello.conf-clusterip.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),

        # --- §3.1 row 4: headless A/AAAA: every ready address, across members ---------------
        # cache4: 10.4.1.21 has no ready condition (counts as ready); 10.4.1.22 is not ready.
        ("cache4.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.4.1.20", "A 10.4.1.21"}, None),
        ("cache4.mesh.svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("cache6.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:6:1::20"}, None),
        ("cache6.mesh.svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("db.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.8.1.10", "A 10.8.1.11"}, None),
        ("db.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:1::10", "AAAA fd00:8:1::11"}, None),
        ("mix.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.8.1.20"}, None),
        ("mix.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:1::20"}, None),
        # shared: exported by v4 (IPv4) and v6 (IPv6): the union.
        ("shared.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.4.1.40"}, None),
        ("shared.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:6:1::40"}, None),
        # No ready endpoint: NXDOMAIN, whatever the type.
        ("empty.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("empty.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),
        ("empty.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_http._tcp.empty.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # Conformance spec 25: exactly the ready addresses of the 2 replicas, per family.
        ("hello.conf-headless.svc.clusterset.local", "A", NOERROR, {"A 10.8.3.10", "A 10.8.3.11"}, None),
        ("hello.conf-headless.svc.clusterset.local", "AAAA", NOERROR,
         {"AAAA fd00:8:3::10", "AAAA fd00:8:3::11"}, None),
        ("hello.conf-ss.svc.clusterset.local", "A", NOERROR, {"A 10.8.4.10", "A 10.8.4.11"}, None),
        ("hello.conf-ss.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:4::10", "AAAA fd00:8:4::11"}, None),

        # --- §3.1 row 5: <hostname>.<clusterid>.<svc>: that ready endpoint's addresses -------
        ("db-0.ds.db.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.8.1.10"}, None),
        ("db-0.ds.db.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:1::10"}, None),
        ("db-1.ds.db.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.8.1.11"}, None),
        ("DB-1.DS.db.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:1::11"}, None),
        ("db-0.ds.db.mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("db-2.ds.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),  # not ready
        ("db-0.v4.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),  # another cluster
        ("db-9.ds.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        # An explicit hostname is preferred: the dashed address is not a name then.
        ("10-8-1-10.ds.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        # No hostname: the dashed address, IPv4 (a-b-c-d) and IPv6 (every ':' a '-').
        ("10-4-1-20.v4.cache4.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.4.1.20"}, None),
        ("10-4-1-21.v4.cache4.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.4.1.21"}, None),
        ("10-4-1-20.v4.cache4.mesh.svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("10-4-1-22.v4.cache4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),  # not ready
        ("10-4-1-20.v6.cache4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("fd00-6-1--20.v6.cache6.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:6:1::20"}, None),
        ("FD00-6-1--20.V6.cache6.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:6:1::20"}, None),
        ("fd00-6-1--20.v6.cache6.mesh.svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("fd00-6-1--21.v6.cache6.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),  # not ready
        # A dual-stack pod without hostname is two endpoints, one per address (its IPv4 and its
        # IPv6 slice's), each named by its own dashed address (conformance spec 27's count).
        ("10-8-1-20.ds.mix.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.8.1.20"}, None),
        ("fd00-8-1--20.ds.mix.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:1::20"}, None),
        ("10-8-1-20.ds.mix.mesh.svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("fd00-8-1--20.ds.mix.mesh.svc.clusterset.local", "A", NOERROR, NODATA, None),
        # The same hostname in two members, told apart by the cluster id.
        ("shared-0.v4.shared.mesh.svc.clusterset.local", "A", NOERROR, {"A 10.4.1.40"}, None),
        ("shared-0.v4.shared.mesh.svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("shared-0.v6.shared.mesh.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:6:1::40"}, None),
        ("shared-0.ds.shared.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),
        # Conformance spec 26: each StatefulSet pod's name answers exactly its addresses.
        ("hello-ss-0.ds.hello.conf-ss.svc.clusterset.local", "A", NOERROR, {"A 10.8.4.10"}, None),
        ("hello-ss-0.ds.hello.conf-ss.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:4::10"}, None),
        ("hello-ss-1.ds.hello.conf-ss.svc.clusterset.local", "A", NOERROR, {"A 10.8.4.11"}, None),
        ("hello-ss-1.ds.hello.conf-ss.svc.clusterset.local", "AAAA", NOERROR, {"AAAA fd00:8:4::11"}, None),

        # --- §3.1 row 6: headless SRV: (ready endpoint x named port), the endpoint's port,
        #     target <hostname>.<clusterid>.<svc>...; the additional section has the addresses --
        ("_pg._tcp.db.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 5432 db-0.ds.db.mesh.svc.clusterset.local.",
          "SRV 0 50 5432 db-1.ds.db.mesh.svc.clusterset.local."},
         {"db-0.ds.db.mesh.svc.clusterset.local. A 10.8.1.10",
          "db-0.ds.db.mesh.svc.clusterset.local. AAAA fd00:8:1::10",
          "db-1.ds.db.mesh.svc.clusterset.local. A 10.8.1.11",
          "db-1.ds.db.mesh.svc.clusterset.local. AAAA fd00:8:1::11"}),
        ("db.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 5432 db-0.ds.db.mesh.svc.clusterset.local.",
          "SRV 0 50 5432 db-1.ds.db.mesh.svc.clusterset.local."},
         {"db-0.ds.db.mesh.svc.clusterset.local. A 10.8.1.10",
          "db-0.ds.db.mesh.svc.clusterset.local. AAAA fd00:8:1::10",
          "db-1.ds.db.mesh.svc.clusterset.local. A 10.8.1.11",
          "db-1.ds.db.mesh.svc.clusterset.local. AAAA fd00:8:1::11"}),
        ("_pg._udp.db.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # cache4: service port 6379, endpoint port 16379: the SRV has the endpoint's.
        ("_redis._tcp.cache4.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 16379 10-4-1-20.v4.cache4.mesh.svc.clusterset.local.",
          "SRV 0 50 16379 10-4-1-21.v4.cache4.mesh.svc.clusterset.local."},
         {"10-4-1-20.v4.cache4.mesh.svc.clusterset.local. A 10.4.1.20",
          "10-4-1-21.v4.cache4.mesh.svc.clusterset.local. A 10.4.1.21"}),
        ("_redis._udp.cache4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("cache6.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 100 16379 fd00-6-1--20.v6.cache6.mesh.svc.clusterset.local."},
         {"fd00-6-1--20.v6.cache6.mesh.svc.clusterset.local. AAAA fd00:6:1::20"}),
        # Dual stack without hostname: one record per address (the names differ).
        ("mix.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 8080 10-8-1-20.ds.mix.mesh.svc.clusterset.local.",
          "SRV 0 50 8080 fd00-8-1--20.ds.mix.mesh.svc.clusterset.local."},
         {"10-8-1-20.ds.mix.mesh.svc.clusterset.local. A 10.8.1.20",
          "fd00-8-1--20.ds.mix.mesh.svc.clusterset.local. AAAA fd00:8:1::20"}),
        # The union over members.
        ("_tcp._tcp.shared.mesh.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 7000 shared-0.v4.shared.mesh.svc.clusterset.local.",
          "SRV 0 50 7000 shared-0.v6.shared.mesh.svc.clusterset.local."},
         {"shared-0.v4.shared.mesh.svc.clusterset.local. A 10.4.1.40",
          "shared-0.v6.shared.mesh.svc.clusterset.local. AAAA fd00:6:1::40"}),
        # Conformance spec 27, Deployment: one record per ready endpoint name (dual stack
        # without hostname: 2 pods x 2 dashed names), port 42 (tcp and udp are one).
        ("hello.conf-headless.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 25 42 10-8-3-10.ds.hello.conf-headless.svc.clusterset.local.",
          "SRV 0 25 42 10-8-3-11.ds.hello.conf-headless.svc.clusterset.local.",
          "SRV 0 25 42 fd00-8-3--10.ds.hello.conf-headless.svc.clusterset.local.",
          "SRV 0 25 42 fd00-8-3--11.ds.hello.conf-headless.svc.clusterset.local."},
         {"10-8-3-10.ds.hello.conf-headless.svc.clusterset.local. A 10.8.3.10",
          "10-8-3-11.ds.hello.conf-headless.svc.clusterset.local. A 10.8.3.11",
          "fd00-8-3--10.ds.hello.conf-headless.svc.clusterset.local. AAAA fd00:8:3::10",
          "fd00-8-3--11.ds.hello.conf-headless.svc.clusterset.local. AAAA fd00:8:3::11"}),
        # Conformance spec 27, StatefulSet: one record per hostname.
        ("hello.conf-ss.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 42 hello-ss-0.ds.hello.conf-ss.svc.clusterset.local.",
          "SRV 0 50 42 hello-ss-1.ds.hello.conf-ss.svc.clusterset.local."},
         {"hello-ss-0.ds.hello.conf-ss.svc.clusterset.local. A 10.8.4.10",
          "hello-ss-0.ds.hello.conf-ss.svc.clusterset.local. AAAA fd00:8:4::10",
          "hello-ss-1.ds.hello.conf-ss.svc.clusterset.local. A 10.8.4.11",
          "hello-ss-1.ds.hello.conf-ss.svc.clusterset.local. AAAA fd00:8:4::11"}),
        ("_udp._udp.hello.conf-ss.svc.clusterset.local", "SRV", NOERROR,
         {"SRV 0 50 42 hello-ss-0.ds.hello.conf-ss.svc.clusterset.local.",
          "SRV 0 50 42 hello-ss-1.ds.hello.conf-ss.svc.clusterset.local."},
         {"hello-ss-0.ds.hello.conf-ss.svc.clusterset.local. A 10.8.4.10",
          "hello-ss-0.ds.hello.conf-ss.svc.clusterset.local. AAAA fd00:8:4::10",
          "hello-ss-1.ds.hello.conf-ss.svc.clusterset.local. A 10.8.4.11",
          "hello-ss-1.ds.hello.conf-ss.svc.clusterset.local. AAAA fd00:8:4::11"}),

        # --- §3.1 ✗: <clusterid>.<svc>.<ns>.svc.clusterset.local never exists ----------------
        ("v4.web4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("v6.web6.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),
        ("ds.web46.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),
        ("ds.hello.conf-clusterip.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("ds.hello.conf-clusterip.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("v4.cache4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("v6.cache6.mesh.svc.clusterset.local", "AAAA", NXDOMAIN, NODATA, None),
        ("ds.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("ds.hello.conf-headless.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),

        # --- §3.1 PTR: not served (the cluster-local PTRs stay the only ones) ----------------
        ("5.0.0.241.in-addr.arpa", "PTR", REFUSED, NODATA, None),

        # --- §3.2 parsing: the apex, "svc" and "pod" are NODATA; SOA at the apex -------------
        ("clusterset.local", "A", NOERROR, NODATA, None),
        ("clusterset.local", "SOA", NOERROR,
         {"SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1 7200 1800 86400 5"}, None),
        ("svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("SVC.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("pod.clusterset.local", "A", NOERROR, NODATA, None),
        # The last label must be svc (or pod), else NXDOMAIN.
        ("foo.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("web4.mesh.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("web4.mesh.svcx.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("web4.mesh.svc.foo.clusterset.local", "A", NXDOMAIN, NODATA, None),
        # <ns>.svc: NODATA if the namespace exists (in any member), else NXDOMAIN.
        ("mesh.svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("MESH.Svc.clusterset.local", "AAAA", NOERROR, NODATA, None),
        ("mesh.svc.clusterset.local", "SRV", NOERROR, NODATA, None),
        ("solo.svc.clusterset.local", "A", NOERROR, NODATA, None),  # only v6 has it
        ("conf-ss.svc.clusterset.local", "A", NOERROR, NODATA, None),
        ("nowhere.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        # Unknown namespace or service: NXDOMAIN.
        ("web4.nowhere.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("web4.solo.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("nope.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("nope.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # Wrong label counts (the 2-extra-label form is the ✗ row above).
        ("a.b.c.web4.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("x.db-0.ds.db.mesh.svc.clusterset.local", "A", NXDOMAIN, NODATA, None),
        ("_x._http._tcp.web4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        ("_http.web4.mesh.svc.clusterset.local", "SRV", NXDOMAIN, NODATA, None),
        # Other qtypes: NXDOMAIN or NODATA as an A lookup would decide.
        ("web4.mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("web6.mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("web46.mesh.svc.clusterset.local", "CNAME", NOERROR, NODATA, None),
        ("web4.mesh.svc.clusterset.local", "PTR", NOERROR, NODATA, None),
        ("db.mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("cache6.mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("mesh.svc.clusterset.local", "MX", NOERROR, NODATA, None),
        ("nope.mesh.svc.clusterset.local", "MX", NXDOMAIN, NODATA, None),
        ("empty.mesh.svc.clusterset.local", "MX", NXDOMAIN, NODATA, None),
        ("v4.web4.mesh.svc.clusterset.local", "MX", NXDOMAIN, NODATA, None),
        ("nowhere.svc.clusterset.local", "MX", NXDOMAIN, NODATA, None),

        # --- Names outside the zones served: REFUSED ----------------------------------------
        ("example.com", "A", REFUSED, NODATA, None),
        ("fooclusterset.local", "A", REFUSED, NODATA, None),
    ]


# Only while dns.clusterLocalMember is not set: cluster.local is not served.
UNCONFIGURED_ROWS = [
    ("web4.mesh.svc.cluster.local", "A", REFUSED, NODATA, None),
    ("dns-version.cluster.local", "TXT", REFUSED, NODATA, None),
]

# With dns: {clusterLocalMember: v4}: cluster.local from member v4's own Services (exported
# or not), per the Kubernetes cluster-local DNS specification. The SRV additional section is
# left unchecked there (a MAY in that specification).
CLUSTER_LOCAL_ROWS = [
    ("dns-version.cluster.local", "TXT", NOERROR, {'TXT "1.1.0"'}, None),
    # ClusterIP: v4's own clusterIPs, of the query's family (v4 is IPv4-only).
    ("web4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.104.0.10"}, None),
    ("WEB4.Mesh.SVC.Cluster.Local", "A", NOERROR, {"A 10.104.0.10"}, None),
    ("web4.mesh.svc.cluster.local", "AAAA", NOERROR, NODATA, None),
    ("raw4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.104.0.11"}, None),
    ("api.mesh.svc.cluster.local", "A", NOERROR, {"A 10.104.0.12"}, None),  # not the ClusterSetIP
    ("api.mesh.svc.cluster.local", "AAAA", NOERROR, NODATA, None),
    ("local4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.104.0.13"}, None),  # not exported
    # Conformance spec 24: the LOCAL Service's clusterIP, not the ClusterSetIP.
    ("hello.conf-clusterip.svc.cluster.local", "A", NOERROR, {"A 10.104.0.42"}, None),
    ("hello.conf-clusterip.svc.cluster.local", "AAAA", NOERROR, NODATA, None),
    ("hello.conf-clusterip.svc.cluster.local", "SRV", NOERROR,
     {"SRV 0 100 42 hello.conf-clusterip.svc.cluster.local."}, None),
    # Services only other members have: NXDOMAIN.
    ("web6.mesh.svc.cluster.local", "AAAA", NXDOMAIN, NODATA, None),
    ("web46.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    ("db.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    ("hello.conf-headless.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    ("nope.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    # <ns>.svc: NODATA if v4 has the namespace, else NXDOMAIN.
    ("mesh.svc.cluster.local", "A", NOERROR, NODATA, None),
    ("conf-ss.svc.cluster.local", "A", NOERROR, NODATA, None),
    ("solo.svc.cluster.local", "A", NXDOMAIN, NODATA, None),  # only v6 has it
    ("only6.solo.svc.cluster.local", "AAAA", NXDOMAIN, NODATA, None),
    ("nowhere.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    # Headless: v4's ready endpoints only (shared's v6 endpoint is not v4's).
    ("cache4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.4.1.20", "A 10.4.1.21"}, None),
    ("cache4.mesh.svc.cluster.local", "AAAA", NOERROR, NODATA, None),
    ("shared.mesh.svc.cluster.local", "A", NOERROR, {"A 10.4.1.40"}, None),
    ("shared.mesh.svc.cluster.local", "AAAA", NOERROR, NODATA, None),
    ("empty.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    # <hostname-or-dashed-ip>.<svc>.<ns>.svc.cluster.local
    ("10-4-1-20.cache4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.4.1.20"}, None),
    ("10-4-1-21.cache4.mesh.svc.cluster.local", "A", NOERROR, {"A 10.4.1.21"}, None),
    ("10-4-1-22.cache4.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),  # not ready
    ("shared-0.shared.mesh.svc.cluster.local", "A", NOERROR, {"A 10.4.1.40"}, None),
    ("x.web4.mesh.svc.cluster.local", "A", NXDOMAIN, NODATA, None),
    # SRV per named port (ClusterIP: the service name at the service port).
    ("_http._tcp.web4.mesh.svc.cluster.local", "SRV", NOERROR, {"SRV 0 100 80 web4.mesh.svc.cluster.local."}, None),
    ("_dns._udp.web4.mesh.svc.cluster.local", "SRV", NOERROR, {"SRV 0 100 53 web4.mesh.svc.cluster.local."}, None),
    ("_dns._tcp.web4.mesh.svc.cluster.local", "SRV", NXDOMAIN, NODATA, None),
    ("_http._tcp.raw4.mesh.svc.cluster.local", "SRV", NXDOMAIN, NODATA, None),
    ("web4.mesh.svc.cluster.local", "SRV", NOERROR,
     {"SRV 0 50 80 web4.mesh.svc.cluster.local.", "SRV 0 50 53 web4.mesh.svc.cluster.local."}, None),
    ("raw4.mesh.svc.cluster.local", "SRV", NOERROR, {"SRV 0 100 9000 raw4.mesh.svc.cluster.local."}, None),
    # Headless SRV: <host>.<svc>.<ns>.svc.cluster.local. at the endpoint's port.
    ("_redis._tcp.cache4.mesh.svc.cluster.local", "SRV", NOERROR,
     {"SRV 0 50 16379 10-4-1-20.cache4.mesh.svc.cluster.local.",
      "SRV 0 50 16379 10-4-1-21.cache4.mesh.svc.cluster.local."}, None),
    ("shared.mesh.svc.cluster.local", "SRV", NOERROR,
     {"SRV 0 100 7000 shared-0.shared.mesh.svc.cluster.local."}, None),
    # ExternalName: a CNAME to the external name, whatever the type.
    ("ext.mesh.svc.cluster.local", "A", NOERROR, {"CNAME example.com."}, None),
    ("ext.mesh.svc.cluster.local", "AAAA", NOERROR, {"CNAME example.com."}, None),
    ("ext.mesh.svc.cluster.local", "SRV", NOERROR, {"CNAME example.com."}, None),
    # Still refused: names outside both zones.
    ("example.com", "A", REFUSED, NODATA, None),
    ("5.0.0.241.in-addr.arpa", "PTR", REFUSED, NODATA, None),
]


# ---------------------------------------------------------------------------------------------
# Running Bowline
# ---------------------------------------------------------------------------------------------

class Broken(Exception):
    """Bowline did not start, or never served the fixture."""


class Bowline:
    """`bowline run` on a fresh copy of the fixture, with `extra_config` appended."""

    def __init__(self, binary, extra_config=""):
        self.work = tempfile.mkdtemp(prefix="bowline-dns-table-")
        self.root = os.path.join(self.work, "fixture")
        shutil.copytree(FIXTURE, self.root)
        config = os.path.join(self.root, "bowline.yaml")
        with open(config, "a") as f:
            f.write(extra_config)
        self.log_path = os.path.join(self.work, "bowline.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "run", "--config", config],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.first_line(timeout=20)
        # bowline: ClusterSet "dnstable", admin on http://127.0.0.1:P/, xDS on ..., DNS on 127.0.0.1:P
        self.admin = line.split("admin on ")[1].split(",")[0].rstrip("/")
        self.dns_port = int(line.split("DNS on ")[1].strip().rsplit(":", 1)[1])

    def first_line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if "DNS on " not in line:
            self.stop()
            with open(self.log_path) as f:
                log = f.read()
            raise Broken(f"bowline did not start (exit status {self.proc.returncode}); its log:\n{log}")
        return line

    def service_import_ips(self, key):
        """{member: spec.ips} of ServiceImport `key` as written in each member that has it."""
        ns, name = key.split("/")
        seen = {}
        for member in MEMBERS:
            path = os.path.join(self.root, "members", member, ".bowline", "serviceimports", ns, name + ".yaml")
            if os.path.exists(path):
                with open(path) as f:
                    seen[member] = yaml_list(f.read(), "ips")
        return seen

    def all_service_import_ips(self):
        return {key: self.service_import_ips(key) for key in CLUSTERSET_IP_SERVICES}

    def wait_until_synced(self, timeout=30):
        deadline = time.time() + timeout
        while not http_ok(self.admin + "/readyz"):
            self.check_deadline(deadline, "/readyz never answered 200")
        # The DNS view follows the MCS outcome: wait until it serves services of every member.
        sentinels = [("hello.conf-clusterip.svc.clusterset.local", "A", 1),
                     ("hello.conf-ss.svc.clusterset.local", "AAAA", 2),
                     ("shared.mesh.svc.clusterset.local", "AAAA", 1)]
        while not all(self.answer_count(n, t) == k for n, t, k in sentinels):
            self.check_deadline(deadline, "DNS never served the fixture's services")
        # Members join one by one, so early ServiceImports may lack a family: wait until every
        # one is written and the same in two reads half a second apart.
        before = None
        while True:
            now = self.all_service_import_ips()
            if now == before and all(now.values()):
                return
            before = now
            self.check_deadline(deadline, f"the ServiceImports never settled: {now}")
            time.sleep(0.4)

    def answer_count(self, name, qtype):
        try:
            return len(ask_dnspython(self.dns_port, name, qtype, tcp=True).answer)
        except Exception:  # not answering yet
            return -1

    def check_deadline(self, deadline, what):
        if self.proc.poll() is not None:
            raise Broken(f"bowline exited with status {self.proc.returncode}; log: {self.log_path}")
        if time.time() > deadline:
            raise Broken(f"{what}; log: {self.log_path}")
        time.sleep(0.1)

    def clusterset_ip(self, key, family):
        """The IPv4 or IPv6 ClusterSetIP of `key`; every member's ServiceImport must agree."""
        written = {tuple(ips) for ips in self.service_import_ips(key).values()}
        if len(written) != 1:
            raise Broken(f"ServiceImport {key}: spec.ips differ between members: {self.service_import_ips(key)}")
        for address in written.pop():
            if ipaddress.ip_address(address).version == family:
                return str(ipaddress.ip_address(address))
        raise Broken(f"ServiceImport {key} has no IPv{family} ClusterSetIP")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def remove(self):
        shutil.rmtree(self.work, ignore_errors=True)


def yaml_list(text, key):
    """The scalar items of the block list `key:` in Bowline's YAML (`  ips:` then `  - x`)."""
    items, inside = [], False
    for line in text.splitlines():
        if line.strip() == key + ":":
            inside = True
        elif inside and line.lstrip().startswith("- "):
            items.append(line.lstrip()[2:].strip().strip('"'))
        elif inside:
            break
    return items


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Clients. Each returns a Reply: rcode text, header flags ("aa", "tc"...), and the answer,
# authority and additional sections as lists of (owner lowercased, ttl, type, rdata text).
# ---------------------------------------------------------------------------------------------

class Reply:
    def __init__(self, rcode, flags, answer, authority, additional, malformed=None):
        self.rcode, self.flags = rcode, flags
        self.answer, self.authority, self.additional = answer, authority, additional
        self.malformed = malformed  # what the client said was wrong with the message, if anything

    def __str__(self):
        sections = [f"{self.rcode} flags: {' '.join(sorted(self.flags))}"]
        for title, records in (("answer", self.answer), ("authority", self.authority),
                               ("additional", self.additional)):
            sections += [f"    {title}: {' '.join(map(str, r))}" for r in records]
        return "\n".join(sections)


def ask_dnspython(port, name, qtype, tcp):
    """With EDNS(0) and a 1232-byte UDP payload, as dig and today's resolvers ask."""
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
    send = dns.query.tcp if tcp else dns.query.udp
    return reply_of(send(query, "127.0.0.1", port=port, timeout=3))


def reply_of(message):
    def records(section):
        return [(rrset.name.to_text().lower(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
                for rrset in section for rd in rrset]

    return Reply(dns.rcode.to_text(message.rcode()), set(dns.flags.to_text(message.flags).lower().split()),
                 records(message.answer), records(message.authority), records(message.additional))


def ask_classic_udp(port, name, qtype):
    """UDP without EDNS, so at most 512 bytes (RFC 1035), as glibc's resolver and nslookup ask.
    Returns the Reply and the wire size; a malformed message raises."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    try:
        sock.sendto(dns.message.make_query(name, qtype).to_wire(), ("127.0.0.1", port))
        wire, _ = sock.recvfrom(65535)
    finally:
        sock.close()
    message = dns.message.from_wire(wire)  # raises on a cut-off record (TrailingJunk, ShortHeader...)
    return reply_of(message), len(wire)


def ask_dig(port, name, qtype, tcp):
    # +ignore: a truncated UDP answer is the answer (dig would silently retry over TCP).
    transport = ["+tcp"] if tcp else ["+notcp", "+ignore"]
    done = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), *transport, "+time=3", "+tries=1",
                           "+noall", "+comments", "+answer", "+authority", "+additional", name, qtype],
                          capture_output=True, text=True, timeout=20)
    return parse_dig(done.stdout + done.stderr)


def parse_dig(out):
    rcode, flags, section, malformed = None, [], None, None
    sections = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    for line in out.splitlines():
        if "->>HEADER<<-" in line:
            rcode = line.split("status: ")[1].split(",")[0]
        elif line.startswith(";; flags:"):
            flags = line.split("flags:")[1].split(";")[0].split()
        elif "extra bytes at end" in line or "malformed" in line.lower():
            malformed = line.lstrip("; ")
        elif line.startswith(";;") and line.rstrip().endswith("SECTION:"):
            section = line[3:].split()[0]  # ANSWER, AUTHORITY, ADDITIONAL or OPT (ignored)
        elif line.startswith(";") or not line.strip():
            continue
        elif section in sections:
            owner, ttl, _class, rtype, rdata = line.split(None, 4)
            sections[section].append((owner.lower(), int(ttl), rtype, " ".join(rdata.split())))
    if rcode is None:
        return Reply("no answer (dig: " + " ".join(out.split())[:200] + ")", set(), [], [], [])
    return Reply(rcode, set(flags), sections["ANSWER"], sections["AUTHORITY"], sections["ADDITIONAL"], malformed)


CLIENTS = [
    ("dnspython/udp", lambda port, name, qtype: ask_dnspython(port, name, qtype, tcp=False)),
    ("dnspython/tcp", lambda port, name, qtype: ask_dnspython(port, name, qtype, tcp=True)),
    ("dig +notcp", lambda port, name, qtype: ask_dig(port, name, qtype, tcp=False)),
    ("dig +tcp", lambda port, name, qtype: ask_dig(port, name, qtype, tcp=True)),
]
# Besides the four clients, every row is also asked once over UDP without EDNS (512 bytes).
CLASSIC_UDP = "dnspython/udp without EDNS"


# ---------------------------------------------------------------------------------------------
# Checking one reply against one row
# ---------------------------------------------------------------------------------------------

def zone_of(name):
    name = name.lower().rstrip(".")
    for zone in ("clusterset.local", "cluster.local"):
        if name == zone or name.endswith("." + zone):
            return zone + "."
    return None


def expected_ttl(rtype):
    return TXT_TTL if rtype == "TXT" else TTL


def problems(row, reply):
    name, qtype, rcode, answers, additional = row
    owner = name.lower().rstrip(".") + "."
    found = []
    if reply.rcode != rcode:
        found.append(f"rcode {reply.rcode}, expected {rcode}")
    if reply.malformed:
        found.append(f"malformed message: {reply.malformed}")
    if rcode in (NOERROR, NXDOMAIN) and "aa" not in reply.flags:
        found.append("AA flag not set")
    if "tc" in reply.flags:
        found.append("TC flag set (the answer was truncated)")
    got = [f"{rtype} {rdata}" for _, _, rtype, rdata in reply.answer]
    if sorted(got) != sorted(answers):
        found.append(f"answer {sorted(got)}, expected {sorted(answers)}")
    for r_owner, ttl, rtype, _ in reply.answer:
        if r_owner != owner:
            found.append(f"answer owner {r_owner}, expected {owner}")
        if ttl != expected_ttl(rtype):
            found.append(f"{rtype} TTL {ttl}, expected {expected_ttl(rtype)}")
    if rcode == NXDOMAIN or (rcode == NOERROR and not answers):
        soa = [r for r in reply.authority if r[2] == "SOA"]
        if len(soa) != 1 or len(reply.authority) != 1:
            found.append(f"authority {reply.authority}, expected the zone's SOA alone")
        elif soa[0][0] != zone_of(name) or soa[0][1] != TTL or soa[0][3].split()[-1] != str(TTL):
            found.append(f"authority SOA {soa[0]}, expected owner {zone_of(name)}, TTL {TTL}, minimum {TTL}")
    elif rcode == NOERROR and reply.authority:
        found.append(f"authority {reply.authority}, expected none with answers")
    if additional is not None:
        got = [f"{r_owner} {rtype} {rdata}" for r_owner, _, rtype, rdata in reply.additional]
        if sorted(got) != sorted(additional):
            found.append(f"additional {sorted(got)}, expected {sorted(additional)}")
        for r_owner, ttl, rtype, _ in reply.additional:
            if ttl != expected_ttl(rtype):
                found.append(f"additional {r_owner} {rtype} TTL {ttl}, expected {expected_ttl(rtype)}")
    return found


def classic_udp_problems(row, port):
    """A reply without EDNS must be a well-formed message of at most 512 bytes. When the answer
    fits, it is complete and TC is clear (RFC 2181 §9: TC is not set merely because additional
    records were left out), so only the additional section may be a subset of the row's."""
    name, qtype, rcode, answers, additional = row
    reply, size = ask_classic_udp(port, name, qtype)
    found = []
    if size > 512:
        found.append(f"{size} bytes over UDP without EDNS, more than 512")
    relaxed = (name, qtype, rcode, answers, None)
    found += problems(relaxed, reply)
    if additional is not None:
        extra = {f"{o} {t} {d}" for o, _, t, d in reply.additional} - set(additional)
        if extra:
            found.append(f"additional {sorted(extra)} not expected")
    return found, reply


def run_table(title, port, rows):
    """Asks every row with every client; returns the failures as printable lines."""
    failures = []
    for row in rows:
        name, qtype = row[0], row[1]
        for client, ask in CLIENTS:
            try:
                reply = ask(port, name, qtype)
            except Exception as e:  # a timeout or a malformed answer is a failure of the row
                failures.append(f"[{title}] {name} {qtype} via {client}: {type(e).__name__}: {e}")
                continue
            found = problems(row, reply)
            if found:
                failures.append(f"[{title}] {name} {qtype} via {client}:\n  - " + "\n  - ".join(found)
                                + f"\n  got: {reply}")
        try:
            found, reply = classic_udp_problems(row, port)
        except Exception as e:
            failures.append(f"[{title}] {name} {qtype} via {CLASSIC_UDP}: {type(e).__name__}: {e}")
            continue
        if found:
            failures.append(f"[{title}] {name} {qtype} via {CLASSIC_UDP}:\n  - " + "\n  - ".join(found)
                            + f"\n  got: {reply}")
    return failures


def truncation_failures(title, port):
    """mesh/big has 40 endpoints: answers too large for UDP are truncated whole (TC set, no
    cut-off record, answers left out rather than partial RRsets), and TCP carries them all."""
    big = "big.mesh.svc.clusterset.local"
    srv = "_http._tcp." + big
    everything = {f"10.4.9.{i}" for i in range(1, 41)}
    checks = []
    reply, size = ask_classic_udp(port, srv, "SRV")
    checks.append((f"{srv} SRV over UDP without EDNS", "tc" in reply.flags and not reply.answer and size <= 512,
                   reply))
    query = dns.message.make_query(srv, "SRV", use_edns=0, payload=1232)
    wire = dns.query.udp(query, "127.0.0.1", port=port, timeout=3, ignore_trailing=False)
    checks.append((f"{srv} SRV over UDP with EDNS 1232", wire.flags & dns.flags.TC and not wire.answer
                   and wire.edns == 0 and len(wire.to_wire()) <= 1232, wire))
    reply = ask_dnspython(port, srv, "SRV", tcp=True)
    checks.append((f"{srv} SRV over TCP", len(reply.answer) == 40 and "tc" not in reply.flags, reply))
    reply, size = ask_classic_udp(port, big, "A")
    checks.append((f"{big} A over UDP without EDNS", "tc" in reply.flags and not reply.answer and size <= 512,
                   reply))
    reply = ask_dnspython(port, big, "A", tcp=False)
    checks.append((f"{big} A over UDP with EDNS 1232",
                   {r[3] for r in reply.answer} == everything and "tc" not in reply.flags, reply))
    return [f"[{title}] truncation: {what}: got {got}" for what, ok, got in checks if not ok]


# ---------------------------------------------------------------------------------------------

def run_instance(title, binary, extra_config, rows_for):
    """Starts Bowline, asks `rows_for(clusterset_ip)` and stops it. Returns (rows, failures);
    no rows if Bowline never served the fixture."""
    bowline = None
    try:
        bowline = Bowline(binary, extra_config)
        bowline.wait_until_synced()
        rows = rows_for(bowline.clusterset_ip)
        failures = run_table(title, bowline.dns_port, rows) + truncation_failures(title, bowline.dns_port)
    except Broken as e:
        return [], [f"[{title}] NOT RUN: {e}"]
    finally:
        if bowline:
            bowline.stop()
    if failures:
        failures.append(f"[{title}] bowline's files and log: {bowline.work}")
    else:
        bowline.remove()
    return rows, failures


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__)
    binary = os.path.abspath(args[0])
    only_cluster_local = "--cluster-local" in args[1:]
    skip_cluster_local = os.environ.get("DNS_TABLE_SKIP_CLUSTER_LOCAL") == "1"

    rows, failures = [], []
    if not only_cluster_local:
        r, f = run_instance("clusterset", binary, "",
                            lambda ip: clusterset_rows(ip) + UNCONFIGURED_ROWS)
        rows, failures = rows + r, failures + f
    if skip_cluster_local:
        print(f"cluster.local: {len(CLUSTER_LOCAL_ROWS)} rows skipped (DNS_TABLE_SKIP_CLUSTER_LOCAL=1)")
    else:
        r, f = run_instance("cluster-local", binary, "dns: { clusterLocalMember: v4 }\n",
                            lambda ip: clusterset_rows(ip) + CLUSTER_LOCAL_ROWS)
        rows, failures = rows + r, failures + f

    if failures:
        print("\n".join(failures))
        failed_rows = {line.split(" via ")[0] for line in failures if " via " in line}
        not_run = [line.split("]")[0][1:] for line in failures if "NOT RUN" in line]
        print(f"dns table: FAILED: {len(failed_rows)} of {len(rows)} rows fail (asked by {len(CLIENTS)} clients"
              f" and over UDP without EDNS)" + "".join(f"; {t} not run" for t in not_run))
        sys.exit(1)
    print(f"dns table: {len(rows)} rows x {len(CLIENTS)} clients ok (and over UDP without EDNS);"
          " truncation ok")


if __name__ == "__main__":
    main()
