//! Token verification for the user-service: the key set consumers trust, the rules a JWT must pass,
//! and the typed claims it carries.
//!
//! Pure: no HTTP, no files, no clock reads except in [`Verifier::verify_header_now`]. The service hands in
//! the `Authorization` header bytes and the current key set and gets back [`Claims`] or a
//! [`TokenError`] whose [`reason`](TokenError::reason) labels metrics and whose
//! [`public_message`](TokenError::public_message) is the only text a client may see.
//!
//! The rules, in the order they are applied:
//!
//! 1. The header is `Bearer <token>` (scheme case-insensitive) and at most
//!    [`VerifyOptions::max_token_bytes`] long; the token is three base64url segments, unpadded.
//! 2. The JOSE header is a JSON object without duplicate members. `alg` must name a supported JWS
//!    algorithm (`none` is not one). A `crit` member is refused: this verifier implements no
//!    extension. `jku`, `x5u`, `jwk`, `x5c` and the other key-locating members are ignored: keys
//!    come from the local [`KeySet`] only, so nothing a token says can add a key.
//! 3. With a `kid`, the key with that kid is used and the header's `alg` must equal the key's
//!    pinned algorithm; a key loaded without a kid (the seed's `JWT_SECRET`) stands in for any kid
//!    of its own algorithm. Without a `kid`, only keys of the header's `alg` are tried.
//! 4. The signature is checked before the payload is parsed.
//! 5. The payload decodes into [`Claims`]: mistyped or duplicated members fail, `exp` is required,
//!    `nbf` and `iat` may not lie in the future beyond the leeway, and `iss` / `aud` must match
//!    when configured. A token that names an audience is refused when none is configured (RFC
//!    7519 §4.1.3).
//!
//! Signatures are checked with aws-lc-rs directly against keys parsed once per key set, so a
//! verification allocates nothing for a typical token. A key set also remembers the tokens it has
//! verified (bounded), because clients present the same token for many requests and an ECDSA or
//! EdDSA check costs tens of microseconds; the dates are checked again on every use.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{hmac, signature};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::keys::Algorithm;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

/// The cap on a compact token, and so on the `Authorization` header, unless configured otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The clock skew tolerated on `exp`, `nbf` and `iat` unless configured otherwise, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// How many verified tokens a key set remembers unless configured otherwise.
pub const DEFAULT_MEMO_CAPACITY: usize = 10_000;

/// Decoded segments up to this size stay on the stack.
const STACK_SEGMENT: usize = 1024;

/// The longest signature of any supported algorithm: RSA with a 4096-bit modulus.
const MAX_SIGNATURE: usize = 512;

// === errors ===

/// Why a request carries no acceptable token. Never contains key material; `Claims` may quote a
/// claim value, so the `Display` text is for debug logs, never for responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header, or an empty one.
    #[error("authorization header missing")]
    Missing,
    /// The header or the token is longer than the configured cap.
    #[error("authorization header longer than {0} bytes")]
    Oversized(usize),
    /// The header is not `Bearer <token>`, or the token is not a well-formed compact JWS.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names `none`, an unsupported algorithm, or one the chosen key is not pinned to.
    #[error("token algorithm refused: {0}")]
    Algorithm(&'static str),
    /// The header lists critical extensions, none of which this verifier implements.
    #[error("token header lists critical extensions")]
    Critical,
    /// No key in the key set has the token's kid.
    #[error("no key with the token's kid")]
    UnknownKid,
    /// The key set is empty: no key has been loaded yet.
    #[error("no verification keys loaded")]
    NoKeys,
    /// No candidate key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` lies in the past beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` lies in the future beyond the leeway.
    #[error("token not yet valid ({0})")]
    NotYetValid(&'static str),
    /// The payload is not the expected claims object (missing, mistyped or duplicated members).
    #[error("token claims rejected: {0}")]
    Claims(String),
    /// `iss` is missing or is not the configured issuer.
    #[error("token issuer does not match")]
    Issuer,
    /// `aud` is missing, does not contain the configured audience, or is present when none is.
    #[error("token audience does not match")]
    Audience,
}

impl TokenError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Oversized(_) => "oversized",
            TokenError::Malformed(_) => "malformed",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::Critical => "crit",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::NoKeys => "no_keys",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid(_) => "not_yet_valid",
            TokenError::Claims(_) => "claims",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
        }
    }

    /// Every reason label, for pre-registering metrics.
    pub const REASONS: [&'static str; 13] = [
        "missing",
        "oversized",
        "malformed",
        "algorithm",
        "crit",
        "unknown_kid",
        "no_keys",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "claims",
        "issuer",
        "audience",
    ];

    /// The only text a client is shown, as the seed service words it.
    pub fn public_message(&self) -> &'static str {
        match self {
            TokenError::Missing => "Authorization header missing",
            TokenError::Expired => "Token expired",
            _ => "Invalid token",
        }
    }
}

