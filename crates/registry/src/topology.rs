//! Where an endpoint is: its network and locality, from its pod's, namespace's and node's
//! labels (Istio's rules).

use std::{collections::HashSet, sync::Arc};

use bowline_model::{Labels, Locality, Network, labels};

/// A member's localities, one allocation each: endpoints share a handful of them (a node's, a
/// zone's), so each endpoint holds a pointer to a shared one instead of its own (at 10 × 1,000
/// × 10, 100,000 localities of four allocations each, about 12 MB).
#[derive(Debug, Default)]
pub(crate) struct Localities {
    known: HashSet<Arc<Locality>>,
    /// How many were known after the last pruning of those no endpoint holds any more; the set
    /// is pruned again when it has doubled.
    pruned_at: usize,
}

impl Localities {
    /// Fewest known before the set is ever pruned.
    const FLOOR: usize = 64;

    /// The shared copy of `locality`.
    pub fn share(&mut self, locality: Locality) -> Arc<Locality> {
        if let Some(known) = self.known.get(&locality) {
            return known.clone();
        }
        if self.known.len() >= 2 * self.pruned_at.max(Self::FLOOR) {
            self.known.retain(|l| Arc::strong_count(l) > 1);
            self.pruned_at = self.known.len();
        }
        let shared = Arc::new(locality);
        self.known.insert(shared.clone());
        shared
    }
}

/// Network of an endpoint: the pod's `topology.istio.io/network` label, else its namespace's,
/// else the member's default network.
pub fn network(pod: Option<&Labels>, namespace: Option<&Labels>, default: &Network) -> Network {
    [pod, namespace]
        .into_iter()
        .flatten()
        .find_map(|labels| labels.get(labels::NETWORK))
        .map(|n| Network::new(n.as_str()))
        .unwrap_or_else(|| default.clone())
}

/// Locality of an endpoint: the pod's `topology.istio.io/locality` (`region.zone.subzone`) when
/// set; otherwise region and subzone from its Node's labels, and zone from the Node's label or,
/// failing that, the EndpointSlice's `zone`.
pub fn locality(pod: Option<&Labels>, node: Option<&Labels>, slice_zone: Option<&str>) -> Locality {
    if let Some(value) = pod
        .and_then(|l| l.get(labels::POD_LOCALITY))
        .filter(|v| !v.is_empty())
    {
        return Locality::parse_slashed(&value.replace('.', "/"));
    }
    let node_label = |name: &str| {
        node.and_then(|l| l.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    Locality {
        region: node_label(labels::REGION).unwrap_or_default().into(),
        zone: node_label(labels::ZONE)
            .or(slice_zone)
            .unwrap_or_default()
            .into(),
        subzone: node_label(labels::SUBZONE).unwrap_or_default().into(),
    }
}

#[cfg(test)]
mod tests {
    use bowline_test_support::labels;

    use super::*;

    #[test]
    fn network_rules() {
        let default = Network::new("net-default");
        let pod = labels(&[(labels::NETWORK, "net-pod")]);
        let ns = labels(&[(labels::NETWORK, "net-ns")]);
        let empty = Labels::new();
        let cases = [
            ("pod label wins", Some(&pod), Some(&ns), "net-pod"),
            ("namespace label next", Some(&empty), Some(&ns), "net-ns"),
            ("pod unknown, namespace label", None, Some(&ns), "net-ns"),
            (
                "member default last",
                Some(&empty),
                Some(&empty),
                "net-default",
            ),
            ("nothing known", None, None, "net-default"),
        ];
        for (name, pod, ns, want) in cases {
            assert_eq!(network(pod, ns, &default).as_str(), want, "{name}");
        }
    }

    #[test]
    fn equal_localities_are_one_allocation_and_unused_ones_are_let_go() {
        let mut localities = Localities::default();
        let a = localities.share(Locality::parse_slashed("eu/eu-1a/"));
        let b = localities.share(Locality::parse_slashed("eu/eu-1a/"));
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..2 * Localities::FLOOR {
            localities.share(Locality::parse_slashed(&format!("r/z{i}/")));
        }
        assert!(
            localities.known.len() <= 2 * Localities::FLOOR,
            "pruned: {}",
            localities.known.len()
        );
        assert!(
            Arc::ptr_eq(&a, &localities.share(Locality::parse_slashed("eu/eu-1a/"))),
            "one still held is kept"
        );
    }

    #[test]
    fn locality_rules() {
        let node = labels(&[
            (labels::REGION, "eu"),
            (labels::ZONE, "eu-1a"),
            (labels::SUBZONE, "rack1"),
        ]);
        let node_region_only = labels(&[(labels::REGION, "eu")]);
        let pod = labels(&[(labels::POD_LOCALITY, "us.us-2b.r9")]);
        let cases = [
            (
                "node labels",
                None,
                Some(&node),
                Some("slice-zone"),
                "eu/eu-1a/rack1",
            ),
            (
                "slice zone when node has none",
                None,
                Some(&node_region_only),
                Some("z9"),
                "eu/z9/",
            ),
            ("slice zone, node unknown", None, None, Some("z9"), "/z9/"),
            (
                "pod label wins",
                Some(&pod),
                Some(&node),
                Some("z9"),
                "us/us-2b/r9",
            ),
            ("nothing", None, None, None, "//"),
        ];
        for (name, pod, node, zone, want) in cases {
            assert_eq!(locality(pod, node, zone).to_string(), want, "{name}");
        }
    }
}
