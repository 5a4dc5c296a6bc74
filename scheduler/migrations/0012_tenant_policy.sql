-- Tenants that cannot touch each other (brief, part 2, "Tenants and security").
--
-- Quotas: each limit NULL is unlimited. CPU in millicores, memory in MiB. A claim of a tenant
-- with a quota locks the tenant's row (`SELECT ... FOR UPDATE`) after its host's and counts what
-- the tenant's apps hold inside the same transaction, so concurrent deploys cannot overshoot.
ALTER TABLE tenants
    ADD COLUMN max_apps       BIGINT NULL,
    ADD COLUMN max_instances  BIGINT NULL,
    ADD COLUMN max_memory_mb  BIGINT NULL,
    ADD COLUMN max_cpu_millis BIGINT NULL,
    ADD CONSTRAINT tenants_quota_ok CHECK (
        (max_apps IS NULL OR max_apps >= 0) AND (max_instances IS NULL OR max_instances >= 0)
        AND (max_memory_mb IS NULL OR max_memory_mb >= 0)
        AND (max_cpu_millis IS NULL OR max_cpu_millis >= 0));

-- The domain suffixes the operator gave a tenant: it routes custom domains only at or below
-- them. Gone with the tenant.
CREATE TABLE tenant_domains (
    tenant  VARCHAR(63)  NOT NULL,
    suffix  VARCHAR(253) NOT NULL,
    PRIMARY KEY (tenant, suffix),
    CONSTRAINT tenant_domains_tenant_fk FOREIGN KEY (tenant) REFERENCES tenants (name)
        ON DELETE CASCADE
) ENGINE = InnoDB;

-- Host ports released lately: a port stays out of use for the quarantine period
-- (`--port-quarantine-secs`, default 600) after its instance's release, so a gateway cut off
-- from ZooKeeper, which serves its cached routes at most that long, never sends one app's
-- requests to another app's container on a reused port. Written and read under the host's row
-- lock (release and claim both update the host row first); expired rows of a host go at its
-- next release.
CREATE TABLE port_quarantine (
    host_id     BIGINT       NOT NULL,
    host_port   INT          NOT NULL,
    released_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (host_id, host_port),
    CONSTRAINT port_quarantine_host_fk FOREIGN KEY (host_id) REFERENCES hosts (id)
        ON DELETE CASCADE
) ENGINE = InnoDB;
