//! ServiceEntry hosts: which Kubernetes service a host names, and which hosts are DNS names
//! served under their own name.

use bowline_model::{ServiceKey, objects::ServiceEntry};

/// The only host suffix a ServiceEntry may use.
const SUFFIX: &str = ".svc.cluster.local";

/// The service a host of `entry` names, or why Bowline cannot serve it.
pub(crate) fn host_service(entry: &ServiceEntry, host: &str) -> Result<ServiceKey, String> {
    let namespace = &*entry.meta.namespace;
    let unsupported = || {
        format!(
            "host {host:?} is neither <service>.{namespace}{SUFFIX} nor a DNS name outside \
             cluster.local and clusterset.local (wildcards are not supported)"
        )
    };
    let (name, host_ns) = host
        .strip_suffix(SUFFIX)
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(unsupported)?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !label(name) || !label(host_ns) {
        return Err(unsupported());
    }
    if host_ns != namespace {
        return Err(format!(
            "host {host:?} names namespace {host_ns:?}: a ServiceEntry may only name services of \
             its own namespace {namespace:?}"
        ));
    }
    Ok(ServiceKey::new(namespace, name))
}

/// The services the hosts of `entry` name (hosts Bowline cannot serve are left out).
pub(crate) fn services(entry: &ServiceEntry) -> impl Iterator<Item = ServiceKey> + '_ {
    entry
        .hosts
        .iter()
        .filter_map(|host| host_service(entry, host).ok())
}

/// Whether `host` is served under its own name ([`HostService`](crate::view::HostService)): a
/// DNS name (lowercase labels of letters, digits and `-`, at least two) outside the
/// `cluster.local` and `clusterset.local` zones, which name Kubernetes services, and without
/// wildcards.
pub(crate) fn external_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && !host.ends_with(".cluster.local")
        && !host.ends_with(".clusterset.local")
}
