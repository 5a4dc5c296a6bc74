//! Validated names: app ids, versions, container ids, host names, domains, tenants, instances.
//!
//! Each is a string newtype whose only constructor is its validator. The rules are the strictest
//! of every place the name ends up: a DNS label (gateway Host header), a Docker tag or container
//! name, a ZooKeeper node name, a SQL value. `.` and `..` are never valid, nor `/`, NUL,
//! whitespace or non-ASCII.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Declares a validated string newtype with `FromStr`, `TryFrom<String>`, `Display`,
/// `AsRef<str>` and serde that goes through the validator.
macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $validate(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                $validate(&s)?;
                Ok(Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use validated_string;

validated_string!(
    /// An app id: one DNS label (`[a-z0-9-]`, 1..=63, no leading or trailing `-`), because it is the
    /// first label of `{appId}.{gateway-domain}` and the repository name of the app's image.
    AppId,
    validate_app_id
);

validated_string!(
    /// A deployment version: a Docker tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), because the image
    /// is always `{registry}/{appId}:{version}`. It is also a ZooKeeper node name; a tag can never
    /// be `.` or `..`, so that is safe.
    Version,
    validate_version
);

validated_string!(
    /// A Docker container id: 12 to 64 lowercase hex digits (the engine's full ids are 64).
    ContainerId,
    validate_container_id
);

validated_string!(
    /// A host's name in the scheduler: a DNS name (labels of `[a-z0-9-]` joined by `.`, at most 253).
    HostName,
    validate_host_name
);

validated_string!(
    /// A custom domain routed to an app (a CNAME of `{appId}.{gateway-domain}`): a lowercase DNS name
    /// with at least two labels.
    Domain,
    validate_domain
);

validated_string!(
    /// A tenant's name: one DNS label, like an app id.
    TenantName,
    validate_tenant
);

validated_string!(
    /// The name a gateway reports its demand under: 1 to 63 of `[a-z0-9-]`. Each gateway's
    /// report replaces its previous one, so gateways of one platform need distinct names.
    GatewayName,
    validate_gateway_name
);

validated_string!(
    /// An instance id: `{appId}-{suffix}` where suffix is lowercase alphanumerics; it names the
    /// container (`caas-{instanceId}`), so it must be a valid Docker container name.
    InstanceId,
    validate_instance_id
);

validated_string!(
    /// The user a deployment's containers run as (Docker's `User`): a numeric uid (`"1000"`), a
    /// uid and gid (`"1000:1000"`), or names the image knows (`"app"`, `"app:app"`). 1 to
    /// [`MAX_CONTAINER_USER`] of `[A-Za-z0-9_.-]`, at most one `:` with something on both
    /// sides, not starting with `-` or `.`. No NUL, space or `/` can reach the engine.
    ContainerUser,
    validate_container_user
);

/// Longest [`ContainerUser`], bytes (Linux user names stop at 32; a `user:group` pair of two).
pub const MAX_CONTAINER_USER: usize = 65;

fn check_len(kind: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Empty { kind });
    }
    if s.len() > max {
        return Err(Error::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// Describes the first offending character without echoing control bytes.
fn describe(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("character '{c}' is not allowed")
    } else {
        format!("character U+{:04X} is not allowed", c as u32)
    }
}

fn validate_label(kind: &'static str, s: &str) -> Result<()> {
    check_len(kind, s, 63)?;
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(Error::invalid(
            kind,
            format!("{}; use lowercase letters, digits and '-'", describe(c)),
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(Error::invalid(kind, "must not start or end with '-'"));
    }
    Ok(())
}

fn validate_gateway_name(s: &str) -> Result<()> {
    const KIND: &str = "gateway name";
    check_len(KIND, s, 63)?;
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(Error::invalid(
            KIND,
            format!("{}; use lowercase letters, digits and '-'", describe(c)),
        ));
    }
    Ok(())
}

fn validate_app_id(s: &str) -> Result<()> {
    validate_label("app id", s)
}

fn validate_tenant(s: &str) -> Result<()> {
    validate_label("tenant name", s)
}

fn validate_version(s: &str) -> Result<()> {
    const KIND: &str = "version";
    check_len(KIND, s, 128)?;
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Error::invalid(
            KIND,
            format!(
                "{}; a Docker tag uses letters, digits, '_', '.' and '-'",
                describe(c)
            ),
        ));
    }
    if s.starts_with(['.', '-']) {
        return Err(Error::invalid(KIND, "must not start with '.' or '-'"));
    }
    Ok(())
}

