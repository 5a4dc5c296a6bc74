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
