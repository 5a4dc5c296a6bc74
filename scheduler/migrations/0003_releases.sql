-- Releases: every deploy and rollback of an app, pinned to the manifest digest its tag resolved
-- to, so that re-pushing a tag never changes what a release runs. Rows survive an undeploy and go
-- with their app.
--
-- `active` is not stored: a release is active while its deployment runs (`deployment_id` points
-- at a `running` deployment) and it is the newest release of that deployment, so the flag can
-- never go stale. `ON DELETE SET NULL` drops the link when the deployment is undeployed.
-- `config_version` is 0 until apps have config (the config work sets it).

-- Two generations of one version may exist while a rollback rolls that same version: the
-- current one has generation 0 (so a second ordinary deploy of it is still a conflict), the one
-- being replaced is moved to generation = its own id until it is undeployed.
ALTER TABLE deployments ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD UNIQUE KEY deployments_app_version_generation (app_id, version, generation);
ALTER TABLE deployments DROP INDEX deployments_app_version;

CREATE TABLE releases (
    app_id          VARCHAR(63)  NOT NULL,
    number          INT          NOT NULL,
    version         VARCHAR(128) NOT NULL,
    digest          VARCHAR(255) NOT NULL,
    config_version  BIGINT       NOT NULL DEFAULT 0,
    spec            JSON         NOT NULL,
    deployment_id   BIGINT       NULL,
    created_by      VARCHAR(255) NOT NULL,
    created_at      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app_id, number),
    KEY releases_deployment (deployment_id),
    CONSTRAINT releases_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT releases_deployment_fk FOREIGN KEY (deployment_id) REFERENCES deployments (id)
        ON DELETE SET NULL,
    CONSTRAINT releases_number CHECK (number >= 1),
    CONSTRAINT releases_config_version CHECK (config_version >= 0)
) ENGINE = InnoDB;
