//! Lifecycle throughput: N packages each created, downloaded and activated (waiting for each
//! operation to succeed), C at a time. Prints packages per second. Used by `make bench`.
//!
//!   cargo run --release --example lifecycle -- <base url> <api key> [packages] [concurrency]
//!
//! The first line of output is `lifecycle <packages> <concurrency> <packages/s> <failed>`; a
//! second line gives each step's latency (median and 99th percentile, milliseconds), so a
//! throughput figure always comes with what it cost the clients.

use serde_json::{Value, json};
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
async fn wait(client: &reqwest::Client, base: &str, key: &str, op: &Value) -> Result<(), String> {
    let id = op["id"].as_str().ok_or("no operation id")?;
    let mut res = client
        .get(format!("{base}/api/v1/operations/{id}/events"))
        .header("X-API-Key", key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("events: {}", res.status()));
    }
    let mut buf = String::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
            match v["status"].as_str() {
                Some("succeeded") => return Ok(()),
                Some("failed") | Some("cancelled") => return Err(format!("operation ended {v}")),
                _ => {}
            }
        }
    }
    Err("the event stream ended before the operation did".into())
}

async fn one(
    client: reqwest::Client,
    base: String,
    key: String,
    run: String,
    i: usize,
) -> Result<[Duration; 5], String> {
    let mut took = [Duration::ZERO; 5];
    let mut at = Instant::now();
    let p: Value = client
        .post(format!("{base}/api/v1/packages"))
        .header("X-API-Key", &key)
        .json(&json!({"name": format!("bench-{run}-{i}"), "version": "1.0.0"}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = p["id"]
        .as_str()
        .ok_or_else(|| format!("create failed: {p}"))?;
    took[0] = at.elapsed();
    for (step, kind) in ["download", "activate"].into_iter().enumerate() {
        at = Instant::now();
        let op: Value = client
            .post(format!("{base}/api/v1/packages/{id}/{kind}"))
            .header("X-API-Key", &key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        took[1 + 2 * step] = at.elapsed();
        at = Instant::now();
        wait(&client, &base, &key, &op).await?;
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
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .build()
        .unwrap();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(c));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (client, base, key, run) = (client.clone(), base.clone(), key.clone(), run.clone());
        tasks.spawn(async move {
            let r = one(client, base, key, run, i).await;
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
