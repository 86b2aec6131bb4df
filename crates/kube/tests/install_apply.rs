//! `bowline install` applied to the fake API server, which checks CustomResourceDefinitions as
//! kube-apiserver does (a real v1.32 server refused the ClusterProperty CRD the fake had let
//! through): every document applies, and what the CRDs define is then served.

use bowline_kube::install::{InstallOptions, manifests};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::{Value, json};

/// Server-side applies `doc` as `kubectl apply --server-side` would.
async fn apply(client: &kube::Client, doc: &Value) -> Result<(), kube::Error> {
    let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", doc["apiVersion"].as_str().unwrap()),
    };
    let kind = doc["kind"].as_str().unwrap();
    let lower = kind.to_ascii_lowercase();
    let plural = match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let name = doc["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(doc),
    )
    .await
    .map(drop)
}

fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}", status.code, status.message),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn every_document_of_bowline_install_applies_and_its_crds_are_served() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    let client = server.client();
    for doc in manifests(&InstallOptions::default()) {
        apply(&client, &doc).await.unwrap_or_else(|e| {
            panic!(
                "{} {}: {}",
                doc["kind"],
                doc["metadata"]["name"],
                message(e)
            )
        });
    }
    // What the CRDs define is served now.
    for object in [
        json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
               "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": "default", "namespace": "bowline-system"}, "spec": {"mtls": {"mode": "STRICT"}}}),
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
               "metadata": {"name": "echo", "namespace": "bowline-system"}}),
    ] {
        apply(&client, &object)
            .await
            .unwrap_or_else(|e| panic!("{}: {}", object["kind"], message(e)));
    }
}

#[tokio::test]
async fn crds_a_real_api_server_refuses_are_refused_naming_the_rule() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    let client = server.client();
    let crds: Vec<Value> = manifests(&InstallOptions {
        crds_only: true,
        ..InstallOptions::default()
    });
    let property = crds
        .iter()
        .find(|c| c["metadata"]["name"] == "clusterproperties.about.k8s.io")
        .unwrap()
        .clone();
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut crd = property.clone();
        change(&mut crd);
        crd
    };
    for (crd, needle) in [
        (
            broken(&|c| {
                c["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("api-approved.kubernetes.io");
            }),
            "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation",
        ),
        (
            broken(&|c| c["metadata"]["name"] = json!("properties.about.k8s.io")),
            "metadata.name: Invalid value: \"properties.about.k8s.io\": must be spec.names.plural+\".\"+spec.group",
        ),
        (
            broken(&|c| {
                for v in c["spec"]["versions"].as_array_mut().unwrap() {
                    v["storage"] = json!(true);
                }
            }),
            "must have exactly one version marked as storage version",
        ),
        (
            broken(&|c| {
                let spec = &mut c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                    ["spec"];
                spec.as_object_mut().unwrap().remove("type");
            }),
            "openAPIV3Schema.properties[spec].type: Required value: must not be empty",
        ),
    ] {
        let err = apply(&client, &crd).await.expect_err(needle);
        let text = message(err);
        assert!(text.starts_with("422") && text.contains(needle), "{text}");
    }
    // Nothing refused is served.
    let refused = json!({"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
                         "metadata": {"name": "id.k8s.io"}, "spec": {"value": "x"}});
    assert!(apply(&client, &refused).await.is_err());
}
