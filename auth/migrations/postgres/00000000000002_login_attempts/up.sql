-- Failed logins per login (known or not), in a window: shared by every auth replica, so the
-- limit holds however the ingress spreads the attempts.
CREATE TABLE login_attempts (
    login_key    TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start TIMESTAMP NOT NULL
);
