//! The verification rules of `token`, one behaviour per test, for HMAC, ECDSA, EdDSA and RSA keys.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::test_keys::{TestKey, b64, claims, compact, jwks};
use super::*;

const SUITE_ALGS: [&str; 4] = ["HS256", "ES256", "EdDSA", "RS256"];

fn now() -> i64 {
    unix_now()
}

fn set_of(keys: &[&TestKey]) -> KeySet {
    KeySet::from_jwks(jwks(keys).as_bytes()).unwrap()
}

fn verify(keys: &KeySet, token: &str) -> Result<Claims, TokenError> {
    Verifier::default().verify(keys, token, now())
}

/// Claims valid now, with the given members replaced or added.
fn claims_with(changes: Value) -> Value {
    let mut claims = claims(7, false);
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

fn header_without_kid(key: &TestKey) -> Vec<u8> {
    json!({ "alg": key.alg, "typ": "JWT" }).to_string().into_bytes()
}

// === keys and algorithms ===

#[test]
fn every_algorithm_verifies_its_own_tokens() {
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        "EdDSA",
    ] {
        let key = TestKey::generate(alg, &format!("kid-{alg}"));
        let verified = verify(&set_of(&[&key]), &key.sign(&claims(7, true)));
        assert_eq!(verified.map(|c| (c.user_id, c.is_admin)), Ok((7, true)), "{alg}");
    }
}

#[test]
fn keys_generated_by_the_operator_verify_the_tokens_they_sign() {
    for algorithm in Algorithm::ALL {
        let key = crate::keys::generate(algorithm, 2048).unwrap();
        let set = KeySet::from_jwks(json!({ "keys": [key.jwk] }).to_string().as_bytes()).unwrap();
        let token = key.sign(&claims(3, false)).unwrap();
        assert_eq!(verify(&set, &token).map(|c| c.user_id), Ok(3), "{algorithm}");
    }
}

#[test]
fn the_seed_secret_is_hs256_over_its_utf8_bytes() {
    let set = KeySet::from_secret("your_super_secret_key_here").unwrap();
    let key = TestKey::hmac("HS256", "any", b"your_super_secret_key_here");

    assert_eq!(
        verify(&set, &key.sign(&claims(1, false))).map(|c| c.user_id),
        Ok(1)
    );
    let without_kid = key.sign_raw(&header_without_kid(&key), claims(1, false).to_string().as_bytes());
    assert_eq!(verify(&set, &without_kid).map(|c| c.user_id), Ok(1));
}

