//! Key material: generation for every JOSE signing algorithm, PKCS#8 PEM, JWKs and RFC 7638 kids.
//!
//! Pure: no Kubernetes, no I/O beyond the OS CSPRNG. Private material is zeroized on drop and
//! never appears in `Debug` output or error messages.

mod jwk;
mod pkcs8;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
    Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use rand::TryRng;
use rand::rngs::SysRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

pub use jwk::thumbprint;

/// A JWS signing algorithm a key ring can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    }

    /// The same algorithm as jsonwebtoken names it.
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::HS384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::HS512 => jsonwebtoken::Algorithm::HS512,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| KeyError::UnknownAlgorithm(s.to_owned()))
    }
}

/// What can go wrong with key material. Messages never contain the material itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm name is not one of the supported JWS algorithms.
    #[error(
        "unknown algorithm {0:?}: expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"
    )]
    UnknownAlgorithm(String),
    /// The RSA modulus size is not supported.
    #[error("unsupported RSA key size {0}: expected 2048, 3072 or 4096")]
    RsaKeyBits(u32),
    /// Key generation failed in the crypto library.
    #[error("generating a {0} key failed")]
    Generate(Algorithm),
    /// Stored private material could not be parsed for this algorithm.
    #[error("stored {0} private key is malformed")]
    Malformed(Algorithm),
    /// Signing a token failed.
    #[error("signing a {0} token failed")]
    Sign(Algorithm),
    /// A JWK lacks a member its key type requires (named here), or has an unsupported `kty`.
    #[error("invalid JWK: {0}")]
    InvalidJwk(&'static str),
}

/// A private key together with its public JWK and kid.
///
/// NB: the HMAC key is the UTF-8 bytes of the base64url text in `private`, not the 32, 48 or 64
/// random bytes that text encodes. Consumers put that text into their JWT library as a string
/// (the seed's `JWT_SECRET`), and such libraries key HMAC with the string's bytes; so signing here
/// does the same, and the JWK's `k` is the base64url of those text bytes. The key keeps the full
/// entropy of the random bytes and is longer than the hash output, as RFC 7518 requires.
#[derive(Clone)]
pub struct SigningKey {
    pub algorithm: Algorithm,
    /// RFC 7638 SHA-256 thumbprint of `jwk`, base64url without padding.
    pub kid: String,
    /// The verifying JWK with `kid`, `alg` and `use: sig`: public members only for asymmetric keys,
    /// `kty: oct` with `k` for HMAC.
    pub jwk: serde_json::Value,
    /// HMAC: the secret as unpadded base64url text. Others: PKCS#8 PEM.
    pub private: Zeroizing<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Generates a new key from the OS CSPRNG. `rsa_bits` applies to RS*/PS* only.
pub fn generate(algorithm: Algorithm, rsa_bits: u32) -> Result<SigningKey, KeyError> {
    let failed = || KeyError::Generate(algorithm);

    let kind = match Kind::of(algorithm) {
        Kind::Hmac { secret_len } => {
            let mut secret = Zeroizing::new(vec![0; secret_len]);
            SysRng.try_fill_bytes(&mut secret).map_err(|_| failed())?;
            return hmac_key(algorithm, Zeroizing::new(URL_SAFE_NO_PAD.encode(&*secret)));
        }
        Kind::Pair(kind) => kind,
    };

    let pair = match kind {
        PairKind::Rsa => KeyPair::Rsa(RsaKeyPair::generate(rsa_key_size(rsa_bits)?).map_err(|_| failed())?),
        PairKind::Ec { signing, crv } => {
            KeyPair::Ec(EcdsaKeyPair::generate(signing).map_err(|_| failed())?, crv)
        }
        PairKind::Ed25519 => KeyPair::Ed25519(Ed25519KeyPair::generate().map_err(|_| failed())?),
    };
    let private = pair.to_pem().ok_or_else(failed)?;
    let public = pair.public_members().ok_or_else(failed)?;
    assemble(algorithm, public, private)
}

/// Rebuilds a key from its stored private form (as written in `SigningKey::private`).
///
/// The form must be exactly what [`generate`] writes for `algorithm`: for HMAC, unpadded base64url
/// of a secret of the hash's size; otherwise a PKCS#8 PEM key of that algorithm (and, for RSA, of
/// a supported size). The text is kept as given, so the key signs with the same bytes as before.
pub fn from_private(algorithm: Algorithm, private: &str) -> Result<SigningKey, KeyError> {
    let malformed = || KeyError::Malformed(algorithm);
    let private = Zeroizing::new(private.to_owned());

    let kind = match Kind::of(algorithm) {
        Kind::Hmac { secret_len } => {
            let secret = Zeroizing::new(URL_SAFE_NO_PAD.decode(&*private).map_err(|_| malformed())?);
            if secret.len() != secret_len {
                return Err(malformed());
            }
            return hmac_key(algorithm, private);
        }
        Kind::Pair(kind) => kind,
    };

    let der = pkcs8::from_pem(&private).ok_or_else(malformed)?;
    let pair = match kind {
        PairKind::Rsa => {
            let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| malformed())?;
            let bits = u32::try_from(pair.public_modulus_len() * 8).map_err(|_| malformed())?;
            rsa_key_size(bits)?;
            KeyPair::Rsa(pair)
        }
        PairKind::Ec { signing, crv } => KeyPair::Ec(
            EcdsaKeyPair::from_pkcs8(signing, &der).map_err(|_| malformed())?,
            crv,
        ),
        PairKind::Ed25519 => KeyPair::Ed25519(Ed25519KeyPair::from_pkcs8(&der).map_err(|_| malformed())?),
    };
    let public = pair.public_members().ok_or_else(malformed)?;
    assemble(algorithm, public, private)
}

