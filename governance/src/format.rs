//! Value formats recognised by expectations (`match_format`) and by semantic-type inference.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::source::{parse_date, parse_timestamp_micros};

/// A well-known textual format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// An e-mail address: local part, `@`, a dotted domain (HTML5's `valid e-mail address`
    /// grammar, requiring at least one dot in the domain).
    Email,
    /// A phone number: E.164 (`+15551234567`) or North-American (`(555) 123-4567`, `+1 555-123-4567`).
    Phone,
    /// A US social security number `AAA-GG-SSSS` with area not 000, 666 or 9xx, group not 00,
    /// serial not 0000.
    UsSsn,
    /// A payment card number: 13–19 digits, optionally grouped by spaces or dashes, valid Luhn check.
    CreditCard,
    /// An `http` or `https` URL.
    Url,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// An ISO-8601 calendar date `YYYY-MM-DD` that exists.
    Date,
    /// An ISO-8601 timestamp `YYYY-MM-DD[T ]HH:MM:SS[.f][Z]`.
    Timestamp,
    /// A UUID in 8-4-4-4-12 hex form.
    Uuid,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
        .expect("static e-mail regex is valid")
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\+[1-9][0-9]{6,14}|(?:\+1[ .-]?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .-]?[0-9]{3}[ .-]?[0-9]{4})$")
        .expect("static phone regex is valid")
});
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^https?://[^\s/$.?#][^\s]*$").expect("static url regex is valid")
});
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
        .expect("static uuid regex is valid")
});

/// Luhn check over ASCII digits.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn credit_card(s: &str) -> bool {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    s.bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
        && (13..=19).contains(&digits.len())
        && luhn_valid(&digits)
}

fn us_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 11 || b[3] != b'-' || b[6] != b'-' {
        return false;
    }
    let all_digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    let (area, group, serial) = (&b[0..3], &b[4..6], &b[7..11]);
    all_digits(area)
        && all_digits(group)
        && all_digits(serial)
        && area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && group != b"00"
        && serial != b"0000"
}

impl Format {
    /// Every format, in the order semantic-type inference tries them.
    pub const ALL: [Format; 9] = [
        Format::Email,
        Format::UsSsn,
        Format::CreditCard,
        Format::Phone,
        Format::Url,
        Format::Ipv4,
        Format::Uuid,
        Format::Date,
        Format::Timestamp,
    ];

    /// Whether `s` is in this format.
    pub fn matches(self, s: &str) -> bool {
        match self {
            Format::Email => EMAIL.is_match(s),
            Format::Phone => PHONE.is_match(s),
            Format::UsSsn => us_ssn(s),
            Format::CreditCard => credit_card(s),
            Format::Url => URL.is_match(s),
            Format::Ipv4 => s.parse::<std::net::Ipv4Addr>().is_ok(),
            Format::Date => parse_date(s).is_some(),
            Format::Timestamp => parse_timestamp_micros(s).is_some(),
            Format::Uuid => UUID.is_match(s),
        }
    }

    /// The snake-case name used in expectation files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Email => "email",
            Format::Phone => "phone",
            Format::UsSsn => "us_ssn",
            Format::CreditCard => "credit_card",
            Format::Url => "url",
            Format::Ipv4 => "ipv4",
            Format::Date => "date",
            Format::Timestamp => "timestamp",
            Format::Uuid => "uuid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format::{self, *};

    #[test]
    fn format_table() {
        let cases: &[(Format, &str, bool)] = &[
            (Email, "ann.lee.12@example.com", true),
            (Email, "ANN.LEE.12@EXAMPLE.COM", true),
            (Email, "ann.lee.12.example.com", false),
            (Email, "ann.lee.12@", false),
            (Email, "ann@localhost", false),
            (Phone, "+15551234567", true),
            (Phone, "(555) 123-4567", true),
            (Phone, "+1 555-123-4567", true),
            (Phone, "12", false),
            // SSA rules: area 000/666/9xx, group 00 and serial 0000 are never issued.
            (UsSsn, "123-45-6789", true),
            (UsSsn, "666-45-6789", false),
            (UsSsn, "923-45-6789", false),
            (UsSsn, "123-00-6789", false),
            (UsSsn, "123-45-0000", false),
            // Standard test card numbers.
            (CreditCard, "4111 1111 1111 1111", true),
            (CreditCard, "5500-0000-0000-0004", true),
            (CreditCard, "4111 1111 1111 1112", false),
            (Url, "https://example.com/a?b=c", true),
            (Url, "ftp://example.com", false),
            (Ipv4, "192.168.0.1", true),
            (Ipv4, "256.1.1.1", false),
            (Uuid, "123e4567-e89b-12d3-a456-426614174000", true),
            (Date, "2024-02-29", true),
            (Date, "2023-02-29", false),
            (Timestamp, "2024-02-29T10:00:00Z", true),
        ];
        for (f, s, want) in cases {
            assert_eq!(f.matches(s), *want, "{f:?} on {s:?}");
        }
    }
}
