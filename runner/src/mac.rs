//! Hardware (MAC) addresses: parsed once where they enter (the runtime's request, a
//! guest's `create-veth`), typed from there on.

use std::fmt;
use std::str::FromStr;

/// A unicast, non-zero Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

/// Why a text is not a MAC a link may have; each names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("{0:?} is not a MAC address (six hex octets: aa:bb:cc:dd:ee:ff)")]
    Syntax(String),
    #[error("{0:?} is a multicast MAC address (low bit of the first octet set); a link needs a unicast one")]
    Multicast(String),
    #[error("{0:?} is the all-zero MAC address")]
    Zero(String),
}

impl FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Mac, MacError> {
        let syntax = || MacError::Syntax(s.to_string());
        let mut b = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut b {
            let p = parts.next().ok_or_else(syntax)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(syntax());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| syntax())?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        if b == [0; 6] {
            return Err(MacError::Zero(s.to_string()));
        }
        if b[0] & 1 == 1 {
            return Err(MacError::Multicast(s.to_string()));
        }
        Ok(Mac(b))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unicast_and_prints_lowercase() {
        let m: Mac = "0A:58:C8:C8:01:02".parse().unwrap();
        assert_eq!(m.0, [0x0a, 0x58, 0xc8, 0xc8, 0x01, 0x02]);
        assert_eq!(m.to_string(), "0a:58:c8:c8:01:02");
    }

    #[test]
    fn refuses_bad_text_multicast_and_zero() {
        for bad in [
            "",
            "0a:58:c8:c8:01",
            "0a:58:c8:c8:01:02:03",
            "0a-58-c8-c8-01-02",
            "0a:58:c8:c8:01:2",
            "0a:58:c8:c8:01:0g",
            "+a:58:c8:c8:01:02",
        ] {
            assert_eq!(
                bad.parse::<Mac>(),
                Err(MacError::Syntax(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            "01:00:5e:00:00:01".parse::<Mac>(),
            Err(MacError::Multicast(_))
        ));
        assert!(matches!(
            "ff:ff:ff:ff:ff:ff".parse::<Mac>(),
            Err(MacError::Multicast(_))
        ));
        assert!(matches!(
            "00:00:00:00:00:00".parse::<Mac>(),
            Err(MacError::Zero(_))
        ));
        let e = "01:00:5e:00:00:01".parse::<Mac>().unwrap_err().to_string();
        assert!(
            e.contains("01:00:5e:00:00:01") && e.contains("unicast"),
            "{e}"
        );
    }
}