/// Why a key set could not be loaded. Names keys by position and kid, never by material.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// The document is not a JSON object with a `keys` array.
    #[error("JWK Set is not a JSON object with a \"keys\" array: {0}")]
    NotJwks(String),
    /// One key is unusable.
    #[error("JWK {index} (kid {kid:?}) is unusable: {reason}")]
    Key {
        index: usize,
        kid: Option<String>,
        reason: &'static str,
    },
    /// Two keys share a kid, so a token could not say which one signed it.
    #[error("JWK Set has two keys with kid {0:?}")]
    DuplicateKid(String),
    /// No signing key was found.
    #[error("JWK Set has no signature verification keys")]
    Empty,
    /// The shared secret is empty.
    #[error("the HMAC secret is empty")]
    EmptySecret,
}

// === key set ===

/// The keys a verifier trusts, each pinned to one algorithm. Built once per key set change and
/// shared read-only between requests.
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    public_jwks: String,
    memo: Memo,
}

/// The tokens this key set has already verified, by SHA-256 of the whole compact token, with the
/// claims they decoded to. Only what does not depend on the time or the verifier's options is
/// remembered: a hit still has its dates, issuer and audience checked. Living inside the key set,
/// the memo is dropped with it, so a swapped-out key never verifies from memory.
struct Memo {
    capacity: usize,
    verified: RwLock<HashMap<[u8; 32], Claims>>,
}

impl Memo {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            verified: RwLock::new(HashMap::new()),
        }
    }

    fn digest(&self, token: &str) -> Option<[u8; 32]> {
        (self.capacity > 0).then(|| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
        })
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Claims> {
        self.verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    fn put(&self, digest: [u8; 32], claims: &Claims) {
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        // Bounded by starting over: tokens still in use are verified again once and come back.
        if verified.len() >= self.capacity {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
    }
}

struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    material: Material,
}

enum Material {
    // Boxed: an HMAC context is twenty times the size of a parsed public key.
    Hmac(Box<hmac::Key>),
    Public(signature::ParsedPublicKey),
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.algorithm)))
            .finish()
    }
}

