//! The generated ClusterSet (M members × S services × E endpoints) and the changes made to it.
//!
//! Every member holds its `cluster.clusterset.k8s.io` ClusterProperty (`m<i>`), the namespace
//! `bench`, ten Nodes, and Services `svc0..svc<S-1>` (port `http` 80 → 8080), each with
//! EndpointSlices of at most 100 endpoints (`svc<s>-<chunk>`), every endpoint a pod on one of
//! the Nodes. The changes touch one slice: chunk 0 of the target service in the target member.

use serde_json::{Value, json};

/// The namespace of every generated Service.
pub const NAMESPACE: &str = "bench";
/// The Service port, hence the cluster name's port.
pub const PORT: u16 = 80;
/// Endpoints per generated EndpointSlice.
pub const SLICE_SIZE: usize = 100;
/// Nodes per member.
const NODES: usize = 10;
/// The third octet of the added endpoint's address (generated ones stay below it).
const ADDED_OCTET: usize = 250;

/// The size of a ClusterSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Members (M).
    pub members: usize,
    /// Services per member (S).
    pub services: usize,
    /// Endpoints per service and member (E).
    pub endpoints: usize,
}

/// The state of the slice the changes touch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// An extra endpoint (address [`Size::added_address`]) is in the slice.
    pub added: bool,
    /// The slice's first endpoint ([`Size::flipped_address`]) is not ready.
    pub unready: bool,
}

/// One change of the cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// An endpoint is added.
    Add,
    /// The added endpoint is removed.
    Remove,
    /// The first endpoint's readiness flips.
    Flip,
}

/// What a ClusterLoadAssignment of the target cluster says, reduced to what the changes move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Endpoints in the assignment, every locality together.
    pub endpoints: usize,
    /// The added endpoint's address is among them.
    pub added: bool,
    /// The flipped endpoint's address is among them (it is left out while not ready).
    pub flipped: bool,
}

impl Size {
    /// Refuses sizes whose addresses would collide (10.<m>.<x>.<y>, 64,000 per member).
    pub fn check(&self) -> Result<(), String> {
        if self.members == 0 || self.services == 0 || self.endpoints == 0 {
            return Err(format!("{self}: every dimension must be at least 1"));
        }
        if self.members > 250 || self.services * self.endpoints > ADDED_OCTET * 256 {
            return Err(format!(
                "{self}: at most 250 members and {} endpoints per member",
                ADDED_OCTET * 256
            ));
        }
        Ok(())
    }

    /// The member whose slice changes.
    pub fn target_member(&self) -> usize {
        3.min(self.members - 1)
    }

    /// The service whose slice changes, and to which every stream subscribes.
    pub fn target_service(&self) -> usize {
        42.min(self.services - 1)
    }

    /// The EDS cluster every stream subscribes to.
    pub fn cluster_name(&self) -> String {
        format!(
            "outbound|{PORT}||svc{}.{NAMESPACE}.svc.clusterset.local",
            self.target_service()
        )
    }

    /// Address of endpoint `e` of service `s` in member `m`.
    pub fn address(&self, m: usize, s: usize, e: usize) -> String {
        let i = s * self.endpoints + e;
        format!("10.{m}.{}.{}", i / 256, i % 256)
    }

    /// The address of the endpoint [`Change::Add`] adds.
    pub fn added_address(&self) -> String {
        format!("10.{}.{ADDED_OCTET}.1", self.target_member())
    }

    /// The address of the endpoint [`Change::Flip`] flips.
    pub fn flipped_address(&self) -> String {
        self.address(self.target_member(), self.target_service(), 0)
    }

    /// Endpoints of the whole ClusterSet.
    pub fn total_endpoints(&self) -> usize {
        self.members * self.services * self.endpoints
    }

    /// What every stream must see once `variant` is served.
    pub fn expected(&self, variant: Variant) -> Seen {
        Seen {
            endpoints: self.members * self.endpoints + usize::from(variant.added)
                - usize::from(variant.unready),
            added: variant.added,
            flipped: !variant.unready,
        }
    }

