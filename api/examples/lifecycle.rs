//! Lifecycle throughput: N packages each created, downloaded and activated (waiting for each
//! operation to succeed), C at a time. Prints packages per second. Used by `make bench`.
//!
//!   cargo run --release --example lifecycle -- <base url> <api key> [packages] [concurrency]

use serde_json::{Value, json};
use std::time::Instant;

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
) -> Result<(), String> {
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
    for kind in ["download", "activate"] {
        let op: Value = client
            .post(format!("{base}/api/v1/packages/{id}/{kind}"))
            .header("X-API-Key", &key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        wait(&client, &base, &key, &op).await?;
    }
    Ok(())
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
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            failed += 1;
            if failed <= 3 {
                eprintln!("failed: {e}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("lifecycle {n} {c} {:.1} {failed}", n as f64 / secs);
    if failed > 0 {
        std::process::exit(1);
    }
}
