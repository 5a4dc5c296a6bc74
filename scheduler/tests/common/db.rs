//! The scheduler's test database: a `caas-testkit` database (`caas_t_*`, unique to the test,
//! dropped on drop even when the test fails) with the scheduler's migrations applied.

#![allow(dead_code)]

use caas_scheduler::store::Store;
use caas_testkit::mysql::TestDatabase;

/// A fresh, migrated database; dropped on drop. Derefs to the testkit's database for its
/// `name` and `url`.
pub struct TestDb(TestDatabase);

impl std::ops::Deref for TestDb {
    type Target = TestDatabase;

    fn deref(&self) -> &TestDatabase {
        &self.0
    }
}

impl TestDb {
    /// Creates the database and applies the migrations (through a first store).
    pub async fn new() -> (TestDb, Store) {
        let db = TestDb(TestDatabase::create().await);
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