    /// Member `m`'s ClusterProperty, namespace and Nodes.
    pub fn cluster_objects(&self, m: usize) -> Vec<Value> {
        let mut out = vec![
            json!({
                "apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
                "metadata": { "name": "cluster.clusterset.k8s.io" },
                "spec": { "value": format!("m{m}") },
            }),
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": NAMESPACE,
                              "labels": { "kubernetes.io/metadata.name": NAMESPACE } },
            }),
        ];
        out.extend((0..NODES).map(|n| {
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": format!("node{n}"),
                              "labels": { "topology.kubernetes.io/zone": format!("z{}", n % 2) } },
            })
        }));
        out
    }

    /// Service `s` (the same in every member).
    pub fn service(&self, s: usize) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": format!("svc{s}"), "namespace": NAMESPACE },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": format!("10.96.{}.{}", s / 256, s % 256),
                "ipFamilies": ["IPv4"],
                "selector": { "app": format!("svc{s}") },
                "ports": [{ "name": "http", "port": PORT, "protocol": "TCP", "targetPort": 8080 }],
            },
        })
    }

    /// How many slices service `s` has in each member.
    pub fn chunks(&self) -> usize {
        self.endpoints.div_ceil(SLICE_SIZE)
    }

    /// Slice `chunk` of service `s` in member `m`; `variant` applies only to the target slice.
    pub fn slice(&self, m: usize, s: usize, chunk: usize, variant: Variant) -> Value {
        let target = m == self.target_member() && s == self.target_service() && chunk == 0;
        let variant = if target { variant } else { Variant::default() };
        let first = chunk * SLICE_SIZE;
        let mut endpoints: Vec<Value> = (first..self.endpoints.min(first + SLICE_SIZE))
            .map(|e| {
                let ready = !(variant.unready && e == first);
                endpoint(&self.address(m, s, e), &format!("svc{s}-{e}"), e, ready)
            })
            .collect();
        if variant.added {
            endpoints.push(endpoint(
                &self.added_address(),
                &format!("svc{s}-added"),
                0,
                true,
            ));
        }
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("svc{s}-{chunk}"), "namespace": NAMESPACE,
                "labels": { "kubernetes.io/service-name": format!("svc{s}") },
            },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
            "endpoints": endpoints,
        })
    }

    /// Every object of member `m`, as [`Size::slice`] builds them with no change applied.
    pub fn member_objects(&self, m: usize) -> Vec<Value> {
        let mut out = self.cluster_objects(m);
        for s in 0..self.services {
            out.push(self.service(s));
            out.extend((0..self.chunks()).map(|c| self.slice(m, s, c, Variant::default())));
        }
        out
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.members, self.services, self.endpoints)
    }
}

fn endpoint(address: &str, pod: &str, e: usize, ready: bool) -> Value {
    json!({
        "addresses": [address],
        "conditions": { "ready": ready },
        "nodeName": format!("node{}", e % NODES),
        "targetRef": { "kind": "Pod", "namespace": NAMESPACE, "name": pod },
    })
}

/// The first `n` changes of the cycle add, remove, flip, each with the state it leads to.
pub fn changes(n: usize) -> Vec<(Change, Variant)> {
    let mut state = Variant::default();
    (0..n)
        .map(|i| {
            let change = [Change::Add, Change::Remove, Change::Flip][i % 3];
            match change {
                Change::Add => state.added = true,
                Change::Remove => state.added = false,
                Change::Flip => state.unready = !state.unready,
            }
            (change, state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Size = Size {
        members: 4,
        services: 50,
        endpoints: 150,
    };

    #[test]
    fn every_change_moves_what_a_stream_sees() {
        let mut previous = SMALL.expected(Variant::default());
        assert_eq!(previous.endpoints, 4 * 150);
        for (change, variant) in changes(20) {
            let next = SMALL.expected(variant);
            assert_ne!(next, previous, "{change:?} must be visible");
            assert_ne!(
                next.endpoints, previous.endpoints,
                "{change:?} moves the count"
            );
            previous = next;
        }
        let kinds: Vec<Change> = changes(4).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            kinds,
            [Change::Add, Change::Remove, Change::Flip, Change::Add]
        );
    }

    #[test]
    fn slices_hold_every_endpoint_once_and_only_the_target_changes() {
        let objects = SMALL.member_objects(3);
        let slices: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "EndpointSlice")
            .collect();
        assert_eq!(slices.len(), 50 * 2);
        let mut addresses: Vec<&str> = slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().unwrap())
            .map(|e| e["addresses"][0].as_str().unwrap())
            .collect();
        assert_eq!(addresses.len(), 50 * 150);
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 50 * 150, "addresses are distinct");
        assert!(!addresses.contains(&SMALL.added_address().as_str()));

        let changed = SMALL.slice(
            3,
            42,
            0,
            Variant {
                added: true,
                unready: true,
            },
        );
        let endpoints = changed["endpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 101);
        assert_eq!(endpoints[0]["addresses"][0], SMALL.flipped_address());
        assert_eq!(endpoints[0]["conditions"]["ready"], false);
        assert_eq!(endpoints[100]["addresses"][0], SMALL.added_address());
        let other = SMALL.slice(
            2,
            42,
            0,
            Variant {
                added: true,
                unready: true,
            },
        );
        assert_eq!(other, SMALL.slice(2, 42, 0, Variant::default()));
        assert_eq!(
            SMALL.cluster_name(),
            "outbound|80||svc42.bench.svc.clusterset.local"
        );
    }

    #[test]
    fn sizes_whose_addresses_collide_are_refused() {
        assert!(SMALL.check().is_ok());
        let big = Size {
            members: 10,
            services: 1000,
            endpoints: 100,
        };
        assert!(big.check().is_err());
    }
}
