//! The packages room's job: running operations from the `operations` queue.

use crate::worker::{JobError, JobHandler};
use async_trait::async_trait;
use depot_core::queue::Message;
use std::sync::Arc;

/// The packages room's jobs.
pub fn jobs(
    settings: &crate::settings::Settings,
    adapters: &crate::bootstrap::Adapters,
) -> Result<Vec<Arc<dyn JobHandler>>, crate::bootstrap::StartupError> {
    Ok(vec![Arc::new(OperationJob {
        runner: crate::bootstrap::operation_runner(settings, adapters)?,
        max_deliveries: settings.queue.max_deliveries,
        metrics: adapters.metrics.clone(),
        watch: adapters.operation_watch.clone(),
    })])
}

/// Runs package operations from the `operations` queue.
pub struct OperationJob {
    pub runner: Arc<depot_packages::runner::OperationRunner>,
    /// The queue dead-letters a message after this many deliveries.
    pub max_deliveries: u32,
    pub metrics: Arc<crate::http::metrics::Metrics>,
    /// This process's event streams see the final state at once (embedded mode).
    pub watch: Arc<depot_packages::watch::OperationWatch>,
}

#[async_trait]
impl JobHandler for OperationJob {
    fn queue(&self) -> &'static str {
        depot_packages::OPERATIONS_QUEUE
    }

    async fn handle(&self, message: &Message, attempt: u32) -> Result<(), JobError> {
        let last_delivery = attempt >= self.max_deliveries;
        let finished = self.runner.handle(&message.body, last_delivery).await?;
        if let Some(op) = finished {
            self.watch.observe(&op);
            let labels = [op.kind.as_str(), op.status.as_str()];
            self.metrics
                .operations_finished
                .with_label_values(&labels)
                .inc();
            if let Some(end) = op.finished_at {
                let seconds = (end - op.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                self.metrics
                    .operation_duration
                    .with_label_values(&labels)
                    .observe(seconds);
            }
        }
        Ok(())
    }
}