/// The members of a JWK this verifier reads. Private members (`d`, `p`, ...) are never read.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    k: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The seed's single shared secret: HS256 with the secret's UTF-8 bytes as the HMAC key, as
    /// PyJWT uses a `str` key. The key has no kid, so it verifies HS256 tokens whatever kid they
    /// carry.
    pub fn from_secret(secret: &str) -> Result<Self, KeySetError> {
        if secret.is_empty() {
            return Err(KeySetError::EmptySecret);
        }
        let key = VerifyingKey {
            kid: None,
            algorithm: Algorithm::HS256,
            material: Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))),
        };
        Ok(Self::new(vec![key], Vec::new()))
    }

    /// A JWK Set as the operator writes `jwks.json`. Every key must carry `alg`; keys whose `use`
    /// is not `sig` are skipped; any other unusable key fails the whole set, so that a bad
    /// update is noticed instead of silently shrinking the set.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeySetError> {
        // NB: serde_json's message may quote the document, which can hold secrets; keep the position.
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| {
            KeySetError::NotJwks(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;

        let mut keys = Vec::with_capacity(set.keys.len());
        let mut public = Vec::new();
        for (index, value) in set.keys.into_iter().enumerate() {
            let jwk: Jwk = serde_json::from_value(value).map_err(|_| KeySetError::Key {
                index,
                kid: None,
                reason: "not a JWK object",
            })?;
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let unusable = |reason| KeySetError::Key {
                index,
                kid: jwk.kid.clone(),
                reason,
            };

            let (key, public_jwk) = parse_jwk(&jwk).map_err(unusable)?;
            if let Some(kid) = &key.kid
                && keys.iter().any(|k: &VerifyingKey| k.kid.as_ref() == Some(kid))
            {
                return Err(KeySetError::DuplicateKid(kid.clone()));
            }
            keys.push(key);
            public.extend(public_jwk);
        }

        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        Ok(Self::new(keys, public))
    }

    fn new(keys: Vec<VerifyingKey>, public: Vec<serde_json::Value>) -> Self {
        let public_jwks = serde_json::json!({ "keys": public }).to_string();
        Self {
            keys,
            public_jwks,
            memo: Memo::new(DEFAULT_MEMO_CAPACITY),
        }
    }

    /// Sets how many verified tokens this key set remembers; 0 verifies every token in full.
    pub fn with_memo_capacity(mut self, capacity: usize) -> Self {
        self.memo = Memo::new(capacity);
        self
    }

    /// A set that verifies nothing, for a service still waiting for its first key set.
    pub fn empty() -> Self {
        Self::new(Vec::new(), Vec::new())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The kid and algorithm of every key, for logs.
    pub fn describe(&self) -> Vec<(Option<&str>, Algorithm)> {
        self.keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect()
    }

    /// The public keys as a JWK Set document. HMAC keys are never included.
    pub fn public_jwks(&self) -> &str {
        &self.public_jwks
    }

    /// The keys a token with this header may be checked against.
    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        algorithm: Algorithm,
    ) -> Result<impl Iterator<Item = &'a VerifyingKey> + 'a, TokenError> {
        if self.keys.is_empty() {
            return Err(TokenError::NoKeys);
        }

        if let Some(kid) = kid
            && let Some(key) = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
        {
            if key.algorithm != algorithm {
                return Err(TokenError::Algorithm(
                    "the key with this kid is pinned to another algorithm",
                ));
            }
            return Ok(Candidates::One(Some(key)));
        }

        // Without a kid match, only keys of the token's own algorithm are tried: keys without a
        // kid for any token, keys with a kid only for tokens that name none.
        let mut matching = self
            .keys
            .iter()
            .filter(move |k| k.algorithm == algorithm && (kid.is_none() || k.kid.is_none()))
            .peekable();
        if matching.peek().is_none() {
            // An unknown kid is only the problem when no kid-less key could have stood in for it.
            let kid_less = self.keys.iter().any(|k| k.kid.is_none());
            return Err(match kid {
                Some(_) if !kid_less => TokenError::UnknownKid,
                _ => TokenError::Algorithm("no key of the token's algorithm"),
            });
        }
        Ok(Candidates::Many(matching))
    }
}

/// One key chosen by kid, or every key of an algorithm.
enum Candidates<'a, I: Iterator<Item = &'a VerifyingKey>> {
    One(Option<&'a VerifyingKey>),
    Many(I),
}

impl<'a, I: Iterator<Item = &'a VerifyingKey>> Iterator for Candidates<'a, I> {
    type Item = &'a VerifyingKey;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Candidates::One(key) => key.take(),
            Candidates::Many(keys) => keys.next(),
        }
    }
}

