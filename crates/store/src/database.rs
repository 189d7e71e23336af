//! Connecting to the database: a SQLite file (created if missing, WAL mode) by default, or
//! PostgreSQL.

use depot_core::RepoError;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which backend a URL names; `None` for anything else.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Log every SQL statement (debug level).
    pub log_statements: bool,
}

/// The file a `sqlite:` URL points at; `None` for in-memory databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

/// Makes sure a SQLite file's directory exists and is writable, creating it if missing.
/// The error message is meant for the operator and names the problem.
pub fn prepare_sqlite_path(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.permissions().readonly() {
        return Err(format!("directory {} is read-only", dir.display()));
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))?;
    }
    Ok(())
}

/// Opens the pool. For SQLite the file is created if missing and put in WAL mode with a busy
/// timeout, so that concurrent writers wait instead of failing.
pub async fn connect(options: &DatabaseOptions) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(options.url.clone());
    opts.max_connections(options.max_connections)
        .min_connections(options.min_connections)
        .connect_timeout(options.connect_timeout)
        .acquire_timeout(options.acquire_timeout)
        .sqlx_logging(options.log_statements);
    if Backend::of_url(&options.url) == Some(Backend::Sqlite) {
        if let Some(path) = sqlite_path(&options.url) {
            prepare_sqlite_path(&path).map_err(DbErr::Custom)?;
        }
        let busy = options.acquire_timeout;
        opts.map_sqlx_sqlite_opts(move |o: SqliteConnectOptions| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(true)
        });
    }
    if Backend::of_url(&options.url) == Some(Backend::Postgres) {
        // Planner settings for Depot's own connections; a setting the URL's `options` name
        // takes precedence.
        //
        // * Plan each prepared statement once per connection (`plan_cache_mode`). PostgreSQL's
        //   default re-plans a statement with the values of every execution for as long as
        //   those plans look cheaper than a generic one, and Depot's batched statements
        //   (`id = ANY($1)` with batches of varying size) keep looking so: planning was a
        //   fifth of the database's CPU time in the lifecycle bench.
        // * Prefer indexes (`enable_seqscan = off`; a sequential scan is still used where no
        //   index applies). Every query Depot makes is an index lookup or an index-ordered
        //   page, but a plan made while a table is new and nearly empty picks sequential
        //   scans, and with the plan kept those stay until autovacuum analyzes the table:
        //   a fresh database ran the lifecycle a fifth slower for its first minute.
        let settings: Vec<(&'static str, &'static str)> = [
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]
        .into_iter()
        .filter(|(name, _)| !options.url.contains(name))
        .collect();
        if !settings.is_empty() {
            opts.map_sqlx_postgres_opts(move |o: PgConnectOptions| o.options(settings.clone()));
        }
    }
    let db = Database::connect(opts).await?;
    Ok(db)
}

/// Is the database answering? For `/health/ready`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), RepoError> {
    db.execute_unprepared("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| RepoError::Unavailable(Box::new(e)))
}

/// Migration commands, as `depot migrate` and the tests use them.
pub async fn migrate(db: &DatabaseConnection, command: MigrateCommand) -> Result<(), DbErr> {
    match command {
        MigrateCommand::Up => Migrator::up(db, None).await,
        MigrateCommand::Down { steps } => Migrator::down(db, steps).await,
        MigrateCommand::Fresh => Migrator::fresh(db).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateCommand {
    Up,
    /// `None` rolls back every migration.
    Down {
        steps: Option<u32>,
    },
    /// Drops every table and re-applies all migrations.
    Fresh,
}

/// Applies all pending migrations.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Migration names with whether each is applied.
pub async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
    Ok(Migrator::get_migration_with_status(db)
        .await?
        .into_iter()
        .map(|m| {
            (
                m.name().to_owned(),
                m.status() == migration::MigrationStatus::Applied,
            )
        })
        .collect())
}

/// Is this a well-formed SQLite URL? (Used by settings validation.)
pub fn is_valid_sqlite_url(url: &str) -> bool {
    SqliteConnectOptions::from_str(url).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/depot.db?mode=rwc"),
            Some(PathBuf::from("data/depot.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(Backend::of_url("postgres://x"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("mysql://x"), None);
    }

    #[tokio::test]
    async fn creates_the_file_and_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/depot.db");
        let db = connect(&DatabaseOptions {
            url: format!("sqlite://{}", path.display()),
            max_connections: 2,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            log_statements: false,
        })
        .await
        .unwrap();
        ping(&db).await.unwrap();
        assert!(path.exists());
    }

    #[test]
    fn unwritable_directories_are_reported() {
        let err = prepare_sqlite_path(Path::new("/proc/depot/x.db")).unwrap_err();
        assert!(err.contains("/proc/depot"), "{err}");
    }
}