impl SigningKey {
    /// Signs `claims` as a compact JWS with `kid` and `alg` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let failed = || KeyError::Sign(self.algorithm);

        // jsonwebtoken's own PEM parser leaves copies of the key behind; unwrapping the PEM here
        // keeps every copy in a buffer that is zeroized on drop.
        let key = match Kind::of(self.algorithm) {
            Kind::Hmac { .. } => EncodingKey::from_secret(self.private.as_bytes()).map_err(|_| failed())?,
            Kind::Pair(kind) => {
                let der = pkcs8::from_pem(&self.private).ok_or_else(failed)?;
                match kind {
                    PairKind::Rsa => EncodingKey::from_rsa_der(pkcs8::private_key(&der).ok_or_else(failed)?),
                    PairKind::Ec { .. } => EncodingKey::from_ec_der(&der),
                    PairKind::Ed25519 => EncodingKey::from_ed_der(&der),
                }
            }
        };

        let mut header = Header::new(self.algorithm.to_jsonwebtoken());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key).map_err(|_| failed())
    }
}

// === private helpers ===

/// How an algorithm's key is made: a shared secret or a key pair of some type.
#[derive(Clone, Copy)]
enum Kind {
    /// HMAC, with a secret as long as the hash output.
    Hmac {
        secret_len: usize,
    },
    Pair(PairKind),
}

#[derive(Clone, Copy)]
enum PairKind {
    Rsa,
    Ec {
        signing: &'static EcdsaSigningAlgorithm,
        crv: &'static str,
    },
    Ed25519,
}

impl Kind {
    fn of(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::HS256 => Kind::Hmac { secret_len: 32 },
            Algorithm::HS384 => Kind::Hmac { secret_len: 48 },
            Algorithm::HS512 => Kind::Hmac { secret_len: 64 },
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Kind::Pair(PairKind::Rsa),
            Algorithm::ES256 => Kind::Pair(PairKind::Ec {
                signing: &ECDSA_P256_SHA256_FIXED_SIGNING,
                crv: "P-256",
            }),
            Algorithm::ES384 => Kind::Pair(PairKind::Ec {
                signing: &ECDSA_P384_SHA384_FIXED_SIGNING,
                crv: "P-384",
            }),
            Algorithm::EdDSA => Kind::Pair(PairKind::Ed25519),
        }
    }
}

/// The RSA modulus sizes a key ring may use.
fn rsa_key_size(bits: u32) -> Result<KeySize, KeyError> {
    match bits {
        2048 => Ok(KeySize::Rsa2048),
        3072 => Ok(KeySize::Rsa3072),
        4096 => Ok(KeySize::Rsa4096),
        _ => Err(KeyError::RsaKeyBits(bits)),
    }
}

