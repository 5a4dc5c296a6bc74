//! The Docker registry's (distribution's) notification envelope, and which of its events count
//! as a push of an app's tag. Pure parsing: the admin API handler records what this accepts.
//!
//! The registry POSTs `{"events": [...]}` (media type
//! `application/vnd.docker.distribution.events.v1+json`) and retries until it gets a 2xx, so
//! delivery is at least once and a well-formed envelope with events we do not care about must
//! still be answered 200. Only a body that is not an envelope at all is refused.

use crate::store::NewTag;
use caas_types::{AppId, Version};
use serde::Deserialize;

/// The envelope: a batch of events. Fields we do not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// The events, in no guaranteed order.
    pub events: Vec<Event>,
}

/// One registry event (pull, push, mount or delete of a manifest or blob).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Unique id of the event (logged, so a redelivery can be recognised).
    pub id: Option<String>,
    /// `push`, `pull`, `mount`, `delete`.
    pub action: Option<String>,
    /// What the event is about.
    pub target: Target,
    /// Who caused it.
    pub actor: Actor,
}

/// The object an event is about.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Target {
    /// Media type of the manifest or blob.
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Content digest, `algorithm:hex`.
    pub digest: Option<String>,
    /// Repository name (for caas: the app id).
    pub repository: Option<String>,
    /// The tag a manifest was pushed or pulled by; absent for blobs and pushes by digest.
    pub tag: Option<String>,
}

/// The user behind an event (empty when the registry has no auth).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Actor {
    /// User name.
    pub name: Option<String>,
}

/// What an event means for caas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A manifest pushed by tag to a repository named like an app: record it.
    Push(NewTag),
    /// Not a tagged manifest push (a pull, a blob, a push by digest, a delete): nothing to do.
    Ignored,
    /// A tagged manifest push whose names or digest caas cannot accept; the text says why.
    Invalid(String),
}

/// Manifest media types a tag can point to (Docker schema 1 and 2, OCI manifests and indexes).
const MANIFEST_TYPES: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Longest digest, media type or user name stored (the columns' size).
const MAX_TEXT: usize = 255;

/// Parses a request body as an envelope.
pub fn parse(body: &[u8]) -> Result<Envelope, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a registry notification envelope: {e}"))
}