#[test]
fn the_seed_secret_refuses_other_algorithms_and_secrets() {
    let set = KeySet::from_secret("s3cret").unwrap();
    let hs384 = TestKey::hmac("HS384", "k", b"s3cret");
    assert!(matches!(
        verify(&set, &hs384.sign(&claims(1, false))),
        Err(TokenError::Algorithm(_))
    ));
    let other = TestKey::hmac("HS256", "k", b"other");
    assert_eq!(
        verify(&set, &other.sign(&claims(1, false))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn a_token_without_kid_is_tried_against_every_key_of_its_algorithm() {
    let first = TestKey::generate("ES256", "first");
    let second = TestKey::generate("ES256", "second");
    let eddsa = TestKey::generate("EdDSA", "ed");
    let set = set_of(&[&first, &eddsa, &second]);

    let token = second.sign_raw(
        &header_without_kid(&second),
        claims(5, false).to_string().as_bytes(),
    );
    assert_eq!(verify(&set, &token).map(|c| c.user_id), Ok(5));

    let only_eddsa = set_of(&[&eddsa]);
    assert!(matches!(
        verify(&only_eddsa, &token),
        Err(TokenError::Algorithm(_))
    ));
}

#[test]
fn a_kid_selects_exactly_one_key() {
    let signer = TestKey::generate("HS256", "signer");
    let other = TestKey::generate("HS256", "other");
    // Signed by `signer` but naming `other`: only `other` is tried.
    let header = json!({ "alg": "HS256", "kid": "other" }).to_string();
    let token = signer.sign_raw(header.as_bytes(), claims(1, false).to_string().as_bytes());
    assert_eq!(
        verify(&set_of(&[&signer, &other]), &token),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn an_empty_key_set_verifies_nothing() {
    let key = TestKey::generate("HS256", "k");
    assert_eq!(
        verify(&KeySet::empty(), &key.sign(&claims(1, false))),
        Err(TokenError::NoKeys)
    );
}

// === the bad-token suite, for each key type ===

#[test]
fn unsigned_tokens_are_refused() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        for none in ["none", "None", "NONE"] {
            for header in [json!({ "alg": none }), json!({ "alg": none, "kid": "k" })] {
                let payload = claims(7, true).to_string();
                let token = compact(header.to_string().as_bytes(), payload.as_bytes(), b"");
                assert!(
                    matches!(verify(&set, &token), Err(TokenError::Algorithm(_))),
                    "{alg} {header}"
                );
            }
        }
    }
}

#[test]
fn a_header_alg_other_than_the_keys_pinned_one_is_refused() {
    for (alg, other) in [
        ("HS256", "HS512"),
        ("ES256", "ES384"),
        ("EdDSA", "ES256"),
        ("RS256", "PS256"),
    ] {
        let key = TestKey::generate(alg, "k");
        let impostor = TestKey::generate(other, "k");
        let token = impostor.sign(&claims(7, false));
        assert!(
            matches!(verify(&set_of(&[&key]), &token), Err(TokenError::Algorithm(_))),
            "{alg} as {other}"
        );
    }
}

#[test]
fn hmac_signed_with_a_public_key_is_refused() {
    for alg in ["ES256", "EdDSA", "RS256"] {
        let key = TestKey::generate(alg, "pub");
        let hmac_secret = TestKey::generate("HS256", "secret");
        let payload = claims(1, true).to_string();

        for forged_secret in [key.public_bytes(), key.jwk().to_string().into_bytes()] {
            let forger = TestKey::hmac("HS256", "pub", &forged_secret);
            // Naming the public key: the key is pinned to its own algorithm.
            let with_kid = forger.sign_raw(
                json!({ "alg": "HS256", "kid": "pub" }).to_string().as_bytes(),
                payload.as_bytes(),
            );
            assert!(
                matches!(verify(&set_of(&[&key]), &with_kid), Err(TokenError::Algorithm(_))),
                "{alg}"
            );
            // Naming no key: only HMAC keys are tried, and the public key is not one.
            let without_kid = forger.sign_raw(br#"{"alg":"HS256"}"#, payload.as_bytes());
            assert!(
                matches!(
                    verify(&set_of(&[&key]), &without_kid),
                    Err(TokenError::Algorithm(_))
                ),
                "{alg}"
            );
            assert_eq!(
                verify(&set_of(&[&key, &hmac_secret]), &without_kid),
                Err(TokenError::BadSignature)
            );
        }
    }
}

#[test]
fn expiry_is_required_and_checked_with_the_leeway() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        let at = |exp: i64| verify(&set, &key.sign(&claims_with(json!({ "exp": exp }))));

        assert_eq!(at(now() - 31), Err(TokenError::Expired), "{alg}");
        assert!(at(now() - 20).is_ok(), "{alg}: within the leeway");
        let mut no_exp = claims(7, false);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(
            matches!(verify(&set, &key.sign(&no_exp)), Err(TokenError::Claims(_))),
            "{alg}"
        );
    }
}

#[test]
fn not_before_and_issued_at_may_not_lie_in_the_future() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        let with = |changes| verify(&set, &key.sign(&claims_with(changes)));

        assert_eq!(
            with(json!({ "nbf": now() + 60 })),
            Err(TokenError::NotYetValid("nbf")),
            "{alg}"
        );
        assert_eq!(
            with(json!({ "iat": now() + 60 })),
            Err(TokenError::NotYetValid("iat")),
            "{alg}"
        );
        assert!(
            with(json!({ "nbf": now() + 20, "iat": now() + 20 })).is_ok(),
            "{alg}: within the leeway"
        );
        assert!(
            with(json!({ "nbf": now() - 600, "iat": now() - 600 })).is_ok(),
            "{alg}"
        );
    }
}

