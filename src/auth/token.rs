//! Token logins (JWT), the way browser apps with single sign-on connect.
//!
//! `[auth.jwt]` names either an HS256 `secret` or a PEM `public_key_file` (RSA for
//! RS256, P-256 for ES256, Ed25519 for EdDSA; the key decides the one algorithm
//! accepted, so a token cannot pick a weaker one). `issuer` and `audience` are
//! checked when set, `exp` is required and checked with `leeway_s`. The login
//! comes from `login_claim` (default `sub`), the roles from `roles_claim` (default
//! `roles`, an array of strings; names that are not roles are ignored).
//!
//! A signature check costs microseconds, so tokens are checked on the session's
//! own task, without the password queue.

use super::{Identity, Role};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// `[auth.jwt]`: token logins (on when `secret` or `public_key_file` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret.
    pub secret: String,
    /// PEM public key: RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA).
    pub public_key_file: String,
    /// Required `iss`, when set.
    pub issuer: String,
    /// Required `aud`, when set.
    pub audience: String,
    /// The claim holding the login.
    pub login_claim: String,
    /// The claim holding the roles (an array of strings).
    pub roles_claim: String,
    /// Seconds of clock difference tolerated on `exp` (and `nbf`).
    pub leeway_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: String::new(),
            public_key_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            login_claim: "sub".to_owned(),
            roles_claim: "roles".to_owned(),
            leeway_s: 30,
        }
    }
}

/// Why `[auth.jwt]` cannot be used.
#[derive(Debug, Error)]
pub enum TokenConfigError {
    /// Both a secret and a public key were given.
    #[error("set either secret or public_key_file, not both")]
    Both,
    /// The key file cannot be read.
    #[error("cannot read {0}: {1}")]
    Unreadable(String, std::io::Error),
    /// The key file holds no RSA, P-256 or Ed25519 public key in PEM.
    #[error("{0} holds no RSA, P-256 (EC) or Ed25519 public key in PEM")]
    NotAKey(String),
}

/// Why a token was refused (the client is told only "authentication failed").
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Past its `exp` (and the leeway).
    #[error("token expired")]
    Expired,
    /// Bad signature, issuer, audience, algorithm, or not a JWT at all.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No login in the login claim.
    #[error("token has no well-formed login in claim {0:?}")]
    NoLogin(String),
}

/// A verified token: who it is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLogin {
    /// The login and roles from the claims.
    pub identity: Identity,
    /// `exp` plus the leeway: the connection ends then.
    pub valid_until: SystemTime,
}

/// Checks tokens against the configured key.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    login_claim: String,
    roles_claim: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("login_claim", &self.login_claim)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// The verifier `[auth.jwt]` describes, or `None` when token logins are off
    /// (no secret and no key file).
    pub fn from_config(c: &JwtConfig) -> Result<Option<TokenVerifier>, TokenConfigError> {
        let (key, algorithm) = match (c.secret.is_empty(), c.public_key_file.is_empty()) {
            (true, true) => return Ok(None),
            (false, false) => return Err(TokenConfigError::Both),
            (false, true) => (
                DecodingKey::from_secret(c.secret.as_bytes()),
                Algorithm::HS256,
            ),
            (true, false) => {
                let pem = std::fs::read(&c.public_key_file)
                    .map_err(|e| TokenConfigError::Unreadable(c.public_key_file.clone(), e))?;
                if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (k, Algorithm::RS256)
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    (k, Algorithm::ES256)
                } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                    (k, Algorithm::EdDSA)
                } else {
                    return Err(TokenConfigError::NotAKey(c.public_key_file.clone()));
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        // Bounded: jsonwebtoken computes `now - leeway` unchecked.
        validation.leeway = c.leeway_s.min(MAX_LEEWAY_S);
        // A token not valid yet is refused (within the leeway), as one expired.
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not only right when
        // present: jsonwebtoken checks an absent claim only if it is required.
        if c.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&c.issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        if c.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&c.audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        Ok(Some(TokenVerifier {
            key,
            validation,
            login_claim: c.login_claim.clone(),
            roles_claim: c.roles_claim.clone(),
        }))
    }

    /// Checks a token and reads its login, roles and expiry.
    pub fn verify(&self, token: &str) -> Result<TokenLogin, TokenError> {
        let data = decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        })?;
        let claims = data.claims;
        // The same rules as a login of the users file: a token must not name a
        // login whose user destinations reach into another's.
        let login = claims
            .get(&self.login_claim)
            .and_then(|v| v.as_str())
            .filter(|l| crate::auth::well_formed_login(l))
            .ok_or_else(|| TokenError::NoLogin(self.login_claim.clone()))?;
        let roles: Vec<Role> = claims
            .get(&self.roles_claim)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|r| serde_json::from_value::<Role>(r.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        // `exp` is required by the validation, so it is there and a number.
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TokenError::Invalid("exp is not a number".to_owned()))?;
        // Any u64 is a valid `exp`; past what the clock can hold it is "never".
        let valid_until = UNIX_EPOCH
            .checked_add(Duration::from_secs(
                exp.saturating_add(self.validation.leeway),
            ))
            .unwrap_or_else(far_future);
        Ok(TokenLogin {
            identity: Identity {
                login: Some(login.to_owned()),
                roles,
            },
            valid_until,
        })
    }
}

