//! `depot packages …`: drive a running Depot from the command line, as the original's console
//! script did, with a progress bar while an operation runs.

use clap::Subcommand;
use depot_client::wire::{CreatePackageRequest, OperationKind, OperationStatus, OperationView};
use depot_client::{Client, Error};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

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
        /// Where a download fetches the detached minisign signature from.
        #[arg(long)]
        signature_url: Option<String>,
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
    /// Show a package name: its active, previous and latest version, and every version.
    Show {
        name: String,
        /// Print the name as the server sent it (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Activate the name's previous version and wait for it.
    Rollback {
        name: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Register NAME VERSION with FILE's SHA-256 and size, and upload FILE as its artifact
    /// (streamed, with a progress bar; a push that did not finish can simply be run again).
    Push {
        file: std::path::PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        description: Option<String>,
        /// A detached minisign signature of FILE (`minisign -S -m FILE` writes FILE.minisig),
        /// sent before the bytes so that they are checked against it as they are uploaded.
        #[arg(long)]
        signature: Option<std::path::PathBuf>,
    },
    /// Download the active version of NAME (or NAME@VERSION) into FILE (default: the name the
    /// server suggests, `name-version`), verifying its SHA-256 before the file is kept.
    Pull {
        target: String,
        #[arg(short = 'o', long = "output")]
        output: Option<std::path::PathBuf>,
        /// Replace FILE when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Drop the artifacts of the name's Downloaded versions past the KEEP newest (the active,
    /// the previous and yanked versions stay) and wait for it; --dry-run only lists them.
    Prune {
        name: String,
        /// How many versions holding an artifact to keep (the server's
        /// packages.keep_versions when not given).
        #[arg(long)]
        keep: Option<u32>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        no_wait: bool,
    },
}

/// Prints a wire value as the server sent it.
fn pretty<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// An error as one line: status, code, detail and each failing field.
fn explain(e: Error) -> String {
    match e.problem() {
        Some(p) => {
            let fields: Vec<String> = p
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!(
                "{} {}: {}{}",
                p.status,
                p.code,
                p.detail.as_deref().unwrap_or(""),
                if fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", fields.join("; "))
                }
            )
        }
        None => e.to_string(),
    }
}

fn parse_id(id: &str) -> Result<Uuid, String> {
    id.parse()
        .map_err(|_| format!("`{id}` is not a package id (a UUID)"))
}

/// Starts an operation and follows it with a progress bar until it is final.
async fn operate(
    client: &Client,
    id: &str,
    kind: OperationKind,
    wait: bool,
) -> Result<bool, String> {
    let op = client.start(parse_id(id)?, kind).await.map_err(explain)?;
    follow(client, op, kind, wait).await
}

/// Follows a started operation with a progress bar until it is final (or prints it).
async fn follow(
    client: &Client,
    op: OperationView,
    kind: OperationKind,
    wait: bool,
) -> Result<bool, String> {
    if !wait {
        pretty(&op);
        return Ok(true);
    }
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(kind.as_str());
    // The event stream tells each change as it happens; when the server cannot give one
    // (too many open, say) or it breaks off, poll instead.
    let mut last = None;
    if let Ok(events) = client.operation_events(op.id).await {
        let mut events = std::pin::pin!(events);
        while let Some(Ok(op)) = events.next().await {
            if show(&bar, &op) {
                last = Some(op);
                break;
            }
        }
    }
    let last = match last {
        Some(op) => op,
        None => loop {
            let op = client.get_operation(op.id).await.map_err(explain)?;
            if show(&bar, &op) {
                break op;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        },
    };
    if last.status == OperationStatus::Succeeded {
        bar.finish_with_message("succeeded");
        Ok(true)
    } else {
        bar.abandon_with_message(format!(
            "{}: {}",
            status_name(last.status),
            last.error.map(|e| e.detail).unwrap_or_default()
        ));
        Ok(false)
    }
}

fn status_name(s: OperationStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Puts an operation's progress and status on the bar; true when the status is final.
fn show(bar: &ProgressBar, op: &OperationView) -> bool {
    bar.set_position(u64::from(op.progress));
    bar.set_message(status_name(op.status));
    op.status.is_final()
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
    let client = Client::new(args.url).with_api_key(args.api_key);
    let result: Result<bool, String> = runtime.block_on(async {
        match args.command {
            PackagesCommand::Create {
                name,
                version,
                description,
                source_url,
                sha256,
                size_bytes,
                signature_url,
            } => {
                let p = client
                    .create_package(&CreatePackageRequest {
                        name,
                        version,
                        description,
                        source_url,
                        sha256,
                        size_bytes,
                        signature_url,
                    })
                    .await
                    .map_err(explain)?;
                pretty(&p);
                Ok(true)
            }
            PackagesCommand::List {
                status,
                name,
                limit,
            } => {
                let page = client
                    .list_packages(&[
                        ("limit", Some(limit.to_string())),
                        ("status", status),
                        ("name", name),
                    ])
                    .await
                    .map_err(explain)?;
                println!("{:<36}  {:<30}  {:<12}  STATUS", "ID", "NAME", "VERSION");
                for p in page.items {
                    let status = serde_json::to_value(p.status).unwrap_or_default();
                    println!(
                        "{:<36}  {:<30}  {:<12}  {}",
                        p.id,
                        p.name,
                        p.version,
                        status.as_str().unwrap_or("")
                    );
                }
                Ok(true)
            }
            PackagesCommand::Get { id } => {
                let p = client.get_package(parse_id(&id)?).await.map_err(explain)?;
                pretty(&p.body);
                Ok(true)
            }
            PackagesCommand::Download { id, no_wait } => {
                operate(&client, &id, OperationKind::Download, !no_wait).await
            }
            PackagesCommand::Activate { id, no_wait } => {
                operate(&client, &id, OperationKind::Activate, !no_wait).await
            }
            PackagesCommand::Deactivate { id, no_wait } => {
                operate(&client, &id, OperationKind::Deactivate, !no_wait).await
            }
            PackagesCommand::Show { name, json } => {
                let n = client.package_name(&name).await.map_err(explain)?;
                if json {
                    pretty(&n);
                    return Ok(true);
                }
                let version = |v: &Option<depot_client::wire::VersionRefView>| {
                    v.as_ref().map_or("-".to_owned(), |v| v.version.clone())
                };
                println!("{}", n.name);
                println!("  active    {}", version(&n.active));
                println!("  previous  {}", version(&n.previous));
                println!("  latest    {}", version(&n.latest));
                println!("  {:<24}  {:<12}  {:<36}", "VERSION", "STATUS", "ID");
                for v in &n.versions {
                    let status = serde_json::to_value(v.status).unwrap_or_default();
                    let yanked = if v.yanked { "  (yanked)" } else { "" };
                    println!(
                        "  {:<24}  {:<12}  {:<36}{yanked}",
                        v.version,
                        status.as_str().unwrap_or(""),
                        v.id
                    );
                }
                Ok(true)
            }
            PackagesCommand::Push {
                file,
                name,
                version,
                description,
                signature,
            } => {
                let p = crate::cli::transfer::push(
                    &client,
                    &file,
                    crate::cli::transfer::Push {
                        name,
                        version,
                        description,
                        signature,
                    },
                    explain,
                )
                .await?;
                pretty(&p);
                Ok(true)
            }
            PackagesCommand::Pull {
                target,
                output,
                force,
            } => {
                let file =
                    crate::cli::transfer::pull(&client, &target, output, force, explain).await?;
                println!("{}", file.display());
                Ok(true)
            }
            PackagesCommand::Rollback { name, no_wait } => {
                let op = client.rollback(&name).await.map_err(explain)?;
                follow(&client, op, OperationKind::Activate, !no_wait).await
            }
            PackagesCommand::Prune {
                name,
                keep,
                dry_run: true,
                ..
            } => {
                let plan = client.prune_plan(&name, keep).await.map_err(explain)?;
                println!(
                    "{}: keeping {}, {} version(s) would lose their artifact",
                    plan.name,
                    plan.keep,
                    plan.versions.len()
                );
                for v in &plan.versions {
                    println!("  {:<24}  {}", v.version, v.id);
                }
                Ok(true)
            }
            PackagesCommand::Prune {
                name,
                keep,
                no_wait,
                ..
            } => {
                let op = client.prune(&name, keep).await.map_err(explain)?;
                follow(&client, op, OperationKind::Prune, !no_wait).await
            }
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
