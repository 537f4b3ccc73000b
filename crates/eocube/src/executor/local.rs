//! The local executor: a run's tasks in this process, `max_parallel` at once, through the same
//! [`crate::worker::run_task`] an `eocube worker` process calls. I/O on the async runtime, CPU
//! work on rayon's pool (sized to the cores).
//!
//! Memory: launched tasks wait as indices in one queue (4 bytes each), not as futures, so a
//! run of 100,000 tasks costs what its running ones cost.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};
use crate::job::JobContext;
use crate::store::Cube;
use crate::worker::{self, StoredRun};

/// Runs tasks in-process.
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: JobContext,
    cube: Arc<Cube>,
    run: Arc<StoredRun>,
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

impl LocalExecutor {
    pub fn new(ctx: JobContext, cube: Arc<Cube>, run: Arc<StoredRun>, max_parallel: usize) -> LocalExecutor {
        LocalExecutor {
            inner: Arc::new(Inner { ctx, cube, run, max_parallel: max_parallel.max(1), state: Mutex::default() }),
        }
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
            let me = Arc::clone(&self);
            let attempt = tokio::spawn(async move {
                let jobs = me.run.record.task_jobs(&me.run.jobs, index);
                let timeout = me.run.record.task_timeout(1);
                worker::run_task(&me.ctx, &me.cube, index, jobs, &BTreeSet::new(), timeout).await
            });
            self.state().running.insert(index, attempt.abort_handle());
            let _ = events.send(TaskEvent::Started { index });
            let end = match attempt.await {
                Ok(result) => TaskEnd::Result(result),
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

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn launch(&self, tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError> {
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
        Ok(())
    }

    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        if let Some(handle) = self.inner.state().running.get(&index) {
            handle.abort();
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let mut st = self.inner.state();
        st.stopped = true;
        st.queue.clear();
        for handle in st.running.values() {
            handle.abort();
        }
    }
}
