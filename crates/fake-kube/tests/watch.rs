//! List and watch through kube-runtime's watcher: initial list, events, bookmarks, resuming,
//! 410 after compaction, metadata-only watches, missing CRDs.

use std::time::Duration;

use bowline_fake_kube::{FakeApiServer, ResourceDef};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn slice(name: &str, address: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": "default", "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [address] }],
    })
}

fn slices(server: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<EndpointSlice>(&());
    Api::namespaced_with(server.client(), "default", &resource)
}

/// The next item, failing the test if none comes within `WAIT`.
async fn next<S, T>(stream: &mut S) -> T
where
    S: Stream<Item = T> + Unpin,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event within the wait")
        .expect("the stream goes on")
}

/// A short name for a watcher event: `Init`, `InitApply(a)`, `Apply(a)`, `Delete(a)`, `Error(code)`.
fn describe(event: &Result<Event<DynamicObject>, watcher::Error>) -> String {
    let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
    match event {
        Ok(Event::Init) => "Init".to_owned(),
        Ok(Event::InitApply(o)) => format!("InitApply({})", name(o)),
        Ok(Event::InitDone) => "InitDone".to_owned(),
        Ok(Event::Apply(o)) => format!("Apply({})", name(o)),
        Ok(Event::Delete(o)) => format!("Delete({})", name(o)),
        Err(error) => format!("Error({error})"),
    }
}

#[tokio::test]
async fn watcher_lists_then_follows_changes() {
    let server = FakeApiServer::start().await;
    server.apply_json(slice("a", "10.0.0.1"));
    server.apply_json(slice("b", "10.0.0.2"));
    let mut events = watcher::watcher(slices(&server), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(describe(&next(&mut events).await));
    }
    assert_eq!(seen, ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]);

    server.apply_json(slice("c", "10.0.0.3"));
    server.apply_json(slice("a", "10.0.0.9"));
    server.delete("discovery.k8s.io/v1", "EndpointSlice", Some("default"), "b");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut events).await));
    }
    assert_eq!(seen, ["Apply(c)", "Apply(a)", "Delete(b)"]);
    let list_requests = server
        .requests()
        .iter()
        .filter(|r| r.verb == "list")
        .count();
    assert_eq!(list_requests, 1);
}

#[tokio::test]
async fn deleted_event_carries_last_state_with_new_resource_version() {
    let server = FakeApiServer::start().await;
    let created = server.apply_json(slice("a", "10.0.0.1"));
    let api = slices(&server);
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    server.delete(
        "discovery.k8s.io/v1",
        "endpointslices",
        Some("default"),
        "a",
    );
    let WatchEvent::Deleted(object) = next(&mut stream).await.unwrap() else {
        panic!("expected DELETED");
    };
    assert_eq!(object.data["endpoints"][0]["addresses"][0], "10.0.0.1");
    let deleted_rv: u64 = object.metadata.resource_version.unwrap().parse().unwrap();
    assert!(deleted_rv > rv.parse().unwrap());
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let server = FakeApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(50));
    server.apply_json(slice("a", "10.0.0.1"));
    let api = slices(&server);
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Bookmark(bookmark) = next(&mut stream).await.unwrap() else {
        panic!("expected a bookmark");
    };
    assert_eq!(bookmark.metadata.resource_version, rv);
    assert_eq!(bookmark.types.kind, "EndpointSlice");

    server.apply_json(slice("b", "10.0.0.2"));
    let WatchEvent::Added(added) = next(&mut stream).await.unwrap() else {
        panic!("expected ADDED");
    };
    let WatchEvent::Bookmark(bookmark) = next(&mut stream).await.unwrap() else {
        panic!("expected a bookmark");
    };
    assert_eq!(
        Some(bookmark.metadata.resource_version),
        added.metadata.resource_version
    );
}

