-- The user-service's profiles (SQLite). Usernames are unique regardless of case.
CREATE TABLE users (
    id       INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    email    TEXT NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
