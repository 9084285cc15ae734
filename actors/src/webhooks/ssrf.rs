//! Keeping webhook deliveries off internal networks (SSRF).
//!
//! A webhook URL must be `http` or `https` with a host. Unless the operator allows
//! private targets (`SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS=true`), every address it
//! resolves to must be public: loopback, private, link-local, CGNAT, unique-local,
//! multicast, unspecified and reserved ranges are refused. The check runs when an
//! endpoint is saved and again at every delivery ([`FilteringResolver`] filters the
//! HTTP client's DNS answers), so a name re-pointed at an internal address later
//! (DNS rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("URLs with credentials are not allowed; use the signing secret to authenticate")]
    Credentials,
    #[error("the URL's host is a loopback, private or otherwise internal address")]
    Private,
    #[error("the URL's host does not resolve")]
    Unresolvable,
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18/15
        || a >= 240) // reserved
}

fn v6_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let seg0 = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated)
        || seg0 == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || (seg0 == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64 (maps to v4)
}

/// Whether deliveries may go to `ip`.
pub fn ip_allowed(ip: IpAddr, allow_private: bool) -> bool {
    allow_private
        || match ip {
            IpAddr::V4(v4) => v4_public(v4),
            IpAddr::V6(v6) => v6_public(v6),
        }
}

/// Checks everything that can be checked without DNS; returns the parsed URL.
pub fn check_static(raw: &str, allow_private: bool) -> Result<Url, UrlError> {
    let url = Url::parse(raw.trim()).map_err(|_| UrlError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    match url.host() {
        None => return Err(UrlError::Invalid),
        Some(Host::Ipv4(ip)) if !ip_allowed(IpAddr::V4(ip), allow_private) => {
            return Err(UrlError::Private);
        }
        Some(Host::Ipv6(ip)) if !ip_allowed(IpAddr::V6(ip), allow_private) => {
            return Err(UrlError::Private);
        }
        Some(Host::Domain(d))
            if !allow_private && (d == "localhost" || d.ends_with(".localhost")) =>
        {
            return Err(UrlError::Private);
        }
        _ => {}
    }
    Ok(url)
}

/// [`check_static`] plus DNS: every address the host resolves to must be allowed.
pub async fn check(raw: &str, allow_private: bool) -> Result<Url, UrlError> {
    let url = check_static(raw, allow_private)?;
    if let Some(Host::Domain(d)) = url.host()
        && !allow_private
    {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| UrlError::Unresolvable)?
            .collect();
        if addrs.is_empty() {
            return Err(UrlError::Unresolvable);
        }
        if addrs.iter().any(|a| !ip_allowed(a.ip(), false)) {
            return Err(UrlError::Private);
        }
    }
    Ok(url)
}

/// DNS for the delivery client that drops internal addresses (unless allowed).
#[derive(Debug, Clone, Copy)]
pub struct FilteringResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| ip_allowed(a.ip(), allow))
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{} resolves to no allowed (public) address", name.as_str()).into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!ip_allowed(ip.parse().unwrap(), false), "{ip}");
            assert!(ip_allowed(ip.parse().unwrap(), true), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(ip_allowed(ip.parse().unwrap(), false), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_static("https://example.com/hook", false).is_ok());
        assert_eq!(
            check_static("ftp://example.com", false),
            Err(UrlError::Scheme)
        );
        assert_eq!(check_static("not a url", false), Err(UrlError::Invalid));
        assert_eq!(
            check_static("http://127.0.0.1:9/x", false),
            Err(UrlError::Private)
        );
        assert_eq!(
            check_static("http://[::1]/x", false),
            Err(UrlError::Private)
        );
        assert_eq!(
            check_static("http://localhost/x", false),
            Err(UrlError::Private)
        );
        assert_eq!(
            check_static("http://user:pw@example.com/x", false),
            Err(UrlError::Credentials)
        );
        assert!(check_static("http://127.0.0.1:9/x", true).is_ok());
        // Decimal and hex IPv4 forms are normalised by the URL parser, then refused.
        assert_eq!(
            check_static("http://2130706433/", false),
            Err(UrlError::Private)
        );
        assert_eq!(
            check_static("http://0x7f.1/", false),
            Err(UrlError::Private)
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        // `localhost.` with a trailing dot bypasses the name check but not DNS.
        assert!(check("http://localhost./x", false).await.is_err());
    }
}