#[test]
fn a_changed_payload_or_signature_fails_the_signature() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        let token = key.sign(&claims(7, false));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();

        let escalated = b64(claims(7, true).to_string().as_bytes());
        assert_eq!(
            verify(&set, &format!("{header}.{escalated}.{signature}")),
            Err(TokenError::BadSignature)
        );

        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        assert_eq!(
            verify(&set, &format!("{input}.{}", b64(&bytes))),
            Err(TokenError::BadSignature),
            "{alg}"
        );
        bytes.pop();
        assert_eq!(
            verify(&set, &format!("{input}.{}", b64(&bytes))),
            Err(TokenError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn truncated_and_malformed_tokens_are_refused() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        let token = key.sign(&claims(7, false));

        for cut in [1, 2, token.len() / 2, token.len() - 3] {
            assert!(verify(&set, &token[..cut]).is_err(), "{alg}: cut at {cut}");
        }
        let (input, _) = token.rsplit_once('.').unwrap();
        for bad in [
            String::new(),
            input.to_owned(),
            format!("{input}."),
            format!("{token}."),
            format!("{token}.x.y"),
            format!("{token}="),
            token.replace('.', ".="),
            format!(" {token}"),
            "a.b.c".to_owned(),
            "..".to_owned(),
        ] {
            let result = verify(&set, &bad);
            assert!(
                matches!(result, Err(TokenError::Malformed(_) | TokenError::BadSignature)),
                "{alg}: {bad:?} gave {result:?}"
            );
        }
    }
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let key = TestKey::generate("HS256", "k");
    let padding = "x".repeat(DEFAULT_MAX_TOKEN_BYTES);
    let token = key.sign(&claims_with(json!({ "padding": padding })));
    assert_eq!(
        verify(&set_of(&[&key]), &token),
        Err(TokenError::Oversized(DEFAULT_MAX_TOKEN_BYTES))
    );
}

#[test]
fn payloads_larger_than_the_stack_buffer_still_verify() {
    let key = TestKey::generate("HS256", "k");
    let token = key.sign(&claims_with(json!({ "padding": "x".repeat(3000) })));
    assert!(verify(&set_of(&[&key]), &token).is_ok());
}

#[test]
fn duplicated_claims_are_refused() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        let exp = now() + 600;
        for payload in [
            format!(r#"{{"user_id":2,"user_id":1,"exp":{exp}}}"#),
            format!(r#"{{"user_id":1,"is_admin":false,"is_admin":true,"exp":{exp}}}"#),
            format!(r#"{{"user_id":1,"exp":{exp},"exp":{}}}"#, exp + 1),
            format!(r#"{{"user_id":1,"exp":{exp},"role":"a","role":"b"}}"#),
            format!(r#"{{"user_id":1,"exp":{exp},"role":"a","r\u006fle":"b"}}"#),
        ] {
            let token = key.sign_raw(key.header().to_string().as_bytes(), payload.as_bytes());
            assert!(
                matches!(verify(&set, &token), Err(TokenError::Claims(_))),
                "{alg}: {payload}"
            );
        }
    }
}

#[test]
fn duplicated_header_members_are_refused() {
    let key = TestKey::generate("HS256", "k");
    let payload = claims(1, false).to_string();
    for header in [
        r#"{"alg":"HS256","alg":"none","kid":"k"}"#,
        r#"{"alg":"HS256","kid":"k","kid":"x"}"#,
    ] {
        let token = key.sign_raw(header.as_bytes(), payload.as_bytes());
        assert!(
            matches!(verify(&set_of(&[&key]), &token), Err(TokenError::Malformed(_))),
            "{header}"
        );
    }
}

#[test]
fn mistyped_claims_are_refused() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "k");
        let set = set_of(&[&key]);
        for changes in [
            json!({ "is_admin": "true" }),
            json!({ "is_admin": 1 }),
            json!({ "is_admin": null }),
            json!({ "user_id": "7" }),
            json!({ "user_id": 7.5 }),
            json!({ "user_id": 7.0 }),
            json!({ "user_id": null }),
            json!({ "exp": "9999999999" }),
            json!({ "iat": true }),
            json!({ "nbf": [] }),
            json!({ "iss": 5 }),
            json!({ "aud": [1] }),
        ] {
            let token = key.sign(&claims_with(changes.clone()));
            assert!(
                matches!(verify(&set, &token), Err(TokenError::Claims(_))),
                "{alg}: {changes}"
            );
        }
        let mut no_user = claims(7, false);
        no_user.as_object_mut().unwrap().remove("user_id");
        assert!(matches!(
            verify(&set, &key.sign(&no_user)),
            Err(TokenError::Claims(_))
        ));
        let not_an_object = key.sign_raw(key.header().to_string().as_bytes(), b"[1,2]");
        assert!(matches!(verify(&set, &not_an_object), Err(TokenError::Claims(_))));
    }
}

