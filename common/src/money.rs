//! Money: `i64` minor units (cents) inside the system, an exact decimal JSON number outside.
//!
//! A client writes `2000.5`; serde_json's `arbitrary_precision` hands us that literal text,
//! and [`Money::parse`] turns it into `200050` without ever passing through a float. Amounts
//! with more than two decimals, or beyond [`Money::MAX`] in absolute value, are refused.

use std::{fmt, str::FromStr};

use rust_decimal::{Decimal, prelude::ToPrimitive};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// An amount of money in minor units (1/100 of the currency unit). May be negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a decimal number is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a number with at most 2 decimal places")]
    TooPrecise,
    #[error("must be between -1000000000 and 1000000000")]
    OutOfRange,
    #[error("must be a decimal number such as 5000 or 2000.50")]
    NotANumber,
}

impl Money {
    /// The largest amount one request may move: one billion currency units. Far below the
    /// `i64` limit, so sums of many such amounts cannot overflow in practice.
    pub const MAX: Money = Money(1_000_000_000 * 100);
    /// The largest amount an answer may carry, such as a balance: one quadrillion units, far
    /// above billing's balance cap and far below the `i64` limit.
    pub const MAX_ANSWER: Money = Money(1_000_000_000_000_000 * 100);
    pub const ZERO: Money = Money(0);

    pub const fn from_minor(minor: i64) -> Self {
        Money(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Whole currency units, for tests and examples: `Money::units(5000)`.
    pub const fn units(units: i64) -> Self {
        Money(units * 100)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn abs(self) -> Self {
        Money(self.0.abs())
    }

    /// Parses a decimal literal exactly (`5000`, `-20.5`, `1e3`, `0.10`), as much as one
    /// request may move (at most [`Money::MAX`]).
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        Self::parse_up_to(text, Self::MAX)
    }

    /// Like [`Money::parse`], for amounts in another service's answer, such as a balance,
    /// which may grow past what one request may move (at most [`Money::MAX_ANSWER`]).
    pub fn parse_answer(text: &str) -> Result<Self, MoneyError> {
        Self::parse_up_to(text, Self::MAX_ANSWER)
    }

    /// `#[serde(deserialize_with = "Money::deserialize_answer")]` for [`Money::parse_answer`].
    pub fn deserialize_answer<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        Money::parse_answer(&number.to_string()).map_err(D::Error::custom)
    }

    fn parse_up_to(text: &str, max: Money) -> Result<Self, MoneyError> {
        let text = text.trim();
        let looks_numeric = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            && text.bytes().any(|b| b.is_ascii_digit());
        if !looks_numeric {
            return Err(MoneyError::NotANumber);
        }
        let decimal = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str_exact(text)
        }
        .map_err(|_| {
            // Syntactically a number, but beyond Decimal's 28 digits: huge or very precise.
            if text.contains('.') || text.contains("e-") || text.contains("E-") {
                MoneyError::TooPrecise
            } else {
                MoneyError::OutOfRange
            }
        })?
        .normalize();
        if decimal.scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        // scale <= 2, so this product is a whole number of minor units
        let minor = (decimal * Decimal::ONE_HUNDRED)
            .to_i64()
            .ok_or(MoneyError::OutOfRange)?;
        if minor.unsigned_abs() > max.0.unsigned_abs() {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money(minor))
    }

    fn as_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

/// `2000.00`, `-0.50`: always two decimals, as in human messages.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_decimal())
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

/// As a JSON number in its shortest exact form: `2000`, `2000.5`, `0.01`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let literal = self.as_decimal().normalize().to_string();
        let number = serde_json::Number::from_str(&literal).map_err(serde::ser::Error::custom)?;
        number.serialize(serializer)
    }
}

/// From a JSON number only: a string such as `"5000"` is refused like any other wrong type.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        Money::parse(&number.to_string()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_and_fractional_amounts_exactly() {
        assert_eq!(Money::parse("5000"), Ok(Money::from_minor(500_000)));
        assert_eq!(Money::parse("2000.5"), Ok(Money::from_minor(200_050)));
        assert_eq!(Money::parse("0.01"), Ok(Money::from_minor(1)));
        assert_eq!(Money::parse("-3000.10"), Ok(Money::from_minor(-300_010)));
        assert_eq!(Money::parse("0.1"), Ok(Money::from_minor(10)));
        assert_eq!(Money::parse("1e3"), Ok(Money::units(1000)));
        assert_eq!(Money::parse("1.5E2"), Ok(Money::units(150)));
        assert_eq!(Money::parse("0"), Ok(Money::ZERO));
    }

    #[test]
    fn trailing_zeros_do_not_count_as_decimals() {
        assert_eq!(Money::parse("1.000"), Ok(Money::units(1)));
        assert_eq!(Money::parse("2.50000"), Ok(Money::from_minor(250)));
    }

    #[test]
    fn refuses_more_than_two_decimals() {
        assert_eq!(Money::parse("0.001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("2000.505"), Err(MoneyError::TooPrecise));
        assert_eq!(
            Money::parse("0.30000000000000004"),
            Err(MoneyError::TooPrecise)
        );
        assert_eq!(Money::parse("1e-3"), Err(MoneyError::TooPrecise));
        // more digits than any float or Decimal holds: still refused, never rounded
        assert_eq!(
            Money::parse("1.0000000000000000000000000000001"),
            Err(MoneyError::TooPrecise)
        );
    }

    #[test]
    fn refuses_absurd_amounts() {
        assert_eq!(Money::parse("1000000000.01"), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse("-1000000001"), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse("1e400"), Err(MoneyError::OutOfRange));
        assert_eq!(
            Money::parse("99999999999999999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(Money::parse("1000000000"), Ok(Money::MAX));
        // a balance may pass what one request may move
        assert_eq!(
            Money::parse_answer("1027683538.65"),
            Ok(Money::from_minor(102_768_353_865))
        );
        assert_eq!(
            Money::parse_answer("1000000000000000.01"),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn refuses_things_that_are_not_numbers() {
        for text in ["", "abc", "NaN", "Infinity", "-", "1,5", "0x10"] {
            assert_eq!(Money::parse(text), Err(MoneyError::NotANumber), "{text}");
        }
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(Money::units(2000).to_string(), "2000.00");
        assert_eq!(Money::from_minor(-50).to_string(), "-0.50");
        assert_eq!(Money::from_minor(1).to_string(), "0.01");
    }

    #[test]
    fn json_round_trip_is_exact_and_shortest() {
        let cases = [
            ("5000", "5000"),
            ("2000.5", "2000.5"),
            ("0.10", "0.1"),
            ("-3", "-3"),
        ];
        for (input, output) in cases {
            let money: Money = serde_json::from_str(input).unwrap();
            assert_eq!(serde_json::to_string(&money).unwrap(), output);
        }
    }

    #[test]
    fn json_strings_and_nulls_are_refused() {
        assert!(serde_json::from_str::<Money>("\"5000\"").is_err());
        assert!(serde_json::from_str::<Money>("null").is_err());
        let err = serde_json::from_str::<Money>("0.001").unwrap_err();
        assert!(
            err.to_string().contains("at most 2 decimal places"),
            "{err}"
        );
    }
}
