//! The gateway's calls to a province node, `Attestation/Attest`, `AttestBatch` and
//! `RecordDisclosures`, read strictly.
//!
//! tonic's unary client decodes the first message of the response and ignores any that
//! follow, so a node could answer two attestations and have the second silently dropped
//! (or, with another client, the second believed). The call is therefore made as a
//! server-streaming call on the same path: the first message is the answer, and the
//! stream is read once more to see whether the node sent another; trailers (the status)
//! are read either way, exactly as the unary client would.

use huren_proto::pb;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::GrpcMethod;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::limit::ConcurrencyLimit;

/// A node's answer to `Attest` (`T` = `AttestResponse`) or `AttestBatch`.
#[derive(Debug)]
pub(crate) struct NodeAnswer<T> {
    /// The first (and for an honest node, only) message.
    pub(crate) response: T,
    /// Whether the node sent a second message after it (a policy violation).
    pub(crate) more: bool,
}

/// A gRPC client of one node endpoint.
pub(crate) type NodeClient = Grpc<ConcurrencyLimit<Channel>>;

/// Calls `Attest` on `client`, reading the response as a stream (see the module docs).
pub(crate) async fn attest(
    client: &mut NodeClient,
    call: Request<pb::AttestRequest>,
) -> Result<Response<NodeAnswer<pb::AttestResponse>>, Status> {
    strictly(client, call, "Attest", "/huren.v1.Attestation/Attest").await
}

/// Calls `AttestBatch` on `client`, read as strictly as [`attest`].
pub(crate) async fn attest_batch(
    client: &mut NodeClient,
    call: Request<pb::AttestBatchRequest>,
) -> Result<Response<NodeAnswer<pb::AttestBatchResponse>>, Status> {
    strictly(client, call, "AttestBatch", "/huren.v1.Attestation/AttestBatch").await
}

/// Calls `RecordDisclosures` on `client` (the checks answered from the cache while the node
/// was down), read as strictly as [`attest`].
pub(crate) async fn record_disclosures(
    client: &mut NodeClient,
    call: Request<pb::RecordDisclosuresRequest>,
) -> Result<Response<NodeAnswer<pb::RecordDisclosuresResponse>>, Status> {
    strictly(client, call, "RecordDisclosures", "/huren.v1.Attestation/RecordDisclosures").await
}

/// One `huren.v1.Attestation` call made as a server-streaming call on its path: the first
/// message is the answer, and the stream is read once more (a second message, or else the
/// trailers, whose error status fails here as the unary client's would).
async fn strictly<Req, Resp>(
    client: &mut NodeClient,
    call: Request<Req>,
    method: &'static str,
    path: &'static str,
) -> Result<Response<NodeAnswer<Resp>>, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    client.ready().await.map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
    let mut call = call;
    call.extensions_mut().insert(GrpcMethod::new("huren.v1.Attestation", method));
    let path = PathAndQuery::from_static(path);
    let response = client.server_streaming::<_, Resp, _>(call, path, tonic_prost::ProstCodec::default()).await?;
    let (metadata, mut stream, extensions) = response.into_parts();
    // As the unary client: no message at all is an error.
    let response = stream.message().await?.ok_or_else(|| Status::internal("Missing response message."))?;
    let more = stream.message().await?.is_some();
    Ok(Response::from_parts(metadata, NodeAnswer { response, more }, extensions))
}
