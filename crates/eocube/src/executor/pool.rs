//! A bounded pool of attempts driven from this process: at most `max_parallel` at once, the rest
//! waiting in one queue. The local executor runs its tasks here, and the Lambda executor its
//! invocations (each a request this process waits on).
//!
//! Owns: the queue, the loops pulling from it, stopping attempts. Must not touch: what an attempt
//! does (the executor hands in a function) or what happens after it ends (the scheduler).
//!
//! Memory: queued tasks are indices (4 bytes each), not futures, so a run of 100,000 tasks costs
//! what its running attempts cost.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::scheduler::{TaskEnd, TaskEvent};

/// One attempt of task `index`, to its end.
pub(crate) type Attempt = Arc<dyn Fn(u32) -> BoxFuture<'static, TaskEnd> + Send + Sync>;

pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    attempt: Attempt,
    max_parallel: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<u32>,
    /// Loops pulling from the queue.
    loops: usize,
    running: HashMap<u32, tokio::task::AbortHandle>,
    stopped: bool,
}

impl Pool {
    pub(crate) fn new(max_parallel: usize, attempt: Attempt) -> Pool {
        Pool { inner: Arc::new(Inner { attempt, max_parallel: max_parallel.max(1), state: Mutex::default() }) }
    }

    /// Queues one attempt of each task; starts loops up to the bound.
    pub(crate) fn launch(&self, tasks: Vec<u32>, events: &mpsc::UnboundedSender<TaskEvent>) {
        let start = {
            let mut st = self.inner.state();
            st.queue.extend(tasks);
            let want = self.inner.max_parallel.min(st.loops + st.queue.len());
            let start = want.saturating_sub(st.loops);
            st.loops += start;
            start
        };
        for _ in 0..start {
            tokio::spawn(Arc::clone(&self.inner).pull(events.clone()));
        }
    }

    /// Stops the running attempt of task `index`; it ends as lost.
    pub(crate) fn cancel(&self, index: u32) {
        if let Some(handle) = self.inner.state().running.get(&index) {
            handle.abort();
        }
    }

    /// Stops every attempt and forgets the queue.
    pub(crate) fn shutdown(&self) {
        let mut st = self.inner.state();
        st.stopped = true;
        st.queue.clear();
        for handle in st.running.values() {
            handle.abort();
        }
    }

    /// Attempts running now.
    pub(crate) fn running(&self) -> usize {
        self.inner.state().running.len()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes tasks from the queue until it is empty.
    async fn pull(self: Arc<Self>, events: mpsc::UnboundedSender<TaskEvent>) {
        loop {
            let index = {
                let mut st = self.state();
                match st.queue.pop_front().filter(|_| !st.stopped) {
                    Some(i) => i,
                    None => {
                        st.loops -= 1;
                        return;
                    }
                }
            };
            let attempt = tokio::spawn((self.attempt)(index));
            self.state().running.insert(index, attempt.abort_handle());
            let _ = events.send(TaskEvent::Started { index });
            let end = match attempt.await {
                Ok(end) => end,
                Err(e) if e.is_cancelled() => {
                    TaskEnd::Lost { reason: format!("task {index} was stopped"), transient: true }
                }
                Err(e) => TaskEnd::Lost {
                    reason: format!("task {index} crashed: {e}; this is a bug in eocube, please report it"),
                    transient: false,
                },
            };
            self.state().running.remove(&index);
            let _ = events.send(TaskEvent::Ended { index, end });
        }
    }
}
