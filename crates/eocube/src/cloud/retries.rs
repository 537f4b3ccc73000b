//! Failed request attempts: counted, so that the run report can say how often each job's
//! requests were retried (object_store retries inside one call and tells nobody), and made
//! retryable when an answer breaks off in its body.
//!
//! **Counting.** A job runs inside [`counted`]. Every request attempt made inside it, through a
//! client of [`super`] (their [`Connector`] sits under object_store's retry loop) or through
//! the STAC client (its own retry loop calls [`note`]), that fails transiently adds one: an
//! answer 5xx, 429 or 408, a transport error (refused, reset, timed out, silent past the
//! request timeout), or a body that breaks off. Each such attempt was retried, by the client
//! or, once the client's retries ran out, by the job. The count follows the job's task (a
//! tokio task-local), not the client: clients are shared by every job of a process. Work a
//! library spawns onto tasks of its own (Icechunk's) is counted in [`total`] only.
//!
//! **Whole answers.** object_store's retry loop sees only the head of an answer: it resumes a
//! successful GET whose body breaks off, but a listing, the body of an error answer (the 404 of
//! a missing object) or anything else that breaks off after its head surfaced as a failed
//! operation (a build through tests/faults.rs failed on a reset 404 body). [`Connector`] reads
//! every answer whole inside the attempt, so a body that breaks off fails the attempt, which
//! object_store retries like any transport error (idempotent requests only: a conditional write
//! whose answer was lost is not sent twice). eocube's answers are a few MB at most (COG
//! windows, chunks, metadata), so nothing large is held that would not be held anyway.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    ReqwestConnector,
};

tokio::task_local! {
    static COUNTER: Arc<AtomicU64>;
}

/// Failed attempts in this process, counted or not.
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Runs `fut` and counts the failed request attempts made inside it.
pub async fn counted<F: Future>(fut: F) -> (F::Output, u64) {
    let counter = Arc::new(AtomicU64::new(0));
    let out = COUNTER.scope(Arc::clone(&counter), fut).await;
    (out, counter.load(Ordering::Relaxed))
}

/// `fut` counted with the job of the calling task: what a job spawns onto tasks of its own (its
/// reads ahead) must carry the job's counter, which a task-local does not pass on by itself.
pub(crate) fn in_this_job<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let counter = COUNTER.try_with(Arc::clone).ok();
    async move {
        match counter {
            Some(c) => COUNTER.scope(c, fut).await,
            None => fut.await,
        }
    }
}

/// Failed request attempts in this process so far.
pub fn total() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

/// One failed attempt, for the job running on this task (if any).
pub(crate) fn note() {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    // Outside any job (a store opened before the jobs, a library's own task): the total only.
    let _ = COUNTER.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
}

/// object_store's reqwest connector, reading answers whole and counting failed attempts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Service { inner }))
    }
}

#[derive(Debug)]
struct Service {
    inner: HttpClient,
}

/// The statuses object_store retries (`client::retry`), so an attempt answered with one of
/// them was a failed attempt.
fn retried_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let resp = self.inner.execute(req).await.inspect_err(|_| note())?;
        let failed_status = retried_status(resp.status().as_u16());
        if failed_status {
            note();
        }
        let (parts, body) = resp.into_parts();
        match body.bytes().await {
            Ok(bytes) => Ok(HttpResponse::from_parts(parts, HttpResponseBody::from(bytes))),
            Err(e) => {
                if !failed_status {
                    note();
                }
                // A body that broke off is a transport failure of this attempt, which
                // object_store retries when the request is idempotent.
                let kind = match e.kind() {
                    HttpErrorKind::Unknown | HttpErrorKind::Decode => HttpErrorKind::Interrupted,
                    k => k,
                };
                Err(HttpError::new(kind, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_are_counted_for_the_task_that_made_them() {
        let ((), n) = counted(async {
            note();
            note();
        })
        .await;
        assert_eq!(n, 2);
        let before = total();
        note(); // outside any job: the process total only
        assert!(total() > before);
        let (inner, outer) = counted(async { counted(async { note() }).await.1 }).await;
        assert_eq!((inner, outer), (1, 0), "the innermost scope counts");
        assert!(retried_status(503) && retried_status(429) && retried_status(408) && !retried_status(404));
    }
}
