//! Writes through kube's client: server-side apply with field managers, status subresource,
//! Lease optimistic concurrency, label selectors, errors.

use bowline_fake_kube::{FakeApiServer, ResourceDef};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

fn service(spec: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" }, "spec": spec })
}

#[tokio::test]
async fn apply_conflicts_between_managers_and_force_moves_ownership() {
    let server = FakeApiServer::start().await;
    let api: Api<Service> = Api::default_namespaced(server.client());
    let first = service(json!({ "type": "ClusterIP", "ports": [{ "port": 80 }] }));
    api.patch("web", &PatchParams::apply("one"), &Patch::Apply(&first))
        .await
        .unwrap();

    let second = service(json!({ "type": "NodePort" }));
    let status = api_error(
        api.patch("web", &PatchParams::apply("two"), &Patch::Apply(&second))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"one\" using v1: .spec.type"
    );

    let forced = api
        .patch(
            "web",
            &PatchParams::apply("two").force(),
            &Patch::Apply(&second),
        )
        .await
        .unwrap();
    let spec = forced.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.ports.unwrap()[0].port, 80);
    let managers: Vec<_> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(
        managers,
        [
            ("one".into(), "Apply".into()),
            ("two".into(), "Apply".into())
        ]
    );

    // `one` no longer applies ports (which only it owned): they are removed. It no longer
    // owns `type` either, so leaving it out keeps `two`'s value.
    let shrunk = service(json!({ "selector": { "app": "web" } }));
    let after = api
        .patch("web", &PatchParams::apply("one"), &Patch::Apply(&shrunk))
        .await
        .unwrap();
    let spec = after.spec.unwrap();
    assert_eq!(spec.ports, None);
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.selector.unwrap()["app"], "web");
}

#[tokio::test]
async fn apply_requires_field_manager_and_is_idempotent() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let config = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "a": "1" } });
    let created = api
        .patch("c", &PatchParams::apply("m"), &Patch::Apply(&config))
        .await
        .unwrap();
    let again = api
        .patch("c", &PatchParams::apply("m"), &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(
        created.metadata.resource_version,
        again.metadata.resource_version
    );

    // kube refuses to send an apply without a manager; a raw request gets the server's 400.
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/c")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&config).unwrap())
        .unwrap();
    let status = api_error(server.client().request::<Value>(request).await.unwrap_err());
    assert_eq!(status.code, 400);

    let mut stale = config.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let status = api_error(
        api.patch("c", &PatchParams::apply("m"), &Patch::Apply(&stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 409);
}

fn widgets(server: &FakeApiServer) -> Api<DynamicObject> {
    server.install_crd(
        ResourceDef::custom("example.com", &["v1"], "widgets", "Widget").with_status(),
    );
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    Api::default_namespaced_with(
        server.client(),
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    )
}

fn widget(spec: Value, status: Value) -> Value {
    json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" }, "spec": spec, "status": status })
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let server = FakeApiServer::start().await;
    let api = widgets(&server);
    let pp = PatchParams::apply("ctl");
    let created = api
        .patch(
            "w",
            &pp,
            &Patch::Apply(widget(json!({ "size": 1 }), json!({ "ready": true }))),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    assert!(
        created.data.get("status").is_none(),
        "main-resource writes ignore status"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "status": { "ready": true }, "spec": { "size": 9 } });
    let patched = api
        .patch_status("w", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["ready"], true);
    assert_eq!(
        patched.data["spec"]["size"], 1,
        "status writes ignore the rest"
    );
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );

    let merged = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "ready": false } })),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["status"]["ready"], false);

    let spec_change = api
        .patch(
            "w",
            &pp,
            &Patch::Apply(widget(json!({ "size": 2 }), json!({ "ready": true }))),
        )
        .await
        .unwrap();
    assert_eq!(spec_change.metadata.generation, Some(2));
    assert_eq!(spec_change.data["status"]["ready"], false);
}

