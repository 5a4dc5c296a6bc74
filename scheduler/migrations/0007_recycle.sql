-- Per-deployment stop grace period and recycle age (NULL: the scheduler's default / never), and
-- when each instance last became running (the age recycling compares; NULL before this
-- migration, when the row's creation time stands in for it).
ALTER TABLE deployments
    ADD COLUMN stop_timeout_s  INT    NULL,
    ADD COLUMN recycle_after_s BIGINT NULL;
ALTER TABLE instances
    ADD COLUMN started_at TIMESTAMP(3) NULL;