#[test]
fn an_unknown_kid_is_refused() {
    for alg in SUITE_ALGS {
        let key = TestKey::generate(alg, "known");
        let stranger = TestKey::generate(alg, "unknown");
        assert_eq!(
            verify(&set_of(&[&key]), &stranger.sign(&claims(7, false))),
            Err(TokenError::UnknownKid)
        );
    }
}

#[test]
fn critical_extensions_are_refused() {
    let key = TestKey::generate("ES256", "k");
    let payload = claims(1, false).to_string();
    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let header = json!({ "alg": "ES256", "kid": "k", "crit": crit, "b64": false, "exp": 1 });
        let token = key.sign_raw(header.to_string().as_bytes(), payload.as_bytes());
        assert_eq!(verify(&set_of(&[&key]), &token), Err(TokenError::Critical));
    }
}

#[test]
fn key_locating_headers_are_never_followed() {
    let trusted = TestKey::generate("ES256", "trusted");
    let attacker = TestKey::generate("ES256", "attacker");
    let payload = claims(1, true).to_string();

    // The attacker's own public key, offered inline and by URL, does not make its token valid.
    let header = json!({
        "alg": "ES256", "kid": "attacker", "jwk": attacker.jwk(),
        "jku": "https://attacker.example/jwks.json", "x5u": "https://attacker.example/cert.pem",
    });
    let token = attacker.sign_raw(header.to_string().as_bytes(), payload.as_bytes());
    assert_eq!(verify(&set_of(&[&trusted]), &token), Err(TokenError::UnknownKid));

    // A trusted key's token that carries them anyway verifies: they are ignored.
    let header =
        json!({ "alg": "ES256", "kid": "trusted", "jku": "https://x.example/", "x5u": "https://x.example/" });
    let token = trusted.sign_raw(header.to_string().as_bytes(), payload.as_bytes());
    assert!(verify(&set_of(&[&trusted]), &token).is_ok());
}

#[test]
fn padded_segments_are_refused_even_when_signed() {
    let key = TestKey::generate("HS256", "k");
    let header = URL_SAFE_NO_PAD.encode(key.header().to_string());
    // JSON allows trailing spaces; one of three lengths needs padding.
    let payload = ["", " ", "  "]
        .into_iter()
        .map(|pad| base64::engine::general_purpose::URL_SAFE.encode(claims(1, false).to_string() + pad))
        .find(|encoded| encoded.ends_with('='))
        .unwrap();

    let token = key.sign_encoded(&format!("{header}.{payload}"));
    assert!(matches!(
        verify(&set_of(&[&key]), &token),
        Err(TokenError::Malformed(_))
    ));
}

// === issuer and audience ===

