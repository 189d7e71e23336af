//! Adapters of `depot_core::queue`: an in-process queue on tokio (the embedded default) and a
//! RabbitMQ queue on lapin (the scaled mode).

pub mod amqp;
pub mod in_process;

pub use amqp::LapinQueue;
pub use in_process::InProcessQueue;
