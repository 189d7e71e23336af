//! Lifecycle throughput: N packages each created, downloaded and activated (waiting for each
//! operation to succeed), C at a time. Prints packages per second. Used by `make bench`.
//!
//!   cargo run --release --example lifecycle -- <base url> <api key> [packages] [concurrency]
//!
//! The first line of output is `lifecycle <packages> <concurrency> <packages/s> <failed>`; a
//! second line gives each step's latency (median and 99th percentile, milliseconds), so a
//! throughput figure always comes with what it cost the clients.

use depot_client::Client;
use depot_client::wire::{CreatePackageRequest, OperationKind, OperationStatus, OperationView};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// The timed steps of one package's lifecycle, in order.
const STEPS: [&str; 5] = [
    "create",
    "download",
    "download-done",
    "activate",
    "activate-done",
];

/// Waits for the operation through its event stream (one request, no polling).
async fn wait(depot: &Client, op: &OperationView) -> Result<(), String> {
    let events = depot
        .operation_events(op.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut events = std::pin::pin!(events);
    while let Some(op) = events.next().await {
        let op = op.map_err(|e| e.to_string())?;
        match op.status {
            OperationStatus::Succeeded => return Ok(()),
            OperationStatus::Failed | OperationStatus::Cancelled => {
                return Err(format!("operation ended {op:?}"));
            }
            _ => {}
        }
    }
    Err("the event stream ended before the operation did".into())
}

async fn one(depot: Client, run: String, i: usize) -> Result<[Duration; 5], String> {
    let mut took = [Duration::ZERO; 5];
    let mut at = Instant::now();
    let p = depot
        .create_package(&CreatePackageRequest::new(
            format!("bench-{run}-{i}"),
            "1.0.0",
        ))
        .await
        .map_err(|e| format!("create failed: {e}"))?;
    took[0] = at.elapsed();
    for (step, kind) in [OperationKind::Download, OperationKind::Activate]
        .into_iter()
        .enumerate()
    {
        at = Instant::now();
        let op = depot.start(p.id, kind).await.map_err(|e| e.to_string())?;
        took[1 + 2 * step] = at.elapsed();
        at = Instant::now();
        wait(&depot, &op).await?;
        took[2 + 2 * step] = at.elapsed();
    }
    Ok(took)
}

/// `step p50/p99` for each step, in milliseconds.
fn latencies(mut samples: Vec<[Duration; 5]>) -> String {
    let mut out = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        samples.sort_by_key(|s| s[i]);
        let at = |q: f64| {
            let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples
                .get(idx)
                .map_or(0.0, |s| s[i].as_secs_f64() * 1000.0)
        };
        out.push(format!("{step} {:.1}/{:.1}", at(0.5), at(0.99)));
    }
    out.join(", ")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().expect("base url");
    let key = args.get(2).cloned().expect("api key");
    let n: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(2000);
    let c: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(64);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .build()
        .unwrap();
    let depot = Client::with_http(http, base).with_api_key(key);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(c));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (depot, run) = (depot.clone(), run.clone());
        tasks.spawn(async move {
            let r = one(depot, run, i).await;
            drop(permit);
            r
        });
    }
    let mut failed = 0;
    let mut samples = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(took) => samples.push(took),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("failed: {e}");
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("lifecycle {n} {c} {:.1} {failed}", n as f64 / secs);
    println!("latency ms p50/p99: {}", latencies(samples));
    if failed > 0 {
        std::process::exit(1);
    }
}
