//! Resources generated once per snapshot and proxy class, shared by every stream of that
//! class: a change costs one generation per class, not one per connected proxy.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use bowline_model::Network;
use envoy_types::pb::google::protobuf::Any;
use parking_lot::Mutex;

use bowline_views::ClusterSet;

use crate::{
    eds::ProxyFamilies,
    node::{ProxyInfo, ProxyKind},
    resources::generate,
};

/// What a proxy's resources depend on: proxies that agree on it are served the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Class {
    kind: ProxyKind,
    member: Option<String>,
    network: Network,
    families: ProxyFamilies,
    listen_address: IpAddr,
    gateway_port: Option<u16>,
}

impl Class {
    fn of(proxy: &ProxyInfo) -> Self {
        Self {
            kind: proxy.kind,
            member: proxy.member.clone(),
            network: proxy.network.clone(),
            families: ProxyFamilies::of(&proxy.instance_ips),
            listen_address: proxy.listen_address,
            gateway_port: proxy.gateway_port,
        }
    }
}

/// Every resource of one type for one class, with the digest of its encoding.
pub type Resources = Arc<BTreeMap<String, (Any, u64)>>;

fn digest(any: &Any) -> u64 {
    let mut h = DefaultHasher::new();
    any.value.hash(&mut h);
    h.finish()
}

/// Cached resources of one snapshot, by class, type and, for named EDS subscriptions, name.
type Entries = HashMap<(Class, &'static str, Option<String>), Resources>;

/// The cache; entries of older snapshots are dropped when a newer one is first asked for.
#[derive(Default)]
pub struct Cache {
    /// Guards the entries of the current snapshot; held while one class generates, so that
    /// concurrent streams of that class wait for it instead of generating it again.
    inner: Mutex<(u64, Entries)>,
}

impl Cache {
    /// The resources of `type_url` for `proxy` under `snapshot`: every one (`names` is
    /// `None`, or a type other than EDS), or for EDS only those named, each generated once.
    pub fn get(
        &self,
        type_url: &'static str,
        proxy: &ProxyInfo,
        snapshot: &ClusterSet,
        names: Option<&BTreeSet<String>>,
    ) -> Resources {
        let class = Class::of(proxy);
        let version = snapshot.version;
        let per_name = match names {
            // Assignments, and gRPC listeners (which include servers' own, named by address),
            // are generated per subscribed name.
            Some(names)
                if type_url == crate::resources::type_url::ENDPOINT
                    || (type_url == crate::resources::type_url::LISTENER
                        && proxy.kind == ProxyKind::Grpc) =>
            {
                names
            }
            _ => {
                return self.entry(&class, type_url, None, version, || {
                    generate(type_url, proxy, snapshot, None)
                });
            }
        };
        let mut out = BTreeMap::new();
        for name in per_name {
            let one = BTreeSet::from([name.clone()]);
            let resources = self.entry(&class, type_url, Some(name.clone()), version, || {
                generate(type_url, proxy, snapshot, Some(&one))
            });
            out.extend(resources.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Arc::new(out)
    }

    fn entry(
        &self,
        class: &Class,
        type_url: &'static str,
        name: Option<String>,
        version: u64,
        make: impl FnOnce() -> BTreeMap<String, Any>,
    ) -> Resources {
        let mut inner = self.inner.lock();
        if inner.0 != version {
            *inner = (version, HashMap::new());
        }
        inner
            .1
            .entry((class.clone(), type_url, name))
            .or_insert_with(|| {
                let resources = make().into_iter().map(|(name, any)| {
                    let d = digest(&any);
                    (name, (any, d))
                });
                Arc::new(resources.collect())
            })
            .clone()
    }
}
