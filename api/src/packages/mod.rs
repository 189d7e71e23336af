//! The packages room: `/api/v1/packages` and `/api/v1/operations` ([`routes`]), and the `http`
//! executor that downloads artifacts ([`executor`]), the worker's job ([`jobs`]).

pub mod executor;
pub mod jobs;
pub mod routes;
