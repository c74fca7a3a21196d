//! Who is calling, and may they: the caller's uid from the bus (never from arguments) and the
//! polkit check with the caller's unique bus name as subject.
//!
//! uid 0 is always allowed without asking polkit. When polkit is not on the bus, only root is.
//! Authentication is interactive only when the message carries `ALLOW_INTERACTIVE_AUTH`.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::message::{Flags, Header};
use zbus::Connection;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::error::{Error, Result};

/// The polkit actions of the service (`polkit/org.osbuild.builder1.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start builds, list the store, read outputs.
    Build,
    /// Cancel a job someone else started.
    CancelOtherUser,
    /// Prune the store.
    ManageStore,
}

impl Action {
    /// The polkit action id.
    pub fn id(self) -> &'static str {
        match self {
            Action::Build => "org.osbuild.builder1.build",
            Action::CancelOtherUser => "org.osbuild.builder1.cancel-other-user",
            Action::ManageStore => "org.osbuild.builder1.manage-store",
        }
    }
}

/// The caller of a method, as the bus (or the peer socket) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Unix uid of the connection.
    pub uid: u32,
    /// Unique bus name (`:1.42`); `None` on a peer-to-peer connection.
    pub name: Option<String>,
}

/// A decision made without polkit, for tests: `(uid, action) -> allowed`.
pub type Decide = Arc<dyn Fn(u32, Action) -> bool + Send + Sync>;

/// How calls are authorized.
#[derive(Clone)]
pub enum Authority {
    /// Ask polkitd on the bus (root always allowed; no polkitd: root only).
    Polkit,
    /// A fixed rule deciding every call, uid 0 included (tests over a peer-to-peer connection).
    Fixed(Decide),
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authority::Polkit => f.write_str("Polkit"),
            Authority::Fixed(_) => f.write_str("Fixed"),
        }
    }
}

/// Finds out who sent the message `hdr`.
pub async fn caller(conn: &Connection, hdr: &Header<'_>) -> Result<Caller> {
    match hdr.sender() {
        Some(sender) => {
            let creds = zbus::fdo::DBusProxy::new(conn)
                .await?
                .get_connection_credentials(sender.clone().into())
                .await?;
            let uid = creds
                .unix_user_id()
                .ok_or_else(|| Error::access_denied("the bus does not know the caller's uid"))?;
            Ok(Caller {
                uid,
                name: Some(sender.to_string()),
            })
        }
        None => {
            let creds = conn
                .peer_creds()
                .await
                .map_err(|e| Error::Failed(format!("reading the peer's credentials: {e}")))?;
            let uid = creds
                .unix_user_id()
                .ok_or_else(|| Error::access_denied("the peer's uid is unknown"))?;
            Ok(Caller { uid, name: None })
        }
    }
}

impl Authority {
    /// Checks that `caller` may do `action`; `Ok` or an AccessDenied /
    /// InteractiveAuthorizationRequired error naming the action.
    pub async fn check(
        &self,
        conn: &Connection,
        hdr: &Header<'_>,
        caller: &Caller,
        action: Action,
    ) -> Result<()> {
        let denied = || {
            Error::access_denied(format!(
                "not authorized for {} (uid {}); an administrator can grant it with a polkit rule, see polkit/50-osbuild.rules.example",
                action.id(),
                caller.uid
            ))
        };
        match self {
            Authority::Fixed(decide) => {
                if decide(caller.uid, action) {
                    Ok(())
                } else {
                    Err(denied())
                }
            }
            Authority::Polkit => {
                if caller.uid == 0 {
                    return Ok(());
                }
                if caller.name.is_none() {
                    return Err(denied());
                }
                let subject = Subject::new_for_message_header(hdr)
                    .map_err(|e| Error::Failed(format!("polkit subject: {e}")))?;
                let mut flags = CheckAuthorizationFlags::empty();
                if hdr
                    .primary()
                    .flags()
                    .contains(Flags::ALLOW_INTERACTIVE_AUTH)
                {
                    flags |= CheckAuthorizationFlags::ALLOW_USER_INTERACTION;
                }
                let reply = async {
                    AuthorityProxy::new(conn)
                        .await?
                        .check_authorization(&subject, action.id(), &HashMap::new(), flags, "")
                        .await
                }
                .await;
                match reply {
                    Ok(r) if r.is_authorized => Ok(()),
                    Ok(r) if r.is_challenge => Err(Error::interactive_required(format!(
                        "{} needs authentication (uid {}); call again allowing interactive authorization, or ask an administrator for a polkit rule",
                        action.id(),
                        caller.uid
                    ))),
                    Ok(_) => Err(denied()),
                    Err(e) => {
                        tracing::warn!("polkit check for {} failed: {e}; only root is allowed without polkit", action.id());
                        Err(denied())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped policy without its comments.
    fn policy() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/polkit/org.osbuild.builder1.policy"
        );
        let mut text = std::fs::read_to_string(path).unwrap();
        while let Some(open) = text.find("<!--") {
            let close = text[open..].find("-->").expect("comment closed") + open + 3;
            text.replace_range(open..close, "");
        }
        text
    }

    /// The text inside the one `<tag ...>...</tag>` of `doc` whose start tag has `attrs`.
    fn element<'a>(doc: &'a str, tag: &str, attrs: &str) -> &'a str {
        let start = format!("<{tag}{attrs}>");
        let found: Vec<_> = doc.match_indices(&start).collect();
        assert_eq!(found.len(), 1, "{start} appears {} times", found.len());
        let inner = &doc[found[0].0 + start.len()..];
        &inner[..inner.find(&format!("</{tag}>")).expect("element closed")]
    }

    #[test]
    fn granting_build_stays_an_administrator_decision() {
        let doc = policy();
        // An action implying build would grant it under its own, maybe weaker, defaults.
        assert!(!doc.contains("org.freedesktop.policykit.imply"), "{doc}");
        for action in [Action::Build, Action::CancelOtherUser, Action::ManageStore] {
            let attrs = format!(" id=\"{}\"", action.id());
            let defaults = element(element(&doc, "action", &attrs), "defaults", "");
            for who in ["allow_any", "allow_inactive", "allow_active"] {
                let value = element(defaults, who, "").trim();
                assert!(
                    ["auth_admin", "auth_admin_keep"].contains(&value),
                    "{}: {who} is {value:?}; granting build grants root",
                    action.id()
                );
            }
        }
        let build = element(&doc, "action", " id=\"org.osbuild.builder1.build\"");
        assert!(
            element(build, "description", "").contains("grants root"),
            "{build}"
        );
    }
}
