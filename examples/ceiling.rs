//! The benchmark's ceiling: a bare axum handler answering `GET /users/{id}` with the body the
//! user-service returns, with no token check and no database. `bench/user-service.sh` runs it.
//!
//! Run: `PORT=8090 cargo run --release --example ceiling`

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Serialize)]
struct User {
    id: i64,
    username: String,
    email: String,
}

async fn user(Path(id): Path<i64>) -> Json<User> {
    Json(User {
        id,
        username: format!("user_{id}"),
        email: format!("user{id}@example.com"),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, Router::new().route("/users/{id}", get(user))).await
}
