//! A throw-away MariaDB database per test: `caas_t_{unique}`, created with
//! `CAAS_MYSQL_ADMIN_URL` and dropped on drop (also when the test fails), so tests run in
//! parallel and leave nothing behind. Empty: the scheduler's tests apply its migrations.

use crate::{clean_up, unique_u64, var, HOW};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Executor;

/// The admin URL (a user that may create databases, no database in it), without a trailing
/// `/`; panics, saying how to set it, when it is missing.
pub fn admin_url() -> String {
    var("CAAS_MYSQL_ADMIN_URL").trim_end_matches('/').to_owned()
}

/// A one-connection pool on the admin URL; panics, saying how to start MariaDB, when it cannot
/// connect.
pub async fn admin_pool() -> MySqlPool {
    try_admin_pool(&admin_url())
        .await
        .unwrap_or_else(|e| panic!("cannot reach MariaDB at CAAS_MYSQL_ADMIN_URL ({e}): {HOW}"))
}

async fn try_admin_pool(admin: &str) -> Result<MySqlPool, sqlx::Error> {
    MySqlPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
}

/// Whether a database named `name` exists: for checking that a test's database is gone.
pub async fn database_exists(name: &str) -> bool {
    let pool = admin_pool().await;
    let found: Option<String> = sqlx::query_scalar(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(name)
    .fetch_optional(&pool)
    .await
    .unwrap_or_else(|e| panic!("listing MariaDB's databases: {e}"));
    pool.close().await;
    found.is_some()
}

/// A test's own database; dropped on drop.
pub struct TestDatabase {
    /// Its name, `caas_t_{16 hex digits}`.
    pub name: String,
    /// `{admin URL}/{name}`: what the code under test connects to.
    pub url: String,
    admin: String,
}

/// Test databases whose newest table is older than this were left by a killed test run (a drop
/// guard cannot run on SIGKILL); no test runs this long, so they are dropped.
const STALE_MINUTES: u32 = 30;

impl TestDatabase {
    /// Creates an empty database (first dropping the ones killed runs left behind).
    pub async fn create() -> TestDatabase {
        let admin = admin_url();
        let name = format!("caas_t_{:016x}", unique_u64());
        let pool = admin_pool().await;
        sweep_stale(&pool).await;
        pool.execute(format!("CREATE DATABASE `{name}`").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        pool.close().await;
        TestDatabase {
            url: format!("{admin}/{name}"),
            name,
            admin,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        clean_up(&format!("test database {name}"), move || async move {
            let pool = try_admin_pool(&admin).await.map_err(|e| e.to_string())?;
            pool.execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                .await
                .map_err(|e| e.to_string())?;
            pool.close().await;
            Ok(())
        });
    }
}

/// Drops the `caas_t_*` databases that killed test runs left behind.
async fn sweep_stale(pool: &MySqlPool) {
    // Best effort: a failure here leaves old databases, it does not fail the test.
    let stale: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(table_schema AS BINARY) FROM information_schema.tables \
         WHERE table_schema LIKE 'caas\\_t\\_%' GROUP BY table_schema \
         HAVING MAX(create_time) < NOW() - INTERVAL ? MINUTE",
    )
    .bind(STALE_MINUTES)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for name in stale.into_iter().filter_map(|n| String::from_utf8(n).ok()) {
        let valid = name.starts_with("caas_t_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            // Another test's sweep may have dropped it first: ignore failures.
            let _ = pool
                .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                .await;
        }
    }
}
