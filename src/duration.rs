//! Go-style durations (`720h`, `1h30m`, `1.5h`, `90s`), the form Kubernetes CEL's `duration()` accepts,
//! for the AuthKeyRing spec: parsing, canonical display, serde as a string and a JSON Schema whose
//! `pattern` admits exactly what [`GoDuration::from_str`] accepts.
//!
//! The grammar is Go's `time.ParseDuration` without a sign: one or more numbers, each with an
//! optional decimal fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), or the bare
//! `0`. There are no days. The value must fit Go's `time.Duration` (at most 2562047h47m16.854775807s)
//! so that the API server's CEL rules and the operator always agree on it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JSON Schema `pattern` of a duration: exactly the strings [`GoDuration`] parses (anchored,
/// since a schema pattern otherwise matches anywhere in the value).
pub const DURATION_PATTERN: &str = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Go's `time.Duration` is an `i64` of nanoseconds; CEL refuses anything longer.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits beyond this many are ignored; they weigh less than a nanosecond even in hours.
const MAX_FRACTION_DIGITS: u32 = 18;

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
];

/// A non-negative duration written the Go way.
///
/// [`Display`](fmt::Display) prints the canonical form of Go's `time.Duration.String()`: hours,
/// minutes and seconds for a second or more (`720h0m0s`, `1h30m0s`, `1.5s`), the largest fitting
/// sub-second unit below that (`250ms`, `1.5µs`, `7ns`), and `0s` for zero. Parsing the display of a
/// value gives the value back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(Duration);

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    /// The longest duration Go (and so CEL) can represent.
    pub const MAX: GoDuration = GoDuration(Duration::new(
        (MAX_NANOS / NANOS_PER_SEC) as u64,
        (MAX_NANOS % NANOS_PER_SEC) as u32,
    ));

    /// A whole number of seconds; any `u32` fits, so this cannot fail.
    pub const fn from_secs(secs: u32) -> GoDuration {
        GoDuration(Duration::from_secs(secs as u64))
    }

    pub const fn as_std(self) -> Duration {
        self.0
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

impl TryFrom<Duration> for GoDuration {
    type Error = DurationError;

    fn try_from(d: Duration) -> Result<Self, Self::Error> {
        if d > GoDuration::MAX.0 {
            return Err(DurationError::Overflow {
                input: format!("{d:?}"),
            });
        }
        Ok(GoDuration(d))
    }
}

/// Why a string is not a duration. Each message names the offending input and shows the valid form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration: write a Go duration such as \"720h\", \"1h30m\" or \"90s\"")]
    Empty,
    /// A leading `+` or `-`; durations in a spec are never negative.
    #[error("invalid duration {input:?}: a sign is not allowed; write e.g. \"5m\"")]
    Signed { input: String },
    /// A unit or stray character where a number should start.
    #[error("invalid duration {input:?}: expected a number at {rest:?}; write e.g. \"1h30m\"")]
    ExpectedNumber { input: String, rest: String },
    /// A number with no unit after it (only a bare `0` may go without one).
    #[error("invalid duration {input:?}: {number:?} has no unit; write e.g. \"{number}s\" or \"{number}m\"")]
    MissingUnit { input: String, number: String },
    /// A suffix that is not one of Go's units.
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?}; use ns, us, ms, s, m or h \
         (there are no days: write \"24h\" for one)"
    )]
    UnknownUnit { input: String, unit: String },
    /// Longer than Go's `time.Duration` can hold.
    #[error("duration {input:?} is too long: the longest is 2562047h47m16.854775807s")]
    Overflow { input: String },
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(DurationError::Empty);
        }
        if input.starts_with(['+', '-']) {
            return Err(DurationError::Signed {
                input: input.to_owned(),
            });
        }
        if input == "0" {
            return Ok(GoDuration::ZERO);
        }

        let overflow = || DurationError::Overflow {
            input: input.to_owned(),
        };
        let mut rest = input;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let component = rest;

            let int_digits = leading_digits(rest);
            let (int_text, after_int) = rest.split_at(int_digits);
            rest = after_int;
            let mut fraction_text = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let n = leading_digits(after_dot);
                fraction_text = &after_dot[..n];
                rest = &after_dot[n..];
            }
            if int_text.is_empty() && fraction_text.is_empty() {
                return Err(DurationError::ExpectedNumber {
                    input: input.to_owned(),
                    rest: component.to_owned(),
                });
            }

            // Like Go, the unit is everything up to the next digit or dot.
            let unit_len = rest
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (unit, after_unit) = rest.split_at(unit_len);
            rest = after_unit;
            if unit.is_empty() {
                let number = &component[..component.len() - rest.len()];
                return Err(DurationError::MissingUnit {
                    input: input.to_owned(),
                    number: number.to_owned(),
                });
            }
            let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            };

            let whole = parse_integer(int_text).ok_or_else(overflow)?;
            let nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
            total = total
                .checked_add(nanos)
                .and_then(|t| t.checked_add(fraction_nanos(fraction_text, unit_nanos)))
                .filter(|t| *t <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }

        Ok(GoDuration(duration_from_nanos(total)))
    }
}

fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// The integer value of a run of ASCII digits, or `None` once it exceeds any representable duration.
fn parse_integer(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?
            .checked_add(u128::from(b - b'0'))
            .filter(|v| *v <= MAX_NANOS)
    })
}

/// `0.<digits>` of a unit, in nanoseconds, rounded down.
fn fraction_nanos(digits: &str, unit_nanos: u128) -> u128 {
    let (numerator, scale) = digits
        .bytes()
        .take(MAX_FRACTION_DIGITS as usize)
        .fold((0u128, 1u128), |(n, scale), b| {
            (n * 10 + u128::from(b - b'0'), scale * 10)
        });
    numerator * unit_nanos / scale
}

fn duration_from_nanos(nanos: u128) -> Duration {
    // Callers bound `nanos` by MAX_NANOS, so the seconds fit a u64.
    Duration::new((nanos / NANOS_PER_SEC) as u64, (nanos % NANOS_PER_SEC) as u32)
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < NANOS_PER_SEC {
            let (scale, unit) = if nanos < 1_000 {
                (1, "ns")
            } else if nanos < 1_000_000 {
                (1_000, "µs")
            } else {
                (1_000_000, "ms")
            };
            write_decimal(f, nanos / scale, nanos % scale, scale)?;
            return f.write_str(unit);
        }

        let secs = self.0.as_secs();
        let (hours, minutes, seconds) = (secs / 3_600, secs / 60 % 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write_decimal(
            f,
            u128::from(seconds),
            u128::from(self.0.subsec_nanos()),
            NANOS_PER_SEC,
        )?;
        f.write_str("s")
    }
}

