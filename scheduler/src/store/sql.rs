//! Mapping of MySQL/MariaDB failures to the scheduler's [`Error`], so no driver text reaches a
//! caller, plus small decoding helpers shared by the store's modules.

use crate::error::{Error, Result};
use sqlx::mysql::{MySqlQueryResult, MySqlRow};
use sqlx::Row;

/// What kind of failure a database error is, by MySQL error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 1062/1022/1586: a unique key refused the row.
    Duplicate,
    /// 1451/1452/1216/1217: a foreign key refused the write.
    Reference,
    /// 4025 (MariaDB) / 3819 (MySQL) / 1690: a CHECK constraint or range refused the write.
    Check,
    /// 1213 deadlock / 1205 lock wait timeout: the whole transaction may be retried.
    Transient,
    /// Anything else: connection lost, syntax, ...
    Other,
}

/// Classifies a sqlx error.
pub(crate) fn classify(e: &sqlx::Error) -> Failure {
    let sqlx::Error::Database(db) = e else {
        return Failure::Other;
    };
    let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() else {
        return Failure::Other;
    };
    match my.number() {
        1062 | 1022 | 1586 => Failure::Duplicate,
        1451 | 1452 | 1216 | 1217 => Failure::Reference,
        4025 | 3819 | 1690 => Failure::Check,
        1213 | 1205 => Failure::Transient,
        _ => Failure::Other,
    }
}

/// A database failure while doing `what`: logs the driver's text, returns only `what`.
pub(crate) fn db_error(what: &str, e: sqlx::Error) -> Error {
    tracing::warn!(error = %e, "database failure while {what}");
    Error::Database(format!("failure while {what}"))
}

/// Maps a failed write: duplicates and references become [`Error::Conflict`] with `conflict`,
/// a refused CHECK becomes [`Error::Invalid`], the rest [`Error::Database`].
pub(crate) fn write_error(what: &str, conflict: impl FnOnce() -> String, e: sqlx::Error) -> Error {
    match classify(&e) {
        Failure::Duplicate | Failure::Reference => Error::Conflict(conflict()),
        Failure::Check => {
            tracing::debug!(error = %e, "check constraint refused a write while {what}");
            Error::Invalid(format!("value refused by a constraint while {what}"))
        }
        _ => db_error(what, e),
    }
}

/// A write by key that changed no row found nothing to change: [`Error::NotFound`] of `what`.
pub(crate) fn found(done: &MySqlQueryResult, what: impl FnOnce() -> String) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(what()));
    }
    Ok(())
}

/// Reads a column, mapping a decode failure to [`Error::Database`].
pub(crate) fn get<'r, T>(row: &'r MySqlRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
{
    row.try_get(column).map_err(|e| {
        tracing::error!(error = %e, column, "cannot decode a column");
        Error::Database(format!("cannot decode column {column}"))
    })
}

/// Reads a text column. With a binary collation (`utf8mb4_bin`, the server default here) the
/// driver reports text columns as bytes, so both forms are accepted.
pub(crate) fn text(row: &MySqlRow, column: &str) -> Result<String> {
    opt_text(row, column)?.ok_or_else(|| Error::Database(format!("column {column} is null")))
}

/// Reads a nullable text column (see [`text`]).
pub(crate) fn opt_text(row: &MySqlRow, column: &str) -> Result<Option<String>> {
    if let Ok(s) = row.try_get::<Option<String>, _>(column) {
        return Ok(s);
    }
    let raw: Option<Vec<u8>> = get(row, column)?;
    raw.map(|b| {
        String::from_utf8(b).map_err(|_| Error::Invalid(format!("stored {column} is not utf-8")))
    })
    .transpose()
}

/// Reads a column and parses it into a validated type (ids, names).
pub(crate) fn parse<T: std::str::FromStr>(row: &MySqlRow, column: &str) -> Result<T> {
    let raw = text(row, column)?;
    raw.parse()
        .map_err(|_| Error::Invalid(format!("stored {column} {raw:?}")))
}

/// Reads a non-negative integer column into an unsigned type.
pub(crate) fn unsigned<T: TryFrom<i64>>(row: &MySqlRow, column: &str) -> Result<T> {
    let raw: i64 = get(row, column)?;
    T::try_from(raw).map_err(|_| Error::Invalid(format!("stored {column} {raw}")))
}

/// Reads a nullable integer column into an unsigned (or narrower) type.
pub(crate) fn opt_unsigned<T: TryFrom<i64>>(row: &MySqlRow, column: &str) -> Result<Option<T>> {
    let raw: Option<i64> = get(row, column)?;
    raw.map(|r| T::try_from(r).map_err(|_| Error::Invalid(format!("stored {column} {r}"))))
        .transpose()
}

/// Reads a JSON column (MariaDB stores JSON as text) into `T`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &MySqlRow, column: &str) -> Result<T> {
    // MariaDB's JSON is LONGTEXT with a binary collation, which the driver may flag as bytes.
    let raw = text(row, column)?;
    serde_json::from_str(&raw).map_err(|_| Error::Invalid(format!("stored json in {column}")))
}

/// Reads a nullable JSON column into `T` (`None` for SQL NULL).
pub(crate) fn opt_json<T: serde::de::DeserializeOwned>(
    row: &MySqlRow,
    column: &str,
) -> Result<Option<T>> {
    opt_text(row, column)?
        .map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|_| Error::Invalid(format!("stored json in {column}")))
        })
        .transpose()
}

/// Serializes a value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|_| Error::Invalid(format!("{what} as json")))
}
