//! The recognizers: patterns, checksums and validity rules.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use regex::Regex;

use super::EntityType;

/// A raw result with byte offsets.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) entity: EntityType,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) score: f64,
}

#[derive(Debug)]
pub(super) struct Recognizers {
    email: Regex,
    url: Regex,
    phone_intl: Regex,
    phone_us: Regex,
    phone_uk: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
    date_iso: Regex,
    date_numeric: Regex,
    date_words: Regex,
    person_title: Regex,
    capitalized: Regex,
    address: Regex,
    first_names: HashSet<&'static str>,
    last_names: HashSet<&'static str>,
}

fn re(p: &str) -> Regex {
    // The patterns are constants and covered by tests.
    Regex::new(p).unwrap_or_else(|e| panic!("invalid built-in pattern {p}: {e}"))
}

const MONTHS: &str = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)";
const STREET_SUFFIX: &str = r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Alley|Aly|Crescent|Cres|Close|Row|Walk)";

/// Top-level domains an address may end in beyond the two-letter country codes.
const GENERIC_TLDS: &[&str] = &[
    "com",
    "net",
    "org",
    "edu",
    "gov",
    "mil",
    "int",
    "info",
    "biz",
    "name",
    "pro",
    "io",
    "ai",
    "app",
    "dev",
    "cloud",
    "xyz",
    "online",
    "site",
    "tech",
    "store",
    "shop",
    "blog",
    "mobi",
    "email",
    "museum",
    "aero",
    "coop",
    "travel",
    "jobs",
    "media",
    "news",
    "agency",
    "company",
    "solutions",
    "services",
    "digital",
    "global",
    "network",
    "systems",
    "software",
    "example",
    "test",
    "invalid",
    "localhost",
];

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 28),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 25),
    ("PT", 21),
    ("QA", 25),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// Words that are first names in the census lists but far more often something else when
/// capitalised at the start of a phrase.
const NOT_NAMES: &[&str] = &[
    "Will", "May", "Mark", "Hope", "Bill", "Don", "Art", "Grant", "Joy", "Faith", "June", "April",
    "August", "Summer", "Rose", "Lane", "Dean", "Chase", "Bob", "Sunny", "Young", "Page", "Major",
    "Miles", "Royal", "Sale", "Price", "Long", "Love", "Gay", "Guy", "Rich", "Deal", "Case", "Sky",
    "Star", "Golden", "King", "Queen", "Main", "North", "South", "East", "West", "New", "Dear",
    "Please", "Call", "Contact", "Street", "Road", "Avenue",
];

pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

pub(super) fn iban_valid(iban: &str) -> bool {
    let b = iban.as_bytes();
    if b.len() < 15 || !b[..2].iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let Some((_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_bytes() == &b[..2]) else {
        return false;
    };
    if b.len() != *len || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    // Move the first four characters to the end, letters to 10..35, mod 97 must be 1.
    let mut rem = 0u32;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c.to_ascii_uppercase() - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// SSA rules: area not 000, 666 or 900–999; group not 00; serial not 0000; not one repeated
/// digit; not the numbers published in advertising (078-05-1120, 219-09-9999, 123-45-6789).
pub(super) fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    let all = format!("{area}{group}{serial}");
    if all.bytes().all(|b| b == all.as_bytes()[0]) {
        return false;
    }
    if matches!(all.as_str(), "078051120" | "219099999" | "123456789") {
        return false;
    }
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 0,
    }
}

fn date_ok(y: u32, m: u32, d: u32) -> bool {
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// Whether the byte before `start` and the byte at `end` are not word characters.
fn isolated(text: &str, start: usize, end: usize, extra: &[u8]) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || extra.contains(&c);
    (start == 0 || !word(b[start - 1])) && (end >= b.len() || !word(b[end]))
}

