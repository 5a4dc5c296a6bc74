-- The scheduler's source of truth: tenants, hosts, apps, domains, deployments, instances.
--
-- Amounts are exact integers: memory in bytes, CPU in millicores. A host's free amounts only
-- change through the optimistic claim (`... WHERE id = ? AND version = ?`), and the CHECK
-- constraints below (enforced by MariaDB >= 10.2) refuse any write that would over-commit it.
-- States are VARCHAR + CHECK rather than ENUM so the Rust side decodes plain strings.

CREATE TABLE tenants (
    name        VARCHAR(63)  NOT NULL PRIMARY KEY,
    token_hash  CHAR(64)     NOT NULL,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY tenants_token (token_hash)
) ENGINE = InnoDB;

CREATE TABLE hosts (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(253) NOT NULL,
    address     VARCHAR(45)  NOT NULL,
    docker      VARCHAR(512) NOT NULL,
    labels      JSON         NOT NULL,
    mem_total   BIGINT       NOT NULL,
    mem_free    BIGINT       NOT NULL,
    cpu_total   INT          NOT NULL,
    cpu_free    INT          NOT NULL,
    port_first  INT          NOT NULL,
    port_last   INT          NOT NULL,
    state       VARCHAR(16)  NOT NULL DEFAULT 'ready',
    version     BIGINT       NOT NULL DEFAULT 0,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY hosts_name (name),
    KEY hosts_state (state),
    CONSTRAINT hosts_mem CHECK (mem_total > 0 AND mem_free >= 0 AND mem_free <= mem_total),
    CONSTRAINT hosts_cpu CHECK (cpu_total > 0 AND cpu_free >= 0 AND cpu_free <= cpu_total),
    CONSTRAINT hosts_ports CHECK (port_first >= 1024 AND port_last <= 65535 AND port_first <= port_last),
    CONSTRAINT hosts_state_ok CHECK (state IN ('ready', 'draining', 'down'))
) ENGINE = InnoDB;

CREATE TABLE apps (
    id          VARCHAR(63)  NOT NULL PRIMARY KEY,
    tenant      VARCHAR(63)  NULL,
    auto_deploy BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY apps_tenant (tenant),
    CONSTRAINT apps_tenant_fk FOREIGN KEY (tenant) REFERENCES tenants (name)
) ENGINE = InnoDB;

CREATE TABLE domains (
    domain      VARCHAR(253) NOT NULL PRIMARY KEY,
    app_id      VARCHAR(63)  NOT NULL,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY domains_app (app_id),
    CONSTRAINT domains_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
) ENGINE = InnoDB;

CREATE TABLE deployments (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id      VARCHAR(63)  NOT NULL,
    version     VARCHAR(128) NOT NULL,
    image       VARCHAR(512) NOT NULL,
    memory      BIGINT       NOT NULL,
    cpu         INT          NOT NULL,
    port        INT          NOT NULL,
    env         JSON         NOT NULL,
    placement   JSON         NOT NULL,
    health      JSON         NOT NULL,
    instances   INT          NOT NULL,
    state       VARCHAR(16)  NOT NULL DEFAULT 'deploying',
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY deployments_app_version (app_id, version),
    CONSTRAINT deployments_app_fk FOREIGN KEY (app_id) REFERENCES apps (id),
    CONSTRAINT deployments_resources CHECK (memory > 0 AND cpu > 0 AND instances >= 0),
    CONSTRAINT deployments_port CHECK (port BETWEEN 1 AND 65535),
    CONSTRAINT deployments_state_ok CHECK (state IN ('deploying', 'running', 'stopping', 'failed'))
) ENGINE = InnoDB;

-- One row per claim: the resources it holds on its host and the host port it owns. The sum of a
-- host's instance rows plus its free amounts equals its capacity (the placement invariant).
CREATE TABLE instances (
    id            VARCHAR(63)  NOT NULL PRIMARY KEY,
    deployment_id BIGINT       NOT NULL,
    app_id        VARCHAR(63)  NOT NULL,
    host_id       BIGINT       NOT NULL,
    host_port     INT          NOT NULL,
    memory        BIGINT       NOT NULL,
    cpu           INT          NOT NULL,
    container_id  VARCHAR(64)  NULL,
    state         VARCHAR(16)  NOT NULL DEFAULT 'pending',
    healthy       BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY instances_host_port (host_id, host_port),
    KEY instances_deployment (deployment_id),
    KEY instances_app (app_id),
    CONSTRAINT instances_deployment_fk FOREIGN KEY (deployment_id) REFERENCES deployments (id),
    CONSTRAINT instances_app_fk FOREIGN KEY (app_id) REFERENCES apps (id),
    CONSTRAINT instances_host_fk FOREIGN KEY (host_id) REFERENCES hosts (id),
    CONSTRAINT instances_resources CHECK (memory > 0 AND cpu > 0),
    CONSTRAINT instances_state_ok
        CHECK (state IN ('pending', 'starting', 'running', 'unhealthy', 'stopping'))
) ENGINE = InnoDB;
