//! Purging a deleted app's repository, so a new owner of the app id never runs the old owner's
//! images: every tag the repository holds is listed (`GET /v2/{app}/tags/list`, following
//! `Link: <...>; rel="next"` pages), resolved to its manifest digest (`HEAD` with the manifest
//! media types) and the manifest deleted by digest (`DELETE /v2/{app}/manifests/{digest}`; the
//! registry removes the tags that point to it). The digests the app's releases pinned go too
//! (a tag pushed again leaves the old manifest behind, untagged).
//!
//! Same client, credentials and token path as [`ImageDigests::resolve`]; in token mode one token
//! for `repository:{app}:pull,delete` serves the whole purge. The list is read again after each
//! round until it is empty, so a tag pushed while the purge runs goes too (at most
//! [`ROUNDS`] rounds). The registry must allow deletes (`storage: delete: enabled: true`,
//! `registry-config/config.yml`); one that does not (405) fails the purge with a message that
//! says so.

use crate::error::{Error, Result};
use crate::image_digest::{Digest, ImageDigests, Session};
use caas_types::AppId;

/// Rounds of list-and-delete before the purge gives up on tags that keep appearing.
pub const ROUNDS: usize = 4;

/// Tags asked per page (a registry without pagination answers all of them at once).
const PAGE: u32 = 100;

/// Pages of tags one listing follows at most.
const MAX_PAGES: usize = 10_000;

/// A page of `GET /v2/{app}/tags/list`.
#[derive(serde::Deserialize)]
struct TagPage {
    /// `null` when the repository has none.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl ImageDigests {
    /// Deletes every manifest `app`'s repository holds now (its tags' and `pinned`, the
    /// digests its releases recorded); returns how many the registry deleted. A repository the
    /// registry does not know is already empty. Fails with [`Error::Registry`] when the registry
    /// cannot be reached, refuses the platform's credentials, does not allow deletes, or keeps
    /// getting new tags.
    pub async fn purge(&self, app: &AppId, pinned: &[Digest]) -> Result<usize> {
        let shown = format!("{}/{app}", self.registry());
        let scope = format!("repository:{app}:pull,delete");
        let mut session = Session::new("purging", &shown, Some(&scope));
        let mut deleted = 0;
        let mut digests: Vec<Digest> = Vec::new();
        for d in pinned {
            if !digests.contains(d) {
                digests.push(d.clone());
            }
        }
        for _ in 0..ROUNDS {
            let tags = self.tags(app, &mut session).await?;
            if tags.is_empty() && digests.is_empty() {
                if deleted > 0 {
                    tracing::info!(repository = %shown, manifests = deleted, "repository purged");
                }
                return Ok(deleted);
            }
            for tag in &tags {
                let image = format!("{shown}:{tag}");
                match self.head_digest(app, tag, &image, &mut session).await {
                    Ok(d) if !digests.contains(&d) => digests.push(d),
                    // Already listed, or gone since the listing.
                    Ok(_) | Err(Error::ImageNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            for d in std::mem::take(&mut digests) {
                if self.delete_manifest(app, &d, &mut session).await? {
                    deleted += 1;
                }
            }
        }
        Err(Error::Registry(format!(
            "registry {}: {shown} still has tags after {ROUNDS} rounds of deleting (pushes \
             keep arriving)",
            self.registry()
        )))
    }

    /// Every tag of `app`'s repository, all pages; none if the registry does not know it.
    async fn tags(&self, app: &AppId, session: &mut Session<'_>) -> Result<Vec<String>> {
        let base = self.base();
        let first = format!("{base}/v2/{app}/tags/list?n={PAGE}");
        let mut url = Some(first);
        let mut tags = Vec::new();
        let mut pages = 0;
        while let Some(page) = url.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(self.answered(session, format_args!("over {MAX_PAGES} pages of tags")));
            }
            let resp = self.send(session, |http| http.get(&page)).await?;
            match resp.status().as_u16() {
                200 => {}
                404 => return Ok(tags),
                s @ (401 | 403) => return Err(self.refused(session, s)),
                s => return Err(self.answered(session, format_args!("{s} listing its tags"))),
            }
            url = next_page(&resp, &base, app)
                .map_err(|why| self.answered(session, format_args!("a bad Link header: {why}")))?;
            let body: TagPage = resp.json().await.map_err(|e| {
                self.answered(session, format_args!("a tag list that is not JSON: {e}"))
            })?;
            for tag in body.tags.unwrap_or_default() {
                if !valid_tag(&tag) {
                    return Err(self.answered(session, format_args!("an invalid tag {tag:?}")));
                }
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        Ok(tags)
    }

    /// Deletes the manifest `digest` of `app`: `true` if the registry deleted it, `false` if it
    /// was already gone.
    async fn delete_manifest(
        &self,
        app: &AppId,
        digest: &Digest,
        session: &mut Session<'_>,
    ) -> Result<bool> {
        let url = format!("{}/v2/{app}/manifests/{digest}", self.base());
        let resp = self.send(session, |http| http.delete(&url)).await?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            405 => Err(Error::Registry(format!(
                "registry {} does not allow deletes (405 UNSUPPORTED) while purging {}: enable \
                 storage.delete.enabled (REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it",
                self.registry(),
                session.shown
            ))),
            s @ (401 | 403) => Err(self.refused(session, s)),
            s => Err(self.answered(session, format_args!("{s} deleting manifest {digest}"))),
        }
    }

    fn refused(&self, session: &Session<'_>, status: u16) -> Error {
        Error::Registry(format!(
            "registry {} refused the platform's credentials ({status}) while purging {}",
            self.registry(),
            session.shown
        ))
    }

    fn answered(&self, session: &Session<'_>, what: std::fmt::Arguments<'_>) -> Error {
        Error::Registry(format!(
            "registry {} answered {what} while purging {}",
            self.registry(),
            session.shown
        ))
    }
}

/// The next page of a tag listing from its `Link: <url>; rel="next"` header: `None` on the
/// last page; an error for a link anywhere but this repository's tag list on this registry.
fn next_page(
    resp: &reqwest::Response,
    base: &str,
    app: &AppId,
) -> std::result::Result<Option<String>, String> {
    let Some(link) = resp.headers().get(reqwest::header::LINK) else {
        return Ok(None);
    };
    let link = link.to_str().map_err(|_| "not text".to_owned())?;
    next_link(link, base, app)
}

/// Parses a `Link` header value for its `rel="next"` target, made absolute against `base`,
/// which must be `{base}/v2/{app}/tags/list?...`. Pure.
fn next_link(link: &str, base: &str, app: &AppId) -> std::result::Result<Option<String>, String> {
    for part in link.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            return Err(format!("{link:?}"));
        };
        let next = params
            .split(';')
            .map(|p| p.trim().replace(' ', ""))
            .any(|p| p == "rel=\"next\"" || p == "rel=next");
        if !next {
            continue;
        }
        let absolute = if target.starts_with('/') {
            format!("{base}{target}")
        } else {
            target.to_owned()
        };
        let expected = format!("{base}/v2/{app}/tags/list?");
        if !absolute.starts_with(&expected) {
            return Err(format!("{target:?} is not {app}'s tag list"));
        }
        return Ok(Some(absolute));
    }
    Ok(None)
}

