//! Services: keys, ports and types.

use std::{fmt, sync::Arc};

use serde::Serialize;

/// A service's identity across the ClusterSet: namespace and name (MCS namespace sameness).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceKey {
    /// Namespace of the service.
    pub namespace: Arc<str>,
    /// Name of the service.
    pub name: Arc<str>,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Transport protocol of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses Kubernetes' protocol names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Kubernetes' name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// Where a Service port sends traffic on its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container (or WorkloadEntry) port.
    Name(String),
}

/// One port of a Service (or ServiceImport).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name; empty only for a Service's single unnamed port.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Service port number.
    pub port: u16,
    /// Target port on the endpoints, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<TargetPort>,
    /// Application protocol, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// The kind of a service as the ClusterSet sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ServiceType {
    /// Has cluster IPs (ClusterIP, NodePort or LoadBalancer in Kubernetes terms).
    ClusterIP,
    /// `clusterIP: None`.
    Headless,
    /// `type: ExternalName`.
    ExternalName,
}