/// Builds a verifying key and, for asymmetric keys, the public JWK to publish.
fn parse_jwk(jwk: &Jwk) -> Result<(VerifyingKey, Option<serde_json::Value>), &'static str> {
    let algorithm: Algorithm = jwk
        .alg
        .as_deref()
        .ok_or("no \"alg\" member")?
        .parse()
        .map_err(|_| "unsupported \"alg\"")?;
    let kty = jwk.kty.as_deref().ok_or("no \"kty\" member")?;
    let member = |value: &Option<String>, name: &'static str| -> Result<Vec<u8>, &'static str> {
        let text = value.as_deref().ok_or(name)?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| name)
    };

    let (material, public) = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            if kty != "oct" {
                return Err("HMAC algorithm on a key whose kty is not \"oct\"");
            }
            let secret = zeroize::Zeroizing::new(member(&jwk.k, "missing or malformed \"k\"")?);
            if secret.is_empty() {
                return Err("empty \"k\"");
            }
            let hash = match algorithm {
                Algorithm::HS256 => hmac::HMAC_SHA256,
                Algorithm::HS384 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            (Material::Hmac(Box::new(hmac::Key::new(hash, &secret))), None)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (crv, size, verification) = match algorithm {
                Algorithm::ES256 => ("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED),
                _ => ("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED),
            };
            if kty != "EC" || jwk.crv.as_deref() != Some(crv) {
                return Err("ECDSA algorithm on a key that is not an EC key of its curve");
            }
            let x = member(&jwk.x, "missing or malformed \"x\"")?;
            let y = member(&jwk.y, "missing or malformed \"y\"")?;
            if x.len() != size || y.len() != size {
                return Err("EC coordinates of the wrong length for the curve");
            }
            let point = [&[0x04][..], &x, &y].concat();
            let parsed = signature::ParsedPublicKey::new(verification, point)
                .map_err(|_| "EC point is not on the curve")?;
            let public = serde_json::json!({
                "kty": "EC", "crv": crv, "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
            });
            (Material::Public(parsed), Some(public))
        }
        Algorithm::EdDSA => {
            if kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
                return Err("EdDSA is supported on Ed25519 OKP keys only");
            }
            let x = member(&jwk.x, "missing or malformed \"x\"")?;
            let parsed = signature::ParsedPublicKey::new(&signature::ED25519, &x)
                .map_err(|_| "malformed Ed25519 public key")?;
            let public =
                serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&x) });
            (Material::Public(parsed), Some(public))
        }
        _ => {
            if kty != "RSA" {
                return Err("RSA algorithm on a key whose kty is not \"RSA\"");
            }
            let n = member(&jwk.n, "missing or malformed \"n\"")?;
            let e = member(&jwk.e, "missing or malformed \"e\"")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if !(256..=MAX_SIGNATURE).contains(&n.len()) {
                return Err("RSA modulus outside 2048 to 4096 bits");
            }
            let parsed = signature::RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(rsa_parameters(algorithm))
                .map_err(|_| "malformed RSA public key")?;
            let public = serde_json::json!({
                "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
            });
            (Material::Public(parsed), Some(public))
        }
    };

    let public = public.map(|mut public| {
        let members = public.as_object_mut().expect("built as an object");
        if let Some(kid) = &jwk.kid {
            members.insert("kid".into(), kid.as_str().into());
        }
        members.insert("alg".into(), algorithm.as_str().into());
        members.insert("use".into(), "sig".into());
        public
    });
    Ok((
        VerifyingKey {
            kid: jwk.kid.clone(),
            algorithm,
            material,
        },
        public,
    ))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn rsa_parameters(algorithm: Algorithm) -> &'static signature::RsaParameters {
    match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        _ => &signature::RSA_PSS_2048_8192_SHA512,
    }
}

impl VerifyingKey {
    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(key) => hmac::verify(key, message, sig).is_ok(),
            Material::Public(key) => key.verify_sig(message, sig).is_ok(),
        }
    }
}

// === claims ===

/// The claims the user-service acts on. Decoded strictly: wrong types and repeated members fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub user_id: i64,
    /// Absent means not an admin.
    pub is_admin: bool,
    /// Seconds since the Unix epoch; required.
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;

        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(Audience::Many(many))
            }
        }

        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// A JSON number of seconds since the epoch (RFC 7519 NumericDate), fractions rounded down.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateVisitor;

        impl Visitor<'_> for DateVisitor {
            type Value = NumericDate;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds since the epoch")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("date out of range"))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                // NB: the bounds keep the cast exact; JSON cannot carry NaN or infinities.
                if (-9.0e15..9.0e15).contains(&v) {
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("date out of range"))
                }
            }
        }

        deserializer.deserialize_any(DateVisitor)
    }
}

/// A string that borrows from the decoded segment unless JSON escapes force a copy.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// Remembers which members of a JSON object were seen, to refuse repeats. Names listed in
/// `known` cost a bit; any other name is kept only when present.
struct Members<'de> {
    known: &'static [&'static str],
    seen: u64,
    others: Vec<Cow<'de, str>>,
}

