//! RESOURCE_EXHAUSTED for oversized requests, as gRPC convention has it.
//!
//! Every Huren server caps what it decodes (`max_decoding_message_size`). tonic refuses a
//! request message over that cap with OUT_OF_RANGE ("Error, decoded message length too
//! large: found N bytes, the limit is: M bytes"); gRPC's code for a message over a size
//! limit is RESOURCE_EXHAUSTED. [`OversizeLayer`], applied to a whole server with
//! `Server::builder().layer(OversizeLayer)`, rewrites exactly those statuses and nothing else:
//!
//! - in the response headers: a trailers-only answer, which is what tonic sends when the
//!   request of a unary or server-streaming call is refused before the handler runs;
//! - in the trailers: a client- or bidi-streaming handler that passes the decode error on
//!   through its response stream.
//!
//! The new message keeps both sizes: "request message length too large: found N bytes,
//! limit M bytes; …". Anything unrecognised (another code, another message, status details)
//! passes through untouched, so a tonic upgrade that rewords its message shows up as the old
//! OUT_OF_RANGE in tests rather than as a wrong rewrite.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

const GRPC_STATUS: &str = "grpc-status";
const GRPC_STATUS_DETAILS: &str = "grpc-status-details-bin";
/// What tonic's decoder says when a message is over `max_decoding_message_size` (tonic 0.14).
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// A tower layer answering RESOURCE_EXHAUSTED (not tonic's OUT_OF_RANGE) to oversized requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct OversizeLayer;

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize { inner }
    }
}

/// The service [`OversizeLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct Oversize<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Oversize<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<OversizeBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        ResponseFuture { inner: self.inner.call(request) }
    }
}

pin_project_lite::pin_project! {
    /// Rewrites a trailers-only answer's headers once the inner service has answered.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<OversizeBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.project().inner.poll(cx))?;
        rewrite(response.headers_mut());
        Poll::Ready(Ok(response.map(|inner| OversizeBody { inner })))
    }
}

pin_project_lite::pin_project! {
    /// A response body whose trailers get the same rewrite as the headers.
    #[derive(Debug)]
    pub struct OversizeBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B: Body> Body for OversizeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut frame = ready!(self.project().inner.poll_frame(cx));
        if let Some(trailers) = frame.as_mut().and_then(|f| f.as_mut().ok()).and_then(Frame::trailers_mut) {
            rewrite(trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Replaces tonic's decode-limit status in `headers` (response headers or trailers), if
/// that is what they carry, by RESOURCE_EXHAUSTED with the same sizes.
fn rewrite(headers: &mut HeaderMap) {
    // Cheap checks first: nearly every response is OK or another code.
    let out_of_range = headers.get(GRPC_STATUS).is_some_and(|v| Code::from_bytes(v.as_bytes()) == Code::OutOfRange);
    if !out_of_range || headers.contains_key(GRPC_STATUS_DETAILS) {
        return;
    }
    let Some((found, limit)) = Status::from_header_map(headers).and_then(|s| sizes(s.message())) else {
        return;
    };
    let status = Status::resource_exhausted(format!(
        "request message length too large: found {found} bytes, limit {limit} bytes; \
         the request was refused, resending it unchanged will fail again"
    ));
    // Cannot fail: the message is ASCII and percent-encoded by tonic.
    let _ = status.add_header(headers);
}

/// The found and limit sizes of tonic's decode-limit message.
fn sizes(message: &str) -> Option<(usize, usize)> {
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use tower::{Layer as _, ServiceExt as _};

    use http::HeaderValue;

    use super::*;

    fn tonic_too_large(found: usize, limit: usize) -> Status {
        Status::out_of_range(format!(
            "Error, decoded message length too large: found {found} bytes, the limit is: {limit} bytes"
        ))
    }

    /// A body of data frames then trailers.
    struct Frames(VecDeque<Frame<&'static [u8]>>);

    impl Body for Frames {
        type Data = &'static [u8];
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    async fn through_layer(status_in_headers: Option<Status>, trailers: Option<Status>) -> (Status, Option<Status>) {
        let service = tower::service_fn(move |_: http::Request<()>| {
            let mut frames = VecDeque::from([Frame::data(&b"\0\0\0\0\0"[..])]);
            if let Some(status) = &trailers {
                let mut map = HeaderMap::new();
                status.add_header(&mut map).unwrap();
                frames.push_back(Frame::trailers(map));
            }
            let mut response = http::Response::new(Frames(frames));
            if let Some(status) = &status_in_headers {
                status.add_header(response.headers_mut()).unwrap();
            } else {
                response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
            }
            async move { Ok::<_, Infallible>(response) }
        });
        let response = OversizeLayer.layer(service).oneshot(http::Request::new(())).await.unwrap();
        let (parts, mut body) = response.into_parts();
        let head = Status::from_header_map(&parts.headers).unwrap_or_else(|| Status::ok("no status in headers"));
        let mut tail = None;
        let mut body = Pin::new(&mut body);
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Ok(trailers) = frame.unwrap().into_trailers() {
                tail = Status::from_header_map(&trailers);
            }
        }
        (head, tail)
    }

    #[test]
    fn reads_the_sizes_from_tonics_message() {
        assert_eq!(sizes(tonic_too_large(1_048_590, 65_536).message()), Some((1_048_590, 65_536)));
        assert_eq!(sizes("Error, encoded message length too large: found 9 bytes, the limit is: 8 bytes"), None);
        assert_eq!(sizes("Error, decoded message length too large: found many bytes, the limit is: 8 bytes"), None);
    }

    #[tokio::test]
    async fn rewrites_a_trailers_only_answer() {
        let (head, tail) = through_layer(Some(tonic_too_large(1_048_590, 65_536)), None).await;
        assert_eq!(head.code(), Code::ResourceExhausted);
        assert!(
            head.message().starts_with("request message length too large: found 1048590 bytes, limit 65536 bytes; "),
            "{}",
            head.message()
        );
        assert!(tail.is_none());
    }

    #[tokio::test]
    async fn rewrites_trailers() {
        let (head, tail) = through_layer(None, Some(tonic_too_large(9_437_200, 8_388_608))).await;
        assert_eq!(head.message(), "no status in headers");
        let tail = tail.expect("trailers");
        assert_eq!(tail.code(), Code::ResourceExhausted);
        assert!(tail.message().contains("found 9437200 bytes, limit 8388608 bytes"), "{}", tail.message());
    }

    #[tokio::test]
    async fn leaves_every_other_status_alone() {
        let others = [
            Status::ok(""),
            Status::out_of_range("sequence 9 is past the end of the log"),
            Status::invalid_argument("Error, decoded message length too large: found 9 bytes, the limit is: 8 bytes"),
            Status::with_details(Code::OutOfRange, tonic_too_large(9, 8).message(), vec![1, 2, 3].into()),
        ];
        for other in others {
            let (head, tail) = through_layer(Some(other.clone()), Some(other.clone())).await;
            for seen in [head, tail.expect("trailers")] {
                assert_eq!(
                    (seen.code(), seen.message(), seen.details()),
                    (other.code(), other.message(), other.details())
                );
            }
        }
    }
}
