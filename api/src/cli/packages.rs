//! `depot packages …`: drive a running Depot from the command line, as the original's console
//! script did, with a progress bar while an operation runs.

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct PackagesArgs {
    /// The Depot to talk to.
    #[arg(long, env = "DEPOT_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// An API key with the packages scopes.
    #[arg(long, env = "DEPOT_API_KEY", hide_env_values = true)]
    pub api_key: String,
    #[command(subcommand)]
    pub command: PackagesCommand,
}

#[derive(Subcommand)]
pub enum PackagesCommand {
    /// Register a package (status `created`).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        source_url: Option<String>,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        size_bytes: Option<i64>,
    },
    /// List packages.
    List {
        #[arg(long)]
        status: Option<String>,
        /// Names starting with this.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one package.
    Get { id: String },
    /// Download a package (created → downloaded) and wait for it.
    Download {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Activate a package (downloaded → active) and wait for it.
    Activate {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Deactivate a package (active → downloaded) and wait for it.
    Deactivate {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base.trim_end_matches('/')))
            .header("X-API-Key", &self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let detail = value["detail"].as_str().unwrap_or("");
            let fields: Vec<String> = value["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e["field"].as_str().unwrap_or("?"),
                                e["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Err(format!(
                "{status} {}: {detail}{}",
                value["code"].as_str().unwrap_or("error"),
                if fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", fields.join("; "))
                }
            ))
        }
    }

    /// Starts an operation and follows it with a progress bar until it is final.
    async fn operate(&self, id: &str, kind: &str, wait: bool) -> Result<bool, String> {
        let op = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/packages/{id}/{kind}"),
                None,
            )
            .await?;
        let op_id = op["id"].as_str().unwrap_or_default().to_owned();
        if !wait {
            println!("{}", serde_json::to_string_pretty(&op).unwrap_or_default());
            return Ok(true);
        }
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(kind.to_owned());
        // The event stream tells each change as it happens; when the server cannot give one
        // (too many open, say) or it breaks off, poll instead.
        let last = match self.follow_events(&op_id, &bar).await {
            Some(op) => op,
            None => self.poll(&op_id, &bar).await?,
        };
        let status = last["status"].as_str().unwrap_or("unknown");
        if status == "succeeded" {
            bar.finish_with_message("succeeded");
            Ok(true)
        } else {
            bar.abandon_with_message(format!(
                "{status}: {}",
                last["error"]["detail"].as_str().unwrap_or("")
            ));
            Ok(false)
        }
    }

    /// Shows an operation's changes from its event stream; the final state, or `None` when
    /// there was no stream or it ended first.
    async fn follow_events(&self, op_id: &str, bar: &ProgressBar) -> Option<Value> {
        let url = format!(
            "{}/api/v1/operations/{op_id}/events",
            self.base.trim_end_matches('/')
        );
        let mut res = self
            .http
            .get(url)
            .header("X-API-Key", &self.key)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let Some(op) = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                if show(bar, &op) {
                    return Some(op);
                }
            }
        }
        None
    }

    /// Reads the operation every 200 ms until it is final; returns the final state.
    async fn poll(&self, op_id: &str, bar: &ProgressBar) -> Result<Value, String> {
        loop {
            let op = self
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/operations/{op_id}"),
                    None,
                )
                .await?;
            if show(bar, &op) {
                return Ok(op);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Puts an operation's progress and status on the bar; true when the status is final.
fn show(bar: &ProgressBar, op: &Value) -> bool {
    bar.set_position(op["progress"].as_u64().unwrap_or(0));
    let status = op["status"].as_str().unwrap_or("unknown");
    bar.set_message(status.to_owned());
    matches!(status, "succeeded" | "failed" | "cancelled")
}

pub fn run(args: PackagesArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = Client {
        http: reqwest::Client::new(),
        base: args.url,
        key: args.api_key,
    };
    let result: Result<bool, String> = runtime.block_on(async {
        match args.command {
            PackagesCommand::Create { name, version, description, source_url, sha256, size_bytes } => {
                let body = json!({"name": name, "version": version, "description": description,
                                  "source_url": source_url, "sha256": sha256, "size_bytes": size_bytes});
                let p = client.send(reqwest::Method::POST, "/api/v1/packages", Some(body)).await?;
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
                Ok(true)
            }
            PackagesCommand::List { status, name, limit } => {
                let mut query = vec![("limit".to_owned(), limit.to_string())];
                query.extend(status.map(|s| ("status".to_owned(), s)));
                query.extend(name.map(|n| ("name".to_owned(), n)));
                let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
                let page = client.send(reqwest::Method::GET, &format!("/api/v1/packages?{qs}"), None).await?;
                println!("{:<36}  {:<30}  {:<12}  STATUS", "ID", "NAME", "VERSION");
                for p in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<30}  {:<12}  {}",
                        p["id"].as_str().unwrap_or(""),
                        p["name"].as_str().unwrap_or(""),
                        p["version"].as_str().unwrap_or(""),
                        p["status"].as_str().unwrap_or("")
                    );
                }
                Ok(true)
            }
            PackagesCommand::Get { id } => {
                let p = client.send(reqwest::Method::GET, &format!("/api/v1/packages/{id}"), None).await?;
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
                Ok(true)
            }
            PackagesCommand::Download { id, no_wait } => client.operate(&id, "download", !no_wait).await,
            PackagesCommand::Activate { id, no_wait } => client.operate(&id, "activate", !no_wait).await,
            PackagesCommand::Deactivate { id, no_wait } => client.operate(&id, "deactivate", !no_wait).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