fn validate_container_id(s: &str) -> Result<()> {
    const KIND: &str = "container id";
    check_len(KIND, s, 64)?;
    if s.len() < 12 {
        return Err(Error::invalid(KIND, "must be at least 12 hex digits"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_digit() || ('a'..='f').contains(c)))
    {
        return Err(Error::invalid(
            KIND,
            format!("{}; use lowercase hex", describe(c)),
        ));
    }
    Ok(())
}

fn validate_dns_name(kind: &'static str, s: &str) -> Result<()> {
    check_len(kind, s, 253)?;
    for label in s.split('.') {
        validate_label(kind, label).map_err(|e| match e {
            Error::Empty { .. } => {
                Error::invalid(kind, "empty label (two dots, or a leading or trailing dot)")
            }
            other => other,
        })?;
    }
    Ok(())
}

fn validate_host_name(s: &str) -> Result<()> {
    validate_dns_name("host name", s)
}

fn validate_domain(s: &str) -> Result<()> {
    const KIND: &str = "domain";
    validate_dns_name(KIND, s)?;
    if !s.contains('.') {
        return Err(Error::invalid(
            KIND,
            "needs at least two labels, like app.example.com",
        ));
    }
    Ok(())
}

fn validate_container_user(s: &str) -> Result<()> {
    const KIND: &str = "user";
    check_len(KIND, s, MAX_CONTAINER_USER)?;
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':')))
    {
        return Err(Error::invalid(
            KIND,
            format!(
                "{}; use a uid, uid:gid or names of letters, digits, '_', '.' and '-'",
                describe(c)
            ),
        ));
    }
    let mut parts = s.split(':');
    let (user, group, rest) = (parts.next(), parts.next(), parts.next());
    if rest.is_some() {
        return Err(Error::invalid(KIND, "at most one ':' (user:group)"));
    }
    for part in [user, group].into_iter().flatten() {
        if part.is_empty() {
            return Err(Error::invalid(KIND, "empty user or group around ':'"));
        }
        if part.starts_with(['-', '.']) {
            return Err(Error::invalid(KIND, "must not start with '-' or '.'"));
        }
    }
    Ok(())
}

fn validate_instance_id(s: &str) -> Result<()> {
    // Docker container names allow more, but an instance id also travels in labels and URLs.
    validate_label("instance id", s)
}

impl InstanceId {
    /// A fresh instance id for an app: `{appId}-{10 random base36 characters}`, truncated so the
    /// whole stays a DNS label.
    pub fn generate(app: &AppId, random: u64) -> InstanceId {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut suffix = String::with_capacity(10);
        let mut n = random;
        for _ in 0..10 {
            suffix.push(char::from(ALPHABET[(n % 36) as usize]));
            n /= 36;
        }
        let prefix_len = app.as_str().len().min(63 - 11);
        let prefix = app.as_str()[..prefix_len].trim_end_matches('-');
        InstanceId(format!("{prefix}-{suffix}"))
    }
}

