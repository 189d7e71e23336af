//! `depot migrate`: the database schema.

use crate::bootstrap;
use crate::settings::Settings;
use clap::Subcommand;
use depot_store::MigrateCommand;

#[derive(Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back migrations (the last one by default).
    Down {
        /// How many to roll back; 0 rolls back all.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table and re-apply all migrations (destroys data).
    Fresh,
}

pub async fn migrate(settings: Settings, action: MigrateAction) -> anyhow::Result<()> {
    let db = bootstrap::database_for_migrations(&settings).await?;
    match action {
        MigrateAction::Up => depot_store::migrate(&db, MigrateCommand::Up).await?,
        MigrateAction::Down { steps } => {
            let steps = if steps == 0 { None } else { Some(steps) };
            depot_store::migrate(&db, MigrateCommand::Down { steps }).await?
        }
        MigrateAction::Fresh => depot_store::migrate(&db, MigrateCommand::Fresh).await?,
        MigrateAction::Status => {
            for (name, applied) in depot_store::migration_status(&db).await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
            return Ok(());
        }
    }
    for (name, applied) in depot_store::migration_status(&db).await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}
