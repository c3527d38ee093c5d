//! The one server builder: every Huren gRPC server (node, gateway) is assembled here.
//!
//! [`Services`] collects the server's own gRPC services; [`Services::serve`] adds what every
//! server has — mutual TLS with handshakes off the accept path ([`crate::tls::incoming`]),
//! handshakes admitted under [`crate::handshake::HandshakeLimits`] ([`Services::handshake_limits`]),
//! `grpc.health.v1` reporting each service as serving, reflection (v1 and v1alpha) listing
//! exactly the services served, the per-connection stream cap, the oversize layer — and runs
//! until the shutdown future resolves, then drains in-flight calls.

use std::convert::Infallible;
use std::future::Future;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::tls::{self, HandshakeLimits, Revocations, TlsIdentity};

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The TLS server configuration could not be built from the identity.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The reflection service could not be built from the file descriptor sets.
    #[error("gRPC reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The HTTP/2 server failed while serving.
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The gRPC services of one server, gathered before it serves.
#[derive(Default)]
pub struct Services {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    handshakes: HandshakeLimits,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("names", &self.names).finish_non_exhaustive()
    }
}

impl Services {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated tonic server (`FooServer::new(...)`), reported healthy and listed
    /// by reflection under its full name.
    // A builder step taking a service, not another `Services`: not `std::ops::Add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Admits TLS handshakes under `limits` instead of the defaults.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.handshakes = limits;
        self
    }

    /// Names of the services added, in order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves over mutual TLS on `listener` until `shutdown` resolves, then drains
    /// in-flight calls and returns. `revocations` is consulted on every handshake.
    pub async fn serve(
        self,
        listener: TcpListener,
        identity: &TlsIdentity,
        revocations: Revocations,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let config = tls::server_config(identity, revocations.clone())?;
        let Self { mut routes, names, handshakes } = self;
        let incoming = tls::incoming_with(
            listener,
            config,
            identity.root.clone(),
            identity.identity.trust_domain.clone(),
            revocations,
            handshakes,
        );
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &names {
            health.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
        }
        // Reflection lists what this server serves, and only that; both protocol versions,
        // because stock clients still speak v1alpha.
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(huren_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection");
            for name in &names {
                builder = builder.with_service_name(*name);
            }
            builder
        };
        routes.add_service(health_service);
        routes.add_service(reflection().build_v1()?);
        routes.add_service(reflection().build_v1alpha()?);
        tonic::transport::Server::builder()
            // Back-pressure: a client with more calls in flight waits for stream capacity
            // (HTTP/2 flow control); nothing is refused or dropped for it.
            .max_concurrent_streams(Some(tls::MAX_CONCURRENT_STREAMS))
            .layer(crate::oversize::OversizeLayer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