impl<'de> Members<'de> {
    fn new(known: &'static [&'static str]) -> Self {
        debug_assert!(known.len() <= 64);
        Self {
            known,
            seen: 0,
            others: Vec::new(),
        }
    }

    /// The next member name: its index in `known` (or `None`), after refusing a repeat.
    fn next<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<Option<Option<usize>>, A::Error> {
        let Some(Text(name)) = map.next_key::<Text<'de>>()? else {
            return Ok(None);
        };
        match self.known.iter().position(|k| *k == name) {
            Some(index) => {
                if self.seen & (1 << index) != 0 {
                    return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
                }
                self.seen |= 1 << index;
                Ok(Some(Some(index)))
            }
            None => {
                if self.others.contains(&name) {
                    return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
                }
                self.others.push(name);
                Ok(Some(None))
            }
        }
    }
}

const CLAIM_NAMES: &[&str] = &[
    "user_id", "is_admin", "exp", "iat", "nbf", "iss", "aud", "sub", "jti",
];

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor;

        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = Claims;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JWT claims object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut members = Members::new(CLAIM_NAMES);
                let (mut user_id, mut is_admin, mut exp) = (None, false, None);
                let (mut iat, mut nbf, mut iss, mut aud) = (None, None, None, None);

                while let Some(index) = members.next(&mut map)? {
                    match index {
                        Some(0) => user_id = Some(map.next_value::<i64>()?),
                        Some(1) => is_admin = map.next_value::<bool>()?,
                        Some(2) => exp = Some(map.next_value::<NumericDate>()?.0),
                        Some(3) => iat = Some(map.next_value::<NumericDate>()?.0),
                        Some(4) => nbf = Some(map.next_value::<NumericDate>()?.0),
                        Some(5) => iss = Some(map.next_value::<String>()?),
                        Some(6) => aud = Some(map.next_value::<Audience>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }

                Ok(Claims {
                    user_id: user_id.ok_or_else(|| de::Error::missing_field("user_id"))?,
                    is_admin,
                    exp: exp.ok_or_else(|| de::Error::missing_field("exp"))?,
                    iat,
                    nbf,
                    iss,
                    aud,
                })
            }
        }

        deserializer.deserialize_map(ClaimsVisitor)
    }
}

/// The JOSE header members this verifier reads.
struct Header<'de> {
    alg: Cow<'de, str>,
    kid: Option<Cow<'de, str>>,
    crit: bool,
}

/// `alg`, `kid` and `crit` are read; the rest are named so that they cost no allocation and are
/// still checked for repeats. None of them is ever used to find a key.
const HEADER_NAMES: &[&str] = &[
    "alg", "kid", "crit", "typ", "cty", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "b64",
];

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;

        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JOSE header object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
                let mut members = Members::new(HEADER_NAMES);
                let (mut alg, mut kid, mut crit) = (None, None, false);

                while let Some(index) = members.next(&mut map)? {
                    match index {
                        Some(0) => alg = Some(map.next_value::<Text<'de>>()?.0),
                        Some(1) => kid = Some(map.next_value::<Text<'de>>()?.0),
                        Some(2) => {
                            map.next_value::<IgnoredAny>()?;
                            crit = true;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }

                let alg = alg.ok_or_else(|| de::Error::missing_field("alg"))?;
                Ok(Header { alg, kid, crit })
            }
        }

        deserializer.deserialize_map(HeaderVisitor)
    }
}

// === verifier ===

/// What a verifier checks beyond the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must contain it; when unset, a token with `aud` is refused.
    pub audience: Option<String>,
    /// The longest compact token accepted; the `Authorization` header may be `Bearer ` longer.
    pub max_token_bytes: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            leeway_secs: DEFAULT_LEEWAY_SECS,
            issuer: None,
            audience: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Applies the verification rules of this module to tokens, against a key set given per call so
/// that the key set can be swapped while the verifier stays.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    options: VerifyOptions,
}

