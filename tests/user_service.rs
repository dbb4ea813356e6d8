//! The user-service's outward contract, end to end: every status and body of `/users`, the
//! bad-token suite over HTTP, arbitrary headers, key reloading through a kubelet-style symlink
//! swap, the operational endpoints, and the real binary's exit codes and graceful stop.
//!
//! Tests that touch user data run twice, against SQLite and against PostgreSQL. The PostgreSQL
//! variants need `TEST_DATABASE_URL` (see `hack/postgres.sh`) and fail without it.

#[path = "user_service/support.rs"]
mod support;
#[path = "../src/token/test_keys.rs"]
mod test_keys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use authkeyring::service::config::KeySource;
use authkeyring::token::KeySet;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::{Database, Db, KeyringDir, Server, config, eventually, jwks_source};
use test_keys::{TestKey, b64, claims, compact, jwks};

const MISSING: &str = "Authorization header missing";
const EXPIRED: &str = "Token expired";
const INVALID: &str = "Invalid token";

fn error(message: &str) -> Value {
    json!({ "error": message })
}

fn user_json(id: i64) -> Value {
    json!({ "id": id, "username": format!("user_{id}"), "email": format!("user{id}@example.com") })
}

fn now() -> i64 {
    authkeyring::token::unix_now()
}

fn claims_with(user_id: i64, changes: Value) -> Value {
    let mut claims = claims(user_id, false);
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

/// A server with demo users 1 to 10 that trusts `key`.
async fn server_with(db: Db, key: &TestKey) -> (Server, Database) {
    let database = Database::create(db).await;
    let mut config = config(&database, jwks_source(&jwks(&[key])));
    config.demo_users = 10;
    (Server::start(config).await, database)
}

/// Runs each named scenario once against SQLite and once against PostgreSQL.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await
                }
            )*
        }
    };
}

on_both_databases!(
    reading_a_profile_keeps_the_seeds_contract,
    admins_create_users,
    users_update_their_own_profile_and_admins_any,
    demo_users_are_created_where_missing,
    readiness_follows_the_database,
);

// === GET /users/{id} ===

async fn reading_a_profile_keeps_the_seeds_contract(db: Db) {
    let key = TestKey::generate("HS256", "k");
    let (server, database) = server_with(db, &key).await;
    let user7 = key.sign(&claims(7, false));
    let admin = key.sign(&claims(1, true));

    assert_eq!(
        server.get("/users/7", None).await,
        (StatusCode::UNAUTHORIZED, error(MISSING))
    );
    assert_eq!(
        server.call(Method::GET, "/users/7", Some(""), None).await,
        (StatusCode::UNAUTHORIZED, error(MISSING))
    );
    let expired = key.sign(&claims_with(7, json!({ "exp": now() - 120 })));
    assert_eq!(
        server.get("/users/7", Some(&expired)).await,
        (StatusCode::UNAUTHORIZED, error(EXPIRED))
    );
    assert_eq!(
        server.get("/users/7", Some("not-a-token")).await,
        (StatusCode::UNAUTHORIZED, error(INVALID))
    );

    assert_eq!(
        server.get("/users/7", Some(&user7)).await,
        (StatusCode::OK, user_json(7))
    );
    assert_eq!(
        server.get("/users/8", Some(&user7)).await,
        (StatusCode::FORBIDDEN, error("Forbidden"))
    );
    assert_eq!(
        server.get("/users/8", Some(&admin)).await,
        (StatusCode::OK, user_json(8))
    );
    assert_eq!(
        server.get("/users/0007", Some(&user7)).await,
        (StatusCode::OK, user_json(7))
    );

    // Unknown users are not found for whoever may ask; others are forbidden, so nothing leaks.
    assert_eq!(
        server.get("/users/404", Some(&admin)).await,
        (StatusCode::NOT_FOUND, error("Not found"))
    );
    let user404 = key.sign(&claims(404, false));
    assert_eq!(
        server.get("/users/404", Some(&user404)).await,
        (StatusCode::NOT_FOUND, error("Not found"))
    );
    assert_eq!(
        server.get("/users/405", Some(&user404)).await,
        (StatusCode::FORBIDDEN, error("Forbidden"))
    );

    // Like Flask's `<int:>` converter, a path that is not a non-negative integer is no route.
    for path in [
        "/users/abc",
        "/users/-1",
        "/users/1.5",
        "/users/%20",
        "/users/99999999999999999999",
        "/users/7/",
        "/users/",
        "/nowhere",
    ] {
        assert_eq!(
            server.get(path, None).await.0,
            StatusCode::NOT_FOUND,
            "{path} without a token"
        );
        let (status, body) = server.get(path, Some(&admin)).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {status}"
        );
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    let response = server
        .send(Method::GET, "/users/7", Some(&format!("Bearer {user7}")), None)
        .await;
    assert_eq!(response.headers()["content-type"], "application/json");

    server.stop().await;
    database.remove().await;
}