fn verifier(issuer: Option<&str>, audience: Option<&str>) -> Verifier {
    Verifier::new(VerifyOptions {
        issuer: issuer.map(str::to_owned),
        audience: audience.map(str::to_owned),
        ..VerifyOptions::default()
    })
}

#[test]
fn a_configured_issuer_must_match() {
    let key = TestKey::generate("HS256", "k");
    let set = set_of(&[&key]);
    let strict = verifier(Some("https://issuer.example"), None);

    let good = key.sign(&claims_with(json!({ "iss": "https://issuer.example" })));
    assert!(strict.verify(&set, &good, now()).is_ok());
    let wrong = key.sign(&claims_with(json!({ "iss": "https://other.example" })));
    assert_eq!(strict.verify(&set, &wrong, now()), Err(TokenError::Issuer));
    assert_eq!(
        strict.verify(&set, &key.sign(&claims(1, false)), now()),
        Err(TokenError::Issuer)
    );
    assert!(verifier(None, None).verify(&set, &wrong, now()).is_ok());
}

#[test]
fn a_configured_audience_must_be_listed_and_an_unexpected_one_is_refused() {
    let key = TestKey::generate("HS256", "k");
    let set = set_of(&[&key]);
    let strict = verifier(None, Some("user-service"));
    let with_aud = |aud: Value| key.sign(&claims_with(json!({ "aud": aud })));

    assert!(
        strict
            .verify(&set, &with_aud(json!("user-service")), now())
            .is_ok()
    );
    assert!(
        strict
            .verify(&set, &with_aud(json!(["billing", "user-service"])), now())
            .is_ok()
    );
    assert_eq!(
        strict.verify(&set, &with_aud(json!(["billing"])), now()),
        Err(TokenError::Audience)
    );
    assert_eq!(
        strict.verify(&set, &key.sign(&claims(1, false)), now()),
        Err(TokenError::Audience)
    );
    assert_eq!(
        verifier(None, None).verify(&set, &with_aud(json!("billing")), now()),
        Err(TokenError::Audience)
    );
}

// === claims ===