/// Whether `d` is an OCI-style digest, `algorithm:encoded`.
fn valid_digest(d: &str) -> bool {
    let Some((alg, enc)) = d.split_once(':') else {
        return false;
    };
    d.len() <= MAX_TEXT
        && !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// Decides what one event means.
pub fn classify(ev: &Event) -> Classified {
    let t = &ev.target;
    let tag = t.tag.as_deref().unwrap_or("");
    let media = t.media_type.as_deref().unwrap_or("");
    if ev.action.as_deref() != Some("push") || tag.is_empty() || !MANIFEST_TYPES.contains(&media) {
        return Classified::Ignored;
    }
    let repo = t.repository.as_deref().unwrap_or("");
    let Ok(app) = repo.parse::<AppId>() else {
        return Classified::Invalid("repository is not an app id".into());
    };
    let Ok(tag) = tag.parse::<Version>() else {
        return Classified::Invalid("tag is not a valid version".into());
    };
    let digest = t.digest.as_deref().unwrap_or("");
    if !valid_digest(digest) {
        return Classified::Invalid("digest is not algorithm:hex".into());
    }
    let pushed_by = match ev.actor.name.as_deref() {
        None | Some("") => None,
        Some(n) if n.len() <= MAX_TEXT && !n.chars().any(char::is_control) => Some(n.to_owned()),
        Some(_) => {
            return Classified::Invalid("actor name is too long or has control characters".into())
        }
    };
    Classified::Push(NewTag {
        app,
        tag,
        digest: digest.to_owned(),
        media_type: media.to_owned(),
        pushed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";

    /// An envelope as distribution sends it (fields from its notifications docs).
    fn envelope(action: &str, media: &str, repo: &str, tag: Option<&str>) -> String {
        let tag = tag.map(|t| format!(r#","tag":"{t}""#)).unwrap_or_default();
        format!(
            r#"{{"events":[{{"id":"320678d8-ca14-430f-8bb6-4ca139cd83f7",
              "timestamp":"2016-03-09T14:44:26.402973972-08:00","action":"{action}",
              "target":{{"mediaType":"{media}","size":708,"digest":"{DIGEST}","length":708,
                "repository":"{repo}","url":"http://127.0.0.1:5000/v2/{repo}/manifests/{DIGEST}"{tag}}},
              "request":{{"id":"6df24a34-0959-4923-81ca-14f09767db19","addr":"192.168.64.11:42961",
                "host":"192.168.100.227:5000","method":"PUT","useragent":"curl/7.38.0"}},
              "actor":{{"name":"alice"}},"source":{{"addr":"xtal.local:5000",
                "instanceID":"a53db899-3b4b-4a62-a067-8dd013beaca4"}}}}]}}"#
        )
    }

    fn one(body: &str) -> Classified {
        let env = parse(body.as_bytes()).expect("an envelope");
        assert_eq!(env.events.len(), 1);
        classify(&env.events[0])
    }

    #[test]
    fn a_tagged_manifest_push_counts() {
        let c = one(&envelope(
            "push",
            "application/vnd.docker.distribution.manifest.v2+json",
            "hello",
            Some("v2"),
        ));
        let Classified::Push(t) = c else {
            panic!("not a push: {c:?}")
        };
        assert_eq!((t.app.as_str(), t.tag.as_str()), ("hello", "v2"));
        assert_eq!(t.digest, DIGEST);
        assert_eq!(t.pushed_by.as_deref(), Some("alice"));
    }

    #[test]
    fn pulls_blobs_and_untagged_pushes_are_ignored() {
        let manifest = "application/vnd.oci.image.manifest.v1+json";
        for body in [
            envelope("pull", manifest, "hello", Some("v1")),
            envelope("delete", manifest, "hello", Some("v1")),
            envelope("push", manifest, "hello", None),
            envelope(
                "push",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "hello",
                None,
            ),
            envelope("push", "application/octet-stream", "hello", Some("v1")),
        ] {
            assert_eq!(one(&body), Classified::Ignored, "{body}");
        }
    }

    #[test]
    fn names_caas_cannot_use_are_invalid() {
        let manifest = "application/vnd.docker.distribution.manifest.v2+json";
        for (repo, tag) in [("team/hello", "v1"), ("Hello", "v1"), ("hello", "-v1")] {
            assert!(
                matches!(
                    one(&envelope("push", manifest, repo, Some(tag))),
                    Classified::Invalid(_)
                ),
                "{repo}:{tag}"
            );
        }
        let bad_digest = envelope("push", manifest, "hello", Some("v1")).replace(DIGEST, "sha256");
        assert!(matches!(one(&bad_digest), Classified::Invalid(_)));
    }

    #[test]
    fn envelopes_with_sparse_events_parse_and_junk_does_not() {
        assert_eq!(one(r#"{"events":[{}]}"#), Classified::Ignored);
        assert_eq!(
            one(r#"{"events":[{"action":"push","target":{"tag":null}}]}"#),
            Classified::Ignored
        );
        for junk in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"events":{}}"#,
            r#"{"events":[1]}"#,
            "{\"events\":[",
        ] {
            assert!(parse(junk.as_bytes()).is_err(), "{junk}");
        }
    }

    #[test]
    fn digests() {
        assert!(valid_digest(DIGEST));
        assert!(valid_digest(
            "sha512+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"
        ));
        for bad in [
            "",
            "sha256",
            ":abc",
            "sha256:",
            "SHA256:ab",
            "sha256:a b",
            "sha256:ab/c",
        ] {
            assert!(!valid_digest(bad), "{bad}");
        }
    }
}
