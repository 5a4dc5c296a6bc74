//! Who may route which custom domain (brief, part 2, "Tenants and security"): a tenant's app
//! only at or below the suffixes the operator gave the tenant; nobody at or below the
//! platform's own domain (`{app}.{domain}` names are the gateway's); tenants' suffixes never
//! overlap, so no two tenants may hold one name. "Another app holds it" is the `domains`
//! table's unique key (409). Pure: the admin API reads the facts and asks here.

use crate::error::{Error, Result};
use caas_types::{Domain, TenantName};

/// Whether `name` is `suffix` or a name below it (`shop.acme.example` is below `acme.example`;
/// `badacme.example` is not).
pub fn at_or_below(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
}

/// Whether `domain` may be routed to an app owned by `owner` (`None`: an operator's app, which
/// may take any name outside the platform's domain), given the owner's suffixes. The error
/// names the rule, never another tenant.
pub fn check_custom_domain(
    domain: &Domain,
    platform: &str,
    owner: Option<(&TenantName, &[Domain])>,
) -> Result<()> {
    if at_or_below(domain.as_str(), platform) || at_or_below(platform, domain.as_str()) {
        return Err(Error::NotAllowed(format!(
            "domain {domain} is not allowed: the platform's domain {platform} and the names \
             above and below it are the gateway's"
        )));
    }
    let Some((tenant, suffixes)) = owner else {
        return Ok(());
    };
    if suffixes
        .iter()
        .any(|s| at_or_below(domain.as_str(), s.as_str()))
    {
        return Ok(());
    }
    let given = if suffixes.is_empty() {
        "none".to_owned()
    } else {
        suffixes
            .iter()
            .map(Domain::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::NotAllowed(format!(
        "domain {domain} is not under a suffix tenant {tenant} was given ({given}); the \
         operator gives suffixes with PATCH /v1/tenants/{tenant}"
    )))
}

/// Whether `suffix` may be given to `tenant`: not at, above or below the platform's domain,
/// and neither at, above nor below a suffix another tenant holds (`others`: every other
/// tenant's suffixes).
pub fn check_suffix(
    suffix: &Domain,
    platform: &str,
    tenant: &TenantName,
    others: &[(TenantName, Domain)],
) -> Result<()> {
    let s = suffix.as_str();
    if at_or_below(s, platform) || at_or_below(platform, s) {
        return Err(Error::Invalid(format!(
            "domains: {suffix} overlaps the platform's domain {platform}"
        )));
    }
    for (other, theirs) in others {
        if other != tenant && (at_or_below(s, theirs.as_str()) || at_or_below(theirs.as_str(), s)) {
            return Err(Error::Conflict(format!(
                "domains: {suffix} overlaps a suffix another tenant holds"
            )));
        }
    }
    Ok(())
}

/// The routed custom domains (`routed`, the tenant's) that would be under none of `suffixes`
/// any more: a suffix is not taken away while names below it are routed.
pub fn check_suffixes_keep_routed(routed: &[Domain], suffixes: &[Domain]) -> Result<()> {
    let stranded: Vec<&str> = routed
        .iter()
        .filter(|r| !suffixes.iter().any(|s| at_or_below(r.as_str(), s.as_str())))
        .map(Domain::as_str)
        .collect();
    if stranded.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "domains: the tenant's apps still route {}, which the new suffixes do not cover; \
         remove those domains first",
        stranded.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        s.parse().expect("valid domain")
    }

    fn t(s: &str) -> TenantName {
        s.parse().expect("valid tenant")
    }

    #[test]
    fn a_suffix_with_routed_names_below_it_stays() {
        let routed = [d("www.acme.example"), d("shop.acme.example")];
        assert!(check_suffixes_keep_routed(&routed, &[d("acme.example")]).is_ok());
        assert!(check_suffixes_keep_routed(&[], &[]).is_ok());
        match check_suffixes_keep_routed(&routed, &[d("www.acme.example")]) {
            Err(Error::Conflict(m)) => {
                assert!(
                    m.contains("shop.acme.example") && !m.contains("www."),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn below_means_a_whole_label_below() {
        assert!(at_or_below("acme.example", "acme.example"));
        assert!(at_or_below("shop.acme.example", "acme.example"));
        assert!(!at_or_below("badacme.example", "acme.example"));
        assert!(!at_or_below("example", "acme.example"));
    }

    #[test]
    fn custom_domains_follow_the_owner_and_never_touch_the_platform() {
        let acme = t("acme");
        let suffixes = [d("acme.example")];
        let owner = Some((&acme, &suffixes[..]));
        let platform = "caas.local";
        assert!(check_custom_domain(&d("shop.acme.example"), platform, owner).is_ok());
        assert!(check_custom_domain(&d("acme.example"), platform, owner).is_ok());
        for bad in [
            "shop.other.example",
            "badacme.example",
            "hello.caas.local",
            "caas.local",
        ] {
            assert!(
                matches!(
                    check_custom_domain(&d(bad), platform, owner),
                    Err(Error::NotAllowed(_))
                ),
                "{bad}"
            );
        }
        assert!(check_custom_domain(&d("anything.example"), platform, None).is_ok());
        assert!(check_custom_domain(&d("x.caas.local"), platform, None).is_err());
        let none: [Domain; 0] = [];
        assert!(check_custom_domain(&d("a.example"), platform, Some((&acme, &none[..]))).is_err());
    }

    #[test]
    fn suffixes_never_overlap_between_tenants() {
        let others = [(t("globex"), d("globex.example"))];
        let acme = t("acme");
        assert!(check_suffix(&d("acme.example"), "caas.local", &acme, &others).is_ok());
        assert!(matches!(
            check_suffix(&d("shop.globex.example"), "caas.local", &acme, &others),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            check_suffix(
                &d("example.com"),
                "caas.local",
                &acme,
                &[(t("g"), d("x.example.com"))]
            ),
            Err(Error::Conflict(_))
        ));
        assert!(check_suffix(&d("globex.example"), "caas.local", &t("globex"), &others).is_ok());
        assert!(matches!(
            check_suffix(&d("a.caas.local"), "caas.local", &acme, &[]),
            Err(Error::Invalid(_))
        ));
    }
}