#[tokio::test]
async fn watcher_resumes_without_relisting_when_the_stream_times_out() {
    let server = FakeApiServer::start().await;
    server.apply_json(slice("a", "10.0.0.1"));
    let config = watcher::Config::default().timeout(1);
    let mut events = watcher::watcher(slices(&server), config).boxed();
    for _ in 0..3 {
        next(&mut events).await.unwrap();
    }
    server.apply_json(slice("b", "10.0.0.2"));
    assert_eq!(describe(&next(&mut events).await), "Apply(b)");
    // Outlive the watch's timeoutSeconds=1, change something meanwhile: the watcher
    // watches again from the last resourceVersion it saw and gets the change replayed.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    server.apply_json(slice("c", "10.0.0.3"));
    assert_eq!(describe(&next(&mut events).await), "Apply(c)");
    let requests = server.requests();
    let verbs: Vec<_> = requests.iter().map(|r| r.verb.as_str()).collect();
    assert_eq!(
        verbs.iter().filter(|v| **v == "list").count(),
        1,
        "{verbs:?}"
    );
    assert!(
        verbs.iter().filter(|v| **v == "watch").count() >= 2,
        "{verbs:?}"
    );
}

#[tokio::test]
async fn watcher_relists_after_compaction_and_drops_objects_deleted_meanwhile() {
    let server = FakeApiServer::start().await;
    server.apply_json(slice("a", "10.0.0.1"));
    server.apply_json(slice("b", "10.0.0.2"));
    let mut events = watcher::watcher(slices(&server), watcher::Config::default()).boxed();
    for _ in 0..4 {
        next(&mut events).await.unwrap();
    }

    server.set_reachable(false).await;
    server.delete("discovery.k8s.io/v1", "EndpointSlice", Some("default"), "a");
    server.apply_json(slice("c", "10.0.0.3"));
    server.compact();
    // The cut stream ends; watching again fails while the server is unreachable.
    let error = describe(&next(&mut events).await);
    assert!(error.starts_with("Error("), "{error}");
    server.set_reachable(true).await;

    let mut seen = Vec::new();
    loop {
        let event = describe(&next(&mut events).await);
        let done = event == "InitDone";
        if !event.starts_with("Error(failed to start watching") {
            seen.push(event);
        }
        if done {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen[0].contains("410") || seen[0].contains("too old resource version"),
        "{seen:?}"
    );
    assert_eq!(
        seen[1..],
        ["Init", "InitApply(b)", "InitApply(c)", "InitDone"]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_expired() {
    let server = FakeApiServer::start().await;
    server.apply_json(slice("a", "10.0.0.1"));
    server.compact();
    let api = slices(&server);
    let mut stream = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Error(status) = next(&mut stream).await.unwrap() else {
        panic!("expected ERROR");
    };
    assert_eq!(status.code, 410);
    assert_eq!(status.reason, "Expired");
    assert!(
        status.message.starts_with("too old resource version: 1 ("),
        "{}",
        status.message
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn label_selector_watch_turns_unmatching_into_deleted() {
    let server = FakeApiServer::start().await;
    let api = slices(&server);
    let params = WatchParams::default()
        .labels("kubernetes.io/service-name=web")
        .disable_bookmarks();
    let rv = server.resource_version().to_string();
    let mut stream = api.watch(&params, &rv).await.unwrap().boxed();
    server.apply_json(slice("a", "10.0.0.1"));
    let mut moved = slice("a", "10.0.0.1");
    moved["metadata"]["labels"]["kubernetes.io/service-name"] = json!("db");
    server.apply_json(moved);
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Deleted(_)
    ));
}

fn service_import_crd() -> ResourceDef {
    ResourceDef::custom(
        "multicluster.x-k8s.io",
        &["v1alpha1", "v1beta1"],
        "serviceimports",
        "ServiceImport",
    )
}

fn service_imports(server: &FakeApiServer, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("multicluster.x-k8s.io", version, "ServiceImport");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "serviceimports");
    Api::namespaced_with(server.client(), "default", &resource)
}

#[tokio::test]
async fn missing_crd_answers_404_and_the_watcher_reports_it() {
    let server = FakeApiServer::start().await;
    let api = service_imports(&server, "v1alpha1");
    let error = api.list(&ListParams::default()).await.unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("expected an API error, got {error}");
    };
    assert_eq!(status.code, 404);

    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(describe(&next(&mut events).await), "Init");
    let error = next(&mut events).await.unwrap_err();
    assert!(
        matches!(&error, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404),
        "{error}"
    );

    server.install_crd(service_import_crd());
    server.apply_json(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "type": "ClusterSetIP" },
    }));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut events).await));
    }
    assert_eq!(seen, ["Init", "InitApply(web)", "InitDone"]);
}

