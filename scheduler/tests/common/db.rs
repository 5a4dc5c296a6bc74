//! A throw-away MariaDB database per test: `caas_t_<random>`, created with
//! `CAAS_MYSQL_ADMIN_URL`, migrated, and dropped when the guard goes out of scope (also when the
//! test fails), so tests run in parallel and leave nothing behind.

#![allow(dead_code)]

use caas_scheduler::store::Store;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::Executor;
use std::hash::{BuildHasher, RandomState};

const HOW_TO_START: &str =
    "start the services with `scripts/up && source .caas/env` (or run `scripts/test`)";

/// The admin URL (no database) from the environment; panics with how to get it.
pub fn admin_url() -> String {
    match std::env::var("CAAS_MYSQL_ADMIN_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!("CAAS_MYSQL_ADMIN_URL is not set: {HOW_TO_START}"),
    }
}

/// Test databases whose tables are older than this were left by a killed test run (a drop
/// guard cannot run on SIGKILL); no test runs this long, so they are dropped.
const STALE_MINUTES: u32 = 30;

/// Drops `caas_t_*` databases left behind by killed test runs.
async fn sweep_stale(pool: &sqlx::MySqlPool) {
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

/// A fresh database; dropped on drop.
pub struct TestDb {
    /// Its name, `caas_t_<random>`.
    pub name: String,
    /// `admin_url/name`.
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Creates the database and applies the migrations (through a first store).
    pub async fn new() -> (TestDb, Store) {
        let admin = admin_url();
        let random =
            RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        let name = format!("caas_t_{random:016x}");
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach MariaDB at CAAS_MYSQL_ADMIN_URL ({e}): {HOW_TO_START}")
            });
        sweep_stale(&pool).await;
        pool.execute(format!("CREATE DATABASE `{name}`").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        pool.close().await;
        let db = TestDb {
            url: format!("{admin}/{name}"),
            name,
            admin,
        };
        let store = db.store(8).await;
        (db, store)
    }

    /// Another store (a separate pool, like another scheduler process) on this database.
    pub async fn store(&self, max_connections: u32) -> Store {
        Store::connect(&self.url, max_connections)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test database {}: {e}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime (or while unwinding): use a runtime of our own
        // on a thread of our own, and wait for it so nothing outlives the test.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let pool = MySqlPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                pool.execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                pool.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the cleanup thread panicked",
                self.name
            ),
        }
    }
}
