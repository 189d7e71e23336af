//! The command line's client side: `depot packages …` drives a running Depot.

pub mod packages;
