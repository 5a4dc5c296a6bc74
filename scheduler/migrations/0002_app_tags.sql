-- Tags of an app's image as pushed to the registry, recorded from the registry's notifications.
-- One row per (app, tag): a re-push of a tag updates its digest and time. Rows go with their app.

CREATE TABLE app_tags (
    app_id      VARCHAR(63)  NOT NULL,
    tag         VARCHAR(128) NOT NULL,
    digest      VARCHAR(255) NOT NULL,
    media_type  VARCHAR(255) NOT NULL,
    pushed_by   VARCHAR(255) NULL,
    pushed_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app_id, tag),
    KEY app_tags_pushed (app_id, pushed_at),
    CONSTRAINT app_tags_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
) ENGINE = InnoDB;
