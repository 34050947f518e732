//! PII detection with character spans and confidence, column classification into sensitivity
//! levels, and masking of detected spans.
//!
//! Entity names are spelled as Microsoft Presidio spells them, so results can be compared with
//! and fed to Presidio-based tooling. Detection is regular expressions plus checksums and
//! validity rules (Luhn, IBAN mod-97, SSA rules for SSNs, address parsing for IPs, calendar
//! checks for dates) and, for names, a dictionary of US Census first names and surnames with
//! heuristics; there is no statistical NER model.
//!
//! ```
//! use aistd_governance::pii::{EntityType, PiiScanner};
//!
//! let scanner = PiiScanner::new();
//! let found = scanner.analyze("Mail ada@example.com or call +44 20 7946 0958.");
//! let kinds: Vec<_> = found.iter().map(|e| e.entity_type).collect();
//! assert_eq!(kinds, [EntityType::EmailAddress, EntityType::PhoneNumber]);
//! assert_eq!((found[0].start, found[0].end), (5, 20));
//! ```

mod classify;
mod mask;
mod recognizers;

use serde::{Deserialize, Serialize};

pub use classify::{
    ClassRule, Classification, ClassificationRules, ColumnClassification, Sensitivity, classify,
};
pub use mask::{MaskOperator, anonymize, mask_column};

/// The kinds of PII detected, spelled as Presidio spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EntityType {
    /// An e-mail address.
    #[serde(rename = "EMAIL_ADDRESS")]
    EmailAddress,
    /// A phone number: E.164, or a common national format (US/Canada, UK, …).
    #[serde(rename = "PHONE_NUMBER")]
    PhoneNumber,
    /// A payment card number that passes the Luhn check.
    #[serde(rename = "CREDIT_CARD")]
    CreditCard,
    /// An IBAN with a valid length for its country and a valid mod-97 checksum.
    #[serde(rename = "IBAN_CODE")]
    IbanCode,
    /// A US Social Security number that follows the SSA's validity rules.
    #[serde(rename = "US_SSN")]
    UsSsn,
    /// An IPv4 or IPv6 address.
    #[serde(rename = "IP_ADDRESS")]
    IpAddress,
    /// A calendar date or date-time.
    #[serde(rename = "DATE_TIME")]
    DateTime,
    /// A person's name.
    #[serde(rename = "PERSON")]
    Person,
    /// A street address.
    #[serde(rename = "LOCATION")]
    Location,
    /// A URL.
    #[serde(rename = "URL")]
    Url,
}

impl EntityType {
    /// Every entity type.
    pub const ALL: [EntityType; 10] = [
        EntityType::EmailAddress,
        EntityType::PhoneNumber,
        EntityType::CreditCard,
        EntityType::IbanCode,
        EntityType::UsSsn,
        EntityType::IpAddress,
        EntityType::DateTime,
        EntityType::Person,
        EntityType::Location,
        EntityType::Url,
    ];

    /// The Presidio name (`EMAIL_ADDRESS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::EmailAddress => "EMAIL_ADDRESS",
            EntityType::PhoneNumber => "PHONE_NUMBER",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::IbanCode => "IBAN_CODE",
            EntityType::UsSsn => "US_SSN",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::DateTime => "DATE_TIME",
            EntityType::Person => "PERSON",
            EntityType::Location => "LOCATION",
            EntityType::Url => "URL",
        }
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntityType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                crate::Error::invalid(
                    "entity type",
                    format!(
                        "`{s}` is not one of {}",
                        EntityType::ALL.map(EntityType::as_str).join(", ")
                    ),
                )
            })
    }
}

/// One detected entity: its type, its span in characters (`start..end`, Unicode scalar values,
/// as Presidio counts them) and a confidence in `0..=1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Entity {
    /// What was found.
    #[serde(rename = "type")]
    pub entity_type: EntityType,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// Confidence.
    pub score: f64,
}

/// Finds PII in text. Build once (it compiles its patterns) and share: it is `Sync`.
#[derive(Debug)]
pub struct PiiScanner {
    recognizers: recognizers::Recognizers,
    threshold: f64,
}

impl Default for PiiScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl PiiScanner {
    /// A scanner for every entity type, reporting results scored 0.3 or more.
    pub fn new() -> Self {
        Self {
            recognizers: recognizers::Recognizers::new(),
            threshold: 0.3,
        }
    }

    /// Reports only results scored at least `threshold`.
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Entities in `text`, in order of position. Where spans of different entities overlap, the
    /// higher score (then the longer span) wins.
    pub fn analyze(&self, text: &str) -> Vec<Entity> {
        let mut raw = self.recognizers.find(text);
        raw.retain(|r| r.score >= self.threshold);
        // Conflict resolution: best first, keep what does not overlap something kept.
        raw.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then((b.end - b.start).cmp(&(a.end - a.start)))
                .then(a.start.cmp(&b.start))
        });
        let mut kept: Vec<recognizers::Found> = Vec::with_capacity(raw.len());
        for r in raw {
            if kept.iter().all(|k| r.end <= k.start || r.start >= k.end) {
                kept.push(r);
            }
        }
        kept.sort_by_key(|k| k.start);
        let ascii = text.is_ascii();
        kept.into_iter()
            .map(|k| Entity {
                entity_type: k.entity,
                start: if ascii {
                    k.start
                } else {
                    text[..k.start].chars().count()
                },
                end: if ascii {
                    k.end
                } else {
                    text[..k.end].chars().count()
                },
                score: k.score,
            })
            .collect()
    }

    /// Entities with byte offsets into `text` (for slicing in Rust).
    pub fn analyze_bytes(&self, text: &str) -> Vec<(EntityType, std::ops::Range<usize>, f64)> {
        let ascii = text.is_ascii();
        let entities = self.analyze(text);
        if ascii {
            return entities
                .into_iter()
                .map(|e| (e.entity_type, e.start..e.end, e.score))
                .collect();
        }
        let offsets: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()))
            .collect();
        entities
            .into_iter()
            .map(|e| (e.entity_type, offsets[e.start]..offsets[e.end], e.score))
            .collect()
    }
}