#[test]
fn fractional_dates_round_down_and_is_admin_defaults_to_false() {
    let key = TestKey::generate("HS256", "k");
    let exp = now() + 600;
    let payload =
        format!(r#"{{"user_id":-3,"exp":{exp}.75,"iat":1.5,"sub":"x","jti":"y","extra":{{"a":[1]}}}}"#);
    let token = key.sign_raw(key.header().to_string().as_bytes(), payload.as_bytes());
    let claims = verify(&set_of(&[&key]), &token).unwrap();
    assert_eq!(
        (claims.user_id, claims.is_admin, claims.exp, claims.iat),
        (-3, false, exp, Some(1))
    );
}

// === the memo of verified tokens ===

#[test]
fn a_remembered_token_still_has_its_dates_and_issuer_checked() {
    let key = TestKey::generate("ES256", "k");
    let set = set_of(&[&key]);
    let token = key.sign(&claims_with(json!({ "iss": "https://issuer.example" })));

    assert!(verify(&set, &token).is_ok());
    assert!(verify(&set, &token).is_ok(), "served from memory");
    assert_eq!(
        Verifier::default().verify(&set, &token, now() + 3600),
        Err(TokenError::Expired)
    );
    let strict = verifier(Some("https://other.example"), None);
    assert_eq!(strict.verify(&set, &token, now()), Err(TokenError::Issuer));
}

#[test]
fn a_token_is_remembered_only_by_the_key_set_that_verified_it() {
    let key = TestKey::generate("EdDSA", "k");
    let token = key.sign(&claims(7, false));
    let before = set_of(&[&key]);
    assert!(verify(&before, &token).is_ok());

    let after = set_of(&[&TestKey::generate("EdDSA", "other")]);
    assert_eq!(verify(&after, &token), Err(TokenError::UnknownKid));
}

#[test]
fn a_token_that_failed_is_checked_again_in_full() {
    let key = TestKey::generate("HS256", "k");
    let set = set_of(&[&key]);
    let early = key.sign(&claims_with(json!({ "nbf": now() + 600 })));
    assert_eq!(verify(&set, &early), Err(TokenError::NotYetValid("nbf")));
    assert!(Verifier::default().verify(&set, &early, now() + 600).is_ok());

    let forged = format!("{}x", &early[..early.len() - 1]);
    assert!(verify(&set, &forged).is_err());
    assert!(verify(&set, &forged).is_err());
}

#[test]
fn the_memo_is_bounded_and_can_be_turned_off() {
    let key = TestKey::generate("HS256", "k");
    for capacity in [0, 1, 2] {
        let set = KeySet::from_jwks(jwks(&[&key]).as_bytes())
            .unwrap()
            .with_memo_capacity(capacity);
        for round in 0..2 {
            for user in 0..5 {
                let token = key.sign(&claims(user, false));
                assert_eq!(
                    verify(&set, &token).map(|c| c.user_id),
                    Ok(user),
                    "{capacity} {round}"
                );
            }
        }
    }
}

// === the Authorization header ===

#[test]
fn the_authorization_header_must_be_one_bearer_token() {
    fn token(header: &[u8]) -> Result<&str, TokenError> {
        Verifier::default().bearer_token(Some(header))
    }
    let verifier = Verifier::default();

    assert_eq!(verifier.bearer_token(None), Err(TokenError::Missing));
    assert_eq!(token(b""), Err(TokenError::Missing));
    assert_eq!(token(b"Bearer a.b.c"), Ok("a.b.c"));
    assert_eq!(token(b"bearer a.b.c"), Ok("a.b.c"));
    assert_eq!(token(b"BEARER  a.b.c"), Ok("a.b.c"));
    for bad in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer  ",
        b"a.b.c",
        b"Basic dXNlcjpwYXNz",
        b"Bearer a b",
        b"Bearer a\tb",
        b"Bearer \xff\xfe",
        b" Bearer a.b.c",
        b"Token a.b.c",
    ] {
        assert!(
            matches!(token(bad), Err(TokenError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let huge = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1));
    assert_eq!(
        token(huge.as_bytes()),
        Err(TokenError::Oversized(DEFAULT_MAX_TOKEN_BYTES))
    );
}

// === errors ===

#[test]
fn errors_map_to_the_seeds_public_messages() {
    assert_eq!(
        TokenError::Missing.public_message(),
        "Authorization header missing"
    );
    assert_eq!(TokenError::Expired.public_message(), "Token expired");
    for error in [
        TokenError::Oversized(1),
        TokenError::Malformed("x"),
        TokenError::Algorithm("x"),
        TokenError::Critical,
        TokenError::UnknownKid,
        TokenError::NoKeys,
        TokenError::BadSignature,
        TokenError::NotYetValid("nbf"),
        TokenError::Claims("x".into()),
        TokenError::Issuer,
        TokenError::Audience,
    ] {
        assert_eq!(error.public_message(), "Invalid token", "{error:?}");
        assert!(TokenError::REASONS.contains(&error.reason()), "{error:?}");
    }
}

// === key sets ===

#[test]
fn the_public_jwks_lists_public_members_only_and_never_hmac_keys() {
    let hmac = TestKey::generate("HS256", "h");
    let ec = TestKey::generate("ES256", "e");
    let rsa = TestKey::generate("RS256", "r");
    let mut with_private = ec.jwk();
    with_private["d"] = json!("cHJpdmF0ZQ");
    let doc = json!({ "keys": [hmac.jwk(), with_private, rsa.jwk()] }).to_string();

    let published: Value =
        serde_json::from_str(KeySet::from_jwks(doc.as_bytes()).unwrap().public_jwks()).unwrap();
    let keys = published["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], ec.jwk());
    assert_eq!(keys[1], rsa.jwk());
    assert!(!published.to_string().contains("\"k\"") && !published.to_string().contains("\"d\""));
}

#[test]
fn unusable_key_sets_are_refused() {
    let ec = TestKey::generate("ES256", "e");
    let with = |changes: Value| {
        let mut jwk = ec.jwk();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                jwk.as_object_mut().unwrap().remove(name);
            } else {
                jwk[name] = value.clone();
            }
        }
        KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes())
    };

    assert!(with(json!({})).is_ok());
    for changes in [
        json!({ "alg": null }),
        json!({ "alg": "none" }),
        json!({ "alg": "ES384" }),
        json!({ "alg": "HS256" }),
        json!({ "crv": "P-384" }),
        json!({ "kty": "RSA" }),
        json!({ "x": "AAAA" }),
        json!({ "y": null }),
        json!({ "x": "!!!" }),
    ] {
        assert!(
            matches!(with(changes.clone()), Err(KeySetError::Key { .. })),
            "{changes}"
        );
    }
    for doc in [
        "",
        "{}",
        "[]",
        r#"{"keys":{}}"#,
        r#"{"keys":[]}"#,
        r#"{"keys":[1]}"#,
    ] {
        assert!(KeySet::from_jwks(doc.as_bytes()).is_err(), "{doc}");
    }
    let twice = json!({ "keys": [ec.jwk(), ec.jwk()] }).to_string();
    assert!(matches!(
        KeySet::from_jwks(twice.as_bytes()),
        Err(KeySetError::DuplicateKid(_))
    ));
    assert!(matches!(KeySet::from_secret(""), Err(KeySetError::EmptySecret)));
}

