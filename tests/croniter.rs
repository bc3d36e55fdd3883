//! Cross-check against Python croniter (what Prefect uses): ~3000 seeded random
//! expression/instant pairs in UTC and a few other zones must give the same next fire.
//! Pairs within a day of a DST transition are skipped: there sundial's DST policy differs
//! from croniter on purpose (DESIGN.md, "DST policy"). At least 95% of the pairs must be
//! compared, so a check that skips everything cannot pass.

use std::io::Write;
use std::process::Command;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use sundial::schedule::{Schedule, Tz};

const PAIRS: usize = 3000;
const ZONES: [Tz; 5] = [
    Tz::UTC,
    Tz::Asia__Kolkata,
    Tz::Asia__Tokyo,
    Tz::Europe__Berlin,
    Tz::America__New_York,
];

/// SplitMix64: a deterministic source of test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo + 1)) as u32
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(rng: &mut Rng, lo: u32, hi: u32, names: &[&str]) -> String {
    let v = rng.between(lo, hi);
    if !names.is_empty() && rng.below(4) == 0 {
        let index = if names.len() == 12 { v - 1 } else { v % 7 };
        names[index as usize].to_string()
    } else {
        v.to_string()
    }
}

fn item(rng: &mut Rng, lo: u32, hi: u32, names: &[&str]) -> String {
    match rng.below(10) {
        0..=2 => value(rng, lo, hi, names),
        3 | 4 => {
            let (a, b) = (value(rng, lo, hi, names), value(rng, lo, hi, names));
            format!("{a}-{b}")
        }
        5 | 6 => format!("*/{}", rng.between(1, (hi - lo).max(1))),
        7 => format!("{}/{}", rng.between(lo, hi), rng.between(1, 10)),
        _ => {
            let (a, b) = (rng.between(lo, hi), rng.between(lo, hi));
            format!("{}-{}/{}", a.min(b), a.max(b), rng.between(1, 10))
        }
    }
}

fn field(rng: &mut Rng, lo: u32, hi: u32, names: &[&str], star_weight: u64) -> String {
    if rng.below(10) < star_weight {
        return "*".to_string();
    }
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| item(rng, lo, hi, names))
        .collect::<Vec<_>>()
        .join(",")
}

fn expression(rng: &mut Rng) -> String {
    if rng.below(40) == 0 {
        let macros = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        return macros[rng.below(macros.len() as u64) as usize].to_string();
    }
    let minute = field(rng, 0, 59, &[], 2);
    let hour = field(rng, 0, 23, &[], 3);
    let mut dom = field(rng, 1, 31, &[], 6);
    if rng.below(12) == 0 {
        dom = if rng.below(2) == 0 {
            "L".into()
        } else {
            format!("{},L", rng.between(1, 28))
        };
    }
    let month = field(rng, 1, 12, &MONTHS, 6);
    let dow = match rng.below(16) {
        0 => format!("L{}", rng.between(0, 6)),
        1 => format!("{}#{}", value(rng, 0, 7, &DAYS), rng.between(1, 5)),
        _ => field(rng, 0, 7, &DAYS, 6),
    };
    format!("{minute} {hour} {dom} {month} {dow}")
}

fn near_transition(tz: Tz, at: DateTime<Utc>) -> bool {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    offset(at - Duration::days(1)) != offset(at + Duration::days(1))
}

struct Case {
    expr: String,
    zone: Tz,
    after: DateTime<Utc>,
    day_or: bool,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x5EED_2026);
    let start = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let span = Utc
        .with_ymd_and_hms(2040, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp()
        - start;
    (0..PAIRS)
        .map(|_| Case {
            expr: expression(&mut rng),
            zone: ZONES[rng.below(ZONES.len() as u64) as usize],
            after: DateTime::from_timestamp(start + rng.below(span as u64) as i64, 0).unwrap(),
            day_or: rng.below(4) != 0,
        })
        .collect()
}

fn croniter_available() -> bool {
    Command::new("python3")
        .args(["-c", "import croniter"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn cron_agrees_with_croniter() {
    if !croniter_available() {
        if std::env::var("SUNDIAL_SKIP_CRONITER").as_deref() == Ok("1") {
            eprintln!("croniter cross-check skipped (SUNDIAL_SKIP_CRONITER=1)");
            return;
        }
        panic!(
            "python3 cannot import croniter; run the project's test command (it installs \
             croniter into target/tools-venv), or set SUNDIAL_SKIP_CRONITER=1 to skip this check"
        );
    }
    let cases = cases();
    let mut input = tempfile::NamedTempFile::new().expect("temp file");
    for case in &cases {
        let day_or = u8::from(case.day_or);
        writeln!(
            input,
            "{}\t{}\t{}\t{day_or}",
            case.expr,
            case.zone,
            case.after.timestamp()
        )
        .expect("write case");
    }
    input.flush().expect("flush cases");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/croniter_check.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(input.path())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "croniter_check.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<String> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(answers.len(), cases.len());

    let (mut compared, mut skipped, mut refused, mut mismatches) = (0, 0, 0, Vec::new());
    for (case, theirs) in cases.iter().zip(&answers) {
        let ours = match Schedule::cron(&case.expr, case.zone, case.day_or) {
            Err(_) => None,
            Ok(schedule) => schedule.next_after(case.after),
        };
        let theirs_at = theirs
            .strip_prefix("OK ")
            .and_then(|t| t.parse::<i64>().ok());
        let near = |at: Option<DateTime<Utc>>| at.is_some_and(|at| near_transition(case.zone, at));
        let theirs_dt = theirs_at.and_then(|t| DateTime::from_timestamp(t, 0));
        if near(Some(case.after)) || near(ours.map(|f| f.at)) || near(theirs_dt) {
            skipped += 1;
            continue;
        }
        compared += 1;
        refused += usize::from(ours.is_none() && theirs_at.is_none());
        if ours.map(|f| f.at.timestamp()) != theirs_at {
            mismatches.push(format!(
                "{:?} in {} after {} day_or={}: sundial {:?}, croniter {theirs}",
                case.expr,
                case.zone,
                case.after,
                case.day_or,
                ours.map(|f| f.at)
            ));
        }
    }
    eprintln!(
        "croniter cross-check: {compared} compared ({refused} refused by both), {skipped} \
         skipped near DST, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(30)].join("\n")
    );
    // A cross-check that compares nothing proves nothing: nearly every pair is compared
    // (only those within a day of a DST change are skipped, ~1%), nearly all of them as
    // fire times both sides computed, and the refusals both sides agree on are there too.
    assert!(
        compared >= PAIRS * 95 / 100,
        "only {compared} of {PAIRS} pairs compared"
    );
    assert!(
        compared - refused >= PAIRS * 90 / 100,
        "only {} of {PAIRS} pairs compared as fire times",
        compared - refused
    );
    assert!(refused >= 10, "only {refused} refusals compared");
}
