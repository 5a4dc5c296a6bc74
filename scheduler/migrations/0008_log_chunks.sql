-- App logs stored as chunks instead of one row per line: at 20,000 lines/s a row per line (four
-- indexes and a foreign key check each) took the collector's one writer 55-75 ms per 1,000 lines
-- on the benchmark machine, slower than the lines came, so followers fell seconds behind. A
-- chunk is the lines one instance wrote during one flush of the collector (a few per second per
-- instance, at most a few thousand lines each), encoded by `scheduler/src/store/log_chunk.rs`.
--
-- `id` is the order the collector's one writer committed chunks in: followers of the logs API
-- read new chunks by `id`. `first_ns`/`last_ns` bound the engine timestamps of the chunk's lines
-- (nanoseconds since the Unix epoch): history is read by `last_ns`, a follower of a container
-- resumes after its instance's largest `last_ns`. (instance_id, first_ns) is unique so a chunk
-- written twice (a commit retried after its answer was lost) is stored once: inserts are
-- INSERT IGNORE. The ring deletes chunks wholly older than its edge and rewrites those across
-- it (`first_ns`, `line_count` and `body` change). `line_count` is not `lines`, a reserved word.
--
-- The one-row-per-line table of migration 0005 is dropped with its lines: they are a ring of
-- recent output, and no release of caas shipped it.

DROP TABLE app_logs;

CREATE TABLE app_log_chunks (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id      VARCHAR(63)  NOT NULL,
    instance_id VARCHAR(63)  NOT NULL,
    version     VARCHAR(128) NOT NULL,
    first_ns    BIGINT       NOT NULL,
    last_ns     BIGINT       NOT NULL,
    line_count  INT UNSIGNED NOT NULL,
    body        MEDIUMBLOB   NOT NULL,
    KEY app_log_chunks_app_id (app_id, id),
    KEY app_log_chunks_app_last (app_id, last_ns),
    KEY app_log_chunks_instance_last (instance_id, last_ns),
    UNIQUE KEY app_log_chunks_once (instance_id, first_ns),
    CONSTRAINT app_log_chunks_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT app_log_chunks_order CHECK (first_ns <= last_ns AND line_count > 0)
) ENGINE = InnoDB;
