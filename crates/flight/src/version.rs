//! Application versions: semver requirements for `filter.versions`, and Mozilla's version
//! comparison for the `versionCompare` transform.

use crate::memo::Memo;
use semver::{Version, VersionReq};
use std::cmp::Ordering;
use std::sync::Arc;

static REQUIREMENTS: Memo<Arc<VersionReq>> = Memo::new();

/// Parses a `filter.versions` requirement such as `">=2.3, <3"` (once per distinct text).
pub fn parse_requirement(s: &str) -> Result<Arc<VersionReq>, String> {
    REQUIREMENTS.get_or(s, || {
        VersionReq::parse(s).map(Arc::new).map_err(|e| {
            format!(
                "{} is not a version requirement ({e}); write one like \">=2.3, <3\"",
                crate::diagnostic::quote(s)
            )
        })
    })
}

/// Reads an application version leniently as semver: missing parts are 0 (`"128"` is
/// 128.0.0, `"128.0"` is 128.0.0) and a pre-release tag is dropped (`"128.0b3"` is 128.0.0).
///
/// Dropping the tag is deliberate: under strict semver a requirement like `">=120"` would not
/// match a beta such as `128.0b3`, which is never what someone targeting beta users means.
/// Authors who need to tell betas apart use `versionCompare` in an `expression`.
pub fn lenient_version(s: &str) -> Option<Version> {
    let s = s.trim();
    let mut nums = [0u64; 3];
    let mut count = 0;
    for part in s.split('.') {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        if count < 3 {
            nums[count] = part[..digits].parse().ok()?;
        }
        count += 1;
        if digits < part.len() {
            break; // a tag like "0b3": the rest is pre-release
        }
    }
    (count > 0).then(|| Version::new(nums[0], nums[1], nums[2]))
}

/// Whether `appversion` satisfies `requirement`.
pub fn matches(requirement: &VersionReq, appversion: &str) -> bool {
    lenient_version(appversion).is_some_and(|v| requirement.matches(&v))
}

/// Mozilla's version comparison (toolkit `nsVersionComparator`): dot-separated parts, each
/// `<number-a><string-b><number-c><string-d>`; a missing string sorts after any string, `*`
/// is infinity, and `1.0+` means `1.1pre`.
pub fn mozilla_compare(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let c = compare_part(
                    &VersionPart::parse(x.unwrap_or("0")),
                    &VersionPart::parse(y.unwrap_or("0")),
                );
                if c != Ordering::Equal {
                    return c;
                }
            }
        }
    }
}

#[derive(Debug)]
struct VersionPart {
    a: i64,
    b: String,
    c: i64,
    d: String,
}

fn leading_number(s: &str) -> (i64, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    (s[..n].parse::<i64>().unwrap_or(0), &s[n..])
}

impl VersionPart {
    fn parse(s: &str) -> Self {
        if s == "*" {
            return VersionPart {
                a: i64::MAX,
                b: String::new(),
                c: 0,
                d: String::new(),
            };
        }
        let (mut a, rest) = leading_number(s);
        let mut b = String::new();
        let mut c = 0;
        let mut d = String::new();
        if rest.starts_with('+') {
            a += 1;
            b = "pre".into();
        } else if !rest.is_empty() {
            let bl = rest.bytes().take_while(|ch| !ch.is_ascii_digit()).count();
            b = rest[..bl].to_string();
            let (cn, drest) = leading_number(&rest[bl..]);
            c = cn;
            d = drest.to_string();
        }
        VersionPart { a, b, c, d }
    }
}

/// An empty string sorts after a non-empty one ("1.0" > "1.0a").
fn compare_str(x: &str, y: &str) -> Ordering {
    match (x.is_empty(), y.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.cmp(y),
    }
}

fn compare_part(x: &VersionPart, y: &VersionPart) -> Ordering {
    x.a.cmp(&y.a)
        .then_with(|| compare_str(&x.b, &y.b))
        .then_with(|| x.c.cmp(&y.c))
        .then_with(|| compare_str(&x.d, &y.d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn mozilla_order() {
        // From the toolkit's version comparator documentation, in increasing order.
        let ordered = [
            "1.0pre1",
            "1.0pre2",
            "1.0",
            "1.0.0",
            "1.0.0.0",
            "1.1pre",
            "1.1pre0",
            "1.0+",
            "1.1pre1a",
            "1.1pre1",
            "1.1pre10a",
            "1.1pre10",
        ];
        for w in ordered.windows(2) {
            let c = mozilla_compare(w[0], w[1]);
            assert!(c != Greater, "{} should not sort after {}", w[0], w[1]);
        }
        assert_eq!(mozilla_compare("1.0", "1.0.0"), Equal);
        assert_eq!(mozilla_compare("1.1pre", "1.0+"), Equal);
        assert_eq!(mozilla_compare("1.1pre10a", "1.1pre10"), Less);
        assert_eq!(mozilla_compare("128.0b3", "128.0"), Less);
        assert_eq!(mozilla_compare("2", "10"), Less);
        assert_eq!(mozilla_compare("*", "999"), Greater);
    }

    #[test]
    fn lenient() {
        assert_eq!(lenient_version("128"), Some(Version::new(128, 0, 0)));
        assert_eq!(lenient_version("128.0b3"), Some(Version::new(128, 0, 0)));
        assert_eq!(lenient_version("2.3.4.5"), Some(Version::new(2, 3, 4)));
        assert_eq!(lenient_version("beta"), None);
        let r = parse_requirement(">=2.3, <3").unwrap();
        assert!(matches(&r, "2.3"));
        assert!(matches(&r, "2.9.1"));
        assert!(!matches(&r, "3.0"));
        assert!(!matches(&r, "2.2.9"));
        assert!(parse_requirement("about 2").is_err());
    }
}
