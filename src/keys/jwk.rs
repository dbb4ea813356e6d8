//! Public JWKs and their RFC 7638 thumbprints: which members each key type publishes, and the kid
//! derived from them. Never sees private members of asymmetric keys.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{Algorithm, KeyError};

/// Computes the RFC 7638 thumbprint of `jwk`: SHA-256 over the JSON object of the members its
/// `kty` requires, in lexicographic order and without whitespace, as base64url without padding.
///
/// Every other member (`kid`, `alg`, `use`, anything unknown) is ignored, so the thumbprint of a
/// JWK is the same before and after its kid is set.
pub fn thumbprint(jwk: &Value) -> Result<String, KeyError> {
    let kty = member(jwk, "kty")?;
    let required: &[&'static str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => return Err(KeyError::InvalidJwk("unsupported kty")),
    };

    // A BTreeMap serializes its entries in key order, whatever serde_json's own map preserves.
    let canonical: BTreeMap<&str, &str> = required
        .iter()
        .map(|&name| Ok((name, member(jwk, name)?)))
        .collect::<Result<_, KeyError>>()?;
    let canonical = serde_json::to_string(&canonical).map_err(|_| KeyError::InvalidJwk("not encodable"))?;

    let digest = digest::digest(&digest::SHA256, canonical.as_bytes());
    Ok(URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// A string member of a JWK, or the error that names the missing one.
fn member<'a>(jwk: &'a Value, name: &'static str) -> Result<&'a str, KeyError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(KeyError::InvalidJwk(name))
}

/// Finishes a JWK from its key-type members: adds `alg` and `use: sig`, then the kid computed from
/// those members. Returns the kid and the JWK.
pub(super) fn finish(
    algorithm: Algorithm,
    mut members: Map<String, Value>,
) -> Result<(String, Value), KeyError> {
    members.insert("alg".into(), algorithm.as_str().into());
    members.insert("use".into(), "sig".into());
    let mut jwk = Value::Object(members);

    let kid = thumbprint(&jwk)?;
    jwk["kid"] = kid.clone().into();
    Ok((kid, jwk))
}

/// Builds a member map from `(name, value)` pairs.
fn members<const N: usize>(pairs: [(&str, String); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), Value::String(value)))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `kty: oct`; `k` carries the HMAC key bytes.
// Limitation: an HMAC JWK is secret, yet as a plain `serde_json::Value` its `k` is not zeroized
// when dropped, so copies of HMAC keys can outlive their use in freed memory.
pub(super) fn oct(key: &[u8]) -> Map<String, Value> {
    members([("kty", "oct".into()), ("k", b64(key))])
}

/// `kty: RSA` from the modulus and public exponent, big-endian without leading zeros.
pub(super) fn rsa(n: &[u8], e: &[u8]) -> Map<String, Value> {
    members([("kty", "RSA".into()), ("n", b64(n)), ("e", b64(e))])
}

/// `kty: EC` from an uncompressed SEC 1 point (`04 || x || y`), or `None` when it is not one.
pub(super) fn ec(crv: &str, point: &[u8]) -> Option<Map<String, Value>> {
    let (&tag, coordinates) = point.split_first()?;
    if tag != 0x04 || coordinates.is_empty() || coordinates.len() % 2 != 0 {
        return None;
    }
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    Some(members([
        ("kty", "EC".into()),
        ("crv", crv.into()),
        ("x", b64(x)),
        ("y", b64(y)),
    ]))
}

/// `kty: OKP` for an Ed25519 public key.
pub(super) fn ed25519(public: &[u8]) -> Map<String, Value> {
    members([
        ("kty", "OKP".into()),
        ("crv", "Ed25519".into()),
        ("x", b64(public)),
    ])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The RSA public key of RFC 7638, section 3.1, with the thumbprint the RFC computes for it.
    fn rfc7638_example() -> Value {
        json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        })
    }

    #[test]
    fn thumbprint_matches_the_rfc_7638_example() {
        assert_eq!(
            thumbprint(&rfc7638_example()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_ignores_optional_members_and_their_order() {
        let mut jwk = rfc7638_example();
        let expected = thumbprint(&jwk).unwrap();

        let object = jwk.as_object_mut().unwrap();
        object.remove("kid");
        object.remove("alg");
        object.insert("use".into(), "sig".into());
        object.insert("x5t".into(), "whatever".into());
        assert_eq!(thumbprint(&jwk).unwrap(), expected);

        let reordered = json!({"e": jwk["e"], "n": jwk["n"], "kty": "RSA"});
        assert_eq!(thumbprint(&reordered).unwrap(), expected);
    }

    #[test]
    fn thumbprint_refuses_jwks_without_their_required_members() {
        let cases = [
            (json!({"n": "AQAB", "e": "AQAB"}), "kty"),
            (json!({"kty": "RSA", "n": "AQAB"}), "e"),
            (json!({"kty": "RSA", "n": 5, "e": "AQAB"}), "n"),
            (json!({"kty": "EC", "crv": "P-256", "x": "AA"}), "y"),
            (json!({"kty": "OKP", "x": "AA"}), "crv"),
            (json!({"kty": "oct"}), "k"),
            (json!({"kty": "DSA", "k": "AA"}), "unsupported kty"),
            (json!("RSA"), "kty"),
        ];
        for (jwk, reason) in cases {
            match thumbprint(&jwk) {
                Err(KeyError::InvalidJwk(r)) => assert_eq!(r, reason, "{jwk}"),
                other => panic!("{jwk}: expected InvalidJwk({reason}), got {other:?}"),
            }
        }
    }

    #[test]
    fn finished_jwk_carries_alg_use_and_its_own_thumbprint_as_kid() {
        let (kid, jwk) = finish(Algorithm::EdDSA, ed25519(&[7; 32])).unwrap();

        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(thumbprint(&jwk).unwrap(), kid);
    }

    #[test]
    fn ec_members_split_the_point_into_equal_coordinates() {
        let mut point = vec![0x04];
        point.extend([1; 32]);
        point.extend([2; 32]);
        let jwk = ec("P-256", &point).unwrap();

        assert_eq!(jwk["x"], b64(&[1; 32]));
        assert_eq!(jwk["y"], b64(&[2; 32]));
        assert!(
            ec("P-256", &point[1..]).is_none(),
            "a point without the uncompressed tag"
        );
        assert!(ec("P-256", &point[..64]).is_none(), "a point of odd length");
        assert!(ec("P-256", &[0x04]).is_none(), "an empty point");
    }
}
