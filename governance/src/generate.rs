//! Built-in data: a deterministic, seeded generator of realistic loan applications with injected
//! dirt whose exact amount is known ([`GroundTruth`]), so tests can assert exact counts.
//!
//! Each record is a loan application: name, e-mail, phone, US SSN (valid area/group/serial rules),
//! credit-card number (valid Luhn check digit), address, birth and application dates, gender, age
//! and age band, income, loan amount, credit score and the label `approved`, drawn with a
//! configurable bias against one group. Dirt: nulls, NaNs, exact and near duplicates, out-of-range
//! values and malformed e-mails, each at a configurable rate.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::source::{MemorySource, date_string, days_from_civil};
use crate::{Error, Result};

/// Rates of injected dirt, each a probability per generated record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DirtConfig {
    /// Chance that each of `email`, `phone`, `address` and `income` is null.
    pub null_rate: f64,
    /// Chance that `income` is NaN (when not null).
    pub nan_rate: f64,
    /// Chance that a record is an exact copy of an earlier original record.
    pub exact_duplicate_rate: f64,
    /// Chance that a record is a near duplicate: an earlier original with a new id, the name
    /// upper-cased and padded with spaces, the e-mail upper-cased.
    pub near_duplicate_rate: f64,
    /// Chance that `credit_score` falls outside 300..=850, and (independently) `age` outside 18..=100.
    pub out_of_range_rate: f64,
    /// Chance that a non-null e-mail is malformed (no `@`, or no domain).
    pub malformed_email_rate: f64,
}

impl Default for DirtConfig {
    fn default() -> Self {
        Self {
            null_rate: 0.02,
            nan_rate: 0.01,
            exact_duplicate_rate: 0.01,
            near_duplicate_rate: 0.005,
            out_of_range_rate: 0.005,
            malformed_email_rate: 0.01,
        }
    }
}

impl DirtConfig {
    /// No dirt at all.
    pub fn clean() -> Self {
        Self {
            null_rate: 0.0,
            nan_rate: 0.0,
            exact_duplicate_rate: 0.0,
            near_duplicate_rate: 0.0,
            out_of_range_rate: 0.0,
            malformed_email_rate: 0.0,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GeneratorConfig {
    /// Number of records.
    pub rows: u64,
    /// Seed: the same seed and config give the same records, byte for byte.
    pub seed: u64,
    /// Injected dirt.
    pub dirt: DirtConfig,
    /// Log-odds subtracted from the approval of `female` applicants (0 = no bias).
    pub bias: f64,
    /// Rows per Arrow batch.
    pub batch_size: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            rows: 10_000,
            seed: 42,
            dirt: DirtConfig::default(),
            bias: 0.8,
            batch_size: 8192,
        }
    }
}

impl GeneratorConfig {
    /// Set the number of records.
    #[must_use]
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = rows;
        self
    }
    /// Set the seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Set the dirt rates.
    #[must_use]
    pub fn with_dirt(mut self, dirt: DirtConfig) -> Self {
        self.dirt = dirt;
        self
    }
    /// Set the approval bias against `female` applicants, in log-odds.
    #[must_use]
    pub fn with_bias(mut self, bias: f64) -> Self {
        self.bias = bias;
        self
    }
}