impl AppId {
    /// The image reference of this app at `version` in `registry` (`host:port`).
    pub fn image(&self, registry: &str, version: &Version) -> String {
        format!("{registry}/{self}:{version}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs no name of ours may ever accept.
    const HOSTILE: &[&str] = &[
        "",
        "..",
        ".",
        "/",
        "a/b",
        "../etc",
        "a\0b",
        "\0",
        "a b",
        " a",
        "a ",
        "a\n",
        "a:b",
        "A",
        "App",
        "ünïcode",
        "日本",
        "-a",
        "a\\b",
        "a%2f",
        "$(x)",
        "a;b",
    ];

    #[test]
    fn container_user_takes_ids_pairs_and_names_only() {
        for ok in [
            "0",
            "1000",
            "65534",
            "1000:1000",
            "app",
            "app:app",
            "www-data",
            "a_b.c",
            &"u".repeat(65),
        ] {
            assert!(
                ok.parse::<ContainerUser>().is_ok(),
                "{ok:?} should be valid"
            );
        }
        let long = "u".repeat(66);
        let bad_ones = [
            "", ":", "1000:", ":1000", "1:2:3", "a b", "a\0b", "-u", ".u", "u:-g", "a/b", "ünï",
            "$(id)", "a;b", "a\n", &long,
        ];
        for bad in bad_ones {
            assert!(
                bad.parse::<ContainerUser>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn app_id_accepts_dns_labels() {
        for ok in ["a", "app01", "my-app", "0", "a-b-c", &"a".repeat(63)] {
            assert!(ok.parse::<AppId>().is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn app_id_rejects_hostile_input() {
        for bad in HOSTILE.iter().chain(&["a-", "a.b", "a_b"]) {
            assert!(bad.parse::<AppId>().is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            "a".repeat(64).parse::<AppId>(),
            Err(Error::TooLong {
                len: 64,
                max: 63,
                ..
            })
        ));
    }

    #[test]
    fn version_follows_docker_tag_rules() {
        for ok in [
            "v1",
            "V1",
            "1.0.0",
            "latest",
            "_x",
            "1.2-rc_3",
            &"v".repeat(128),
        ] {
            assert!(ok.parse::<Version>().is_ok(), "{ok:?} should be valid");
        }
        let hostile = HOSTILE
            .iter()
            .filter(|s| !matches!(**s, "A" | "App"))
            .chain(&[".v1", "-v1", "v1/..", "v1@sha256"]);
        for bad in hostile {
            assert!(
                bad.parse::<Version>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!("v".repeat(129).parse::<Version>().is_err());
    }

    #[test]
    fn container_id_is_hex() {
        let full = "a".repeat(64);
        assert!(full.parse::<ContainerId>().is_ok());
        assert!("0123456789ab".parse::<ContainerId>().is_ok());
        for bad in HOSTILE
            .iter()
            .chain(&["0123456789a", "0123456789AB", "g123456789ab"])
        {
            assert!(
                bad.parse::<ContainerId>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!("a".repeat(65).parse::<ContainerId>().is_err());
    }

    #[test]
    fn host_names_and_domains_are_dns_names() {
        assert!("h1".parse::<HostName>().is_ok());
        assert!("host-1.zone-a".parse::<HostName>().is_ok());
        assert!("shop.example.com".parse::<Domain>().is_ok());
        assert!(
            "localhost".parse::<Domain>().is_err(),
            "one label is not a custom domain"
        );
        for bad in HOSTILE.iter().chain(&["a..b", ".a", "a.", "-a.b", "a.-b"]) {
            assert!(
                bad.parse::<HostName>().is_err(),
                "{bad:?} should be rejected"
            );
            assert!(bad.parse::<Domain>().is_err(), "{bad:?} should be rejected");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(
            long.parse::<HostName>().is_err(),
            "255 characters is over 253"
        );
    }

    #[test]
    fn serde_goes_through_validation() {
        let ok: AppId = serde_json::from_str("\"app01\"").expect("valid app id");
        assert_eq!(ok.as_str(), "app01");
        assert!(serde_json::from_str::<AppId>("\"../x\"").is_err());
        assert!(serde_json::from_str::<Version>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&ok).expect("serialize"), "\"app01\"");
    }

    #[test]
    fn errors_never_echo_control_characters() {
        let err = "a\0b"
            .parse::<AppId>()
            .expect_err("NUL is invalid")
            .to_string();
        assert!(err.contains("U+0000"), "{err}");
        assert!(!err.contains('\0'));
    }

    #[test]
    fn generated_instance_ids_are_valid_labels() {
        let long = "a".repeat(63).parse::<AppId>().expect("valid");
        for app in [
            long,
            "x".parse().expect("valid"),
            "ab-"
                .repeat(20)
                .trim_end_matches('-')
                .parse()
                .expect("valid"),
        ] {
            for r in [0, 1, u64::MAX, 0xdead_beef] {
                let id = InstanceId::generate(&app, r);
                assert!(id.as_str().parse::<InstanceId>().is_ok(), "{id}");
            }
        }
    }

    #[test]
    fn image_reference() {
        let app: AppId = "hello".parse().expect("valid");
        let v: Version = "v1".parse().expect("valid");
        assert_eq!(app.image("127.0.0.1:5000", &v), "127.0.0.1:5000/hello:v1");
    }
}
