-- Events: what happened to apps (deploys, scaling, health, releases, config), newest last by
-- id. `tenant` is the app's owner when the event was stored (NULL: an operator app or no app),
-- so a tenant reads only its apps' events. `body` is the event's own fields as a JSON object.
-- History is bounded (`--events-keep`): the oldest rows are pruned. An app's rows are deleted
-- with the app (no foreign key: an event may outlive the instant its app is removed, and an
-- event for an app that is already gone must not fail the operation that emits it).

CREATE TABLE events (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    ts          TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    type        VARCHAR(64)  NOT NULL,
    app         VARCHAR(63)  NULL,
    tenant      VARCHAR(63)  NULL,
    body        JSON         NOT NULL,
    PRIMARY KEY (id),
    KEY events_app (app, id),
    KEY events_tenant (tenant, id)
) ENGINE = InnoDB;

-- Webhooks: where events are POSTed. `secret` is sealed with the operator's secrets key
-- (never plaintext); `tenant` NULL is the operator's (all events). `delivered_id` is the last
-- event id this webhook is done with (delivered or given up), so a new leader resumes there.
CREATE TABLE webhooks (
    id           VARCHAR(32)   NOT NULL,
    tenant       VARCHAR(63)   NULL,
    url          VARCHAR(2048) NOT NULL,
    events       JSON          NOT NULL,
    secret       TEXT          NOT NULL,
    delivered_id BIGINT        NOT NULL DEFAULT 0,
    created_at   TIMESTAMP(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY webhooks_tenant (tenant),
    CONSTRAINT webhooks_tenant_fk FOREIGN KEY (tenant) REFERENCES tenants (name) ON DELETE CASCADE
) ENGINE = InnoDB;
