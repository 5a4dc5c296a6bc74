-- Traffic statistics (issue 18): what the gateways counted of each app's traffic, from their
-- demand reports. One row per (gateway, boot, app, since): the counts a gateway process
-- (`boot`, random per process) reported for the app since its report number `since` (its last
-- report the scheduler accepted that carried the app). A report sent again because its answer
-- was lost has the same key and larger counts: it replaces the row (each counter the larger),
-- so nothing is counted twice. `at_ms` is the database's time of the report (milliseconds
-- since the Unix epoch), which buckets the counts into a time series.
--
-- The counters: answers by status class (`s1xx` ... `s5xx`), request and response body bytes,
-- the latency histogram (`l0` ... `l14`: one slot per bound of the gateways' buckets, 0.5 ms to
-- 10 s, then +Inf) and the sum of the latencies in microseconds.
--
-- Kept for the longest window the API serves plus its longest step (65 minutes; the leader's
-- autoscaler deletes older rows once a minute). No foreign key, so a report never blocks an
-- app's deletion; an app's rows go with it (`Store::delete_app`).
CREATE TABLE app_traffic (
    gateway        VARCHAR(63)     NOT NULL,
    boot           BIGINT UNSIGNED NOT NULL,
    app_id         VARCHAR(63)     NOT NULL,
    since          BIGINT UNSIGNED NOT NULL,
    at_ms          BIGINT          NOT NULL,
    s1xx           BIGINT UNSIGNED NOT NULL,
    s2xx           BIGINT UNSIGNED NOT NULL,
    s3xx           BIGINT UNSIGNED NOT NULL,
    s4xx           BIGINT UNSIGNED NOT NULL,
    s5xx           BIGINT UNSIGNED NOT NULL,
    bytes_in       BIGINT UNSIGNED NOT NULL,
    bytes_out      BIGINT UNSIGNED NOT NULL,
    l0             BIGINT UNSIGNED NOT NULL,
    l1             BIGINT UNSIGNED NOT NULL,
    l2             BIGINT UNSIGNED NOT NULL,
    l3             BIGINT UNSIGNED NOT NULL,
    l4             BIGINT UNSIGNED NOT NULL,
    l5             BIGINT UNSIGNED NOT NULL,
    l6             BIGINT UNSIGNED NOT NULL,
    l7             BIGINT UNSIGNED NOT NULL,
    l8             BIGINT UNSIGNED NOT NULL,
    l9             BIGINT UNSIGNED NOT NULL,
    l10            BIGINT UNSIGNED NOT NULL,
    l11            BIGINT UNSIGNED NOT NULL,
    l12            BIGINT UNSIGNED NOT NULL,
    l13            BIGINT UNSIGNED NOT NULL,
    l14            BIGINT UNSIGNED NOT NULL,
    latency_sum_us BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (gateway, boot, app_id, since),
    KEY app_traffic_app (app_id, at_ms),
    KEY app_traffic_at (at_ms)
) ENGINE = InnoDB;
