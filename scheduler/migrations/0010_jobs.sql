-- Jobs and workflows: containers that run to completion (brief, part 2, "Jobs", "Workflows").
--
-- A job's claim is an `instances` row like an instance's (memory and CPU taken from its host by
-- the same optimistic claim, so `mem_free = mem_total - SUM(instances.memory)` still holds for
-- every host), with `deployment_id` NULL, `job_id` set and no host port. Everything that reads
-- instances through their deployment (reconciler, healer, health targets, routes) never sees it.
--
-- A workflow's steps are jobs with `workflow_id` set (and left out of the app's job list). The
-- runner is the scheduler process that holds the job's streams; it refreshes `heartbeat_at`,
-- and the leader adopts (or fails) a job whose heartbeat stopped.
CREATE TABLE workflows (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant           VARCHAR(63)  NULL,
    name             VARCHAR(255) NOT NULL,
    state            VARCHAR(16)  NOT NULL DEFAULT 'pending',
    reason           VARCHAR(1024) NULL,
    stdin            BOOLEAN      NOT NULL DEFAULT FALSE,
    timeout_s        BIGINT       NOT NULL,
    output           MEDIUMBLOB   NULL,
    output_written   BIGINT       NOT NULL DEFAULT 0,
    runner           VARCHAR(64)  NULL,
    heartbeat_at     TIMESTAMP(3) NULL,
    cancel_requested BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    started_at       TIMESTAMP(3) NULL,
    finished_at      TIMESTAMP(3) NULL,
    KEY workflows_tenant (tenant, id),
    KEY workflows_open (state, heartbeat_at),
    KEY workflows_finished (finished_at),
    CONSTRAINT workflows_state_ok CHECK (state IN
        ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'))
) ENGINE = InnoDB;

-- Cron schedules of an app; each run is a job. `schedule_runs` holds one row per (schedule, due
-- time): its primary key is what makes a due run start once however many schedulers race.
CREATE TABLE schedules (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id           VARCHAR(63)  NOT NULL,
    name             VARCHAR(63)  NOT NULL,
    cron             VARCHAR(255) NOT NULL,
    job              JSON         NOT NULL,
    concurrency      VARCHAR(8)   NOT NULL DEFAULT 'forbid',
    created_at       TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY schedules_name (app_id, name),
    CONSTRAINT schedules_app_fk FOREIGN KEY (app_id) REFERENCES apps (id),
    CONSTRAINT schedules_concurrency_ok CHECK (concurrency IN ('forbid', 'allow'))
) ENGINE = InnoDB;

CREATE TABLE schedule_runs (
    schedule_id      BIGINT       NOT NULL,
    due_at           TIMESTAMP(3) NOT NULL,
    job_id           BIGINT       NULL,
    outcome          VARCHAR(16)  NOT NULL,
    created_at       TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (schedule_id, due_at),
    CONSTRAINT schedule_runs_schedule_fk FOREIGN KEY (schedule_id) REFERENCES schedules (id)
        ON DELETE CASCADE
) ENGINE = InnoDB;

CREATE TABLE jobs (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id           VARCHAR(63)  NOT NULL,
    version          VARCHAR(128) NOT NULL,
    image            VARCHAR(512) NOT NULL,
    command          JSON         NOT NULL,
    memory           BIGINT       NOT NULL,
    cpu              INT          NOT NULL,
    timeout_s        BIGINT       NOT NULL,
    stdin            BOOLEAN      NOT NULL DEFAULT FALSE,
    state            VARCHAR(16)  NOT NULL DEFAULT 'pending',
    exit_code        BIGINT       NULL,
    reason           VARCHAR(1024) NULL,
    host_id          BIGINT       NULL,
    instance_id      VARCHAR(63)  NULL,
    container_id     VARCHAR(64)  NULL,
    workflow_id      BIGINT       NULL,
    step_index       INT          NULL,
    step_name        VARCHAR(255) NULL,
    schedule_id      BIGINT       NULL,
    output           MEDIUMBLOB   NULL,
    output_written   BIGINT       NOT NULL DEFAULT 0,
    runner           VARCHAR(64)  NULL,
    heartbeat_at     TIMESTAMP(3) NULL,
    cancel_requested BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    started_at       TIMESTAMP(3) NULL,
    finished_at      TIMESTAMP(3) NULL,
    KEY jobs_app (app_id, workflow_id, id),
    KEY jobs_workflow (workflow_id, step_index),
    KEY jobs_schedule (schedule_id, id),
    KEY jobs_open (state, heartbeat_at),
    KEY jobs_finished (finished_at),
    CONSTRAINT jobs_app_fk FOREIGN KEY (app_id) REFERENCES apps (id),
    CONSTRAINT jobs_schedule_fk FOREIGN KEY (schedule_id) REFERENCES schedules (id)
        ON DELETE SET NULL,
    CONSTRAINT jobs_workflow_fk FOREIGN KEY (workflow_id) REFERENCES workflows (id)
        ON DELETE CASCADE,
    CONSTRAINT jobs_state_ok CHECK (state IN
        ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
    CONSTRAINT jobs_resources CHECK (memory > 0 AND cpu > 0 AND timeout_s > 0)
) ENGINE = InnoDB;

ALTER TABLE instances
    MODIFY COLUMN deployment_id BIGINT NULL,
    ADD COLUMN job_id BIGINT NULL,
    ADD KEY instances_job (job_id),
    ADD CONSTRAINT instances_job_fk FOREIGN KEY (job_id) REFERENCES jobs (id),
    ADD CONSTRAINT instances_owner CHECK ((deployment_id IS NULL) <> (job_id IS NULL));