// === writes ===

async fn admins_create_users(db: Db) {
    let key = TestKey::generate("ES256", "k");
    let (server, database) = server_with(db, &key).await;
    let admin = format!("Bearer {}", key.sign(&claims(1, true)));
    let user = format!("Bearer {}", key.sign(&claims(2, false)));
    let ada = r#"{"username":"ada","email":"ada@example.com"}"#;

    assert_eq!(
        server.call(Method::POST, "/users", None, Some(ada)).await,
        (StatusCode::UNAUTHORIZED, error(MISSING))
    );
    assert_eq!(
        server.call(Method::POST, "/users", Some(&user), Some(ada)).await,
        (StatusCode::FORBIDDEN, error("Forbidden"))
    );

    let response = server.send(Method::POST, "/users", Some(&admin), Some(ada)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["username"], "ada");
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["id"], 11, "the next id after the demo users");
    assert_eq!(location, "/users/11");
    let ada_token = key.sign(&claims(11, false));
    assert_eq!(
        server.get(&location, Some(&ada_token)).await,
        (StatusCode::OK, created)
    );

    let taken = r#"{"username":"ADA","email":"other@example.com"}"#;
    assert_eq!(
        server
            .call(Method::POST, "/users", Some(&admin), Some(taken))
            .await,
        (
            StatusCode::CONFLICT,
            json!({ "error": "Username already taken", "field": "username" })
        )
    );

    for (body, field) in [
        (r#"{"email":"a@example.com"}"#, "username"),
        (r#"{"username":"bob"}"#, "email"),
        (r#"{"username":"bo b","email":"b@example.com"}"#, "username"),
        (r#"{"username":"bob","email":"not-an-address"}"#, "email"),
        (r#"{"username":"bob","email":5}"#, "email"),
        (
            r#"{"username":"bob","email":"b@example.com","is_admin":true}"#,
            "is_admin",
        ),
    ] {
        let (status, body_json) = server
            .call(Method::POST, "/users", Some(&admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body_json["field"], field, "{body}");
        assert!(body_json["error"].is_string());
    }
    for body in ["", "not json", "[]", "{"] {
        let (status, body_json) = server
            .call(Method::POST, "/users", Some(&admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(body_json["error"].is_string());
    }
    let huge = format!(
        r#"{{"username":"bob","email":"{}@example.com"}}"#,
        "b".repeat(20_000)
    );
    assert_eq!(
        server
            .call(Method::POST, "/users", Some(&admin), Some(&huge))
            .await,
        (StatusCode::PAYLOAD_TOO_LARGE, error("Request body too large"))
    );
    assert_eq!(
        server
            .call(Method::DELETE, "/users/1", Some(&admin), None)
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    server.stop().await;
    database.remove().await;
}

async fn users_update_their_own_profile_and_admins_any(db: Db) {
    let key = TestKey::generate("EdDSA", "k");
    let (server, database) = server_with(db, &key).await;
    let admin = format!("Bearer {}", key.sign(&claims(1, true)));
    let user3 = format!("Bearer {}", key.sign(&claims(3, false)));
    let user3_token = key.sign(&claims(3, false));
    assert_eq!(
        server.get("/users/3", Some(&user3_token)).await,
        (StatusCode::OK, user_json(3)),
        "cached now"
    );
    let patch = |auth: &str, id: i64, body: &str| {
        let (auth, body, path) = (auth.to_owned(), body.to_owned(), format!("/users/{id}"));
        let server = &server;
        async move { server.call(Method::PATCH, &path, Some(&auth), Some(&body)).await }
    };

    assert_eq!(
        patch(&user3, 3, r#"{"email":"three@example.com"}"#).await,
        (
            StatusCode::OK,
            json!({ "id": 3, "username": "user_3", "email": "three@example.com" })
        )
    );
    assert_eq!(
        patch(&user3, 3, "{}").await,
        (
            StatusCode::OK,
            json!({ "id": 3, "username": "user_3", "email": "three@example.com" })
        )
    );
    assert_eq!(
        patch(&user3, 4, r#"{"email":"x@example.com"}"#).await,
        (StatusCode::FORBIDDEN, error("Forbidden"))
    );
    assert_eq!(
        patch(&admin, 4, r#"{"username":"four"}"#).await,
        (
            StatusCode::OK,
            json!({ "id": 4, "username": "four", "email": "user4@example.com" })
        )
    );
    assert_eq!(
        patch(&user3, 3, r#"{"username":"Four"}"#).await,
        (
            StatusCode::CONFLICT,
            json!({ "error": "Username already taken", "field": "username" })
        )
    );
    assert_eq!(
        patch(&admin, 999, r#"{"username":"nobody"}"#).await,
        (StatusCode::NOT_FOUND, error("Not found"))
    );
    assert_eq!(
        patch(&admin, 999, "{}").await,
        (StatusCode::NOT_FOUND, error("Not found"))
    );
    assert_eq!(
        patch(&user3, 3, r#"{"email":null}"#).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(patch(&user3, 3, "nope").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        server.call(Method::PATCH, "/users/3", None, Some("{}")).await,
        (StatusCode::UNAUTHORIZED, error(MISSING))
    );
    assert_eq!(
        server
            .call(Method::PATCH, "/users/x", Some(&admin), Some("{}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        server.get("/users/3", Some(&user3_token)).await.1["email"],
        "three@example.com"
    );

    server.stop().await;
    database.remove().await;
}

async fn demo_users_are_created_where_missing(db: Db) {
    let key = TestKey::generate("HS256", "k");
    let database = Database::create(db).await;
    let admin = key.sign(&claims(1, true));
    let start = |count| {
        let mut config = config(&database, jwks_source(&jwks(&[&key])));
        config.demo_users = count;
        Server::start(config)
    };

    let server = start(3).await;
    let (status, _) = server
        .call(
            Method::PATCH,
            "/users/2",
            Some(&format!("Bearer {admin}")),
            Some(r#"{"email":"kept@example.com"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;

    let server = start(5).await;
    assert_eq!(
        server.get("/users/2", Some(&admin)).await.1["email"],
        "kept@example.com"
    );
    assert_eq!(
        server.get("/users/5", Some(&admin)).await,
        (StatusCode::OK, user_json(5))
    );
    assert_eq!(
        server.get("/users/6", Some(&admin)).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, created) = server
        .call(
            Method::POST,
            "/users",
            Some(&format!("Bearer {admin}")),
            Some(r#"{"username":"new","email":"n@example.com"}"#),
        )
        .await;
    assert_eq!((status, created["id"].clone()), (StatusCode::CREATED, json!(6)));

    server.stop().await;
    database.remove().await;
}

async fn readiness_follows_the_database(db: Db) {
    let key = TestKey::generate("HS256", "k");
    let (server, database) = server_with(db, &key).await;

    assert_eq!(
        server.get("/readyz", None).await,
        (StatusCode::OK, json!({ "status": "ready" }))
    );
    assert_eq!(
        server.get("/healthz", None).await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );

    // A database that goes away makes the service unready and its reads unavailable, never a 500.
    server.state.store.close().await;
    assert_eq!(
        server.get("/readyz", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "reason": "database unreachable" })
        )
    );
    let admin = key.sign(&claims(1, true));
    assert_eq!(
        server.get("/users/1", Some(&admin)).await,
        (StatusCode::SERVICE_UNAVAILABLE, error("Service unavailable"))
    );
    assert_eq!(server.get("/healthz", None).await.0, StatusCode::OK);

    server.stop().await;
    database.remove().await;
}

// === the bad-token suite over HTTP ===

/// Tokens that must be refused, with the message the client must see.
fn bad_tokens(key: &TestKey) -> Vec<(&'static str, String, &'static str)> {
    let valid = key.sign(&claims(7, false));
    let (input, signature) = valid.rsplit_once('.').unwrap();
    let header = key.header().to_string();
    let exp = now() + 600;
    let mut flipped =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature).unwrap();
    flipped[0] ^= 0x80;

    let impostor_alg = if key.alg == "ES256" { "ES384" } else { "ES256" };
    let impostor = TestKey::generate(impostor_alg, &key.kid);
    let stranger = TestKey::generate(key.alg, "stranger");

    let mut tokens = vec![
        (
            "unsigned",
            compact(
                json!({ "alg": "none", "kid": key.kid }).to_string().as_bytes(),
                claims(7, true).to_string().as_bytes(),
                b"",
            ),
            INVALID,
        ),
        (
            "wrong algorithm for the kid",
            impostor.sign(&claims(7, true)),
            INVALID,
        ),
        (
            "expired",
            key.sign(&claims_with(7, json!({ "exp": now() - 120 }))),
            EXPIRED,
        ),
        (
            "not yet valid",
            key.sign(&claims_with(7, json!({ "nbf": now() + 120 }))),
            INVALID,
        ),
        (
            "issued in the future",
            key.sign(&claims_with(7, json!({ "iat": now() + 120 }))),
            INVALID,
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{signature}",
                input.split('.').next().unwrap(),
                b64(claims(7, true).to_string().as_bytes())
            ),
            INVALID,
        ),
        (
            "tampered signature",
            format!("{input}.{}", b64(&flipped)),
            INVALID,
        ),
        ("truncated", valid[..valid.len() - 10].to_owned(), INVALID),
        ("two segments", input.to_owned(), INVALID),
        (
            "oversized",
            key.sign(&claims_with(7, json!({ "pad": "x".repeat(9000) }))),
            INVALID,
        ),
        (
            "duplicate claims",
            key.sign_raw(
                header.as_bytes(),
                format!(r#"{{"user_id":8,"user_id":7,"exp":{exp}}}"#).as_bytes(),
            ),
            INVALID,
        ),
        (
            "is_admin not a boolean",
            key.sign(&claims_with(8, json!({ "is_admin": "true" }))),
            INVALID,
        ),
        (
            "user_id not an integer",
            key.sign(&claims_with(7, json!({ "user_id": "7" }))),
            INVALID,
        ),
        ("no exp", key.sign(&json!({ "user_id": 7 })), INVALID),
        ("unknown kid", stranger.sign(&claims(7, false)), INVALID),
        (
            "critical extension",
            key.sign_raw(
                json!({ "alg": key.alg, "kid": key.kid, "crit": ["x"], "x": 1 })
                    .to_string()
                    .as_bytes(),
                claims(7, false).to_string().as_bytes(),
            ),
            INVALID,
        ),
        (
            "expired with a bad signature",
            format!(
                "{}.{}",
                key.sign(&claims_with(7, json!({ "exp": now() - 120 })))
                    .rsplit_once('.')
                    .unwrap()
                    .0,
                b64(&flipped)
            ),
            INVALID,
        ),
    ];
    if key.alg != "HS256" {
        let forger = TestKey::hmac("HS256", &key.kid, &key.public_bytes());
        tokens.push(("HMAC with the public key", forger.sign(&claims(7, true)), INVALID));
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_seeds_messages() {
    for alg in ["HS256", "ES256", "EdDSA", "RS256"] {
        let key = TestKey::generate(alg, "trusted");
        let (server, database) = server_with(Db::Sqlite, &key).await;

        assert_eq!(
            server.get("/users/7", Some(&key.sign(&claims(7, false)))).await,
            (StatusCode::OK, user_json(7)),
            "{alg}"
        );
        for (name, token, message) in bad_tokens(&key) {
            assert_eq!(
                server.get("/users/8", Some(&token)).await,
                (StatusCode::UNAUTHORIZED, error(message)),
                "{alg}: {name}"
            );
        }

        server.stop().await;
        database.remove().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_headers_are_invalid_tokens() {
    let key = TestKey::generate("HS256", "k");
    let (server, database) = server_with(Db::Sqlite, &key).await;
    let token = key.sign(&claims(7, false));

    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        token.clone(),
        format!("Bearer {token} extra"),
        format!("Token {token}"),
        "Bearer a.b.c".to_owned(),
        "Bearer ...".to_owned(),
        format!("Bearer {}", "a".repeat(20_000)),
    ] {
        let shown = &header[..header.len().min(40)];
        assert_eq!(
            server.call(Method::GET, "/users/7", Some(&header), None).await,
            (StatusCode::UNAUTHORIZED, error(INVALID)),
            "{shown}"
        );
    }
    assert_eq!(
        server
            .call(Method::GET, "/users/7", Some(&format!("bearer {token}")), None)
            .await
            .0,
        StatusCode::OK
    );

    // Two Authorization headers are ambiguous.
    let response = server
        .client
        .get(server.url("/users/7"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let refused = server
        .metric(r#"user_service_token_verification_failures_total{reason="malformed"}"#)
        .await;
    assert!(refused >= 6.0, "{refused}");
    assert_eq!(
        server
            .metric(r#"user_service_token_verification_failures_total{reason="oversized"}"#)
            .await,
        1.0
    );

    server.stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_secret_verifies_tokens_as_pyjwt_signs_them() {
    let database = Database::create(Db::Sqlite).await;
    let mut config = config(
        &database,
        KeySource::Secret(KeySet::from_secret("your_super_secret_key_here").unwrap()),
    );
    config.demo_users = 10;
    let server = Server::start(config).await;

    // PyJWT's `jwt.encode({...}, secret)` header, without a kid.
    let seed = TestKey::hmac("HS256", "unused", b"your_super_secret_key_here");
    let token = seed.sign_raw(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        claims(7, false).to_string().as_bytes(),
    );
    assert_eq!(
        server.get("/users/7", Some(&token)).await,
        (StatusCode::OK, user_json(7))
    );
    let wrong = TestKey::hmac("HS256", "unused", b"another secret").sign(&claims(7, false));
    assert_eq!(
        server.get("/users/7", Some(&wrong)).await,
        (StatusCode::UNAUTHORIZED, error(INVALID))
    );
    assert_eq!(
        server.get("/.well-known/jwks.json", None).await,
        (StatusCode::OK, json!({ "keys": [] }))
    );

    server.stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_operators_keys_verify() {
    use authkeyring::keys::{self, Algorithm};

    let database = Database::create(Db::Sqlite).await;
    let hs = keys::generate(Algorithm::HS256, 2048).unwrap();
    let es = keys::generate(Algorithm::ES256, 2048).unwrap();
    let set = json!({ "keys": [hs.jwk, es.jwk] }).to_string();
    let mut config = config(&database, jwks_source(&set));
    config.demo_users = 10;
    let server = Server::start(config).await;

    for key in [&hs, &es] {
        let token = key.sign(&claims(4, false)).unwrap();
        assert_eq!(
            server.get("/users/4", Some(&token)).await,
            (StatusCode::OK, user_json(4)),
            "{key:?}"
        );
    }
    // The operator's HMAC key is also the seed-style JWT_SECRET text.
    let as_secret = KeySet::from_secret(&hs.private).unwrap();
    let token = hs.sign(&claims(4, false)).unwrap();
    assert!(
        authkeyring::token::Verifier::default()
            .verify(&as_secret, &token, now())
            .is_ok()
    );

    let (_, published) = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(published, json!({ "keys": [es.jwk] }));

    server.stop().await;
    database.remove().await;
}

// === arbitrary headers ===

#[test]
fn arbitrary_authorization_headers_never_cause_a_server_error() {
    use axum::body::Body;
    use axum::http::{HeaderValue, Request};
    use proptest::prelude::*;
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = Arc::new(TestKey::generate("HS256", "k"));
    let database = runtime.block_on(Database::create(Db::Sqlite));
    let router = runtime.block_on(async {
        let mut config = config(&database, jwks_source(&jwks(&[&key])));
        config.demo_users = 10;
        authkeyring::service::Service::start(config)
            .await
            .unwrap()
            .router()
    });

    let segment = "[A-Za-z0-9_=+/.-]{0,60}";
    let (signer, claims_signer) = (key.clone(), key.clone());
    let headers = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        ".{0,200}".prop_map(String::into_bytes),
        (segment, segment, segment).prop_map(|(h, p, s)| format!("Bearer {h}.{p}.{s}").into_bytes()),
        ("[ -~]{0,10}", "[ -~]{0,100}").prop_map(|(scheme, rest)| format!("{scheme} {rest}").into_bytes()),
        // Valid signatures over arbitrary payloads exercise the claims rules and the handler.
        proptest::collection::vec(any::<u8>(), 0..120).prop_map(move |payload| {
            format!(
                "Bearer {}",
                signer.sign_raw(signer.header().to_string().as_bytes(), &payload)
            )
            .into_bytes()
        }),
        (any::<i64>(), any::<bool>(), any::<i64>(), "[0-9a-z]{0,6}").prop_map(
            move |(user_id, is_admin, exp, extra)| {
                let mut claims = json!({ "user_id": user_id, "is_admin": is_admin, "exp": exp });
                claims[extra] = json!(1);
                format!("Bearer {}", claims_signer.sign(&claims)).into_bytes()
            }
        ),
    ];
    let paths = prop_oneof![
        Just("/users/7".to_owned()),
        "/users/[0-9a-z%-]{0,12}",
        Just("/users".to_owned())
    ];

    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(header in headers, path in paths, post in any::<bool>())| {
        let Ok(value) = HeaderValue::from_bytes(&header) else { return Ok(()) };
        let method = if post { "POST" } else { "GET" };
        let request = Request::builder().method(method).uri(&path).header("authorization", value).body(Body::from("{}"));
        let Ok(request) = request else { return Ok(()) };
        let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
        prop_assert!(!response.status().is_server_error(), "{} for {:?}", response.status(), String::from_utf8_lossy(&header));
    });
}

// === key reloading ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_through_a_symlink_swap_fails_no_request() {
    let old = TestKey::generate("HS256", "old");
    let new = TestKey::generate("ES256", "new");
    let database = Database::create(Db::Sqlite).await;
    let mut keyring = KeyringDir::new(&jwks(&[&old]));
    let mut config = config(&database, keyring.source(Duration::from_millis(50)));
    config.demo_users = 10;
    let server = Arc::new(Server::start(config).await);

    // Clients sign with the old key until told to switch, as the operator's Active key would.
    let tokens = [old.sign(&claims(7, false)), new.sign(&claims(7, false))];
    let signer = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, tokens, signer, stop) = (server.clone(), tokens.clone(), signer.clone(), stop.clone());
        let (served, failed) = (served.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let which = signer.load(Ordering::SeqCst);
                let (status, _) = server.get("/users/7", Some(&tokens[which])).await;
                if status == StatusCode::OK {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("request signed by key {which} got {status}");
                }
            }
        }));
    }
    let served_past = |floor: u64| {
        let served = served.clone();
        move || {
            let served = served.clone();
            async move { served.load(Ordering::Relaxed) > floor }
        }
    };
    eventually("requests with the old key", served_past(50)).await;

    // Publish the new key next to the old one; switch signing only once the service trusts it.
    keyring.publish(&jwks(&[&old, &new]));
    eventually("the new key to be published", || async {
        server
            .get("/.well-known/jwks.json", None)
            .await
            .1
            .to_string()
            .contains("\"new\"")
    })
    .await;
    signer.store(1, Ordering::SeqCst);
    let switched = served.load(Ordering::Relaxed);
    eventually("requests with the new key", served_past(switched + 50)).await;

    // Retire the old key once no request signed by it can still be in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    keyring.publish(&jwks(&[&new]));
    eventually("the old key to be retired", || async {
        server.metric("user_service_keys_loaded").await == 1.0
    })
    .await;
    let retired = served.load(Ordering::Relaxed);
    eventually("requests after the retirement", served_past(retired + 50)).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the rotation"
    );
    assert_eq!(
        server.get("/users/7", Some(&tokens[0])).await,
        (StatusCode::UNAUTHORIZED, error(INVALID))
    );
    assert_eq!(
        server
            .metric(r#"user_service_key_reloads_total{result="success"}"#)
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric(r#"user_service_key_reloads_total{result="error"}"#)
            .await,
        0.0
    );

    Arc::into_inner(server).unwrap().stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_missing_update_keeps_the_last_good_key_set() {
    let good = TestKey::generate("EdDSA", "good");
    let next = TestKey::generate("EdDSA", "next");
    let database = Database::create(Db::Sqlite).await;
    let mut keyring = KeyringDir::new(&jwks(&[&good]));
    let mut config = config(&database, keyring.source(Duration::from_millis(30)));
    config.demo_users = 10;
    let server = Server::start(config).await;
    let token = good.sign(&claims(7, false));
    let errors = r#"user_service_key_reloads_total{result="error"}"#;

    for (n, broken) in [
        "{not json",
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"OKP","alg":"EdDSA","x":"AAAA"}]}"#,
    ]
    .into_iter()
    .enumerate()
    {
        keyring.publish(broken);
        eventually("the broken update to be noticed", || async {
            server.metric(errors).await == (n + 1) as f64
        })
        .await;
        assert_eq!(
            server.get("/users/7", Some(&token)).await,
            (StatusCode::OK, user_json(7)),
            "{broken}"
        );
        assert_eq!(server.get("/readyz", None).await.0, StatusCode::OK);
    }

    // The file vanishing altogether is one more error, and the key set stays.
    std::fs::remove_file(keyring.path().join("jwks.json")).unwrap();
    eventually("the missing file to be noticed", || async {
        server.metric(errors).await == 4.0
    })
    .await;
    assert_eq!(server.get("/users/7", Some(&token)).await.0, StatusCode::OK);

    keyring.publish(&jwks(&[&good, &next]));
    std::os::unix::fs::symlink("..data/jwks.json", keyring.path().join("jwks.json")).unwrap();
    eventually("the repaired update to load", || async {
        server.metric("user_service_keys_loaded").await == 2.0
    })
    .await;
    assert_eq!(
        server
            .get("/users/7", Some(&next.sign(&claims(7, false))))
            .await
            .0,
        StatusCode::OK
    );

    server.stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_loadable_key_set_is_not_ready_until_one_arrives() {
    let key = TestKey::generate("ES256", "k");
    let database = Database::create(Db::Sqlite).await;
    let mut keyring = KeyringDir::new("not yet");
    let mut config = config(&database, keyring.source(Duration::from_millis(30)));
    config.demo_users = 10;
    let server = Server::start(config).await;

    assert_eq!(
        server.get("/readyz", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "reason": "no verification keys loaded" })
        )
    );
    assert_eq!(
        server.get("/users/7", Some(&key.sign(&claims(7, false)))).await,
        (StatusCode::UNAUTHORIZED, error(INVALID))
    );

    keyring.publish(&jwks(&[&key]));
    eventually("the key set to load", || async {
        server.get("/readyz", None).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(
        server.get("/users/7", Some(&key.sign(&claims(7, false)))).await.0,
        StatusCode::OK
    );

    server.stop().await;
    database.remove().await;
}

// === operational endpoints ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_failures_by_reason() {
    let key = TestKey::generate("HS256", "k");
    let (server, database) = server_with(Db::Sqlite, &key).await;
    let token = key.sign(&claims(7, false));
    let expired = key.sign(&claims_with(7, json!({ "exp": now() - 120 })));

    server.get("/users/7", Some(&token)).await;
    server.get("/users/7", Some(&token)).await;
    server.get("/users/8", Some(&expired)).await;
    server.get("/users/8", None).await;
    server.get("/no/such/route", None).await;

    let text = server.metrics().await;
    for line in [
        r#"user_service_http_requests_total{route="/users/{id}",method="GET",status="200"} 2"#,
        r#"user_service_http_requests_total{route="/users/{id}",method="GET",status="401"} 2"#,
        r#"user_service_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"user_service_token_verification_failures_total{reason="expired"} 1"#,
        r#"user_service_token_verification_failures_total{reason="missing"} 1"#,
        r#"user_service_token_verification_failures_total{reason="bad_signature"} 0"#,
        "user_service_keys_loaded 1",
        "# TYPE user_service_http_request_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));

    server.stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let key = TestKey::generate("HS256", "k");
    let (server, database) = server_with(Db::Sqlite, &key).await;
    let request_id =
        |response: reqwest::Response| response.headers()["x-request-id"].to_str().unwrap().to_owned();

    let first = request_id(server.client.get(server.url("/healthz")).send().await.unwrap());
    let second = request_id(server.client.get(server.url("/users/1")).send().await.unwrap());
    assert!(!first.is_empty() && first != second);

    let given = server
        .client
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(given), "abc-123");
    let forged = server
        .client
        .get(server.url("/healthz"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id(forged), "a b\"c");

    server.stop().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_jwks_never_lists_hmac_keys() {
    let hs = TestKey::generate("HS256", "h");
    let es = TestKey::generate("ES256", "e");
    let rs = TestKey::generate("RS256", "r");
    let database = Database::create(Db::Sqlite).await;
    let server = Server::start(config(&database, jwks_source(&jwks(&[&hs, &es, &rs])))).await;

    let response = server
        .send(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let published: Value = response.json().await.unwrap();
    assert_eq!(published, json!({ "keys": [es.jwk(), rs.jwk()] }));

    server.stop().await;
    database.remove().await;
}

// === the binary ===

mod binary {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use super::test_keys::{TestKey, claims};

    const BINARY: &str = env!("CARGO_BIN_EXE_user-service");

    fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn stderr(output: &Output) -> String {
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    #[test]
    fn help_and_version_exit_zero() {
        let help = run(&["--help"], &[]);
        assert_eq!(help.status.code(), Some(0));
        let text = String::from_utf8_lossy(&help.stdout);
        for expected in [
            "AUTH_KEYRING_DIR",
            "JWT_JWKS",
            "JWT_SECRET",
            "DATABASE_URL",
            "DEMO_USERS",
            "Exit codes",
        ] {
            assert!(text.contains(expected), "--help lacks {expected}");
        }

        let version = run(&["--version"], &[]);
        assert_eq!(version.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn usage_errors_exit_two() {
        for args in [
            &["--bogus"][..],
            &["--port", "nope"],
            &["--log-format", "xml"],
            &["positional"],
        ] {
            assert_eq!(
                run(args, &[("JWT_SECRET", "s")]).status.code(),
                Some(2),
                "{args:?}"
            );
        }
    }

    #[test]
    fn configuration_errors_exit_78_naming_the_variable_and_never_the_secret() {
        for (env, named) in [
            (&[][..], "JWT_SECRET"),
            (&[("JWT_JWKS", r#"{"keys":"hush-hush-value"}"#)], "JWT_JWKS"),
            (
                &[("JWT_JWKS", r#"{"keys":[{"kty":"oct","k":"hush-hush-value"}]}"#)],
                "JWT_JWKS",
            ),
            (&[("AUTH_KEYRING_DIR", "/no/such/dir")], "AUTH_KEYRING_DIR"),
            (
                &[
                    ("JWT_SECRET", "hush-hush-value"),
                    ("DATABASE_URL", "mysql://hush-hush-value@db/users"),
                ],
                "DATABASE_URL",
            ),
            (
                &[("JWT_SECRET", "hush-hush-value"), ("JWT_LEEWAY", "86400")],
                "JWT_LEEWAY",
            ),
            (
                &[
                    ("JWT_SECRET", "hush-hush-value"),
                    ("DATABASE_MAX_CONNECTIONS", "0"),
                ],
                "DATABASE_MAX_CONNECTIONS",
            ),
        ] {
            let output = run(&[], env);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(78), "{env:?}: {text}");
            assert!(text.contains(named), "{env:?}: {text}");
            assert!(!text.contains("hush-hush-value"), "{env:?} leaked: {text}");
        }
    }

    #[test]
    fn an_unreachable_database_exits_one() {
        let output = run(
            &[],
            &[
                ("JWT_SECRET", "s"),
                ("DATABASE_URL", "postgres://nobody:hush-hush-value@127.0.0.1:1/x"),
            ],
        );
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(text.contains("database"), "{text}");
        assert!(!text.contains("hush-hush-value"), "{text}");
    }

    /// Starts the binary on a random port and returns it with its address.
    fn spawn(dir: &std::path::Path) -> (Child, String) {
        let database_url = format!("sqlite://{}", dir.join("users.db").display());
        let mut child = Command::new(BINARY)
            .env_clear()
            .envs([
                ("JWT_SECRET", "s3cret"),
                ("DATABASE_URL", database_url.as_str()),
                ("PORT", "0"),
                ("BIND_ADDRESS", "127.0.0.1"),
                ("DEMO_USERS", "3"),
                ("LOG_FORMAT", "json"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("the service logs its address").unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
            if event["fields"]["message"] == "user-service serving" {
                break event["fields"]["address"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining the log so the service never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (child, address)
    }

    fn wait(child: &mut Child, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the service did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, address) = spawn(dir.path());
        let admin = TestKey::hmac("HS256", "k", b"s3cret").sign(&claims(1, true));
        let body = r#"{"username":"late","email":"late@example.com"}"#;

        // A request whose body is still arriving when the signal comes.
        let mut stream = TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST /users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));

        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service exited with a request in flight"
        );

        stream.write_all(&body.as_bytes()[10..]).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
        assert!(response.contains(r#""username":"late""#), "{response}");

        assert_eq!(wait(&mut child, Duration::from_secs(10)), Some(0));
        assert!(
            TcpStream::connect(&address).is_err(),
            "still accepting after the stop"
        );
    }

    #[test]
    fn sigint_stops_an_idle_service() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, address) = spawn(dir.path());
        let health = {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        };
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");

        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(wait(&mut child, Duration::from_secs(10)), Some(0));
    }
}
