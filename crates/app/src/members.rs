//! What several parts of the composition root say about a member: its metric label and how
//! a Kubernetes member is reached.

use prometheus_client::encoding::EncodeLabelSet;

use crate::config::MemberSource;

/// Metric labels naming a member.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MemberLabel {
    pub member: String,
}

/// How a Kubernetes member is reached; `None` for a manifest directory.
pub(crate) fn credentials(source: &MemberSource) -> Option<bowline_kube::Credentials> {
    match source {
        MemberSource::Kubeconfig { path, context } => Some(bowline_kube::Credentials::Kubeconfig {
            path: path.clone(),
            context: context.clone(),
        }),
        MemberSource::InCluster => Some(bowline_kube::Credentials::InCluster),
        MemberSource::Manifests(_) => None,
    }
}
