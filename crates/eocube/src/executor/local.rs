//! The local executor: a run's tasks in this process, `max_parallel` at once (a [`Pool`]),
//! through the same [`crate::worker::run_task`] an `eocube worker` process calls. I/O on the
//! async runtime, CPU work on rayon's pool (sized to the cores).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::pool::Pool;
use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};
use crate::job::JobContext;
use crate::store::Cube;
use crate::worker::{self, StoredRun};

/// Runs tasks in-process.
pub struct LocalExecutor {
    pool: Pool,
}

impl LocalExecutor {
    pub fn new(ctx: JobContext, cube: Arc<Cube>, run: Arc<StoredRun>, max_parallel: usize) -> LocalExecutor {
        let ctx = Arc::new(ctx);
        let attempt = move |index: u32| {
            let (ctx, cube, run) = (Arc::clone(&ctx), Arc::clone(&cube), Arc::clone(&run));
            let task = async move {
                let jobs = run.record.task_jobs(&run.jobs, index);
                let timeout = run.record.task_timeout(1);
                TaskEnd::Result(worker::run_task(&ctx, &cube, index, jobs, &BTreeSet::new(), timeout).await)
            };
            Box::pin(task) as futures::future::BoxFuture<'static, TaskEnd>
        };
        LocalExecutor { pool: Pool::new(max_parallel, Arc::new(attempt)) }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn launch(&self, tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError> {
        self.pool.launch(tasks, &events);
        Ok(())
    }

    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        self.pool.cancel(index);
        Ok(())
    }

    async fn shutdown(&self) {
        self.pool.shutdown();
    }
}
