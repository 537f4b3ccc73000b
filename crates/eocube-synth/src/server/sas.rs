//! A stand-in for the Planetary Computer's SAS token API and for Azure Blob Storage's check of
//! the token, so that a build against `--catalog planetary-computer` runs offline.
//!
//! `GET /token/{collection}` answers `{"token": "se=...&sig=N", "msft:expiry": "..."}` with the
//! expiry [`SasGate::stated_lifetime`] ahead. The token really stops working earlier: after
//! [`SasGate::budget`] file requests, as a token revoked or expired early (clock skew) would, so
//! a client that only watches `msft:expiry` is caught, and a build of any length sees tokens
//! expire mid-build. A `/files/` request whose `sig` is missing, unknown or spent is answered
//! 403 (Azure's `AuthenticationFailed`); [`SasStats`] counts what happened.
//!
//! Owns: the tokens and the check. Must not touch: what the files hold.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::ApiError;

/// How the stand-in hands out and checks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SasGate {
    /// The `msft:expiry` a token is issued with, from now.
    pub stated_lifetime: Duration,
    /// File requests a token serves before it is refused.
    pub budget: u64,
}

/// What the stand-in saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SasStats {
    /// Tokens handed out, by collection.
    pub tokens: HashMap<String, u64>,
    /// File requests served with a good token.
    pub signed: u64,
    /// Refused: no `sig` at all.
    pub unsigned: u64,
    /// Refused: a `sig` the stand-in never issued.
    pub forged: u64,
    /// Refused: a token past its budget.
    pub spent: u64,
}

#[derive(Debug)]
pub(crate) struct SasState {
    pub gate: SasGate,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Uses left per issued token.
    left: HashMap<String, u64>,
    next: u64,
    stats: SasStats,
}

impl SasState {
    pub(crate) fn new(gate: SasGate) -> Self {
        SasState { gate, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stats(&self) -> SasStats {
        self.lock().stats.clone()
    }

    /// The answer of `GET /token/{collection}`.
    pub(crate) fn issue(&self, collection: &str) -> Value {
        let mut inner = self.lock();
        inner.next += 1;
        let sig = format!("standin{}", inner.next);
        inner.left.insert(sig.clone(), self.gate.budget);
        *inner.stats.tokens.entry(collection.to_string()).or_default() += 1;
        let lifetime = chrono::TimeDelta::from_std(self.gate.stated_lifetime).unwrap_or(chrono::TimeDelta::zero());
        let expiry = chrono::Utc::now() + lifetime;
        let se = expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({
            "msft:expiry": se,
            // the shape of a real token: several fields, URL-encoded values, `sig` last
            "token": format!("st=2024-01-01T00%3A00%3A00Z&se={}&sp=rl&sv=2024-05-04&sr=c&sig={sig}", se.replace(':', "%3A")),
        })
    }

    /// Checks the `sig` of a file request's query string; `Err` is the 403 to answer.
    pub(crate) fn check(&self, query: Option<&str>) -> Result<(), ApiError> {
        let sig = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned())
        });
        let refuse = |why: &str| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                format!("Server failed to authenticate the request: {why}"),
            )
        };
        let mut inner = self.lock();
        let Some(sig) = sig else {
            inner.stats.unsigned += 1;
            return Err(refuse("no signature"));
        };
        match inner.left.get_mut(&sig) {
            None => {
                inner.stats.forged += 1;
                Err(refuse("unknown signature"))
            }
            Some(0) => {
                inner.stats.spent += 1;
                Err(refuse("signed expiry time has passed"))
            }
            Some(n) => {
                *n -= 1;
                inner.stats.signed += 1;
                Ok(())
            }
        }
    }
}