#[tokio::test]
async fn both_crd_versions_serve_the_same_objects() {
    let server = FakeApiServer::start().await;
    server.install_crd(service_import_crd());
    let alpha = service_imports(&server, "v1alpha1");
    let beta = service_imports(&server, "v1beta1");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": { "name": "web" },
        "spec": { "type": "ClusterSetIP" },
    }))
    .unwrap();
    alpha.create(&Default::default(), &object).await.unwrap();
    let read = beta.get("web").await.unwrap();
    assert_eq!(
        read.types.unwrap().api_version,
        "multicluster.x-k8s.io/v1beta1"
    );
    assert_eq!(read.data["spec"]["type"], "ClusterSetIP");
    assert_eq!(read.metadata.generation, Some(1));
    assert!(read.metadata.uid.is_some() && read.metadata.creation_timestamp.is_some());
}

#[tokio::test]
async fn metadata_watcher_sees_pods_as_partial_object_metadata() {
    let server = FakeApiServer::start().await;
    server.apply_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p1", "namespace": "default", "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "c", "image": "i" }] },
    }));
    let pods: Api<Pod> = Api::all(server.client());
    let list = pods.list_metadata(&ListParams::default()).await.unwrap();
    drop(pods);
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(
        list.items[0].types.as_ref().unwrap().kind,
        "PartialObjectMetadata"
    );

    let mut events = watcher::watcher(
        Api::<PartialObjectMeta<Pod>>::all(server.client()),
        watcher::Config::default(),
    )
    .boxed();
    let mut names = Vec::new();
    loop {
        match next(&mut events).await.unwrap() {
            Event::InitApply(meta) => names.push(meta.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["p1"]);
    server.apply_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p2", "namespace": "other" },
        "spec": { "containers": [] },
    }));
    let Event::Apply(meta): Event<PartialObjectMeta<Pod>> = next(&mut events).await.unwrap() else {
        panic!("expected Apply");
    };
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
    assert_eq!(meta.metadata.namespace.as_deref(), Some("other"));
}

#[tokio::test]
async fn paginated_list_and_expired_continue_token() {
    let server = FakeApiServer::start().await;
    for i in 0..5 {
        server.apply_json(slice(&format!("s{i}"), "10.0.0.1"));
    }
    let api = slices(&server);
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items[0].metadata.name.as_deref(), Some("s2"));
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );

    server.apply_json(slice("s9", "10.0.0.1"));
    server.compact();
    let error = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert!(matches!(error, kube::Error::Api(s) if s.code == 410 && s.reason == "Expired"));
}

#[tokio::test]
async fn watch_lines_put_the_type_before_the_object_as_the_api_server_does() {
    let server = FakeApiServer::start().await;
    server.apply_json(slice("a", "10.0.0.1"));
    let request = http::Request::get(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=1&resourceVersion=0&timeoutSeconds=1",
    )
    .body(Vec::new())
    .unwrap();
    let text = server
        .client()
        .request_text(request)
        .await
        .expect("the watch answers");
    let first = text.lines().next().expect("an event for the slice");
    assert!(
        first.starts_with(r#"{"type":"ADDED","object":{"#),
        "clients that keep the object as raw text read it only after its type: {first}"
    );
}
