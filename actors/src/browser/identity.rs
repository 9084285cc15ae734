//! How the browser presents itself: a desktop Chromium, not a robot.
//!
//! Headless Chromium says `HeadlessChrome` in its user agent and in its client hints
//! (`navigator.userAgentData.brands`), and `navigator.webdriver` is true while it is
//! driven. Sites that check (WhatsApp Web answers with an "update your browser" page)
//! must see what a person's desktop browser sends instead. The identity is built from
//! the installed Chromium's own version, so it is never an old or impossible browser:
//! the reduced user-agent string Chromium itself sends (`Chrome/<major>.0.0.0`), the
//! matching client hints, and the platform this machine really is.
//!
//! It is applied three ways, so it holds on every page and after every reconnect:
//! `--user-agent` at launch (workers and service workers included),
//! `--disable-blink-features=AutomationControlled` (`navigator.webdriver` false), and
//! `Emulation.setUserAgentOverride` with the client hints on each page the pool opens.

use chromiumoxide::cdp::browser_protocol::emulation::{
    SetUserAgentOverrideParams, UserAgentBrandVersion, UserAgentMetadata,
};

/// The flag that keeps `navigator.webdriver` false.
pub const NO_AUTOMATION_FLAG: &str = "--disable-blink-features=AutomationControlled";

/// A desktop browser identity for one Chromium version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// e.g. `156`.
    pub major: String,
    /// e.g. `156.0.8078.114`.
    pub full_version: String,
    /// The `User-Agent` header and `navigator.userAgent`.
    pub user_agent: String,
    /// The kernel release, as desktop Chromium reports it on Linux.
    platform_version: String,
}

impl Identity {
    /// From a version as Chromium prints it: `Chromium 156.0.8078.114 built on …`
    /// (`chromium --version`) or `HeadlessChrome/156.0.8078.114` (`Browser.getVersion`).
    pub fn from_version(text: &str) -> Option<Self> {
        let full = text
            .split(|c: char| c.is_whitespace() || c == '/')
            .find(|w| w.split('.').count() == 4 && w.split('.').all(|p| p.parse::<u32>().is_ok()))?
            .to_owned();
        let major = full.split('.').next()?.to_owned();
        Some(Self {
            user_agent: format!(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/{major}.0.0.0 Safari/537.36"
            ),
            major,
            full_version: full,
            platform_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|r| r.split(['-', '+']).next().map(str::to_owned))
                .unwrap_or_default(),
        })
    }

    /// Asks the executable for its version (`<exe> --version`).
    pub fn probe(executable: &std::path::Path) -> Option<Self> {
        let out = std::process::Command::new(executable)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        Self::from_version(&String::from_utf8_lossy(&out.stdout))
    }

    /// Launch flags that carry the identity.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--user-agent={}", self.user_agent),
            NO_AUTOMATION_FLAG.to_owned(),
        ]
    }

    /// The client hints (`navigator.userAgentData`, `Sec-CH-UA*` headers).
    fn metadata(&self) -> UserAgentMetadata {
        // Chromium's brand list: its own brand and one "GREASE" brand that sites must
        // ignore (its exact spelling varies by version; this is 156's family).
        let brands = |version: &str| {
            vec![
                UserAgentBrandVersion::new("Chromium", version),
                UserAgentBrandVersion::new(
                    "Not/A)Brand",
                    if version.contains('.') {
                        "24.0.0.0"
                    } else {
                        "24"
                    },
                ),
            ]
        };
        UserAgentMetadata {
            brands: Some(brands(&self.major)),
            full_version_list: Some(brands(&self.full_version)),
            platform: "Linux".into(),
            platform_version: self.platform_version.clone(),
            architecture: "x86".into(),
            model: String::new(),
            mobile: false,
            bitness: Some("64".into()),
            wow64: Some(false),
            form_factors: Some(vec!["Desktop".into()]),
        }
    }

    /// The per-page override (user agent, language, platform and client hints).
    pub fn page_override(&self) -> SetUserAgentOverrideParams {
        SetUserAgentOverrideParams {
            user_agent: self.user_agent.clone(),
            accept_language: Some("en-US,en;q=0.9".into()),
            platform: Some("Linux x86_64".into()),
            user_agent_metadata: Some(self.metadata()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_follows_the_installed_version() {
        let id = Identity::from_version(
            "Chromium 156.0.8078.114 built on Debian GNU/Linux 12 (bookworm)\n",
        )
        .unwrap();
        assert_eq!(id.major, "156");
        assert_eq!(id.full_version, "156.0.8078.114");
        assert!(id.user_agent.contains("Chrome/156.0.0.0 Safari/537.36"));
        assert!(!id.user_agent.contains("Headless"));
        let same = Identity::from_version("HeadlessChrome/156.0.8078.114").unwrap();
        assert_eq!(same.user_agent, id.user_agent);
        let hints = id.page_override().user_agent_metadata.unwrap();
        assert!(!hints.mobile);
        assert!(
            hints
                .brands
                .unwrap()
                .iter()
                .all(|b| !b.brand.contains("Headless"))
        );
        assert_eq!(Identity::from_version("no version here"), None);
    }
}
