//! Password hashing: bcrypt with the cost from settings, always on the blocking pool.
//!
//! bcrypt reads at most 72 bytes, and a 128-character password can be 512. So bcrypt is fed
//! the hex SHA-256 of the password (64 bytes): every character counts and none is dropped.

use sha2::{Digest, Sha256};

use crate::domain::Password;

fn prehash(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

/// Hashes passwords at a fixed cost and checks them in similar time whether or not the
/// login exists.
#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    /// A hash to check against when the login does not exist, so "no such user" takes as
    /// long as "wrong password".
    decoy: String,
}

impl Hasher {
    pub fn new(cost: u32) -> anyhow::Result<Self> {
        let decoy = bcrypt::hash(prehash("decoy password"), cost)?;
        Ok(Self { cost, decoy })
    }

    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let cost = self.cost;
        actix_web::web::block(move || bcrypt::hash(prehash(password.expose()), cost))
            .await?
            .map_err(Into::into)
    }

    /// True if `password` matches `hash`; with no hash (unknown login) checks the decoy and
    /// answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.clone());
        let matches =
            actix_web::web::block(move || bcrypt::verify(prehash(&password), &hash)).await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hasher = Hasher::new(4).unwrap();
        let hash = hasher
            .hash(Password::parse("correct horse".into()).unwrap())
            .await
            .unwrap();
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse!".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("decoy password".into(), None).await.unwrap());
    }

    #[actix_web::test]
    async fn characters_past_72_bytes_still_count() {
        let hasher = Hasher::new(4).unwrap();
        let long = "x".repeat(100);
        let hash = hasher
            .hash(Password::parse(long.clone()).unwrap())
            .await
            .unwrap();
        let almost = format!("{}y", "x".repeat(99));
        assert!(!hasher.verify(almost, Some(hash.clone())).await.unwrap());
        assert!(hasher.verify(long, Some(hash)).await.unwrap());
    }
}
