-- An app's config: one row per config version, the newest is the current one. Versions are
-- kept (a release names the config version it ran with). `vars` is a JSON object of plain
-- values; `secrets` is a JSON object of sealed values (`v1:{key id}:{base64 of nonce,
-- ciphertext and tag}`, XChaCha20-Poly1305 with the app and the name as associated data):
-- no plaintext secret is ever written here. Rows go with their app.

CREATE TABLE app_config (
    app_id      VARCHAR(63)  NOT NULL,
    version     BIGINT       NOT NULL,
    vars        JSON         NOT NULL,
    secrets     JSON         NOT NULL,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app_id, version),
    CONSTRAINT app_config_version CHECK (version >= 1),
    CONSTRAINT app_config_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
) ENGINE = InnoDB;