#[tokio::test]
async fn crd_update_requires_resource_version() {
    let server = FakeApiServer::start().await;
    let api = widgets(&server);
    let object: DynamicObject =
        serde_json::from_value(widget(json!({ "size": 1 }), json!({}))).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    let status = api_error(
        api.replace("w", &PostParams::default(), &object)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
}

fn lease(holder: &str, renew: &str, rv: Option<String>) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "leader", "resourceVersion": rv },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew },
    }))
    .unwrap()
}

const T0: &str = "2025-01-01T00:00:00.000000Z";
const T1: &str = "2025-01-01T00:00:05.000000Z";
const T2: &str = "2025-01-01T00:00:30.000000Z";

#[tokio::test]
async fn lease_takeover_uses_resource_version_preconditions() {
    let server = FakeApiServer::start().await;
    let api: Api<Lease> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let created = api.create(&pp, &lease("a", T0, None)).await.unwrap();
    let status = api_error(api.create(&pp, &lease("b", T0, None)).await.unwrap_err());
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let rv = created.metadata.resource_version.clone();
    let renewed = api
        .replace("leader", &pp, &lease("a", T1, rv.clone()))
        .await
        .unwrap();
    let status = api_error(
        api.replace("leader", &pp, &lease("b", T1, rv))
            .await
            .unwrap_err(),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let taken = api
        .replace(
            "leader",
            &pp,
            &lease("b", T2, renewed.metadata.resource_version),
        )
        .await
        .unwrap();
    assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));

    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!(missing.code, 404);
    assert_eq!(
        missing.message,
        "leases.coordination.k8s.io \"nope\" not found"
    );
    let details = missing.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("nope", "leases")
    );
}

#[tokio::test]
async fn delete_honours_preconditions_and_finalizers() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "c", "finalizers": ["example.com/hold"] },
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &map).await.unwrap();
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_error(api.delete("c", &stale).await.unwrap_err()).code,
        409
    );

    api.delete("c", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("c").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_ne!(
        terminating.metadata.resource_version,
        created.metadata.resource_version
    );

    let release = json!({ "metadata": { "finalizers": null } });
    api.patch("c", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert_eq!(api_error(api.get("c").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors() {
    let server = FakeApiServer::start().await;
    for (name, namespace, app) in [("a", "x", "web"), ("b", "x", "db"), ("c", "y", "web")] {
        server.apply_json(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": namespace, "labels": { "app": app } },
        }));
    }
    let all: Api<ConfigMap> = Api::all(server.client());
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|m| m.metadata.name.unwrap())
            .collect()
    };
    let list = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    assert_eq!(names(list), ["a", "c"]);
    let list = all
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert_eq!(names(list), ["b"]);
    let list = all
        .list(&ListParams::default().labels("app in (db,web),!missing"))
        .await
        .unwrap();
    assert_eq!(names(list), ["a", "b", "c"]);
    let list = all
        .list(&ListParams::default().fields("metadata.namespace=x,metadata.name!=a"))
        .await
        .unwrap();
    assert_eq!(names(list), ["b"]);
    let in_y: Api<ConfigMap> = Api::namespaced(server.client(), "y");
    assert_eq!(
        names(in_y.list(&ListParams::default()).await.unwrap()),
        ["c"]
    );
}

#[tokio::test]
async fn merge_and_json_patches_record_update_managers() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let config = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "a": "1" } });
    api.patch("c", &PatchParams::apply("applier"), &Patch::Apply(&config))
        .await
        .unwrap();
    let edit = json!({ "data": { "a": "2" } });
    api.patch(
        "c",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..Default::default()
        },
        &Patch::Merge(&edit),
    )
    .await
    .unwrap();
    // The editor now owns data.a: applying the old value conflicts.
    let status = api_error(
        api.patch("c", &PatchParams::apply("applier"), &Patch::Apply(&config))
            .await
            .unwrap_err(),
    );
    assert!(
        status.message.contains("conflict with \"editor\""),
        "{}",
        status.message
    );

    // kube's `Patch::Json` needs its `jsonpatch` feature; send the JSON patch raw.
    let ops = json!([{ "op": "add", "path": "/data/b", "value": "3" }]);
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/c")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    let patched: ConfigMap = server.client().request(request).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "3");
}
