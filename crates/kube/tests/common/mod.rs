//! What the Kubernetes tests share.

use bowline_fake_kube::{FakeApiServer, ResourceDef};

/// Installs the CRDs Bowline reads, as `bowline install --crds-only` would.
pub fn install_crds(server: &FakeApiServer) {
    let mcs = &["v1alpha1", "v1beta1"];
    let istio = &["v1", "v1beta1", "v1alpha3"];
    for def in [
        ResourceDef::custom(
            "multicluster.x-k8s.io",
            mcs,
            "serviceexports",
            "ServiceExport",
        )
        .with_status(),
        ResourceDef::custom(
            "multicluster.x-k8s.io",
            mcs,
            "serviceimports",
            "ServiceImport",
        )
        .with_status(),
        ResourceDef::custom(
            "about.k8s.io",
            &["v1alpha1"],
            "clusterproperties",
            "ClusterProperty",
        )
        .cluster_scoped(),
        ResourceDef::custom(
            "networking.istio.io",
            istio,
            "workloadentries",
            "WorkloadEntry",
        )
        .with_status(),
        ResourceDef::custom(
            "networking.istio.io",
            istio,
            "workloadgroups",
            "WorkloadGroup",
        ),
        ResourceDef::custom(
            "networking.istio.io",
            istio,
            "serviceentries",
            "ServiceEntry",
        ),
    ] {
        server.install_crd(def);
    }
}
