//! One member's objects, as the source last reported them, with the few indexes derivation needs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use crate::hosts;
use bowline_model::{
    Object, ObjectKey, ObjectKind, ServiceKey, Strng,
    objects::{
        ClusterClaim, ClusterProperty, EndpointSlice, Namespace, Node, PeerAuthentication, Pod,
        Service, ServiceEntry, ServiceExport, ServiceImport, WorkloadEntry, WorkloadGroup,
    },
};

/// Namespace and name of a namespaced object.
pub(crate) type NsName = (Strng, Strng);

/// What applying one change to a store may have affected.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// Services whose contribution from this member must be recomputed.
    pub keys: BTreeSet<ServiceKey>,
    /// Namespaces whose every service must be recomputed (namespace labels changed).
    pub namespaces: BTreeSet<Strng>,
    /// Pods whose label change affects the services that reference them.
    pub pods: BTreeSet<NsName>,
    /// Nodes whose label change affects the services that reference them.
    pub nodes: BTreeSet<Strng>,
    /// The member's identity inputs may have changed.
    pub identity: bool,
    /// Gateways may have changed.
    pub gateways: bool,
    /// Rejections derived from the member's objects (ServiceEntry hosts) may have changed.
    pub rejections: bool,
    /// A PeerAuthentication changed.
    pub policies: bool,
}

/// A member's objects by kind. Values are `Arc`s so that views share them.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub namespaces: BTreeMap<Strng, Namespace>,
    pub nodes: HashMap<Strng, Node>,
    pub pods: HashMap<NsName, Pod>,
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    pub slices: HashMap<NsName, Arc<EndpointSlice>>,
    /// Slice names of each service, from the `kubernetes.io/service-name` label.
    pub slices_by_service: BTreeMap<ServiceKey, BTreeSet<Strng>>,
    /// Names of imported (MCS) slices of each service, from the
    /// `multicluster.kubernetes.io/service-name` label.
    pub imported_by_service: BTreeMap<ServiceKey, BTreeSet<Strng>>,
    pub exports: BTreeMap<ServiceKey, Arc<ServiceExport>>,
    pub imports: BTreeMap<ServiceKey, Arc<ServiceImport>>,
    pub properties: BTreeMap<Strng, ClusterProperty>,
    pub workload_entries: BTreeMap<NsName, WorkloadEntry>,
    pub workload_groups: BTreeMap<NsName, WorkloadGroup>,
    pub service_entries: BTreeMap<NsName, ServiceEntry>,
    pub peer_authentications: BTreeMap<NsName, PeerAuthentication>,
    /// ClusterClaims, by name (only `id.k8s.io` is read).
    pub claims: BTreeMap<Strng, ClusterClaim>,
    /// Names of the ServiceEntries whose hosts name each service
    /// (`<svc>.<ns>.svc.cluster.local`, in the ServiceEntry's namespace).
    pub entries_by_service: BTreeMap<ServiceKey, BTreeSet<Strng>>,
    /// Services labelled as east-west gateways.
    pub gateway_services: BTreeSet<ServiceKey>,
}

fn service_key(key: &ObjectKey) -> ServiceKey {
    ServiceKey::new(key.namespace.clone(), key.name.clone())
}

fn ns_name(key: &ObjectKey) -> NsName {
    (key.namespace.clone(), key.name.clone())
}

/// The service an MCS-imported slice belongs to (only slices not also owned by a local Service).
fn imported_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    if slice.service_name.is_some() {
        return None;
    }
    let name = slice
        .meta
        .labels
        .get(bowline_model::labels::MCS_SERVICE_NAME)?;
    Some(ServiceKey::new(slice.meta.namespace.clone(), name.as_str()))
}

fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    slice
        .service_name
        .as_ref()
        .map(|name| ServiceKey::new(slice.meta.namespace.clone(), name.clone()))
}

fn unlink(index: &mut BTreeMap<ServiceKey, BTreeSet<Strng>>, skey: &ServiceKey, slice: &Strng) {
    if let Some(names) = index.get_mut(skey) {
        names.remove(slice);
        if names.is_empty() {
            index.remove(skey);
        }
    }
}

