//! The `Node` an ADS client sends, with Istio's metadata keys as strings.
//!
//! ```
//! let node = bowline_test_support::ads::node("client-1", "envoy")
//!     .meta("CLUSTER_ID", "east")
//!     .meta("NETWORK", "net-east")
//!     .build();
//! assert_eq!(node.metadata.unwrap().fields.len(), 2);
//! ```

use envoy_types::pb::{
    envoy::config::core::v3::Node,
    google::protobuf::{Struct, Value, value::Kind},
};

/// A node `id` whose proxy identifies itself as `user_agent_name` (`envoy`, `gRPC Python`...).
pub fn node(id: &str, user_agent_name: &str) -> NodeBuilder {
    NodeBuilder {
        node: Node {
            id: id.into(),
            user_agent_name: user_agent_name.into(),
            ..Default::default()
        },
    }
}

/// Builds a [`Node`]; see [`node`].
#[derive(Debug)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// Sets metadata `key` to the string `value`.
    pub fn meta(mut self, key: &str, value: &str) -> Self {
        let value = Value {
            kind: Some(Kind::StringValue(value.into())),
        };
        self.node
            .metadata
            .get_or_insert_with(Struct::default)
            .fields
            .insert(key.into(), value);
        self
    }

    /// Sets `LABELS` (the proxy's workload labels) to these pairs.
    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        let fields = pairs
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue((*v).into())),
                };
                ((*k).to_string(), value)
            })
            .collect();
        let value = Value {
            kind: Some(Kind::StructValue(Struct { fields })),
        };
        self.node
            .metadata
            .get_or_insert_with(Struct::default)
            .fields
            .insert("LABELS".into(), value);
        self
    }

    /// Istio's member, network and instance address keys at once.
    pub fn at(self, member: &str, network: &str, instance_ip: &str) -> Self {
        self.meta("CLUSTER_ID", member)
            .meta("NETWORK", network)
            .meta("INSTANCE_IPS", instance_ip)
    }

    /// The node.
    pub fn build(self) -> Node {
        self.node
    }
}
