//! Key material: generation for every JOSE signing algorithm, PKCS#8 PEM, JWKs and RFC 7638 kids.
//!
//! Pure: no Kubernetes, no I/O beyond the OS CSPRNG. Private material is zeroized on drop and
//! never appears in `Debug` output or error messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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
    #[error("unknown algorithm {0:?}: expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA")]
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
}

/// A private key together with its public JWK and kid.
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
    let _ = (algorithm, rsa_bits);
    unimplemented!("key generation")
}

/// Rebuilds a key from its stored private form (as written in `SigningKey::private`).
pub fn from_private(algorithm: Algorithm, private: &str) -> Result<SigningKey, KeyError> {
    let _ = (algorithm, private);
    unimplemented!("key loading")
}

impl SigningKey {
    /// Signs `claims` as a compact JWS with `kid` and `alg` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let _ = claims;
        unimplemented!("signing")
    }
}