/// The exact dirt in what was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroundTruth {
    /// Records generated.
    pub rows: u64,
    /// Null values per column.
    pub nulls: BTreeMap<String, u64>,
    /// NaN values per column.
    pub nans: BTreeMap<String, u64>,
    /// Records that are exact copies of an earlier record.
    pub exact_duplicates: u64,
    /// Records that are near duplicates of an earlier record (same person, re-cased, new id).
    pub near_duplicates: u64,
    /// Values outside their valid range per column (`credit_score` 300..=850, `age` 18..=100).
    pub out_of_range: BTreeMap<String, u64>,
    /// Malformed (non-null) e-mails.
    pub malformed_emails: u64,
    /// Per gender: (records, approved).
    pub approvals: BTreeMap<String, (u64, u64)>,
}

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Paul",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Aiko",
    "Wei",
    "Priya",
    "Mohammed",
    "Fatima",
    "Carlos",
    "Sofia",
    "Olga",
    "Kwame",
    "Ana",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Tanaka",
    "Chen",
    "Patel",
    "Khan",
    "Okafor",
    "Silva",
    "Ivanova",
    "Mensah",
    "Kowalski",
    "Novak",
];
const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Pine St",
    "Maple Ave",
    "Cedar Ln",
    "Elm St",
    "Washington Blvd",
    "Lake Dr",
    "Hill Rd",
    "Park Ave",
    "Sunset Blvd",
    "River Rd",
    "Church St",
    "Highland Ave",
    "Mill Rd",
];
const CITIES: &[(&str, &str)] = &[
    ("Springfield", "IL"),
    ("Austin", "TX"),
    ("Portland", "OR"),
    ("Denver", "CO"),
    ("Columbus", "OH"),
    ("Madison", "WI"),
    ("Raleigh", "NC"),
    ("Boise", "ID"),
    ("Albany", "NY"),
    ("Tucson", "AZ"),
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "inbox.example.net",
    "post.example.com",
];
const GENDERS: &[&str] = &["female", "male", "nonbinary"];

/// Column names of the generated table, in order.
pub const COLUMNS: &[&str] = &[
    "application_id",
    "name",
    "email",
    "phone",
    "national_id",
    "credit_card",
    "address",
    "birth_date",
    "application_date",
    "gender",
    "age",
    "age_band",
    "income",
    "loan_amount",
    "credit_score",
    "approved",
];

/// The schema of the generated table.
pub fn schema() -> SchemaRef {
    use DataType::*;
    let types = [
        Int64, Utf8, Utf8, Utf8, Utf8, Utf8, Utf8, Date32, Date32, Utf8, Int64, Utf8, Float64,
        Float64, Int64, Boolean,
    ];
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .zip(types)
            .map(|(n, t)| Field::new(*n, t, true))
            .collect::<Vec<_>>(),
    ))
}

struct Rand(ChaCha8Rng);

impl Rand {
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the tiny bias is irrelevant for synthetic data.
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// One generated record; flags carry its dirt so copies inherit it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    ssn: String,
    card: String,
    address: Option<String>,
    birth: i32,
    applied: i32,
    gender: &'static str,
    age: i64,
    age_band: &'static str,
    income: Option<f64>,
    loan: f64,
    score: i64,
    approved: bool,
    malformed_email: bool,
}

fn luhn_complete(digits: &mut Vec<u8>) {
    // Append the check digit that makes the Luhn sum a multiple of 10.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
}