impl Verifier {
    pub fn new(options: VerifyOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &VerifyOptions {
        &self.options
    }

    /// Verifies the token in an `Authorization` header value (`None` when the header is absent)
    /// at the current time.
    pub fn verify_header_now(&self, keys: &KeySet, header: Option<&[u8]>) -> Result<Claims, TokenError> {
        let token = self.bearer_token(header)?;
        self.verify(keys, token, unix_now())
    }

    /// Extracts the token from an `Authorization` header value: `Bearer`, any case, then one or
    /// more spaces, then the token and nothing else.
    pub fn bearer_token<'h>(&self, header: Option<&'h [u8]>) -> Result<&'h str, TokenError> {
        let header = match header {
            None | Some(b"") => return Err(TokenError::Missing),
            Some(header) => header,
        };
        if header.len() > self.options.max_token_bytes + "Bearer ".len() {
            return Err(TokenError::Oversized(self.options.max_token_bytes));
        }
        let header = std::str::from_utf8(header).map_err(|_| TokenError::Malformed("header is not text"))?;

        let (scheme, rest) = header
            .split_once(' ')
            .ok_or(TokenError::Malformed("no token after the scheme"))?;
        if !scheme.eq_ignore_ascii_case("Bearer") {
            return Err(TokenError::Malformed("scheme is not Bearer"));
        }
        let token = rest.trim_start_matches(' ');
        if token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(TokenError::Malformed("not exactly one token after the scheme"));
        }
        Ok(token)
    }

    /// Verifies a compact JWS at `now` (seconds since the epoch).
    pub fn verify(&self, keys: &KeySet, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > self.options.max_token_bytes {
            return Err(TokenError::Oversized(self.options.max_token_bytes));
        }

        let digest = keys.memo.digest(token);
        let claims = match digest.and_then(|d| keys.memo.get(&d)) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(keys, token)?;
                if let Some(digest) = digest {
                    keys.memo.put(digest, &claims);
                }
                claims
            }
        };

        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    /// Every rule that depends on the token and the key set alone: structure, header, signature
    /// and the shape of the claims.
    fn verify_signature(&self, keys: &KeySet, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated segments"));
        };

        let mut header_buf = [0u8; STACK_SEGMENT];
        let mut header_spill = Vec::new();
        let header_json = decode_segment(header_b64, &mut header_buf, &mut header_spill)?;
        let header: Header = serde_json::from_slice(header_json)
            .map_err(|_| TokenError::Malformed("header is not a JOSE header"))?;
        if header.crit {
            return Err(TokenError::Critical);
        }
        let algorithm: Algorithm = header
            .alg
            .parse()
            .map_err(|_| TokenError::Algorithm("unsupported or none"))?;

        let mut signature_buf = [0u8; MAX_SIGNATURE];
        let signature = URL_SAFE_NO_PAD
            .decode_slice(signature_b64, &mut signature_buf)
            .map(|len| &signature_buf[..len])
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let mut candidates = keys.candidates(header.kid.as_deref(), algorithm)?;
        if !candidates.any(|key| key.verifies(signing_input, signature)) {
            return Err(TokenError::BadSignature);
        }

        let mut payload_buf = [0u8; STACK_SEGMENT];
        let mut payload_spill = Vec::new();
        let payload = decode_segment(payload_b64, &mut payload_buf, &mut payload_spill)?;
        serde_json::from_slice(payload).map_err(|e| TokenError::Claims(e.to_string()))
    }

    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let leeway = i64::try_from(self.options.leeway_secs).unwrap_or(i64::MAX);

        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid("nbf"));
        }
        if claims.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid("iat"));
        }

        if let Some(issuer) = &self.options.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return Err(TokenError::Issuer);
        }
        match (&self.options.audience, &claims.aud) {
            (None, None) => {}
            (Some(expected), Some(aud)) if aud.contains(expected) => {}
            _ => return Err(TokenError::Audience),
        }
        Ok(())
    }
}

/// Decodes one unpadded base64url segment, on the stack when it fits.
fn decode_segment<'b>(
    segment: &str,
    stack: &'b mut [u8; STACK_SEGMENT],
    spill: &'b mut Vec<u8>,
) -> Result<&'b [u8], TokenError> {
    const MALFORMED: TokenError = TokenError::Malformed("segment is not base64url");
    if base64::decoded_len_estimate(segment.len()) <= STACK_SEGMENT {
        let len = URL_SAFE_NO_PAD
            .decode_slice(segment, stack)
            .map_err(|_| MALFORMED)?;
        Ok(&stack[..len])
    } else {
        URL_SAFE_NO_PAD
            .decode_vec(segment, spill)
            .map_err(|_| MALFORMED)?;
        Ok(spill)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
