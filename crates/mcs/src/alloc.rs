//! ClusterSetIP allocation: one address per family per imported service, stable for the life
//! of the import and, through the written ServiceImports read back at start, across restarts.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use bowline_model::{IpFamily, ServiceKey};
use ipnet::IpNet;

/// Allocates ClusterSetIPs from the configured pools.
#[derive(Debug)]
pub struct Allocator {
    pools: Vec<IpNet>,
    by_key: BTreeMap<ServiceKey, BTreeMap<IpFamily, IpAddr>>,
    used: HashSet<IpAddr>,
}

impl Allocator {
    /// An allocator over `pools`.
    pub fn new(pools: Vec<IpNet>) -> Self {
        Self {
            pools,
            by_key: BTreeMap::new(),
            used: HashSet::new(),
        }
    }

    /// Records an address already in use by `key` (read back from a written ServiceImport).
    /// Ignored when outside every pool, already taken, or when `key` already has one of that
    /// family: the first claim wins.
    pub fn adopt(&mut self, key: &ServiceKey, ip: IpAddr) -> bool {
        let family = IpFamily::of(&ip);
        let in_pool = self.pools.iter().any(|p| p.contains(&ip) && usable(p, ip));
        let has_family = self
            .by_key
            .get(key)
            .is_some_and(|m| m.contains_key(&family));
        if !in_pool || has_family || self.used.contains(&ip) {
            return false;
        }
        self.used.insert(ip);
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(family, ip);
        true
    }

    /// Makes `ip` the address of `key` for its family even when `key` already had another
    /// one (freed): what a member holds wins, as when a new leader takes over from the
    /// ServiceImports the previous one wrote. Refused when outside every pool or when
    /// another key holds `ip`.
    pub fn claim(&mut self, key: &ServiceKey, ip: IpAddr) -> bool {
        let family = IpFamily::of(&ip);
        let current = self.by_key.get(key).and_then(|m| m.get(&family)).copied();
        if current == Some(ip) {
            return true;
        }
        let in_pool = self.pools.iter().any(|p| p.contains(&ip) && usable(p, ip));
        if !in_pool || self.used.contains(&ip) {
            return false;
        }
        if let Some(old) = current {
            self.used.remove(&old);
        }
        self.used.insert(ip);
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(family, ip);
        true
    }

    /// The address of `key` for `family`, allocating the lowest free one if needed; `None`
    /// when every pool of that family is exhausted (or there is none).
    pub fn ensure(&mut self, key: &ServiceKey, family: IpFamily) -> Option<IpAddr> {
        if let Some(ip) = self.by_key.get(key).and_then(|m| m.get(&family)) {
            return Some(*ip);
        }
        let ip = self
            .pools
            .iter()
            .filter(|p| IpFamily::of(&p.network()) == family)
            .find_map(|pool| {
                pool.hosts()
                    .find(|ip| usable(pool, *ip) && !self.used.contains(ip))
            })?;
        self.used.insert(ip);
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(family, ip);
        Some(ip)
    }

    /// Frees the addresses of every key not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&ServiceKey) -> bool) {
        let used = &mut self.used;
        self.by_key.retain(|key, ips| {
            let kept = keep(key);
            if !kept {
                for ip in ips.values() {
                    used.remove(ip);
                }
            }
            kept
        });
    }

    /// Addresses in use.
    pub fn allocated(&self) -> usize {
        self.used.len()
    }
}

/// The network address of an IPv6 pool is usable as a host, but not the all-zero one of the
/// pool itself (anycast); `hosts()` already skips IPv4's network and broadcast addresses.
fn usable(pool: &IpNet, ip: IpAddr) -> bool {
    ip != pool.network()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> ServiceKey {
        ServiceKey::new("ns", n)
    }

    #[test]
    fn allocates_lowest_free_per_family_and_keeps_it() {
        let mut a = Allocator::new(vec![
            "241.0.0.0/30".parse().unwrap(),
            "fd00::/126".parse().unwrap(),
        ]);
        assert_eq!(
            a.ensure(&key("a"), IpFamily::IPv4),
            Some("241.0.0.1".parse().unwrap())
        );
        assert_eq!(
            a.ensure(&key("b"), IpFamily::IPv4),
            Some("241.0.0.2".parse().unwrap())
        );
        assert_eq!(
            a.ensure(&key("c"), IpFamily::IPv4),
            None,
            "a /30 has two hosts"
        );
        assert_eq!(
            a.ensure(&key("a"), IpFamily::IPv4),
            Some("241.0.0.1".parse().unwrap()),
            "stable"
        );
        assert_eq!(
            a.ensure(&key("a"), IpFamily::IPv6),
            Some("fd00::1".parse().unwrap())
        );
        a.retain(|k| k != &key("a"));
        assert_eq!(
            a.ensure(&key("c"), IpFamily::IPv4),
            Some("241.0.0.1".parse().unwrap()),
            "freed"
        );
    }

    #[test]
    fn a_claim_replaces_the_address_a_key_had_unless_another_key_holds_it() {
        let mut a = Allocator::new(vec!["241.0.0.0/24".parse().unwrap()]);
        let first = a.ensure(&key("a"), IpFamily::IPv4).unwrap();
        let other = a.ensure(&key("b"), IpFamily::IPv4).unwrap();
        assert!(a.claim(&key("a"), "241.0.0.9".parse().unwrap()));
        assert_eq!(
            a.ensure(&key("a"), IpFamily::IPv4),
            Some("241.0.0.9".parse().unwrap())
        );
        assert!(!a.claim(&key("a"), other), "b holds it");
        assert_eq!(
            a.ensure(&key("c"), IpFamily::IPv4),
            Some(first),
            "the replaced address is free again"
        );
    }

    #[test]
    fn adoption_keeps_addresses_across_restarts() {
        let mut a = Allocator::new(vec!["241.0.0.0/24".parse().unwrap()]);
        assert!(a.adopt(&key("b"), "241.0.0.7".parse().unwrap()));
        assert!(!a.adopt(&key("c"), "241.0.0.7".parse().unwrap()), "taken");
        assert!(
            !a.adopt(&key("d"), "10.0.0.1".parse().unwrap()),
            "outside the pools"
        );
        assert_eq!(
            a.ensure(&key("b"), IpFamily::IPv4),
            Some("241.0.0.7".parse().unwrap())
        );
    }
}