fn age_band(age: i64) -> &'static str {
    match age {
        ..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

/// Deterministic generator of loan applications.
#[derive(Debug, Clone)]
pub struct LoanGenerator {
    config: GeneratorConfig,
}

/// Iterator over generated rows, keeping the ground truth as it goes.
struct Rows {
    config: GeneratorConfig,
    rng: Rand,
    emitted: u64,
    next_id: i64,
    recent: Vec<Row>,
    truth: GroundTruth,
}

impl Rows {
    fn original(&mut self) -> Row {
        let c = &self.config;
        let r = &mut self.rng;
        let id = self.next_id;
        let first = r.pick(FIRST);
        let last = r.pick(LAST);
        let name = format!("{first} {last}");
        let domain = r.pick(DOMAINS);
        let mut malformed = false;
        let email = if r.chance(c.dirt.null_rate) {
            None
        } else if r.chance(c.dirt.malformed_email_rate) {
            malformed = true;
            Some(if r.chance(0.5) {
                format!(
                    "{}.{}.{id}.{domain}",
                    first.to_lowercase(),
                    last.to_lowercase()
                )
            } else {
                format!("{}.{}.{id}@", first.to_lowercase(), last.to_lowercase())
            })
        } else {
            Some(format!(
                "{}.{}.{id}@{domain}",
                first.to_lowercase(),
                last.to_lowercase()
            ))
        };
        let phone = (!r.chance(c.dirt.null_rate)).then(|| {
            let (a, b, n) = (200 + r.below(800), 200 + r.below(800), r.below(10_000));
            match r.below(3) {
                0 => format!("+1{a}{b}{n:04}"),
                1 => format!("({a}) {b}-{n:04}"),
                _ => format!("+1 {a}-{b}-{n:04}"),
            }
        });
        // SSN: area 001-899 except 666, group 01-99, serial 0001-9999.
        let mut area = 1 + r.below(899);
        if area == 666 {
            area = 667;
        }
        let ssn = format!("{area:03}-{:02}-{:04}", 1 + r.below(99), 1 + r.below(9999));
        let mut digits: Vec<u8> = if r.chance(0.5) {
            vec![4]
        } else {
            vec![5, 1 + r.below(5) as u8]
        };
        while digits.len() < 15 {
            digits.push(r.below(10) as u8);
        }
        luhn_complete(&mut digits);
        let card: String = digits
            .chunks(4)
            .map(|g| g.iter().map(|d| char::from(b'0' + d)).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        let (city, state) = CITIES[r.below(CITIES.len() as u64) as usize];
        let address = (!r.chance(c.dirt.null_rate)).then(|| {
            format!(
                "{} {}, {city}, {state} {:05}",
                1 + r.below(9999),
                r.pick(STREETS),
                10_000 + r.below(89_999)
            )
        });
        let applied = (days_from_civil(2024, 1, 1) + r.below(731) as i64) as i32;
        let mut age = 18 + (r.unit() * 60.0 + r.unit() * 10.0) as i64;
        let birth = applied - (age * 365 + r.below(365) as i64) as i32;
        let band = age_band(age);
        if r.chance(c.dirt.out_of_range_rate) {
            age = if r.chance(0.5) {
                -(1 + r.below(5) as i64)
            } else {
                120 + r.below(100) as i64
            };
        }
        let gender = r.pick(GENDERS);
        let base_income = (10.8 + 0.5 * r.normal()).exp();
        let income = if r.chance(c.dirt.null_rate) {
            None
        } else if r.chance(c.dirt.nan_rate) {
            Some(f64::NAN)
        } else {
            Some((base_income * 100.0).round() / 100.0)
        };
        let loan = ((base_income * (0.2 + r.unit())) / 100.0).round() * 100.0;
        let mut score = (680.0 + 60.0 * r.normal()).round().clamp(300.0, 850.0) as i64;
        let logit = (score as f64 - 660.0) / 40.0 + (base_income.ln() - 10.8) * 1.5
            - loan / base_income
            + 0.5
            - if gender == "female" { c.bias } else { 0.0 };
        let approved = r.unit() < 1.0 / (1.0 + (-logit).exp());
        if r.chance(c.dirt.out_of_range_rate) {
            score = if r.chance(0.5) {
                r.below(300) as i64 - 50
            } else {
                851 + r.below(9000) as i64
            };
        }
        Row {
            id,
            name,
            email,
            phone,
            ssn,
            card,
            address,
            birth,
            applied,
            gender,
            age,
            age_band: band,
            income,
            loan,
            score,
            approved,
            malformed_email: malformed,
        }
    }

    fn next_row(&mut self) -> Row {
        let dirt = self.config.dirt.clone();
        let can_copy = !self.recent.is_empty();
        if can_copy && self.rng.chance(dirt.exact_duplicate_rate) {
            self.truth.exact_duplicates += 1;
            let i = self.rng.below(self.recent.len() as u64) as usize;
            self.recent[i].clone()
        } else if can_copy && self.rng.chance(dirt.near_duplicate_rate) {
            let i = self.rng.below(self.recent.len() as u64) as usize;
            let mut row = self.recent[i].clone();
            if row.email.is_none() {
                // Near duplicates are defined by (name, e-mail); without an e-mail none can be made.
                return self.fresh();
            }
            self.truth.near_duplicates += 1;
            row.id = self.next_id;
            self.next_id += 1;
            row.name = format!(" {} ", row.name.to_uppercase());
            row.email = row.email.map(|e| e.to_uppercase());
            row
        } else {
            self.fresh()
        }
    }

    fn fresh(&mut self) -> Row {
        let row = self.original();
        self.next_id += 1;
        // Keep a window of recent originals to copy from: bounded memory for any row count.
        if self.recent.len() < 1024 {
            self.recent.push(row.clone());
        } else {
            let i = self.rng.below(1024) as usize;
            self.recent[i] = row.clone();
        }
        row
    }

    fn account(&mut self, row: &Row) {
        let t = &mut self.truth;
        t.rows += 1;
        let mut null = |col: &str, is: bool| {
            if is {
                *t.nulls.entry(col.to_string()).or_default() += 1;
            }
        };
        null("email", row.email.is_none());
        null("phone", row.phone.is_none());
        null("address", row.address.is_none());
        null("income", row.income.is_none());
        if row.income.is_some_and(f64::is_nan) {
            *t.nans.entry("income".into()).or_default() += 1;
        }
        if !(300..=850).contains(&row.score) {
            *t.out_of_range.entry("credit_score".into()).or_default() += 1;
        }
        if !(18..=100).contains(&row.age) {
            *t.out_of_range.entry("age".into()).or_default() += 1;
        }
        t.malformed_emails += u64::from(row.malformed_email);
        let a = t.approvals.entry(row.gender.to_string()).or_default();
        a.0 += 1;
        a.1 += u64::from(row.approved);
    }
}

impl Iterator for Rows {
    type Item = Row;
    fn next(&mut self) -> Option<Row> {
        if self.emitted == self.config.rows {
            return None;
        }
        self.emitted += 1;
        let row = self.next_row();
        self.account(&row);
        Some(row)
    }
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        || s.starts_with(' ')
        || s.ends_with(' ')
    {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

impl LoanGenerator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        Self { config }
    }

    fn rows(&self) -> Rows {
        Rows {
            config: self.config.clone(),
            rng: Rand(ChaCha8Rng::seed_from_u64(self.config.seed)),
            emitted: 0,
            next_id: 1,
            recent: Vec::new(),
            truth: GroundTruth::default(),
        }
    }

    fn batches(&self) -> Batches {
        Batches { rows: self.rows() }
    }

    /// Generate into memory as Arrow batches.
    pub fn to_batches(&self) -> Result<(Vec<RecordBatch>, GroundTruth)> {
        let mut batches = self.batches();
        let all = batches.by_ref().collect::<Result<Vec<_>>>()?;
        Ok((all, batches.rows.truth))
    }

    /// Generate into a [`MemorySource`] named `loans`.
    pub fn into_source(self) -> Result<(MemorySource, GroundTruth)> {
        let (batches, truth) = self.to_batches()?;
        Ok((MemorySource::try_new("loans", schema(), batches)?, truth))
    }

    /// Stream the records to an Arrow IPC file, written atomically (temporary file, then rename).
    pub fn write_ipc(&self, path: &Path) -> Result<GroundTruth> {
        atomically(path, |out| {
            let ctx = || format!("writing {}", path.display());
            let mut w = arrow_ipc::writer::FileWriter::try_new(out, &schema())
                .map_err(|e| Error::arrow(ctx(), e))?;
            let mut batches = self.batches();
            for b in batches.by_ref() {
                w.write(&b?).map_err(|e| Error::arrow(ctx(), e))?;
            }
            w.finish().map_err(|e| Error::arrow(ctx(), e))?;
            Ok(batches.rows.truth)
        })
    }

    /// Stream the records to a CSV file (header, comma-delimited, empty field = null, `NaN` for
    /// NaN), written atomically: to a temporary file in the same directory, then renamed.
    pub fn write_csv(&self, path: &Path) -> Result<GroundTruth> {
        atomically(path, |out| {
            let mut line = COLUMNS.join(",").into_bytes();
            line.push(b'\n');
            let mut rows = self.rows();
            for row in rows.by_ref() {
                write_row(&mut line, &row);
                if line.len() > 1 << 16 {
                    out.write_all(&line).map_err(|e| Error::io(path, e))?;
                    line.clear();
                }
            }
            out.write_all(&line).map_err(|e| Error::io(path, e))?;
            Ok(rows.truth)
        })
    }
}

/// Batches of generated rows; the ground truth is complete once the iterator is exhausted.
struct Batches {
    rows: Rows,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let size = self.rows.config.batch_size.max(1);
        let chunk: Vec<Row> = self.rows.by_ref().take(size).collect();
        (!chunk.is_empty()).then(|| to_batch(&chunk))
    }
}

/// Write `path` through a temporary file in the same directory, synced and then renamed, so the
/// path never holds a partial file.
fn atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<T>,
) -> Result<T> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let value = write(&mut out)?;
    out.flush().map_err(|e| Error::io(path, e))?;
    drop(out);
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(value)
}