/// Writes `whole.fraction` where `fraction` counts `1/scale` parts, without trailing zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, whole: u128, fraction: u128, scale: u128) -> fmt::Result {
    write!(f, "{whole}")?;
    if fraction == 0 {
        return Ok(());
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("GoDuration")
    }

    fn schema_id() -> Cow<'static, str> {
        Cow::Borrowed(concat!(module_path!(), "::GoDuration"))
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 3_600;

    fn parse(s: &str) -> Result<Duration, DurationError> {
        s.parse::<GoDuration>().map(GoDuration::as_std)
    }

    #[test]
    fn accepts_go_durations() {
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("000h", Duration::ZERO),
            ("720h", Duration::from_secs(720 * HOUR)),
            ("1h30m", Duration::from_secs(HOUR + 30 * MINUTE)),
            ("1.5h", Duration::from_secs(HOUR + 30 * MINUTE)),
            ("90s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(2 * MINUTE)),
            ("1h2m3s4ms5us6ns", Duration::new(HOUR + 2 * MINUTE + 3, 4_005_006)),
            ("5µs", Duration::from_micros(5)),
            ("5μs", Duration::from_micros(5)),
            ("250ms", Duration::from_millis(250)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("0.333333333333333333333h", Duration::new(1_199, 999_999_999)),
            ("30s30s", Duration::from_secs(60)),
            ("2562047h47m16.854775807s", GoDuration::MAX.as_std()),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_and_cel_refuse_or_what_is_signed() {
        let table: &[(&str, DurationError)] = &[
            ("", DurationError::Empty),
            ("-5m", DurationError::Signed { input: "-5m".into() }),
            ("+5m", DurationError::Signed { input: "+5m".into() }),
            (
                "h",
                DurationError::ExpectedNumber {
                    input: "h".into(),
                    rest: "h".into(),
                },
            ),
            (
                ".h",
                DurationError::ExpectedNumber {
                    input: ".h".into(),
                    rest: ".h".into(),
                },
            ),
            (
                "1h.m",
                DurationError::ExpectedNumber {
                    input: "1h.m".into(),
                    rest: ".m".into(),
                },
            ),
            (
                "10",
                DurationError::MissingUnit {
                    input: "10".into(),
                    number: "10".into(),
                },
            ),
            (
                "1h30",
                DurationError::MissingUnit {
                    input: "1h30".into(),
                    number: "30".into(),
                },
            ),
            (
                "1.5.5h",
                DurationError::MissingUnit {
                    input: "1.5.5h".into(),
                    number: "1.5".into(),
                },
            ),
            (
                "00",
                DurationError::MissingUnit {
                    input: "00".into(),
                    number: "00".into(),
                },
            ),
            (
                "1d",
                DurationError::UnknownUnit {
                    input: "1d".into(),
                    unit: "d".into(),
                },
            ),
            (
                "1H",
                DurationError::UnknownUnit {
                    input: "1H".into(),
                    unit: "H".into(),
                },
            ),
            (
                "1hm",
                DurationError::UnknownUnit {
                    input: "1hm".into(),
                    unit: "hm".into(),
                },
            ),
            (
                "1h 30m",
                DurationError::UnknownUnit {
                    input: "1h 30m".into(),
                    unit: "h ".into(),
                },
            ),
            (
                " 1h",
                DurationError::ExpectedNumber {
                    input: " 1h".into(),
                    rest: " 1h".into(),
                },
            ),
            (
                "2562047h47m16.854775808s",
                DurationError::Overflow {
                    input: "2562047h47m16.854775808s".into(),
                },
            ),
            (
                "2562048h",
                DurationError::Overflow {
                    input: "2562048h".into(),
                },
            ),
            (
                "99999999999999999999999999999999999999999ns",
                DurationError::Overflow {
                    input: "99999999999999999999999999999999999999999ns".into(),
                },
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text).as_ref(), Err(expected), "{text}");
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong_and_show_an_example() {
        let message = parse("30d").unwrap_err().to_string();
        assert!(
            message.contains("\"30d\"") && message.contains("unknown unit \"d\""),
            "{message}"
        );
        assert!(message.contains("24h"), "{message}");
        let message = parse("15").unwrap_err().to_string();
        assert!(message.contains("\"15s\""), "{message}");
    }

    #[test]
    fn displays_the_canonical_go_form() {
        let table: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(250_000), "250ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::new(1, 500_000_000), "1.5s"),
            (Duration::from_secs(HOUR + 30 * MINUTE), "1h30m0s"),
            (Duration::from_secs(720 * HOUR), "720h0m0s"),
            (Duration::from_secs(HOUR + 5), "1h0m5s"),
            (GoDuration::MAX.as_std(), "2562047h47m16.854775807s"),
        ];
        for (duration, expected) in table {
            assert_eq!(GoDuration::try_from(*duration).unwrap().to_string(), *expected);
        }
    }

    #[test]
    fn serializes_as_a_string_and_refuses_bad_strings() {
        let d: GoDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.as_std(), Duration::from_secs(HOUR + 30 * MINUTE));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m0s\"");

        let error = serde_json::from_str::<GoDuration>("\"3 days\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown unit"), "{error}");
        assert!(serde_json::from_str::<GoDuration>("90").is_err());
    }

    #[test]
    fn json_schema_is_a_string_with_the_duration_pattern() {
        let schema = schemars::schema_for!(GoDuration);
        let value = serde_json::to_value(&schema).unwrap();
        assert_eq!(value["type"], "string");
        assert_eq!(value["pattern"], DURATION_PATTERN);
    }

    #[test]
    fn conversion_from_std_refuses_what_go_cannot_hold() {
        assert!(GoDuration::try_from(GoDuration::MAX.as_std()).is_ok());
        let too_long = GoDuration::MAX.as_std() + Duration::from_nanos(1);
        assert!(matches!(
            GoDuration::try_from(too_long),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn the_pattern_matches_every_accepted_string_and_no_refused_one() {
        for accepted in [
            "0",
            "0s",
            "720h",
            "1h30m",
            "1.5h",
            ".5s",
            "1.s",
            "5µs",
            "5μs",
            "1h2m3s4ms5us6ns",
        ] {
            assert!(pattern::matches(DURATION_PATTERN, accepted), "{accepted}");
        }
        for refused in [
            "", "-5m", "+5m", "h", ".h", "10", "00", "1h30", "1d", "1hm", "1h 30m", " 1h", "1.5.5h",
        ] {
            assert!(!pattern::matches(DURATION_PATTERN, refused), "{refused}");
        }
    }

    proptest! {
        #[test]
        fn every_string_the_pattern_admits_parses(
            text in proptest::string::string_regex(
                DURATION_PATTERN.trim_start_matches('^').trim_end_matches('$'),
            ).unwrap(),
        ) {
            // Overflow is the one refusal a pattern cannot express; CEL rules bound the lengths.
            match text.parse::<GoDuration>() {
                Ok(_) | Err(DurationError::Overflow { .. }) => {}
                Err(error) => prop_assert!(false, "{text:?} matches the pattern but fails: {error}"),
            }
        }

        #[test]
        fn every_accepted_string_matches_the_pattern(
            components in proptest::collection::vec(
                ("[0-9]{0,4}", proptest::option::of("[0-9]{0,4}"), proptest::sample::select(&UNITS[..])),
                1..5,
            ),
        ) {
            let text: String = components
                .iter()
                .map(|(int, fraction, (unit, _))| match fraction {
                    Some(fraction) => format!("{int}.{fraction}{unit}"),
                    None => format!("{int}{unit}"),
                })
                .collect();
            prop_assert_eq!(text.parse::<GoDuration>().is_ok(), pattern::matches(DURATION_PATTERN, &text));
        }

        #[test]
        fn display_round_trips(nanos in 0..=i64::MAX as u64) {
            let d = GoDuration::try_from(Duration::from_nanos(nanos)).unwrap();
            prop_assert_eq!(d.to_string().parse::<GoDuration>(), Ok(d));
        }

        #[test]
        fn serde_round_trips(nanos in 0..=i64::MAX as u64) {
            let d = GoDuration::try_from(Duration::from_nanos(nanos)).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            prop_assert_eq!(serde_json::from_str::<GoDuration>(&json).unwrap(), d);
        }
    }

    /// A backtracking matcher for the little regex dialect `DURATION_PATTERN` is written in
    /// (literals, `\.`, `[0-9]`, groups, `|`, `?`, `+`, `*`, `^`, `$`), so the tests can check the
    /// schema pattern against the parser without a regex engine among the dependencies.
    mod pattern {
        enum Node {
            Char(char),
            Digit,
            Group(Vec<Vec<Node>>),
            Repeat {
                node: Box<Node>,
                min: usize,
                max: Option<usize>,
            },
        }

        pub fn matches(pattern: &str, text: &str) -> bool {
            let body = pattern
                .strip_prefix('^')
                .and_then(|p| p.strip_suffix('$'))
                .expect("anchored pattern");
            let mut chars = body.chars().peekable();
            let alternatives = parse_alternatives(&mut chars);
            assert!(chars.next().is_none(), "unbalanced pattern");
            let text: Vec<char> = text.chars().collect();
            let root = Node::Group(alternatives);
            match_node(&root, &text, 0, &mut |end| end == text.len())
        }

        fn parse_alternatives(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Vec<Vec<Node>> {
            let mut alternatives = vec![Vec::new()];
            while let Some(&c) = chars.peek() {
                if c == ')' {
                    break;
                }
                chars.next();
                let atom = match c {
                    '|' => {
                        alternatives.push(Vec::new());
                        continue;
                    }
                    '(' => {
                        let group = parse_alternatives(chars);
                        assert_eq!(chars.next(), Some(')'));
                        Node::Group(group)
                    }
                    '[' => {
                        let class: String = chars.by_ref().take_while(|&c| c != ']').collect();
                        assert_eq!(class, "0-9");
                        Node::Digit
                    }
                    '\\' => Node::Char(chars.next().expect("escaped character")),
                    c => Node::Char(c),
                };
                let (min, max) = match chars.peek() {
                    Some('?') => (0, Some(1)),
                    Some('*') => (0, None),
                    Some('+') => (1, None),
                    _ => (1, Some(1)),
                };
                let node = if (min, max) == (1, Some(1)) {
                    atom
                } else {
                    chars.next();
                    Node::Repeat {
                        node: Box::new(atom),
                        min,
                        max,
                    }
                };
                alternatives.last_mut().unwrap().push(node);
            }
            alternatives
        }

        /// Calls `then` with every end position at which `node` can match from `at`.
        fn match_node(node: &Node, text: &[char], at: usize, then: &mut dyn FnMut(usize) -> bool) -> bool {
            match node {
                Node::Char(c) => text.get(at) == Some(c) && then(at + 1),
                Node::Digit => text.get(at).is_some_and(char::is_ascii_digit) && then(at + 1),
                Node::Group(alternatives) => alternatives
                    .iter()
                    .any(|sequence| match_sequence(sequence, text, at, then)),
                Node::Repeat { node, min, max } => match_repeat(node, *min, *max, text, at, then),
            }
        }

        fn match_sequence(
            sequence: &[Node],
            text: &[char],
            at: usize,
            then: &mut dyn FnMut(usize) -> bool,
        ) -> bool {
            match sequence.split_first() {
                None => then(at),
                Some((first, rest)) => {
                    match_node(first, text, at, &mut |end| match_sequence(rest, text, end, then))
                }
            }
        }

        fn match_repeat(
            node: &Node,
            min: usize,
            max: Option<usize>,
            text: &[char],
            at: usize,
            then: &mut dyn FnMut(usize) -> bool,
        ) -> bool {
            if min == 0 && then(at) {
                return true;
            }
            if max == Some(0) {
                return false;
            }
            // Each further repetition must consume input, which bounds the recursion.
            match_node(node, text, at, &mut |end| {
                end > at && match_repeat(node, min.saturating_sub(1), max.map(|m| m - 1), text, end, then)
            })
        }
    }
}
