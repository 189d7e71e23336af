//! Name-level operations (a prune acts on a name, not on one package).
//!
//! - `operations.package_id` may be NULL: such an operation names its package in
//!   `package_name`. (SQLite cannot drop a NOT NULL: the table is rebuilt from its own
//!   definition, with its foreign key and indexes.)
//! - At most one unfinished prune per name, enforced by a partial unique index.
//!
//! `down` deletes the name-level operations, then restores NOT NULL.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ONE_PRUNE_PER_NAME: &str = "CREATE UNIQUE INDEX uq_operations_unfinished_prune_per_name \
    ON operations (package_name) WHERE kind = 'prune' AND finished_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction on SQLite too: the table rebuild is all or nothing.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE operations ALTER COLUMN package_id DROP NOT NULL")
                .await?;
        } else {
            rebuild_operations(db, false).await?;
        }
        db.execute_unprepared(ONE_PRUNE_PER_NAME).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX uq_operations_unfinished_prune_per_name")
            .await?;
        db.execute_unprepared("DELETE FROM operations WHERE package_id IS NULL")
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE operations ALTER COLUMN package_id SET NOT NULL")
                .await?;
        } else {
            rebuild_operations(db, true).await?;
        }
        Ok(())
    }
}

/// SQLite: rebuilds `operations` from its own definition with `package_id` NOT NULL
/// (`required`) or not, keeping its rows, foreign key and indexes.
async fn rebuild_operations(db: &SchemaManagerConnection<'_>, required: bool) -> Result<(), DbErr> {
    let read = |sql: &str| Statement::from_string(DatabaseBackend::Sqlite, sql.to_owned());
    let table: String = db
        .query_one_raw(read(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'operations'",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no operations table".into()))?
        .try_get("", "sql")?;
    let indexes: Vec<String> = db
        .query_all_raw(read(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'operations' \
             AND sql IS NOT NULL",
        ))
        .await?
        .iter()
        .map(|row| row.try_get("", "sql"))
        .collect::<Result<_, _>>()?;
    let rebuilt = package_id_nullability(&table, required)
        .and_then(|t| renamed(&t, "operations_rebuilt"))
        .ok_or_else(|| DbErr::Migration(format!("unexpected operations table: {table}")))?;
    let mut steps = vec![
        "DROP TABLE IF EXISTS operations_rebuilt".to_owned(),
        rebuilt,
        "INSERT INTO operations_rebuilt SELECT * FROM operations".to_owned(),
        "DROP TABLE operations".to_owned(),
        "ALTER TABLE operations_rebuilt RENAME TO operations".to_owned(),
    ];
    steps.extend(indexes);
    db.execute_unprepared(&steps.join(";\n")).await?;
    Ok(())
}

/// `CREATE TABLE <name> (...)` with another name (the name as written: quoted or not).
fn renamed(table: &str, name: &str) -> Option<String> {
    let rest = table.strip_prefix("CREATE TABLE ")?.trim_start();
    let after = rest.find(|c: char| c == '(' || c.is_whitespace())?;
    Some(format!(
        "CREATE TABLE \"{name}\" {}",
        &rest[after..].trim_start()
    ))
}

/// The table's definition with `"package_id" <type> NOT NULL` (`required`) or without NOT NULL.
fn package_id_nullability(table: &str, required: bool) -> Option<String> {
    let start = table.find("\"package_id\"")?;
    let end = start + table[start..].find([',', ')'])?;
    let column = &table[start..end];
    let bare = column.replace(" NOT NULL", "");
    let wanted = if required {
        format!("{bare} NOT NULL")
    } else {
        bare
    };
    Some(format!("{}{wanted}{}", &table[..start], &table[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_id_column_changes_alone() {
        let table = r#"CREATE TABLE "operations" ( "id" uuid_text NOT NULL PRIMARY KEY, "package_id" uuid_text NOT NULL, "status" varchar(16) NOT NULL, FOREIGN KEY ("package_id") REFERENCES "packages" ("id") ON DELETE CASCADE )"#;
        let open = package_id_nullability(table, false).unwrap();
        assert!(
            open.contains(r#""package_id" uuid_text, "status" varchar(16) NOT NULL"#),
            "{open}"
        );
        assert_eq!(package_id_nullability(&open, true).unwrap(), table);
        for name in ["\"operations\"", "operations", "`operations`"] {
            let t = format!("CREATE TABLE {name} ( \"id\" uuid_text )");
            assert_eq!(
                renamed(&t, "o2").unwrap(),
                "CREATE TABLE \"o2\" ( \"id\" uuid_text )"
            );
        }
    }
}