impl Recognizers {
    pub(super) fn new() -> Self {
        let names = |text: &'static str| -> HashSet<&'static str> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        };
        let mut first_names = names(include_str!("data/first_names.txt"));
        for w in NOT_NAMES {
            first_names.remove(w);
        }
        Self {
            email: re(
                r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b",
            ),
            url: re(r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`]+"#),
            phone_intl: re(r"\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}"),
            phone_us: re(r"(?:\b1[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]?\d{3}[ .-]\d{4}\b"),
            phone_uk: re(r"\b0\d{2,4}[ -]?\d{3,4}[ -]?\d{3,4}\b"),
            card: re(r"\b(?:\d[ -]?){12,18}\d\b"),
            iban: re(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,30}\b"),
            ssn: re(r"\b(\d{3})([- .]?)(\d{2})([- .]?)(\d{4})\b"),
            ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            ipv6: re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?::(?:\d{1,3}\.){3}\d{1,3})?"),
            date_iso: re(
                r"\b(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
            ),
            date_numeric: re(r"\b(\d{1,2})([/.-])(\d{1,2})([/.-])(\d{4}|\d{2})\b"),
            date_words: re(&format!(
                r"(?i)\b(?:(\d{{1,2}})(?:st|nd|rd|th)?\s+{MONTHS}\.?,?\s+(\d{{4}})|{MONTHS}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}}))\b"
            )),
            person_title: re(
                r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?\s+(?:[A-Z][a-z'’-]+\s+)*[A-Z][a-z'’-]+",
            ),
            capitalized: re(r"\b[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)?\b"),
            address: re(&format!(
                r"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][A-Za-z'.-]*\s+){{1,4}}{STREET_SUFFIX}\b\.?(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?\s*[A-Za-z0-9-]+)?(?:,\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+){{0,2}})?(?:,\s+[A-Z]{{2}})?(?:\s+\d{{5}}(?:-\d{{4}})?)?"
            )),
            first_names,
            last_names: names(include_str!("data/last_names.txt")),
        }
    }

    pub(super) fn find(&self, text: &str) -> Vec<Found> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
        let has_upper = bytes.iter().any(u8::is_ascii_uppercase);
        let mut push = |entity, start, end, score| {
            out.push(Found {
                entity,
                start,
                end,
                score,
            })
        };
        if bytes.contains(&b'@') {
            for m in self.email.find_iter(text) {
                let tld = m
                    .as_str()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let known = tld.len() == 2 || GENERIC_TLDS.contains(&tld.as_str());
                push(
                    EntityType::EmailAddress,
                    m.start(),
                    m.end(),
                    if known { 1.0 } else { 0.5 },
                );
            }
        }
        if text.contains("://") || text.contains("www.") || text.contains("WWW.") {
            for m in self.url.find_iter(text) {
                let s = m
                    .as_str()
                    .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"']);
                if s.len() > 8 {
                    let score = if s.contains("://") { 0.6 } else { 0.5 };
                    push(EntityType::Url, m.start(), m.start() + s.len(), score);
                }
            }
        }
        if digits >= 7 {
            self.find_numbers(text, &mut push);
        }
        if digits >= 6 {
            self.find_dates(text, &mut push);
        } else if digits >= 4 {
            for m in self.date_words.captures_iter(text) {
                if let Some(w) = m.get(0) {
                    push(EntityType::DateTime, w.start(), w.end(), 0.6);
                }
            }
        }
        if has_upper {
            if digits >= 1 {
                for m in self.address.find_iter(text) {
                    // A full stop that ends the sentence is not part of the address.
                    let end = if m.as_str().ends_with('.')
                        && text[m.end()..]
                            .chars()
                            .next()
                            .is_none_or(char::is_whitespace)
                    {
                        m.end() - 1
                    } else {
                        m.end()
                    };
                    push(EntityType::Location, m.start(), end, 0.7);
                }
            }
            self.find_people(text, &mut push);
        }
        out
    }

    fn find_numbers(&self, text: &str, push: &mut impl FnMut(EntityType, usize, usize, f64)) {
        for m in self.card.find_iter(text) {
            let d: Vec<u8> = m
                .as_str()
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| b - b'0')
                .collect();
            let seps = m.as_str().bytes().filter(|b| !b.is_ascii_digit()).count();
            // Grouped in fours (or 4-6-5 for Amex), or not grouped at all.
            if (13..=19).contains(&d.len()) && luhn(&d) && (seps == 0 || seps >= 2) {
                let iin = |p: &str| m.as_str().starts_with(p);
                let known = [
                    "4", "51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27", "34",
                    "37", "6011", "65", "64", "35", "36", "38", "30", "62",
                ]
                .iter()
                .any(|p| iin(p));
                push(
                    EntityType::CreditCard,
                    m.start(),
                    m.end(),
                    if known { 1.0 } else { 0.6 },
                );
            }
        }
        for c in self.ssn.captures_iter(text) {
            let (Some(all), Some(a), Some(s1), Some(g), Some(s2), Some(s)) =
                (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4), c.get(5))
            else {
                continue;
            };
            if s1.as_str() != s2.as_str() || !ssn_valid(a.as_str(), g.as_str(), s.as_str()) {
                continue;
            }
            if !isolated(text, all.start(), all.end(), b"-.") {
                continue;
            }
            let score = match s1.as_str() {
                "-" => 0.85,
                "" => 0.3,
                _ => 0.6,
            };
            push(EntityType::UsSsn, all.start(), all.end(), score);
        }
        for m in self.phone_intl.find_iter(text) {
            let s = m.as_str().trim_end_matches([' ', '.', '-', '(']);
            let d = s.bytes().filter(u8::is_ascii_digit).count();
            if (8..=15).contains(&d) && isolated(text, m.start(), m.start() + s.len(), b"") {
                push(
                    EntityType::PhoneNumber,
                    m.start(),
                    m.start() + s.len(),
                    0.75,
                );
            }
        }
        for m in self.phone_us.find_iter(text) {
            let d: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
            let national = if d.len() == 11 { &d[1..] } else { &d[..] };
            // NANP: area code and exchange start with 2–9.
            if national.len() == 10 && national[0] >= b'2' && national[3] >= b'2' {
                push(EntityType::PhoneNumber, m.start(), m.end(), 0.7);
            }
        }
        for m in self.phone_uk.find_iter(text) {
            let d = m.as_str().bytes().filter(u8::is_ascii_digit).count();
            if (10..=11).contains(&d) && m.as_str().contains([' ', '-']) {
                push(EntityType::PhoneNumber, m.start(), m.end(), 0.5);
            }
        }
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            for m in self.iban.find_iter(text) {
                let compact: String = m
                    .as_str()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                if iban_valid(&compact) {
                    push(EntityType::IbanCode, m.start(), m.end(), 1.0);
                }
            }
        }
        for m in self.ipv4.find_iter(text) {
            let ok = m.as_str().split('.').all(|o| {
                o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0'))
            });
            if ok && isolated(text, m.start(), m.end(), b".") {
                push(EntityType::IpAddress, m.start(), m.end(), 0.6);
            }
        }
        if text.contains(':') {
            self.find_ipv6(text, push);
        }
    }

    fn find_ipv6(&self, text: &str, push: &mut impl FnMut(EntityType, usize, usize, f64)) {
        for m in self.ipv6.find_iter(text) {
            let s = m.as_str();
            if s.matches(':').count() >= 2
                && s.len() > 2
                && s.parse::<Ipv6Addr>().is_ok()
                && isolated(text, m.start(), m.end(), b":")
            {
                push(EntityType::IpAddress, m.start(), m.end(), 0.6);
            }
        }
    }

    fn find_dates(&self, text: &str, push: &mut impl FnMut(EntityType, usize, usize, f64)) {
        let num = |c: &regex::Captures<'_>, i: usize| -> u32 {
            c.get(i).and_then(|m| m.as_str().parse().ok()).unwrap_or(0)
        };
        for c in self.date_iso.captures_iter(text) {
            let Some(all) = c.get(0) else { continue };
            let time_ok =
                c.get(4).is_none() || (num(&c, 4) < 24 && num(&c, 5) < 60 && num(&c, 6) < 61);
            if date_ok(num(&c, 1), num(&c, 2), num(&c, 3)) && time_ok {
                push(EntityType::DateTime, all.start(), all.end(), 0.85);
            }
        }
        for c in self.date_numeric.captures_iter(text) {
            let Some(all) = c.get(0) else { continue };
            if c.get(2).map(|m| m.as_str()) != c.get(4).map(|m| m.as_str()) {
                continue;
            }
            let (a, b) = (num(&c, 1), num(&c, 3));
            let y = num(&c, 5);
            let y = if y < 100 { 2000 + y } else { y };
            // Month-first (US) or day-first (most of the world).
            if (date_ok(y, a, b) || date_ok(y, b, a))
                && isolated(text, all.start(), all.end(), b"./-")
            {
                push(EntityType::DateTime, all.start(), all.end(), 0.6);
            }
        }
        for c in self.date_words.captures_iter(text) {
            if let Some(all) = c.get(0) {
                push(EntityType::DateTime, all.start(), all.end(), 0.6);
            }
        }
    }

    fn find_people(&self, text: &str, push: &mut impl FnMut(EntityType, usize, usize, f64)) {
        for m in self.person_title.find_iter(text) {
            push(EntityType::Person, m.start(), m.end(), 0.85);
        }
        // Runs of capitalised words; a run that starts with a known first name and goes on with
        // a capitalised word is a name, more surely so when that word is a known surname.
        let words: Vec<regex::Match<'_>> = self.capitalized.find_iter(text).collect();
        let mut i = 0;
        while i < words.len() {
            let first = words[i];
            if !self.first_names.contains(first.as_str()) {
                i += 1;
                continue;
            }
            // Extend over directly following capitalised words (one space or hyphen apart),
            // allowing one middle initial.
            let mut end = first.end();
            let mut j = i + 1;
            let mut surname_known = false;
            let mut parts = 1;
            let mut cursor = first.end();
            loop {
                let rest = &text[cursor..];
                let gap = rest.len() - rest.trim_start_matches([' ']).len();
                let after = &rest[gap..];
                if gap == 1
                    && after.len() >= 2
                    && after.as_bytes()[0].is_ascii_uppercase()
                    && after.as_bytes()[1] == b'.'
                {
                    cursor += gap + 2;
                    continue;
                }
                match words.get(j) {
                    Some(w) if w.start() == cursor + gap && gap == 1 && parts < 4 => {
                        surname_known |= self.last_names.contains(w.as_str());
                        end = w.end();
                        cursor = w.end();
                        parts += 1;
                        j += 1;
                    }
                    _ => break,
                }
            }
            if parts >= 2 {
                push(
                    EntityType::Person,
                    first.start(),
                    end,
                    if surname_known { 0.85 } else { 0.6 },
                );
            }
            i = j.max(i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        // Examples from the SWIFT IBAN registry.
        for ok in [
            "GB82WEST12345698765432",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "BE68539007547034",
        ] {
            assert!(iban_valid(ok), "{ok}");
        }
        assert!(!iban_valid("GB82WEST12345698765431"));
        assert!(!iban_valid("GB82WEST1234569876543"));
        assert!(!iban_valid("ZZ82WEST12345698765432"));
        assert!(ssn_valid("536", "90", "4399"));
        for (a, g, s) in [
            ("000", "12", "3456"),
            ("666", "12", "3456"),
            ("900", "12", "3456"),
            ("123", "00", "4567"),
            ("123", "45", "0000"),
            ("078", "05", "1120"),
            ("111", "11", "1111"),
        ] {
            assert!(!ssn_valid(a, g, s), "{a}-{g}-{s}");
        }
        assert!(date_ok(2024, 2, 29) && !date_ok(2023, 2, 29) && !date_ok(2024, 13, 1));
    }
}
