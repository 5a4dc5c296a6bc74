-- Autoscaling (brief, part 2, "Scale to zero and autoscaling"). A deployment with `autoscale`
-- (JSON: min, max, target_concurrency, scale_down_delay_s; NULL: scaled by hand only) has its
-- count set by the platform; `desired` is the count the autoscaler wants (NULL without
-- autoscale; the starting count at deploy).
ALTER TABLE deployments
    ADD COLUMN autoscale JSON NULL,
    ADD COLUMN desired   INT  NULL;

-- The gateways' demand reports: per (gateway, app) the requests it held for a sleeping app and
-- those in flight to the app's instances, with when the gateway said so (the database's clock).
-- A report replaces the same gateway's row for that app; readers add up the rows of every
-- gateway that reported lately. No foreign key, so a report never blocks an app's deletion;
-- the app's rows go with it (`Store::delete_app`).
CREATE TABLE gateway_demand (
    gateway     VARCHAR(63)  NOT NULL,
    app_id      VARCHAR(63)  NOT NULL,
    held        INT UNSIGNED NOT NULL,
    in_flight   INT UNSIGNED NOT NULL,
    reported_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (gateway, app_id),
    KEY gateway_demand_app (app_id, reported_at)
) ENGINE = InnoDB;