/// A tag as the registry allows them: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (safe in a URL path).
fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppId {
        "shop".parse().expect("app id")
    }

    #[test]
    fn the_next_page_is_this_repositorys_tag_list_only() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            next_link(
                r#"</v2/shop/tags/list?last=v9&n=100>; rel="next""#,
                base,
                &app()
            ),
            Ok(Some(format!("{base}/v2/shop/tags/list?last=v9&n=100")))
        );
        assert_eq!(
            next_link(
                &format!(r#"<{base}/v2/shop/tags/list?last=b&n=2>;rel=next"#),
                base,
                &app()
            ),
            Ok(Some(format!("{base}/v2/shop/tags/list?last=b&n=2")))
        );
        assert_eq!(
            next_link(r#"</v2/shop/tags/list?last=a>; rel="prev""#, base, &app()),
            Ok(None),
            "not a next link"
        );
        for bad in [
            r#"</v2/other/tags/list?n=1>; rel="next""#,
            r#"<http://elsewhere/v2/shop/tags/list?n=1>; rel="next""#,
            r#"</v2/shop/manifests/v1?>; rel="next""#,
            r#"</v2/shop/tags/list; rel="next""#,
        ] {
            assert!(next_link(bad, base, &app()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_what_the_registry_allows() {
        for ok in ["v1", "latest", "_x", "1.2.3-rc_1", &"a".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in [
            "",
            ".v1",
            "-v1",
            "v1/..",
            "v 1",
            "v1?x",
            "v1#",
            &"a".repeat(129),
        ] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
