//! Auth's domain types. Each parses once from request input and is valid from then on;
//! the rules are the contract's (api-contract.md, "Validation").

use std::fmt;

use common::problem::Problem;
use secrecy::{ExposeSecret, SecretString};

/// A login: 3–64 characters of `[A-Za-z0-9_.-]`. Unique regardless of case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login(String);

impl Login {
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !(3..=64).contains(&raw.len()) || !ok_chars {
            return Err(Problem::invalid_field(
                "login",
                "must be 3 to 64 characters of letters, digits, '_', '.' or '-'",
            ));
        }
        Ok(Login(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes logins unique regardless of case.
    pub fn key(&self) -> String {
        key_of(&self.0)
    }
}

/// The lookup key of any login text, valid or not.
pub fn key_of(login: &str) -> String {
    login.to_ascii_lowercase()
}

/// A new password: 8–128 characters. Never printed, never logged.
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Problem> {
        if !(8..=128).contains(&raw.chars().count()) {
            return Err(Problem::invalid_field(
                "password",
                "must be 8 to 128 characters",
            ));
        }
        Ok(Password(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An email address that looks like one: `local@domain.tld` with one `@`, a local part of 1–64
/// characters, a domain of dot-separated labels, no whitespace or control characters, at
/// most 254 characters. Exactly what `openapi.json` says (the pattern of `email`), so the
/// API fuzzer's valid emails are accepted and its invalid ones refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        let invalid =
            || Problem::invalid_field("email", "must be an email address such as name@example.com");
        if raw.chars().count() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.chars().count() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A first or last name: up to 100 characters, no control characters. May be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Self, Problem> {
        let raw = raw.trim();
        if raw.chars().count() > 100 {
            return Err(Problem::invalid_field(
                field,
                "must be at most 100 characters",
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(Problem::invalid_field(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Name(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_follow_the_contract() {
        for ok in ["bob", "Alice_1", "a.b-c", &"x".repeat(64)] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "has space",
            "émile",
            "a/b",
            "a@b",
            &"x".repeat(65),
        ] {
            assert_eq!(
                Login::parse(bad).unwrap_err().field.as_deref(),
                Some("login"),
                "{bad}"
            );
        }
    }

    #[test]
    fn logins_are_unique_regardless_of_case() {
        assert_eq!(
            Login::parse("Alice").unwrap().key(),
            Login::parse("aLICE").unwrap().key()
        );
    }

    #[test]
    fn passwords_are_8_to_128_characters_and_never_printed() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("é".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        let p = Password::parse("supersecret".into()).unwrap();
        assert!(!format!("{p:?}").contains("supersecret"));
    }

    #[test]
    fn emails_must_look_like_emails() {
        for ok in ["a@b.co", "first.last+tag@example.com", "zoë@bücher.example"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@b",
            "a@.com",
            "a@b.",
            "a b@c.com",
            "a@b..com",
            "a@b@c.com",
            " padded@example.org ",
            "tab\t@example.org",
            "nbsp\u{a0}@example.org",
        ] {
            assert_eq!(
                Email::parse(bad).unwrap_err().field.as_deref(),
                Some("email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_short_printable_text() {
        assert_eq!(Name::parse("first_name", " Zoë ").unwrap().as_str(), "Zoë");
        assert!(Name::parse("first_name", "").is_ok());
        assert!(Name::parse("first_name", &"n".repeat(101)).is_err());
        assert_eq!(
            Name::parse("last_name", "a\nb")
                .unwrap_err()
                .field
                .as_deref(),
            Some("last_name")
        );
    }
}