impl Store {
    /// Applies (or with `None`, deletes) one object, recording what it touched.
    pub fn apply(&mut self, key: &ObjectKey, object: Option<Object>, touched: &mut Touched) {
        match key.kind {
            ObjectKind::Namespace => {
                if let Some(Object::Namespace(ns)) = object {
                    self.namespaces.insert(key.name.clone(), ns);
                } else {
                    self.namespaces.remove(&key.name);
                }
                touched.namespaces.insert(key.name.clone());
                touched.identity |= &*key.name == bowline_model::labels::KUBE_SYSTEM;
            }
            ObjectKind::Node => {
                if let Some(Object::Node(node)) = object {
                    self.nodes.insert(key.name.clone(), node);
                } else {
                    self.nodes.remove(&key.name);
                }
                touched.nodes.insert(key.name.clone());
            }
            ObjectKind::Pod => {
                if let Some(Object::Pod(pod)) = object {
                    self.pods.insert(ns_name(key), pod);
                } else {
                    self.pods.remove(&ns_name(key));
                }
                touched.pods.insert(ns_name(key));
            }
            ObjectKind::Service => {
                let skey = service_key(key);
                let is_gateway =
                    |s: &Service| s.meta.labels.contains_key(bowline_model::labels::NETWORK);
                let old = match object {
                    Some(Object::Service(svc)) => {
                        if is_gateway(&svc) {
                            touched.gateways = true;
                            self.gateway_services.insert(skey.clone());
                        }
                        self.services.insert(skey.clone(), svc)
                    }
                    _ => self.services.remove(&skey),
                };
                if old.is_some_and(|o| is_gateway(&o)) {
                    touched.gateways = true;
                    if !self.services.get(&skey).is_some_and(|s| is_gateway(s)) {
                        self.gateway_services.remove(&skey);
                    }
                }
                touched.keys.insert(skey);
            }
            ObjectKind::EndpointSlice => {
                let name = ns_name(key);
                if let Some(old) = self.slices.remove(&name) {
                    if let Some(skey) = slice_service(&old) {
                        unlink(&mut self.slices_by_service, &skey, &key.name);
                        touched.keys.insert(skey);
                    }
                    if let Some(skey) = imported_service(&old) {
                        unlink(&mut self.imported_by_service, &skey, &key.name);
                        touched.keys.insert(skey);
                    }
                }
                if let Some(Object::EndpointSlice(slice)) = object {
                    let owners = [
                        (slice_service(&slice), &mut self.slices_by_service),
                        (imported_service(&slice), &mut self.imported_by_service),
                    ];
                    for (owner, index) in owners {
                        if let Some(skey) = owner {
                            index
                                .entry(skey.clone())
                                .or_default()
                                .insert(key.name.clone());
                            touched.keys.insert(skey);
                        }
                    }
                    self.slices.insert(name, slice);
                }
            }
            ObjectKind::ServiceExport => {
                let skey = service_key(key);
                match object {
                    Some(Object::ServiceExport(export)) => {
                        self.exports.insert(skey.clone(), Arc::new(export))
                    }
                    _ => self.exports.remove(&skey),
                };
                touched.keys.insert(skey);
            }
            ObjectKind::ServiceImport => {
                let skey = service_key(key);
                match object {
                    Some(Object::ServiceImport(import)) => {
                        self.imports.insert(skey.clone(), Arc::from(import))
                    }
                    _ => self.imports.remove(&skey),
                };
                touched.keys.insert(skey);
            }
            ObjectKind::ClusterProperty => {
                match object {
                    Some(Object::ClusterProperty(p)) => self.properties.insert(key.name.clone(), p),
                    _ => self.properties.remove(&key.name),
                };
                touched.identity = true;
            }
            ObjectKind::WorkloadEntry => {
                match object {
                    Some(Object::WorkloadEntry(o)) => {
                        self.workload_entries.insert(ns_name(key), *o)
                    }
                    _ => self.workload_entries.remove(&ns_name(key)),
                };
                // Services of the namespace may select it (or have selected it).
                touched.namespaces.insert(key.namespace.clone());
            }
            ObjectKind::WorkloadGroup => {
                match object {
                    Some(Object::WorkloadGroup(o)) => self.workload_groups.insert(ns_name(key), *o),
                    _ => self.workload_groups.remove(&ns_name(key)),
                };
            }
            ObjectKind::ClusterClaim => {
                match object {
                    Some(Object::ClusterClaim(c)) => self.claims.insert(key.name.clone(), c),
                    _ => self.claims.remove(&key.name),
                };
                touched.identity = true;
            }
            ObjectKind::PeerAuthentication => {
                match object {
                    Some(Object::PeerAuthentication(o)) => {
                        self.peer_authentications.insert(ns_name(key), *o)
                    }
                    _ => self.peer_authentications.remove(&ns_name(key)),
                };
                touched.policies = true;
            }
            ObjectKind::ServiceEntry => {
                let name = ns_name(key);
                if let Some(old) = self.service_entries.remove(&name) {
                    for skey in hosts::services(&old) {
                        unlink(&mut self.entries_by_service, &skey, &key.name);
                        touched.keys.insert(skey);
                    }
                }
                if let Some(Object::ServiceEntry(entry)) = object {
                    for skey in hosts::services(&entry) {
                        self.entries_by_service
                            .entry(skey.clone())
                            .or_default()
                            .insert(key.name.clone());
                        touched.keys.insert(skey);
                    }
                    self.service_entries.insert(name, *entry);
                }
                touched.rejections = true;
            }
        }
    }

