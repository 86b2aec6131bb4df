//! ADS over TLS with a serving certificate from Bowline's root CA, and the caller of a stream
//! (transport, peer, bearer token) as the registration rule (`bowline_app::auth`) sees it.

use std::{pin::Pin, sync::Arc};

use bowline_app::auth::{authorize_registration, caller_of};
use bowline_vm::{
    ca::{DISCOVERY_HOST, RootCa, now},
    tokens::TokenStore,
};
use bowline_xds::{
    resources::type_url,
    server::Ads,
    status::Connections,
    transport::{Origin, TlsIdentity, Transport, serve_with},
};
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        aggregated_discovery_service_server::{
            AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
        },
    },
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::Stream;
use tonic::{
    Code, Request, Response, Status, Streaming,
    codegen::http,
    transport::{Certificate, Channel, ClientTlsConfig},
};

struct Server {
    addr: std::net::SocketAddr,
    root_pem: String,
    tokens: Arc<TokenStore>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start<S>(service: impl FnOnce(Arc<TokenStore>) -> S, transport: Transport) -> Server
where
    S: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = RootCa::load_or_create(dir.path()).unwrap();
    let serving = ca
        .issue_serving(
            &[DISCOVERY_HOST.into(), "localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            now(),
        )
        .unwrap();
    let tokens = Arc::new(TokenStore::open(dir.path()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let origin = Origin { transport };
    let tls = (transport == Transport::Tls).then_some(TlsIdentity {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        client_ca_pem: None,
    });
    tokio::spawn(serve_with(
        bowline_xds::transport::lenient(listener),
        service(tokens.clone()),
        origin,
        tls,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        root_pem: ca.cert_pem().to_string(),
        tokens,
        _dir: dir,
        _stop: stop,
    }
}

async fn tls_channel(addr: std::net::SocketAddr, root_pem: &str) -> Result<Channel, String> {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(root_pem))
                .domain_name(DISCOVERY_HOST),
        )
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn lds_request() -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "vm-1".into(),
            ..Default::default()
        }),
        type_url: type_url::LISTENER.into(),
        ..Default::default()
    }
}

async fn first_response(
    channel: Channel,
    token: Option<&str>,
) -> Result<DiscoveryResponse, Status> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut request = Request::new(tokio_stream::iter([lds_request()]));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let mut inbound = client
        .stream_aggregated_resources(request)
        .await?
        .into_inner();
    Ok(inbound.message().await?.expect("a response"))
}

#[tokio::test]
async fn ads_answers_over_tls_to_a_client_trusting_the_root() {
    let (_snapshots, snapshot) = watch::channel(Arc::new(bowline_views::ClusterSet::default()));
    let server = start(
        |_| Ads::new(snapshot, Connections::default()),
        Transport::Tls,
    )
    .await;
    let channel = tls_channel(server.addr, &server.root_pem).await.unwrap();
    let response = first_response(channel, None).await.unwrap();
    assert_eq!(response.type_url, type_url::LISTENER);
    assert_eq!(response.version_info, "1");
}

#[tokio::test]
async fn a_client_without_the_root_fails_the_handshake() {
    let (_snapshots, snapshot) = watch::channel(Arc::new(bowline_views::ClusterSet::default()));
    let server = start(
        |_| Ads::new(snapshot, Connections::default()),
        Transport::Tls,
    )
    .await;
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = RootCa::load_or_create(other.path()).unwrap();
    let err = tls_channel(server.addr, stranger.cert_pem())
        .await
        .unwrap_err();
    assert!(err.contains("InvalidCertificate"), "{err}");
    // The server still serves clients that trust it.
    let channel = tls_channel(server.addr, &server.root_pem).await.unwrap();
    first_response(channel, None).await.unwrap();
}

#[tokio::test]
async fn plaintext_clients_cannot_speak_to_the_tls_port() {
    let (_snapshots, snapshot) = watch::channel(Arc::new(bowline_views::ClusterSet::default()));
    let server = start(
        |_| Ads::new(snapshot, Connections::default()),
        Transport::Tls,
    )
    .await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    let result = match channel {
        Ok(channel) => first_response(channel, None).await.map(|_| ()),
        Err(e) => Err(Status::unavailable(e.to_string())),
    };
    assert!(result.is_err());
}

/// A handler that registers group `web` in namespace `shop` for every stream, answering
/// with who the caller was, or the refusal.
struct Registering(Arc<TokenStore>);

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaResponses = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Registering {
    type StreamAggregatedResourcesStream = Responses;
    type DeltaAggregatedResourcesStream = DeltaResponses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let who = caller_of(
            request.metadata(),
            request.extensions(),
            request.remote_addr(),
            Some(&self.0),
        );
        let transport = bowline_xds::transport::transport(&request);
        authorize_registration(&who, "vm-1", "web", "shop", "default")?;
        let response = DiscoveryResponse {
            version_info: format!("{transport:?}: {who}"),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(response)]))))
    }

    async fn delta_aggregated_resources(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

#[tokio::test]
async fn the_handler_sees_the_transport_and_the_token_scope_and_tls_always_needs_one() {
    let server = start(
        |t| AggregatedDiscoveryServiceServer::new(Registering(t)),
        Transport::Tls,
    )
    .await;
    let at = jiff::Timestamp::now();
    let hour = std::time::Duration::from_secs(3600);
    let (web, record) = server.tokens.issue("web", "shop", hour, at).unwrap();
    let (db, _) = server.tokens.issue("db", "shop", hour, at).unwrap();
    let (other_ns, _) = server.tokens.issue("web", "bank", hour, at).unwrap();
    let channel = || tls_channel(server.addr, &server.root_pem);

    let response = first_response(channel().await.unwrap(), Some(&web))
        .await
        .unwrap();
    assert_eq!(
        response.version_info,
        format!(
            "Tls: token {} (group \"web\" in namespace \"shop\")",
            record.id
        )
    );
    for token in [&db, &other_ns] {
        let status = first_response(channel().await.unwrap(), Some(token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().starts_with(
                "registration of group \"web\" in namespace \"shop\" refused: the token"
            ),
            "{status:?}"
        );
    }
    let status = first_response(channel().await.unwrap(), Some("bwl.0123456789abcdef.AAAA"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("unknown to this control plane"));
    // Without a token, even a loopback peer is refused on the TLS port: a local forwarder
    // would make every remote caller look like one.
    let status = first_response(channel().await.unwrap(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn plaintext_from_loopback_is_trusted_and_tokens_still_scope() {
    let server = start(
        |t| AggregatedDiscoveryServiceServer::new(Registering(t)),
        Transport::Plaintext,
    )
    .await;
    let channel = || async {
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let response = first_response(channel().await, None).await.unwrap();
    assert_eq!(response.version_info, "Plaintext: loopback connection");
    let (db, _) = server
        .tokens
        .issue(
            "db",
            "shop",
            std::time::Duration::from_secs(60),
            jiff::Timestamp::now(),
        )
        .unwrap();
    let status = first_response(channel().await, Some(&db))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}
