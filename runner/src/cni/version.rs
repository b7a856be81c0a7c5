//! `major.minor.patch` versions, parsed once: the CNI spec version of a config or a
//! request, and the version of a WIT package a guest imports or exports.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Exactly three decimal numbers separated by dots (no pre-release, no build).
    pub fn parse(text: &str) -> Option<Version> {
        let mut it = text.split('.');
        let mut part = || -> Option<u64> {
            let p = it.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version::new(part()?, part()?, part()?);
        it.next().is_none().then_some(v)
    }

    /// Whether something built against `self` works with `other`, by semver as WIT
    /// and Cargo read it: the same major (>= 1), the same minor for 0.x (x >= 1), the
    /// same version for 0.0.x.
    pub fn semver_compatible(self, other: Version) -> bool {
        match (self.major, other.major) {
            (0, 0) if self.minor == 0 || other.minor == 0 => self == other,
            (0, 0) => self.minor == other.minor,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_three_numbers() {
        assert_eq!(Version::parse("1.1.0"), Some(Version::new(1, 1, 0)));
        assert_eq!(Version::parse("0.3.1"), Some(Version::new(0, 3, 1)));
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "1.0.x",
            "1..0",
            "+1.0.0",
            "1.0.0-rc1",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Version::new(0, 4, 0).to_string(), "0.4.0");
    }

    #[test]
    fn orders_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.10.0") > v("0.4.0"));
        assert!(v("1.0.0") > v("0.4.0"));
        assert!(v("1.1.0") >= v("1.1.0"));
    }

    #[test]
    fn semver_compatibility() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.1.0").semver_compatible(v("0.1.3")));
        assert!(!v("0.1.0").semver_compatible(v("0.2.0")));
        assert!(!v("0.0.1").semver_compatible(v("0.0.2")));
        assert!(v("0.0.1").semver_compatible(v("0.0.1")));
        assert!(v("1.0.0").semver_compatible(v("1.4.2")));
        assert!(!v("1.0.0").semver_compatible(v("2.0.0")));
    }
}
