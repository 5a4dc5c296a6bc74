-- Lines the apps' containers wrote, collected by the leader (`scheduler/src/logs/`), so they
-- outlive their containers and a scheduler restart. A ring per app: the collector trims each
-- app to its newest `--logs-keep-lines` lines in the background. Rows go with their app.
--
-- `ts_ns` is the engine's timestamp, nanoseconds since the Unix epoch. `id` is the order the
-- collector's one writer committed lines in: followers of the logs API read new lines by `id`.
-- (instance_id, ts_ns, stream) is unique so a line collected twice (a leader change, a follower
-- resumed) is stored once: inserts are INSERT IGNORE. Only `line` names its character set: a
-- table-wide one would differ from `apps.id`'s (the database default) wherever that default is
-- not utf8mb4_bin, and the foreign key could not be made (it failed so in the compose stack).

CREATE TABLE app_logs (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id      VARCHAR(63)  NOT NULL,
    instance_id VARCHAR(63)  NOT NULL,
    version     VARCHAR(128) NOT NULL,
    stream      VARCHAR(6)   NOT NULL,
    ts_ns       BIGINT       NOT NULL,
    line        TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    KEY app_logs_app_ts (app_id, ts_ns, id),
    KEY app_logs_app_id (app_id, id),
    UNIQUE KEY app_logs_once (instance_id, ts_ns, stream),
    CONSTRAINT app_logs_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT app_logs_stream CHECK (stream IN ('stdout', 'stderr'))
) ENGINE = InnoDB;