#[test]
fn rsa_moduli_outside_2048_to_4096_bits_are_refused() {
    let rsa = TestKey::generate("RS256", "r");
    let mut jwk = rsa.jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    for modulus in [n[..128].to_vec(), [n.as_slice(), n.as_slice(), &[1]].concat()] {
        jwk["n"] = json!(b64(&modulus));
        let doc = json!({ "keys": [jwk] }).to_string();
        assert!(matches!(
            KeySet::from_jwks(doc.as_bytes()),
            Err(KeySetError::Key { .. })
        ));
    }
}

#[test]
fn encryption_keys_are_skipped() {
    let ec = TestKey::generate("ES256", "e");
    let mut enc = TestKey::generate("ES256", "enc").jwk();
    enc["use"] = json!("enc");
    let set = KeySet::from_jwks(json!({ "keys": [enc, ec.jwk()] }).to_string().as_bytes()).unwrap();
    assert_eq!(set.describe(), vec![(Some("e"), Algorithm::ES256)]);
    let only_enc = json!({ "keys": [{ "kty": "oct", "k": "AAAA", "alg": "HS256", "use": "enc" }] });
    assert!(matches!(
        KeySet::from_jwks(only_enc.to_string().as_bytes()),
        Err(KeySetError::Empty)
    ));
}

#[test]
fn key_set_errors_do_not_repeat_the_document() {
    let secret_doc = br#"{"keys":"my-very-secret-value"}"#;
    let message = KeySet::from_jwks(secret_doc).unwrap_err().to_string();
    assert!(!message.contains("my-very-secret-value"), "{message}");
}

proptest! {
    #[test]
    fn arbitrary_tokens_never_panic(token in ".{0,300}") {
        let key = TestKey::hmac("HS256", "k", b"secret");
        let _ = verify(&set_of(&[&key]), &token);
    }

    #[test]
    fn arbitrary_segments_never_verify(header in "[A-Za-z0-9_-]{0,80}", payload in "[A-Za-z0-9_-]{0,80}", sig in "[A-Za-z0-9_-]{0,90}") {
        let key = TestKey::hmac("HS256", "k", b"secret");
        let token = [header, payload, sig].join(".");
        prop_assert!(verify(&set_of(&[&key]), &token).is_err());
    }

    #[test]
    fn arbitrary_payloads_signed_by_a_trusted_key_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
        let key = TestKey::hmac("HS256", "k", b"secret");
        let _ = verify(&set_of(&[&key]), &key.sign_raw(key.header().to_string().as_bytes(), &payload));
    }
}
