//! Parsers for the command line's values: percentages, delays, byte counts, addresses and
//! HTTP paths. Each returns a short reason on failure, which clap puts after
//! `invalid value '<v>' for '<flag>': `, so a bad value is one clear line.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use loopstack::http::HttpUrl;
use loopstack::internet::Cidr;

/// The longest `--delay`: a minute. Past that a transfer would look hung, and
/// `Duration::from_secs_f64` would panic on a large enough number.
pub const MAX_DELAY_MS: f64 = 60_000.0;

/// A percentage from 0 to 100, fractions allowed, with an optional `%`; returned as a
/// probability from 0 to 1, which is what [`loopstack::link::FaultConfig`] takes.
pub fn probability(s: &str) -> Result<f64, String> {
    let number = s.trim().strip_suffix('%').unwrap_or(s.trim());
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err("expected a percentage from 0 to 100".to_owned()),
    }
}

/// Milliseconds, fractions allowed, from 0 to [`MAX_DELAY_MS`].
pub fn delay(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(ms) if (0.0..=MAX_DELAY_MS).contains(&ms) => Ok(Duration::from_secs_f64(ms / 1000.0)),
        _ => Err(format!("expected milliseconds from 0 to {MAX_DELAY_MS:.0}")),
    }
}

/// A byte count: a plain number, or one with a binary suffix: `64K` or `64KiB` (65536),
/// `1M` or `1MiB`, `1G` or `1GiB`. Case does not matter.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at(digits_end);
    let shift = match suffix {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err("expected a byte count such as 1048576, 64K or 1M".to_owned()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| "expected a byte count such as 1048576, 64K or 1M".to_owned())
}

/// An address to serve and connect on: an IPv4 or IPv6 literal (IPv6 with or without
/// brackets), or `localhost`, which is 127.0.0.1 as in `/etc/hosts`. Nothing is looked up:
/// the stack has no name service. Whether the address is one of the stack's is decided at
/// bind time, where a foreign one fails with "cannot assign requested address".
pub fn address(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    if bare.contains('%') {
        // `fe80::1%eth0`: there is no interface but `lo` for a zone to name.
        return Err("scoped IPv6 addresses are not supported".to_owned());
    }
    bare.parse::<IpAddr>()
        .map_err(|_| "expected an IPv4 or IPv6 address, or localhost".to_owned())
}

/// A request target for `GET`: it must start with `/` and be visible ASCII, because a space
/// or a line break would end the request line early and smuggle the rest in as headers.
pub fn http_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("expected a path starting with /".to_owned());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{c:?} is not allowed in a path (percent-encode it)"
        ));
    }
    Ok(s.to_owned())
}

/// An interface address with its prefix length, `192.0.2.2/24` or `2001:db8::2/64`, as
/// `ip addr add` takes it. The length is required: it is what makes the connected route.
pub fn cidr(s: &str) -> Result<Cidr, String> {
    let t = s.trim();
    if !t.contains('/') {
        return Err("expected ADDRESS/LENGTH, such as 192.0.2.2/24 or 2001:db8::2/64".to_owned());
    }
    t.parse::<Cidr>().map_err(|e| e.to_string())
}

/// A service for `loopstack tun --serve`: `echo:PORT` (TCP and UDP echo) or `http:PORT`
/// ("Hello, Loopback!").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// TCP and UDP echo on this port.
    Echo(u16),
    /// The HTTP server on this port.
    Http(u16),
}

/// Parses `echo:PORT` or `http:PORT`, PORT from 1 to 65535.
pub fn service(s: &str) -> Result<Service, String> {
    let usage = || "expected echo:PORT or http:PORT, PORT from 1 to 65535".to_owned();
    let (kind, port) = s.trim().split_once(':').ok_or_else(usage)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(usage)?;
    match kind {
        "echo" => Ok(Service::Echo(port)),
        "http" => Ok(Service::Http(port)),
        _ => Err(usage()),
    }
}

/// An MTU: 68 (IPv4's minimum, RFC 791) to 65535 (the largest a TUN device takes).
pub fn mtu(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(m) if (68..=65535).contains(&m) => Ok(m),
        _ => Err("expected an MTU from 68 to 65535".to_owned()),
    }
}

/// An `http://` URL with an IP literal for a host (see [`HttpUrl`]).
pub fn url(s: &str) -> Result<HttpUrl, String> {
    s.trim().parse::<HttpUrl>().map_err(|e| e.why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn percentages_become_probabilities() {
        assert_eq!(probability("0"), Ok(0.0));
        assert_eq!(probability("5"), Ok(0.05));
        assert_eq!(probability("2.5%"), Ok(0.025));
        assert_eq!(probability("100"), Ok(1.0));
        for bad in ["-1", "100.5", "150", "NaN", "inf", "five", "", "%"] {
            assert!(probability(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delays_are_milliseconds() {
        assert_eq!(delay("5"), Ok(Duration::from_millis(5)));
        assert_eq!(delay("0.5"), Ok(Duration::from_micros(500)));
        assert_eq!(delay("0"), Ok(Duration::ZERO));
        for bad in ["-1", "1e300", "NaN", "60001", "soon"] {
            assert!(delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(bytes("1048576"), Ok(1_048_576));
        assert_eq!(bytes("64K"), Ok(65_536));
        assert_eq!(bytes("256kib"), Ok(262_144));
        assert_eq!(bytes("1M"), Ok(1_048_576));
        assert_eq!(bytes("2G"), Ok(2 << 30));
        assert_eq!(bytes("0"), Ok(0));
        for bad in ["", "K", "-1", "1.5M", "1T", "12 34", "99999999999999999999"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
        assert!(bytes("18446744073709551615G").is_err(), "overflow");
    }

    #[test]
    fn addresses_are_literals_or_localhost() {
        assert_eq!(address("localhost"), Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(address("127.0.0.2"), Ok("127.0.0.2".parse().unwrap()));
        assert_eq!(address("::1"), Ok(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(address("[::1]"), Ok(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        for bad in [
            "",
            "example.com",
            "127.0.0.1:80",
            "1.2.3",
            "fe80::1%lo",
            "[::1",
        ] {
            assert!(address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_must_be_clean_request_targets() {
        assert_eq!(http_path("/"), Ok("/".to_owned()));
        assert_eq!(http_path("/a/b?c=d"), Ok("/a/b?c=d".to_owned()));
        for bad in ["", "index.html", "/a b", "/a\r\nX: y", "/é"] {
            assert!(http_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tun_values_parse_or_say_why() {
        assert_eq!(cidr("192.0.2.2/24").unwrap().to_string(), "192.0.2.2/24");
        assert_eq!(cidr("2001:db8::2/64").unwrap().prefix_len(), 64);
        for bad in ["192.0.2.2", "192.0.2.2/33", "2001:db8::2/129", "x/24", ""] {
            assert!(cidr(bad).is_err(), "{bad}");
        }
        assert_eq!(service("echo:7"), Ok(Service::Echo(7)));
        assert_eq!(service("http:8080"), Ok(Service::Http(8080)));
        for bad in ["echo", "echo:0", "echo:70000", "ftp:21", "http:", ":80"] {
            assert!(service(bad).is_err(), "{bad}");
        }
        assert_eq!(mtu("1500"), Ok(1500));
        assert_eq!(mtu("68"), Ok(68));
        assert_eq!(mtu("65535"), Ok(65535));
        for bad in ["67", "65536", "0", "-1", "big"] {
            assert!(mtu(bad).is_err(), "{bad}");
        }
        assert!(url("http://192.0.2.1:8000/f").is_ok());
        assert!(url("http://localhost/").is_err());
    }
}
