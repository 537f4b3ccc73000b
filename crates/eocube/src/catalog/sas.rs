//! The Planetary Computer's SAS tokens: `GET {token_url}/{collection}` answers
//! `{"token": "st=...&se=...&sig=...", "msft:expiry": "2024-04-16T07:38:26Z"}`, and the token,
//! as the query string of an asset's URL, lets Azure Blob Storage serve it.
//!
//! [`SasSigner`] fetches a collection's token once, hands it to every COG request (it is a
//! [`RequestSigner`]: requests are signed as they are sent, see [`crate::cloud::sign`]), and
//! fetches a new one a little before the old one expires: five minutes before, or half the
//! token's lifetime for short-lived tokens (test stand-ins), so a request never leaves with a
//! token about to lapse. A token the blob server refuses (403) is dropped and renewed at once.
//! One renewal at a time: requests arriving meanwhile wait for it instead of asking too.
//!
//! Owns: the token API client and the cache. Must not touch: COG requests themselves.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::CatalogError;
use crate::cloud::sign::RequestSigner;

/// Renew this long before a token's stated expiry (for tokens that live more than twice this).
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Attempts at the token API before a request fails: the API is one more thing to be briefly
/// unavailable, and a failed token fails the request (then the job's retry).
const ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
struct Token {
    query: String,
    /// When to fetch a new one (before `msft:expiry`).
    renew_at: DateTime<Utc>,
}

/// The SAS token of one collection, cached until shortly before it expires.
#[derive(Debug)]
pub struct SasSigner {
    /// `{token_url}/{collection}`.
    url: String,
    http: reqwest::Client,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl SasSigner {
    /// A signer for `collection` with tokens from `token_url` (e.g.
    /// `https://planetarycomputer.microsoft.com/api/sas/v1/token`).
    pub fn new(token_url: &str, collection: &str, timeout: Duration) -> Result<Self, CatalogError> {
        let url = format!("{}/{}", token_url.trim().trim_end_matches('/'), collection.trim());
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("eocube/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CatalogError::SasToken { url: url.clone(), reason: crate::error_chain(&e) })?;
        Ok(SasSigner { url, http, current: tokio::sync::Mutex::new(None) })
    }

    /// The token API URL of this signer's collection.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current token, fetching a new one when there is none or it is due for renewal.
    pub async fn token(&self) -> Result<String, CatalogError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref()
            && Utc::now() < t.renew_at
        {
            return Ok(t.query.clone());
        }
        let t = self.fetch().await?;
        let query = t.query.clone();
        *current = Some(t);
        Ok(query)
    }

    async fn fetch(&self) -> Result<Token, CatalogError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_once().await {
                Ok(t) => return Ok(t),
                Err((e, transient)) if !transient || attempt >= ATTEMPTS => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
            }
        }
    }

    /// One request; the error and whether trying again may help.
    async fn fetch_once(&self) -> Result<Token, (CatalogError, bool)> {
        let err = |reason: String| CatalogError::SasToken { url: self.url.clone(), reason };
        let resp = self.http.get(&self.url).send().await.map_err(|e| (err(crate::error_chain(&e)), true))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| (err(crate::error_chain(&e)), true))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            let transient = status.as_u16() == 429 || status.is_server_error();
            return Err((err(format!("HTTP {status}: {text}")), transient));
        }
        parse_token(&body, Utc::now()).map_err(|reason| (err(reason), false))
    }
}

/// A token answer, with its renewal time computed from `now`.
fn parse_token(body: &[u8], now: DateTime<Utc>) -> Result<Token, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let query = match v.get("token") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().trim_start_matches('?').to_string(),
        _ => return Err("the answer has no `token` string".into()),
    };
    let expiry = v.get("msft:expiry").and_then(Value::as_str).ok_or("the answer has no `msft:expiry` string")?;
    let expiry = DateTime::parse_from_rfc3339(expiry)
        .map_err(|e| format!("`msft:expiry` {expiry:?} is not an RFC 3339 date-time ({e})"))?
        .with_timezone(&Utc);
    let lifetime = (expiry - now).to_std().unwrap_or(Duration::ZERO);
    let early = RENEW_BEFORE.min(lifetime / 2);
    let renew_at = expiry - chrono::TimeDelta::from_std(early).unwrap_or(chrono::TimeDelta::zero());
    Ok(Token { query, renew_at })
}

#[async_trait]
impl RequestSigner for SasSigner {
    async fn query(&self) -> Result<String, String> {
        self.token().await.map_err(|e| e.to_string())
    }

    async fn refused(&self, query: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.query == query) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn long_tokens_renew_five_minutes_early_short_ones_at_half_life() {
        let now = at("2024-04-16T06:00:00Z");
        let body = br#"{"msft:expiry": "2024-04-16T07:00:00Z", "token": "st=a&se=b&sig=c"}"#;
        let t = parse_token(body, now).unwrap();
        assert_eq!(t.query, "st=a&se=b&sig=c");
        assert_eq!(t.renew_at, at("2024-04-16T06:55:00Z"));
        let short = br#"{"msft:expiry": "2024-04-16T06:00:04Z", "token": "?sig=x"}"#;
        let t = parse_token(short, now).unwrap();
        assert_eq!((t.query.as_str(), t.renew_at), ("sig=x", at("2024-04-16T06:00:02Z")));
        // already expired by our clock: renewed at the next request
        let past = br#"{"msft:expiry": "2024-04-16T05:00:00Z", "token": "sig=y"}"#;
        assert_eq!(parse_token(past, now).unwrap().renew_at, at("2024-04-16T05:00:00Z"));
    }

    #[test]
    fn bad_answers_say_what_is_missing() {
        let now = Utc::now();
        assert!(parse_token(b"<html>", now).unwrap_err().contains("not JSON"));
        assert!(parse_token(br#"{"msft:expiry": "2024-01-01T00:00:00Z"}"#, now).unwrap_err().contains("`token`"));
        assert!(parse_token(br#"{"token": "a"}"#, now).unwrap_err().contains("msft:expiry"));
        assert!(parse_token(br#"{"token": "a", "msft:expiry": "soon"}"#, now).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn the_url_is_the_token_api_and_the_collection() {
        let s = SasSigner::new("https://pc.example/api/sas/v1/token/", "sentinel-2-l2a", Duration::from_secs(5));
        assert_eq!(s.unwrap().url(), "https://pc.example/api/sas/v1/token/sentinel-2-l2a");
    }
}