/// Whether `s` has the shape of a JWT (three base64url parts, a JSON header), so a
/// passcode that is one is checked as a token, not as a password.
pub fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && s.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The most clock difference `leeway_s` can tolerate: an hour.
pub const MAX_LEEWAY_S: u64 = 3600;

/// A time no token reaches: a hundred years from now.
fn far_future() -> SystemTime {
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    SystemTime::now()
        .checked_add(century)
        .unwrap_or_else(SystemTime::now)
}

/// Seconds since the epoch, now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn config(secret: &str) -> JwtConfig {
        JwtConfig {
            secret: secret.to_owned(),
            leeway_s: 0,
            ..JwtConfig::default()
        }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn reads_login_roles_and_expiry() {
        let v = TokenVerifier::from_config(&config("s3cret"))
            .unwrap()
            .unwrap();
        let exp = now_s() + 60;
        let t = token(
            "s3cret",
            json!({"sub": "alice", "roles": ["trader", "pilot"], "exp": exp}),
        );
        assert!(looks_like_jwt(&t));
        let login = v.verify(&t).unwrap();
        assert_eq!(login.identity.login.as_deref(), Some("alice"));
        assert_eq!(login.identity.roles, [Role::Trader]);
        assert_eq!(login.valid_until, UNIX_EPOCH + Duration::from_secs(exp));
    }

    #[test]
    fn refuses_bad_signatures_expired_tokens_and_missing_claims() {
        let v = TokenVerifier::from_config(&config("s3cret"))
            .unwrap()
            .unwrap();
        let exp = now_s() + 60;
        let forged = token("guess", json!({"sub": "alice", "exp": exp}));
        assert!(matches!(v.verify(&forged), Err(TokenError::Invalid(_))));
        let old = token("s3cret", json!({"sub": "alice", "exp": now_s() - 10}));
        assert_eq!(v.verify(&old), Err(TokenError::Expired));
        let no_exp = token("s3cret", json!({"sub": "alice"}));
        assert!(matches!(v.verify(&no_exp), Err(TokenError::Invalid(_))));
        let no_sub = token("s3cret", json!({"exp": exp}));
        assert!(matches!(v.verify(&no_sub), Err(TokenError::NoLogin(_))));
        assert!(matches!(v.verify("eyJ.x.y"), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn checks_issuer_and_audience_when_set() {
        let c = JwtConfig {
            issuer: "https://sso.example".into(),
            audience: "stompede".into(),
            ..config("s3cret")
        };
        let v = TokenVerifier::from_config(&c).unwrap().unwrap();
        let exp = now_s() + 60;
        let good = token(
            "s3cret",
            json!({"sub": "a", "exp": exp, "iss": "https://sso.example", "aud": "stompede"}),
        );
        assert!(v.verify(&good).is_ok());
        for claims in [
            json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "stompede"}),
            json!({"sub": "a", "exp": exp, "iss": "https://sso.example", "aud": "other"}),
            json!({"sub": "a", "exp": exp}),
        ] {
            assert!(
                v.verify(&token("s3cret", claims.clone())).is_err(),
                "{claims}"
            );
        }
    }

    #[test]
    fn configuration_errors() {
        assert!(
            TokenVerifier::from_config(&JwtConfig::default())
                .unwrap()
                .is_none()
        );
        let both = JwtConfig {
            public_key_file: "/nonexistent".into(),
            ..config("s")
        };
        assert!(matches!(
            TokenVerifier::from_config(&both),
            Err(TokenConfigError::Both)
        ));
        let missing = JwtConfig {
            public_key_file: "/nonexistent/key.pem".into(),
            ..JwtConfig::default()
        };
        assert!(matches!(
            TokenVerifier::from_config(&missing),
            Err(TokenConfigError::Unreadable(..))
        ));
        assert!(!looks_like_jwt("alice-demo"));
        assert!(!looks_like_jwt("a.b.c"));
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_within_the_leeway() {
        let v = TokenVerifier::from_config(&config("s3cret"))
            .unwrap()
            .unwrap();
        let exp = now_s() + 600;
        let early = token(
            "s3cret",
            json!({"sub": "a", "exp": exp, "nbf": now_s() + 300}),
        );
        assert!(matches!(v.verify(&early), Err(TokenError::Invalid(_))));
        let ready = token(
            "s3cret",
            json!({"sub": "a", "exp": exp, "nbf": now_s() - 1}),
        );
        assert!(v.verify(&ready).is_ok());
        let lenient = TokenVerifier::from_config(&JwtConfig {
            leeway_s: 60,
            ..config("s3cret")
        })
        .unwrap()
        .unwrap();
        let soon = token(
            "s3cret",
            json!({"sub": "a", "exp": exp, "nbf": now_s() + 30}),
        );
        assert!(lenient.verify(&soon).is_ok());
    }

    #[test]
    fn token_logins_obey_the_rules_of_file_logins() {
        let v = TokenVerifier::from_config(&config("s3cret"))
            .unwrap()
            .unwrap();
        let exp = now_s() + 600;
        for bad in ["bob/queue/a", "a:b", "a b", "tab\t", "", &"x".repeat(257)] {
            let t = token("s3cret", json!({"sub": bad, "exp": exp}));
            assert!(
                matches!(v.verify(&t), Err(TokenError::NoLogin(_))),
                "{bad:?}"
            );
        }
        let t = token(
            "s3cret",
            json!({"sub": "bob.smith@example.com", "exp": exp}),
        );
        assert!(v.verify(&t).is_ok());
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        // No claim value can panic the verifier or the deadline a session takes
        // from it: any exp, nbf and iat, numbers of every size and other types.
        #[test]
        fn no_claim_value_panics(
            exp in proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| json!(n)),
                proptest::num::i64::ANY.prop_map(|n| json!(n)),
                proptest::num::f64::ANY.prop_map(|n| json!(n)),
                ".{0,8}".prop_map(|s| json!(s)),
            ],
            nbf in proptest::option::of(proptest::num::i64::ANY),
            iat in proptest::num::u64::ANY,
            sub in ".{0,12}",
            leeway in proptest::prop_oneof![proptest::num::u64::ANY, 0u64..=MAX_LEEWAY_S],
        ) {
            let v = TokenVerifier::from_config(&JwtConfig {
                leeway_s: leeway,
                ..config("s3cret")
            })
            .unwrap()
            .unwrap();
            let mut claims = json!({"sub": sub, "exp": exp, "iat": iat});
            if let Some(nbf) = nbf {
                claims["nbf"] = json!(nbf);
            }
            if let Ok(login) = v.verify(&token("s3cret", claims)) {
                let left = login
                    .valid_until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                let _ = std::time::Instant::now().checked_add(left);
            }
        }
    }

    #[test]
    fn the_largest_exp_is_never_and_does_not_panic() {
        let v = TokenVerifier::from_config(&config("s3cret"))
            .unwrap()
            .unwrap();
        let t = token("s3cret", json!({"sub": "a", "exp": 1u64 << 63}));
        let login = v.verify(&t).unwrap();
        assert!(login.valid_until > SystemTime::now() + Duration::from_secs(365 * 24 * 3600));
        let t = token("s3cret", json!({"sub": "a", "exp": u64::MAX}));
        assert!(v.verify(&t).is_ok());
    }
}
