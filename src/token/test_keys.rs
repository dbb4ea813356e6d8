//! Test-only keys and a raw JWS signer that writes any header and payload, well-formed or not.
//!
//! Shared by the token unit tests and the user-service integration tests (included by path), so
//! it names algorithms as strings and depends only on aws-lc-rs, base64 and serde_json.

#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{hmac, rsa};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A key that signs test tokens, with the JWK a verifier would trust it by.
pub struct TestKey {
    pub alg: &'static str,
    pub kid: String,
    signer: Signer,
}

enum Signer {
    Hmac(Box<hmac::Key>, Vec<u8>),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Joins already-encoded segments; the caller decides what they contain.
pub fn compact(header: &[u8], payload: &[u8], signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
}

/// A JWK Set document of the given keys' JWKs.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

impl TestKey {
    /// A fresh key of `alg` (HS256/384/512, RS*, PS*, ES256/384, EdDSA).
    pub fn generate(alg: &'static str, kid: &str) -> Self {
        let signer = match alg {
            "HS256" | "HS384" | "HS512" => {
                let mut secret = vec![0u8; 32];
                aws_lc_rs::rand::fill(&mut secret).unwrap();
                return Self::hmac(alg, kid, &secret);
            }
            "ES256" => Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
                "P-256",
            ),
            "ES384" => Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
                "P-384",
            ),
            "EdDSA" => Signer::Ed(Ed25519KeyPair::generate().unwrap()),
            _ => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("no test keys for {other}"),
                };
                Signer::Rsa(RsaKeyPair::generate(rsa::KeySize::Rsa2048).unwrap(), encoding)
            }
        };
        Self {
            alg,
            kid: kid.to_owned(),
            signer,
        }
    }

    /// An HMAC key with the given secret bytes.
    pub fn hmac(alg: &'static str, kid: &str, secret: &[u8]) -> Self {
        let hash = match alg {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            other => panic!("{other} is not an HMAC algorithm"),
        };
        let signer = Signer::Hmac(Box::new(hmac::Key::new(hash, secret)), secret.to_vec());
        Self {
            alg,
            kid: kid.to_owned(),
            signer,
        }
    }

    /// The JWK with `kid`, `alg` and `use`: public members, or `k` for HMAC.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.signer {
            Signer::Hmac(_, secret) => json!({ "kty": "oct", "k": b64(secret) }),
            Signer::Ec(pair, crv) => {
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({ "kty": "EC", "crv": crv, "x": b64(&point[1..=half]), "y": b64(&point[1 + half..]) })
            }
            Signer::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
            Signer::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
        };
        let members = jwk.as_object_mut().unwrap();
        members.insert("kid".into(), self.kid.clone().into());
        members.insert("alg".into(), self.alg.into());
        members.insert("use".into(), "sig".into());
        jwk
    }

    /// The public key's raw bytes, as an attacker would feed them to HMAC.
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Hmac(..) => panic!("an HMAC key has no public half"),
            Signer::Ec(pair, _) => pair.public_key().as_ref().to_vec(),
            Signer::Ed(pair) => pair.public_key().as_ref().to_vec(),
            Signer::Rsa(pair, _) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// The usual header: `alg`, `typ` and this key's `kid`.
    pub fn header(&self) -> Value {
        json!({ "alg": self.alg, "typ": "JWT", "kid": self.kid })
    }

    /// Signs the claims under the usual header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(
            self.header().to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    }

    /// Signs arbitrary header and payload bytes.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        self.sign_encoded(&format!("{}.{}", b64(header), b64(payload)))
    }

    /// Signs an already-encoded signing input, however it is encoded.
    pub fn sign_encoded(&self, input: &str) -> String {
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    fn signature(&self, input: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Hmac(key, _) => hmac::sign(key, input).as_ref().to_vec(),
            Signer::Ec(pair, _) => pair.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(input).as_ref().to_vec(),
            Signer::Rsa(pair, encoding) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), input, &mut signature)
                    .unwrap();
                signature
            }
        }
    }
}

/// Claims for `user_id` that are valid for the next ten minutes.
pub fn claims(user_id: i64, is_admin: bool) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({ "user_id": user_id, "is_admin": is_admin, "iat": now, "exp": now + 600 })
}
