//! MCS consumer mode end to end: another provider's objects are served, nothing is written.

use std::{fs, time::Duration};

use bowline_app::config::Config;
use bowline_test_support::http_get;

const MEMBER: &str = r#"
apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: east}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.0.5, ports: [{name: http, port: 80}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: cart, namespace: shop}
spec:
  type: ClusterSetIP
  ips: [242.1.0.7]
  ports: [{name: http, protocol: TCP, port: 80}]
status:
  clusters: [{cluster: east}, {cluster: west}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cart-west-abcde
  namespace: shop
  labels: {multicluster.kubernetes.io/service-name: cart, multicluster.kubernetes.io/source-cluster: west}
addressType: IPv4
endpoints: [{addresses: [10.2.0.9]}]
ports: [{name: http, port: 8080, protocol: TCP}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_mode_serves_the_providers_view_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    fs::write(dir.path().join("east/objects.yaml"), MEMBER).unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: set\nmembers: [{manifests: east}]\nmcs: {mode: consumer}\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let addr = running.admin_addr.to_string();
    let mut import = None;
    for _ in 0..400 {
        let addr = addr.clone();
        let (code, body) = tokio::task::spawn_blocking(move || {
            http_get(&addr, "/debug/imports/shop/cart").unwrap()
        })
        .await
        .unwrap();
        if code == 200 {
            import = Some(serde_json::from_str::<serde_json::Value>(&body).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let import = import.expect("the provider's import is served");
    assert_eq!(import["import"]["ips"], serde_json::json!(["242.1.0.7"]));
    assert_eq!(
        import["import"]["servedPorts"]["west"],
        serde_json::json!(["http"])
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !dir.path().join("east/.bowline").exists(),
        "a consumer writes nothing, not even export status"
    );
    running.stop().await;
}
