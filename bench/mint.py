# Mints the benchmark's keys and tokens with PyJWT: an HS256 token for the shared secret, and an
# ES256 and an EdDSA key pair published as one JWK Set, with a token from each. Every token is
# for user 7 and valid for an hour.
#
#   python mint.py SECRET OUT_DIR   writes hs256.token es256.token eddsa.token jwks.json
import json
import pathlib
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

secret, out = sys.argv[1], pathlib.Path(sys.argv[2])
now = int(time.time())
claims = {"user_id": 7, "is_admin": False, "iat": now, "exp": now + 3600}

(out / "hs256.token").write_text(jwt.encode(claims, secret, algorithm="HS256"))

keys = []
for alg, private, to_jwk in [
    ("ES256", ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk),
    ("EdDSA", ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm.to_jwk),
]:
    kid = f"bench-{alg.lower()}"
    jwk = json.loads(to_jwk(private.public_key()))
    jwk.update(kid=kid, alg=alg, use="sig")
    keys.append(jwk)
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})
    (out / f"{alg.lower()}.token").write_text(token)

(out / "jwks.json").write_text(json.dumps({"keys": keys}))
