//! The HTTP client Reprise uses to talk to SDK deployments. `http://` deployments are spoken to
//! over HTTP/2 cleartext with prior knowledge (the Rust SDK's server speaks nothing else);
//! `https://` ones over TLS, with ALPN choosing HTTP/2 or HTTP/1.1. One connection pool serves
//! discovery and, later, invocation streams.
//!
//! [`ServiceClient::discover`] runs discovery: `GET {uri}/discover` with the manifest versions
//! Reprise understands, a bounded wait and a bounded response body, and returns the checked
//! [`Endpoint`]. Every failure says what went wrong in words an operator can act on.

mod lanes;
mod quick_ack;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited, combinators::BoxBody};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quick_ack::QuickAckConnector;
use reprise_service_protocol::{DISCOVER_ACCEPT, Endpoint, ManifestError, parse_manifest};

/// The body type of requests to deployments.
pub type RequestBody = BoxBody<Bytes, std::io::Error>;

/// Why a request to a deployment failed before a response arrived.
pub type SendError = hyper_util::client::legacy::Error;

/// Largest discovery response accepted.
const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error response is quoted back.
const ERROR_BODY_QUOTE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("`{0}` is not a usable deployment URI: use http://host:port or https://host:port")]
    InvalidUri(String),
    #[error("cannot reach the deployment at {uri}: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("the deployment at {uri} did not answer discovery within {timeout:?}")]
    Timeout { uri: String, timeout: Duration },
    #[error("the deployment at {uri} answered discovery with HTTP {status}: {body}")]
    Status {
        uri: String,
        status: StatusCode,
        body: String,
    },
    #[error("the deployment at {uri} sent a discovery response larger than {limit} bytes")]
    TooLarge { uri: String, limit: usize },
    #[error("the deployment at {uri} answered discovery with an unusable manifest: {source}")]
    Manifest { uri: String, source: ManifestError },
}

#[derive(Debug, Clone)]
pub struct ServiceClientOptions {
    pub connect_timeout: Duration,
    pub discovery_timeout: Duration,
}

impl Default for ServiceClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            discovery_timeout: Duration::from_secs(30),
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub endpoint: Endpoint,
    /// The SDK's `x-restate-server` header (`restate-sdk-rust/0.13.0`).
    pub sdk_version: Option<String>,
}

pub use lanes::{ResponseBody, STREAMS_PER_CONNECTION};

/// Cheap to clone; clones share the connection pools.
#[derive(Clone)]
pub struct ServiceClient {
    /// Requests over h2c, spread over as many connections as they need.
    lanes: Arc<lanes::Lanes>,
    tls: Client<HttpsConnector<QuickAckConnector>, RequestBody>,
    options: ServiceClientOptions,
}

impl ServiceClient {
    pub fn new(options: ServiceClientOptions) -> Result<Self, std::io::Error> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(options.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let http = QuickAckConnector(http);
        let lanes = lanes::Lanes::new(http.clone());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let tls = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            lanes,
            tls,
            options,
        })
    }

    /// Sends an invocation stream to a deployment: over TLS for `https://`, else over h2c on
    /// the least busy of the deployment's connections ([`lanes`]).
    pub async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        if request.uri().scheme_str() == Some("https") {
            let response = self.tls.request(request).await?;
            Ok(response.map(ResponseBody::untracked))
        } else {
            self.lanes.send(request).await
        }
    }

    /// Runs discovery against the deployment at `uri`, sending `headers` along.
    pub async fn discover(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Discovered, DiscoveryError> {
        let target = endpoint_path(uri, "discover")
            .ok_or_else(|| DiscoveryError::InvalidUri(uri.to_string()))?;
        let shown = uri.to_string();
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(target)
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|_| DiscoveryError::InvalidUri(shown.clone()))?;
        request.headers_mut().extend(headers.clone());
        request
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static(DISCOVER_ACCEPT));

        let timeout = self.options.discovery_timeout;
        let exchange = async {
            let response = self
                .send(request)
                .await
                .map_err(|err| DiscoveryError::Unreachable {
                    uri: shown.clone(),
                    reason: error_chain(&err),
                })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_MANIFEST_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    if err.is::<http_body_util::LengthLimitError>() {
                        DiscoveryError::TooLarge {
                            uri: shown.clone(),
                            limit: MAX_MANIFEST_BYTES,
                        }
                    } else {
                        DiscoveryError::Unreachable {
                            uri: shown.clone(),
                            reason: err.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok::<_, DiscoveryError>((parts, bytes))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout {
                uri: shown.clone(),
                timeout,
            })??;
        if parts.status != StatusCode::OK {
            let quoted = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTE)]);
            return Err(DiscoveryError::Status {
                uri: shown,
                status: parts.status,
                body: quoted.trim().to_owned(),
            });
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let endpoint = parse_manifest(content_type, &body)
            .map_err(|source| DiscoveryError::Manifest { uri: shown, source })?;
        let sdk_version = parts
            .headers
            .get("x-restate-server")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Discovered {
            endpoint,
            sdk_version,
        })
    }
}

/// `{base}/{suffix}`: one trailing `/` of the base path is dropped and the query is kept.
/// `None` for a URI without an http(s) scheme or a host.
pub fn endpoint_path(base: &Uri, suffix: &str) -> Option<Uri> {
    if !matches!(base.scheme_str(), Some("http" | "https")) || base.host().is_none() {
        return None;
    }
    let path = base.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let path_and_query = match base.query() {
        Some(query) => format!("{path}/{suffix}?{query}"),
        None => format!("{path}/{suffix}"),
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The error and its sources, joined, since hyper's top-level message alone is vague.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths_like_the_reference() {
        let join = |base: &str| {
            endpoint_path(&base.parse().expect("uri"), "discover").map(|u| u.to_string())
        };
        assert_eq!(
            join("http://h:9080").as_deref(),
            Some("http://h:9080/discover")
        );
        assert_eq!(
            join("http://h:9080/").as_deref(),
            Some("http://h:9080/discover")
        );
        assert_eq!(
            join("https://h/base/?x=1").as_deref(),
            Some("https://h/base/discover?x=1")
        );
        assert_eq!(join("ftp://h/"), None);
        assert_eq!(join("/relative"), None);
    }
}
