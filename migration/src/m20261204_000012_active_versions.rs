//! One active version per name on PostgreSQL without an index on `packages.status`.
//!
//! The exclusion constraint of `m20261202_000010` (`WHERE status = 'active'`) put `status` in an
//! index predicate, and PostgreSQL updates a row in place (a HOT update, no new index entries)
//! only when no indexed column changes: every status change of the lifecycle then wrote a new
//! entry into each of the table's indexes. Measured on the scaled lifecycle bench (4,000
//! packages, 16,000 package updates): 14,987 HOT updates before that migration, 0 after, and
//! about a fifth of the throughput gone.
//!
//! Instead, `active_versions` holds a name's active version, keyed by the name, and triggers
//! on `packages` keep it: a row becoming active inserts its name (refused, a unique violation,
//! while another version of the name is still active), a row leaving active or renamed or
//! deleted removes it. Every writer of `packages.status` keeps it true, a hand edit included;
//! the database refuses a second active version as it did. An activation that replaces the
//! active version in one statement works in either order of the two rows' triggers: the new
//! version's trigger first removes a row whose version is no longer active.
//!
//! SQLite keeps its partial unique index (it has no HOT updates to lose).

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE TABLE active_versions (
        name varchar(200) PRIMARY KEY,
        package_id uuid NOT NULL UNIQUE)",
    "INSERT INTO active_versions (name, package_id)
        SELECT name, id FROM packages WHERE status = 'active'",
    // OR REPLACE: `migrate fresh` drops the tables (and their triggers), not the function.
    "CREATE OR REPLACE FUNCTION packages_track_active() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'INSERT' AND OLD.status = 'active' THEN
         DELETE FROM active_versions WHERE package_id = OLD.id;
       END IF;
       IF TG_OP <> 'DELETE' AND NEW.status = 'active' THEN
         -- The version this one replaces in the same statement may not have had its own
         -- trigger run yet: its row goes first when it is no longer active.
         DELETE FROM active_versions a WHERE a.name = NEW.name AND a.package_id <> NEW.id
           AND NOT EXISTS (SELECT 1 FROM packages p
                           WHERE p.id = a.package_id AND p.name = a.name AND p.status = 'active');
         INSERT INTO active_versions (name, package_id) VALUES (NEW.name, NEW.id);
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER packages_active_on_insert AFTER INSERT ON packages
        FOR EACH ROW WHEN (NEW.status = 'active') EXECUTE FUNCTION packages_track_active()",
    "CREATE TRIGGER packages_active_on_update AFTER UPDATE OF status, name ON packages
        FOR EACH ROW WHEN ((OLD.status = 'active' OR NEW.status = 'active')
                           AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.name IS DISTINCT FROM NEW.name))
        EXECUTE FUNCTION packages_track_active()",
    "CREATE TRIGGER packages_active_on_delete AFTER DELETE ON packages
        FOR EACH ROW WHEN (OLD.status = 'active') EXECUTE FUNCTION packages_track_active()",
    "ALTER TABLE packages DROP CONSTRAINT packages_one_active_per_name",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER packages_active_on_delete ON packages",
    "DROP TRIGGER packages_active_on_update ON packages",
    "DROP TRIGGER packages_active_on_insert ON packages",
    "DROP FUNCTION packages_track_active()",
    "DROP TABLE active_versions",
    "ALTER TABLE packages ADD CONSTRAINT packages_one_active_per_name \
     EXCLUDE USING btree (name WITH =) WHERE (status = 'active') \
     DEFERRABLE INITIALLY IMMEDIATE",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}

async fn run(manager: &SchemaManager<'_>, steps: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for step in steps {
        db.execute_unprepared(step).await?;
    }
    Ok(())
}
