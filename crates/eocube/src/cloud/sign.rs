//! Requests signed with a query string: a [`RequestSigner`] (the Planetary Computer's SAS
//! tokens, `catalog::sas`) gives the query, [`Connector`] adds it to every request of a store.
//!
//! Signing happens per request, not when the catalog is searched, so a token that expires
//! while a build runs is renewed before the next request rather than failing every request
//! of a scene searched earlier, and the hrefs (the keys of the COG header cache) stay unsigned.
//! An answer 403 means the server refused the token (expired early, revoked): the signer drops
//! it and the request is sent once more with a fresh one.
//!
//! Owns: adding the query and that one retry. Must not touch: where tokens come from.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};

/// A source of query strings that authorise requests (without the leading `?`).
#[async_trait]
pub trait RequestSigner: Send + Sync + fmt::Debug {
    /// The query to add to the next request; cached by the signer as long as it is good.
    async fn query(&self) -> Result<String, String>;
    /// The server refused a request signed with `query`: do not hand it out again.
    async fn refused(&self, query: &str);
}

/// A shared [`RequestSigner`], comparable by identity (so that configs holding one stay
/// `PartialEq`).
#[derive(Clone, Debug)]
pub struct Signer(pub Arc<dyn RequestSigner>);

impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// object_store's connector with every request signed by `signer`, over the counting
/// connector of [`super::retries`].
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub signer: Signer,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = super::retries::Connector.connect(options)?;
        Ok(HttpClient::new(Service { inner, signer: self.signer.clone() }))
    }
}

#[derive(Debug)]
struct Service {
    inner: HttpClient,
    signer: Signer,
}

fn request_error(reason: String) -> HttpError {
    HttpError::new(HttpErrorKind::Request, std::io::Error::other(reason))
}

/// `req` with `query` as its query string (replacing any it had).
fn signed(req: &HttpRequest, query: &str) -> Result<HttpRequest, HttpError> {
    let uri = req.uri().to_string();
    let path = uri.split_once('?').map_or(uri.as_str(), |(p, _)| p);
    let mut out = HttpRequest::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.headers_mut() = req.headers().clone();
    *out.version_mut() = req.version();
    *out.uri_mut() = format!("{path}?{query}")
        .parse()
        .map_err(|e| request_error(format!("the signed URL of {path} is not a URL: {e}")))?;
    Ok(out)
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let query = self.signer.0.query().await.map_err(request_error)?;
        let resp = self.inner.execute(signed(&req, &query)?).await?;
        if resp.status().as_u16() != 403 {
            return Ok(resp);
        }
        self.signer.0.refused(&query).await;
        let fresh = self.signer.0.query().await.map_err(request_error)?;
        if fresh == query {
            return Ok(resp);
        }
        self.inner.execute(signed(&req, &fresh)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_replaces_any_other() {
        let mut req = HttpRequest::new(object_store::client::HttpRequestBody::empty());
        *req.uri_mut() = "http://h:1/a/b.tif?old=1".parse().unwrap();
        let s = signed(&req, "st=1&sig=abc%2F").unwrap();
        assert_eq!(s.uri().to_string(), "http://h:1/a/b.tif?st=1&sig=abc%2F");
    }
}
