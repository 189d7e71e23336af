//! What a component's room gives the container. `app.rs` lists the rooms' route tables and
//! builds one [`Component`] per room from the services; startup then registers each one's
//! state for its handlers, runs its background loops and asks it for its gauges.

use actix_web::web;
use futures::future::BoxFuture;
use tokio::sync::watch;

#[async_trait::async_trait]
pub trait Component: Send + Sync + 'static {
    /// Registers the room's state, which its handlers take as `web::Data<…>`.
    fn app_data(&self, cfg: &mut web::ServiceConfig);

    /// The loops an API process runs for this room until `stop` turns true.
    fn loops(&self, _stop: watch::Receiver<bool>) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }

    /// Appends the room's gauges (Prometheus text) to `/metrics`.
    async fn metrics(&self, _out: &mut String) {}
}

/// One gauge or counter in Prometheus text format.
pub fn gauge(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}