/// An asymmetric key pair as aws-lc-rs holds it.
enum KeyPair {
    Rsa(RsaKeyPair),
    /// With the JWK `crv` name of its curve.
    Ec(EcdsaKeyPair, &'static str),
    Ed25519(Ed25519KeyPair),
}

impl KeyPair {
    /// The private key as PKCS#8 PEM.
    fn to_pem(&self) -> Option<Zeroizing<String>> {
        // The DER documents aws-lc-rs returns zeroize themselves on drop.
        Some(match self {
            KeyPair::Rsa(pair) => pkcs8::to_pem(AsDer::<Pkcs8V1Der>::as_der(pair).ok()?.as_ref()),
            KeyPair::Ec(pair, _) => pkcs8::to_pem(pair.to_pkcs8v1().ok()?.as_ref()),
            KeyPair::Ed25519(pair) => pkcs8::to_pem(pair.to_pkcs8v1().ok()?.as_ref()),
        })
    }

    /// The key-type members of the public JWK.
    fn public_members(&self) -> Option<Map<String, Value>> {
        match self {
            KeyPair::Rsa(pair) => {
                let public = pair.public_key();
                Some(jwk::rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                ))
            }
            KeyPair::Ec(pair, crv) => jwk::ec(crv, pair.public_key().as_ref()),
            KeyPair::Ed25519(pair) => Some(jwk::ed25519(pair.public_key().as_ref())),
        }
    }
}

/// An HMAC key from its base64url text; see [`SigningKey`] for why the text bytes are the key.
fn hmac_key(algorithm: Algorithm, text: Zeroizing<String>) -> Result<SigningKey, KeyError> {
    assemble(algorithm, jwk::oct(text.as_bytes()), text)
}