fn write_row(out: &mut Vec<u8>, r: &Row) {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256);
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let _ = write!(s, "{}", r.id);
    let texts = [
        r.name.clone(),
        opt(&r.email),
        opt(&r.phone),
        r.ssn.clone(),
        r.card.clone(),
        opt(&r.address),
    ];
    out.extend_from_slice(s.as_bytes());
    for t in &texts {
        out.push(b',');
        csv_field(out, t);
    }
    let income = match r.income {
        None => String::new(),
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) => format!("{x:?}"),
    };
    let rest = format!(
        ",{},{},{},{},{},{},{:?},{},{}\n",
        date_string(r.birth),
        date_string(r.applied),
        r.gender,
        r.age,
        r.age_band,
        income,
        r.loan,
        r.score,
        r.approved
    );
    out.extend_from_slice(rest.as_bytes());
}

fn to_batch(rows: &[Row]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut id = Int64Builder::with_capacity(n);
    let mut texts: Vec<StringBuilder> = (0..6)
        .map(|_| StringBuilder::with_capacity(n, n * 24))
        .collect();
    let (mut birth, mut applied) = (
        Date32Builder::with_capacity(n),
        Date32Builder::with_capacity(n),
    );
    let (mut gender, mut band) = (StringBuilder::new(), StringBuilder::new());
    let (mut age, mut score) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    let (mut income, mut loan) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let mut approved = BooleanBuilder::with_capacity(n);
    for r in rows {
        id.append_value(r.id);
        for (b, v) in texts.iter_mut().zip([
            Some(&r.name),
            r.email.as_ref(),
            r.phone.as_ref(),
            Some(&r.ssn),
            Some(&r.card),
            r.address.as_ref(),
        ]) {
            b.append_option(v);
        }
        birth.append_value(r.birth);
        applied.append_value(r.applied);
        gender.append_value(r.gender);
        age.append_value(r.age);
        band.append_value(r.age_band);
        income.append_option(r.income);
        loan.append_value(r.loan);
        score.append_value(r.score);
        approved.append_value(r.approved);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(id.finish())];
    cols.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(birth.finish()));
    cols.push(Arc::new(applied.finish()));
    cols.push(Arc::new(gender.finish()));
    cols.push(Arc::new(age.finish()));
    cols.push(Arc::new(band.finish()));
    cols.push(Arc::new(income.finish()));
    cols.push(Arc::new(loan.finish()));
    cols.push(Arc::new(score.finish()));
    cols.push(Arc::new(approved.finish()));
    RecordBatch::try_new(schema(), cols).map_err(|e| Error::arrow("building generated batch", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_check_digit_matches_known_numbers() {
        // 4111 1111 1111 1111 and 5500 0000 0000 0004 are standard test card numbers.
        let mut v = vec![4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        luhn_complete(&mut v);
        assert_eq!(v[15], 1);
        let mut m = vec![5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        luhn_complete(&mut m);
        assert_eq!(m[15], 4);
    }

    #[test]
    fn dates_round_trip() {
        for d in [-25_508, -1, 0, 11_016, 20_088] {
            assert_eq!(crate::source::parse_date(&date_string(d)), Some(d));
        }
    }

    #[test]
    fn same_seed_same_data_and_truth_counts_rows() {
        let g = LoanGenerator::new(GeneratorConfig::default().with_rows(3000).with_seed(9));
        let (a, ta) = g.to_batches().expect("generate");
        let (b, tb) = g.to_batches().expect("generate");
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_eq!(ta.rows, 3000);
        assert!(ta.exact_duplicates > 0 && ta.near_duplicates > 0 && ta.malformed_emails > 0);
        let approvals = &ta.approvals;
        let rate = |g: &str| approvals[g].1 as f64 / approvals[g].0 as f64;
        assert!(
            rate("male") - rate("female") > 0.05,
            "bias shows in the labels: {approvals:?}"
        );
    }
}