    /// Every service key this member has any object for.
    pub fn keys(&self) -> BTreeSet<ServiceKey> {
        self.services
            .keys()
            .chain(self.slices_by_service.keys())
            .chain(self.imported_by_service.keys())
            .chain(self.exports.keys())
            .chain(self.imports.keys())
            .chain(self.entries_by_service.keys())
            .cloned()
            .collect()
    }

    /// Every service key this member has any object for in `namespace`.
    pub fn keys_in(&self, namespace: &Strng) -> BTreeSet<ServiceKey> {
        let start = ServiceKey::new(namespace.clone(), "");
        fn in_ns<'a, V>(
            map: &'a BTreeMap<ServiceKey, V>,
            start: &ServiceKey,
        ) -> impl Iterator<Item = &'a ServiceKey> {
            let ns = start.namespace.clone();
            map.range(start.clone()..)
                .map(|(k, _)| k)
                .take_while(move |k| k.namespace == ns)
        }
        in_ns(&self.services, &start)
            .chain(in_ns(&self.slices_by_service, &start))
            .chain(in_ns(&self.imported_by_service, &start))
            .chain(in_ns(&self.exports, &start))
            .chain(in_ns(&self.imports, &start))
            .chain(in_ns(&self.entries_by_service, &start))
            .cloned()
            .collect()
    }

    /// Number of objects by kind.
    pub fn counts(&self) -> BTreeMap<ObjectKind, usize> {
        BTreeMap::from([
            (ObjectKind::Namespace, self.namespaces.len()),
            (ObjectKind::Node, self.nodes.len()),
            (ObjectKind::Pod, self.pods.len()),
            (ObjectKind::Service, self.services.len()),
            (ObjectKind::EndpointSlice, self.slices.len()),
            (ObjectKind::ServiceExport, self.exports.len()),
            (ObjectKind::ServiceImport, self.imports.len()),
            (ObjectKind::ClusterProperty, self.properties.len()),
            (ObjectKind::WorkloadEntry, self.workload_entries.len()),
            (ObjectKind::WorkloadGroup, self.workload_groups.len()),
            (ObjectKind::ServiceEntry, self.service_entries.len()),
            (
                ObjectKind::PeerAuthentication,
                self.peer_authentications.len(),
            ),
            (ObjectKind::ClusterClaim, self.claims.len()),
        ])
    }
}