fn assemble(
    algorithm: Algorithm,
    members: Map<String, Value>,
    private: Zeroizing<String>,
) -> Result<SigningKey, KeyError> {
    let (kid, jwk) = jwk::finish(algorithm, members)?;
    Ok(SigningKey {
        algorithm,
        kid,
        jwk,
        private,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    /// RSA keys beyond the 2048-bit ones, one per larger size (4096 bits is slow to generate).
    const LARGER_RSA: [(Algorithm, u32); 2] = [(Algorithm::PS384, 3072), (Algorithm::RS512, 4096)];

    /// One key of every algorithm (RSA at 2048 bits), then the `LARGER_RSA` keys; generated once.
    fn keys() -> &'static [SigningKey] {
        static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let all = Algorithm::ALL.into_iter().map(|alg| (alg, 2048));
            all.chain(LARGER_RSA)
                .map(|(alg, bits)| generate(alg, bits).unwrap())
                .collect()
        })
    }

    /// The JWK Set of every key in `keys()`, as a verifier parses it.
    fn jwk_set() -> JwkSet {
        let jwks: Vec<Value> = keys().iter().map(|k| k.jwk.clone()).collect();
        serde_json::from_value(serde_json::json!({ "keys": jwks })).unwrap()
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        user_id: u64,
        exp: u64,
    }

    fn claims() -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        Claims {
            user_id: 7,
            exp: now + 600,
        }
    }

    fn verify(token: &str, jwk: &Jwk, algorithm: Algorithm) -> jsonwebtoken::errors::Result<Claims> {
        let key = DecodingKey::from_jwk(jwk)?;
        let validation = Validation::new(algorithm.to_jsonwebtoken());
        jsonwebtoken::decode(token, &key, &validation).map(|data| data.claims)
    }

    fn decoded_len(base64url: &Value) -> usize {
        URL_SAFE_NO_PAD.decode(base64url.as_str().unwrap()).unwrap().len()
    }

    #[test]
    fn every_token_verifies_with_its_own_jwk_and_with_no_other_key_of_the_set() {
        let set = jwk_set();

        for key in keys() {
            let claims = claims();
            let token = key.sign(&claims).unwrap();
            let own = set.find(&key.kid).unwrap();
            assert_eq!(verify(&token, own, key.algorithm).unwrap(), claims, "{key:?}");

            for other in keys().iter().filter(|other| other.kid != key.kid) {
                let jwk = set.find(&other.kid).unwrap();
                // Pinned to the token's algorithm and to the other key's: neither may accept it.
                for algorithm in [key.algorithm, other.algorithm] {
                    assert!(
                        verify(&token, jwk, algorithm).is_err(),
                        "{key:?} token verified with {other:?} as {algorithm}"
                    );
                }
            }
        }
    }

    #[test]
    fn token_header_names_alg_typ_and_kid() {
        for key in keys() {
            let header = jsonwebtoken::decode_header(key.sign(&claims()).unwrap()).unwrap();

            assert_eq!(header.alg, key.algorithm.to_jsonwebtoken());
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        }
    }

    #[test]
    fn kid_is_the_rfc_7638_thumbprint_of_the_jwk() {
        for key in keys() {
            assert_eq!(thumbprint(&key.jwk).unwrap(), key.kid, "{key:?}");
            assert_eq!(key.jwk["kid"], key.kid.as_str());

            let parsed: Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
            assert_eq!(
                parsed.thumbprint(ThumbprintHash::SHA256).unwrap(),
                key.kid,
                "{key:?}"
            );
        }
    }

    #[test]
    fn jwk_names_its_algorithm_and_use() {
        for key in keys() {
            let expected_kty = match Kind::of(key.algorithm) {
                Kind::Hmac { .. } => "oct",
                Kind::Pair(PairKind::Rsa) => "RSA",
                Kind::Pair(PairKind::Ec { .. }) => "EC",
                Kind::Pair(PairKind::Ed25519) => "OKP",
            };
            assert_eq!(key.jwk["kty"], expected_kty);
            assert_eq!(key.jwk["alg"], key.algorithm.as_str());
            assert_eq!(key.jwk["use"], "sig");
        }
    }

    #[test]
    fn from_private_rebuilds_the_same_kid_and_jwk() {
        let set = jwk_set();

        for key in keys() {
            let reloaded = from_private(key.algorithm, &key.private).unwrap();

            assert_eq!(reloaded.kid, key.kid);
            assert_eq!(reloaded.jwk, key.jwk);
            assert_eq!(*reloaded.private, *key.private);
            let token = reloaded.sign(&claims()).unwrap();
            assert!(
                verify(&token, set.find(&key.kid).unwrap(), key.algorithm).is_ok(),
                "{key:?}"
            );
        }
    }

    #[test]
    fn hmac_secrets_are_hash_sized_unpadded_base64url_and_never_repeat() {
        for (algorithm, secret_len) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            let first = generate(algorithm, 0).unwrap();
            let second = generate(algorithm, 0).unwrap();

            for key in [&first, &second] {
                assert!(!key.private.contains('='));
                let secret = URL_SAFE_NO_PAD.decode(key.private.as_bytes()).unwrap();
                assert_eq!(secret.len(), secret_len, "{algorithm}");
            }
            assert_ne!(*first.private, *second.private);
            assert_ne!(first.kid, second.kid);
        }
    }

    #[test]
    fn hmac_key_is_the_text_a_consumer_reads_from_the_secret() {
        for key in keys().iter().filter(|k| k.algorithm.is_hmac()) {
            let token = key.sign(&claims()).unwrap();

            // A consumer handed the text as `JWT_SECRET` keys HMAC with the string's bytes.
            let consumer = DecodingKey::from_secret(key.private.as_bytes()).unwrap();
            let validation = Validation::new(key.algorithm.to_jsonwebtoken());
            assert!(
                jsonwebtoken::decode::<Claims>(&token, &consumer, &validation).is_ok(),
                "{key:?}"
            );

            assert_eq!(key.jwk["k"], URL_SAFE_NO_PAD.encode(key.private.as_bytes()));
        }
    }

    #[test]
    fn asymmetric_jwks_publish_public_members_only() {
        for key in keys().iter().filter(|k| !k.algorithm.is_hmac()) {
            let mut names: Vec<&str> = key.jwk.as_object().unwrap().keys().map(String::as_str).collect();
            names.sort_unstable();

            let expected: &[&str] = match Kind::of(key.algorithm) {
                Kind::Pair(PairKind::Rsa) => &["alg", "e", "kid", "kty", "n", "use"],
                Kind::Pair(PairKind::Ec { .. }) => &["alg", "crv", "kid", "kty", "use", "x", "y"],
                _ => &["alg", "crv", "kid", "kty", "use", "x"],
            };
            assert_eq!(names, expected, "{key:?}");
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(key.jwk.get(private).is_none(), "{key:?} publishes {private}");
            }
        }
    }

    #[test]
    fn curve_keys_name_their_curve_and_have_its_coordinate_size() {
        for key in keys() {
            let (crv, coordinate_len) = match key.algorithm {
                Algorithm::ES256 => ("P-256", 32),
                Algorithm::ES384 => ("P-384", 48),
                Algorithm::EdDSA => ("Ed25519", 32),
                _ => continue,
            };
            assert_eq!(key.jwk["crv"], crv);
            assert_eq!(decoded_len(&key.jwk["x"]), coordinate_len);
            if let Some(y) = key.jwk.get("y") {
                assert_eq!(decoded_len(y), coordinate_len);
            }
        }
    }

    #[test]
    fn rsa_keys_have_the_requested_modulus_size() {
        let (default_size, larger) = keys().split_at(Algorithm::ALL.len());
        let sizes = default_size
            .iter()
            .filter(|k| k.algorithm.is_rsa())
            .map(|k| (k, 2048));
        let sizes = sizes.chain(larger.iter().zip(LARGER_RSA).map(|(k, (_, bits))| (k, bits)));

        for (key, bits) in sizes {
            assert_eq!(decoded_len(&key.jwk["n"]) * 8, bits as usize, "{key:?}");
            assert_eq!(key.jwk["e"], "AQAB");
        }
    }

    #[test]
    fn unsupported_rsa_sizes_are_refused() {
        for bits in [0, 1024, 2047, 2049, 8192] {
            match generate(Algorithm::RS256, bits) {
                Err(KeyError::RsaKeyBits(refused)) => assert_eq!(refused, bits),
                other => panic!("{bits} bits: expected RsaKeyBits, got {other:?}"),
            }
        }
    }

    #[test]
    fn rsa_bits_is_ignored_for_other_algorithms() {
        for algorithm in [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert!(generate(algorithm, 1024).is_ok(), "{algorithm}");
        }
    }

    #[test]
    fn malformed_private_forms_are_refused_without_echoing_them() {
        let of = |algorithm: Algorithm| keys().iter().find(|k| k.algorithm == algorithm).unwrap();
        let hs256 = of(Algorithm::HS256).private.to_string();
        let rsa_pem = of(Algorithm::RS256).private.to_string();
        let p256_pem = of(Algorithm::ES256).private.to_string();
        let p384_pem = of(Algorithm::ES384).private.to_string();
        let ed_pem = of(Algorithm::EdDSA).private.to_string();
        let mut corrupt_der = rsa_pem.clone();
        corrupt_der.replace_range(40..48, "AAAAAAAA");

        let cases = [
            (Algorithm::HS256, "".to_owned()),
            (Algorithm::HS256, "not base64url!".to_owned()),
            (Algorithm::HS256, format!("{hs256}=")),
            (Algorithm::HS256, format!(" {hs256}")),
            (Algorithm::HS256, hs256[..hs256.len() - 2].to_owned()),
            (Algorithm::HS512, hs256.clone()),
            (Algorithm::HS256, rsa_pem.clone()),
            (Algorithm::RS256, "".to_owned()),
            (Algorithm::RS256, hs256.clone()),
            (
                Algorithm::RS256,
                rsa_pem.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
            ),
            (Algorithm::RS256, corrupt_der),
            (Algorithm::PS256, p256_pem.clone()),
            (Algorithm::RS384, ed_pem.clone()),
            (Algorithm::ES256, p384_pem.clone()),
            (Algorithm::ES256, rsa_pem.clone()),
            (Algorithm::ES384, p256_pem.clone()),
            (Algorithm::EdDSA, p256_pem),
            (Algorithm::EdDSA, rsa_pem),
        ];
        for (algorithm, private) in cases {
            let error = match from_private(algorithm, &private) {
                Err(error @ KeyError::Malformed(named)) if named == algorithm => error,
                other => panic!("{algorithm}: expected Malformed, got {other:?}"),
            };
            for shown in [error.to_string(), format!("{error:?}")] {
                let leaked = private.lines().any(|line| line.len() > 8 && shown.contains(line));
                assert!(!leaked, "{algorithm}: error {shown:?} shows the input");
            }
        }
    }

    #[test]
    fn debug_output_never_shows_private_material() {
        for key in keys() {
            let shown = format!("{key:?} {key:#?}");

            assert!(shown.contains(&key.kid));
            assert!(!shown.contains(key.private.as_str()));
            let body = key.private.lines().filter(|line| !line.starts_with("-----"));
            for line in body {
                assert!(
                    !shown.contains(line),
                    "{:?} shows private material",
                    key.algorithm
                );
            }
        }
    }
}
