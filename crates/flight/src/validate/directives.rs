//! Directives: each action's own fields and the rules between them (a `wait` has exactly one
//! of `until`/`for`, `sha256` with `url`, a streamed `instrument` watches only event topics).

use super::{check_url, feature_id_problem, Scope, V};
use crate::diagnostic::quote;
use crate::reader::{type_name, Obj};
use crate::spec::*;
use crate::time::parse_dateish;
use serde_json::Value;

impl V {
    pub(super) fn wait(&mut self, o: &Obj) -> Option<Wait> {
        let until = o
            .map
            .get("until")
            .map(|x| parse_dateish(x).map_err(|e| self.r.error(&o.path.key("until"), e)));
        let for_ = o
            .map
            .get("for")
            .map(|x| self.duration(x, &o.path.key("for")).ok_or(()));
        match (until, for_) {
            (None, None) => {
                self.r.error(
                    &o.path,
                    "a `wait` needs `until` (a date) or `for` (a duration like \"7d\")",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.r
                    .error(&o.path, "a `wait` takes `until` or `for`, not both");
                None
            }
            (Some(u), None) => Some(Wait {
                until: Some(u.ok()?),
                for_: None,
            }),
            (None, Some(f)) => Some(Wait {
                until: None,
                for_: Some(f.ok()?),
            }),
        }
    }

    pub(super) fn ping(&mut self, o: &Obj, scope: Scope) -> Option<Ping> {
        let url = self.r.req_string(
            o,
            "url",
            "the address to request (http or https; a template)",
        );
        if let Some(u) = &url {
            self.url_template(u, &o.path.key("url"), scope, &["https", "http"]);
        }
        let method = self.r.opt_enum(
            o,
            "method",
            &[
                ("GET", Method::Get),
                ("POST", Method::Post),
                ("PUT", Method::Put),
            ],
            Method::Get,
        );
        let data = o.map.get("data").cloned();
        if let Some(d) = &data {
            if method == Some(Method::Get) {
                self.r.error(
                    &o.path.key("data"),
                    "a GET request has no body: use \"method\": \"POST\" or \"PUT\" to send `data`",
                );
            }
            self.json_templates(d, &o.path.key("data"), scope);
        }
        Some(Ping {
            url: url?,
            method: method?,
            data,
        })
    }

    pub(super) fn external(&mut self, o: &Obj, scope: Scope) -> Option<External> {
        let kind = self.r.req_enum(
            o,
            "type",
            &[
                ("survey", PromptType::Survey),
                ("message", PromptType::Message),
            ],
            "say whether this is a \"survey\" or a \"message\"",
        );
        let title = self.r.req_string(
            o,
            "title",
            "the prompt's title, shown in the message center",
        );
        if let Some(t) = &title {
            self.template(t, &o.path.key("title"), scope);
        }
        let text = self.r.opt_string(o, "text").unwrap_or_default();
        self.template(&text, &o.path.key("text"), scope);
        let url = self.r.opt_string(o, "url");
        if let Some(u) = &url {
            self.url_template(u, &o.path.key("url"), scope, &["https", "http"]);
        } else if kind == Some(PromptType::Survey) {
            self.r.error(
                &o.path,
                "missing field `url`: a survey needs the address of its questions",
            );
        }
        let wait_for = match o.map.get("waitFor") {
            None => Some(None),
            Some(w) => self
                .r
                .enum_value(w, &o.path.key("waitFor"), &[("ok", WaitFor::Ok)])
                .map(Some),
        };
        let expires = match o.map.get("expires") {
            None => Some(None),
            Some(x) => self.duration(x, &o.path.key("expires")).map(Some),
        };
        Some(External {
            kind: kind?,
            title: title?,
            text,
            url,
            wait_for: wait_for?,
            expires: expires?,
        })
    }

    pub(super) fn addon(&mut self, o: &Obj, scope: Scope) -> Option<Addon> {
        let op = self.r.req_enum(
            o,
            "do",
            &[
                ("install", AddonOp::Install),
                ("uninstall", AddonOp::Uninstall),
                ("ensure", AddonOp::Ensure),
            ],
            "say what to do with the add-on: \"install\", \"uninstall\" or \"ensure\"",
        );
        let id = self
            .r
            .req_string(o, "id", "the add-on's id, like \"helper@example.com\"");
        if let Some(problem) = id.as_deref().and_then(addon_id_problem) {
            let i = id.as_deref().unwrap_or_default();
            self.r.error(
                &o.path.key("id"),
                format!("{} is not a valid add-on id: {problem}", quote(i)),
            );
        }
        let url = self.r.opt_string(o, "url");
        let path = self.r.opt_string(o, "path");
        let sha256 = self.r.opt_string(o, "sha256");
        if let Some(u) = &url {
            if let Err(e) = check_url(u, &["https", "http", "file"]) {
                self.r.error(&o.path.key("url"), e);
            }
            if sha256.is_none() && op != Some(AddonOp::Uninstall) {
                self.r.error(&o.path, "missing field `sha256`: an add-on downloaded from `url` needs the SHA-256 of its package, so the pilot can check it before installing");
            }
        }
        if let Some(p) = &path {
            let windows_drive = p.len() > 2 && p.as_bytes()[1] == b':';
            if !(p.starts_with('/') || windows_drive) {
                self.r.error(
                    &o.path.key("path"),
                    "`path` must be absolute, like /opt/addons/helper.zip",
                );
            }
        }
        if let Some(h) = &sha256 {
            if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                self.r.error(
                    &o.path.key("sha256"),
                    "`sha256` must be 64 hex digits (the SHA-256 of the package)",
                );
            }
        }
        match op {
            Some(AddonOp::Uninstall) => {
                for k in ["url", "path", "sha256"] {
                    if o.map.contains_key(k) {
                        self.r.error(
                            &o.path.key(k),
                            format!("`{k}` has no meaning for \"do\": \"uninstall\""),
                        );
                    }
                }
            }
            Some(_) => match (&url, &path) {
                (None, None) => self.r.error(
                    &o.path,
                    "an add-on to install needs its package: give `url` (with `sha256`) or `path`",
                ),
                (Some(_), Some(_)) => self.r.error(&o.path, "give `url` or `path`, not both"),
                _ => {}
            },
            None => {}
        }
        let permission = self.r.opt_enum(
            o,
            "permission",
            &[
                ("none", Permission::None),
                ("notify", Permission::Notify),
                ("warn", Permission::Warn),
            ],
            Permission::Notify,
        );
        let msg = self.r.opt_string(o, "msg");
        if let Some(m) = &msg {
            self.template(m, &o.path.key("msg"), scope);
        }
        Some(Addon {
            op: op?,
            id: id?,
            url,
            path,
            sha256: sha256.map(|s| s.to_ascii_lowercase()),
            permission: permission?,
            msg,
        })
    }

    pub(super) fn feature(&mut self, o: &Obj) -> Option<Feature> {
        let id = self
            .r
            .req_string(o, "id", "the feature's id, like \"search.newbar\"");
        if let Some(problem) = id.as_deref().and_then(feature_id_problem) {
            self.r.error(&o.path.key("id"), problem);
        }
        let value = match self
            .r
            .required(o, "value", "the feature's value, a JSON object")
        {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                self.r.error(
                    &o.path.key("value"),
                    format!(
                        "expected the feature's value (an object), found {}",
                        type_name(other)
                    ),
                );
                None
            }
            None => None,
        };
        Some(Feature {
            id: id?,
            value: value?,
        })
    }

    pub(super) fn observe(&mut self, o: &Obj, scope: Scope) -> Option<Observe> {
        let topic = self.r.req_string(o, "topic", "the event topic to wait for");
        if let Some(t) = &topic {
            if t.is_empty() {
                self.r.error(&o.path.key("topic"), "`topic` is empty");
            }
            self.template(t, &o.path.key("topic"), scope);
        }
        let subject = self.r.opt_string(o, "subject");
        if let Some(s) = &subject {
            self.template(s, &o.path.key("subject"), scope);
        }
        let count = match o.map.get("count") {
            None => Some(1),
            Some(c) => self.r.integer(c, &o.path.key("count"), 1),
        };
        Some(Observe {
            topic: topic?,
            subject,
            count: count?,
        })
    }

    pub(super) fn notify(&mut self, o: &Obj, scope: Scope) -> Option<Notify> {
        let topic = self
            .r
            .req_string(o, "topic", "the topic the application listens for");
        if let Some(t) = &topic {
            if t.is_empty() {
                self.r.error(&o.path.key("topic"), "`topic` is empty");
            }
            self.template(t, &o.path.key("topic"), scope);
        }
        let subject = self.r.opt_string(o, "subject");
        if let Some(s) = &subject {
            self.template(s, &o.path.key("subject"), scope);
        }
        let data = o.map.get("data").cloned();
        if let Some(d) = &data {
            self.json_templates(d, &o.path.key("data"), scope);
        }
        Some(Notify {
            topic: topic?,
            subject,
            data,
        })
    }

    pub(super) fn instrument(&mut self, o: &Obj, scope: Scope) -> Option<Instrument> {
        let watch = self
            .r
            .required(o, "watch", "the list of event topics to record")
            .and_then(|w| self.r.string_list(w, &o.path.key("watch")));
        if watch.as_ref().is_some_and(|w| w.is_empty()) {
            self.r.error(
                &o.path.key("watch"),
                "`watch` is empty: list the topics to record",
            );
        }
        let for_ = self
            .r
            .required(o, "for", "how long to record, like \"7d\"")
            .and_then(|f| self.duration(f, &o.path.key("for")));
        let has_upload = o.map.contains_key("upload");
        if let (false, Some(w)) = (has_upload, &watch) {
            // Streamed to the tower: only topics its events endpoint takes (docs/api.md).
            for (i, t) in w.iter().enumerate() {
                if !crate::event::is_topic(t) {
                    self.r.error(
                        &o.path.key("watch").index(i),
                        format!(
                            "{} is not an event topic: a recording streamed to the tower (no `upload`) watches topics of 1 to {} lowercase letters, digits, `.`, `-` and `_`",
                            quote(t),
                            crate::event::MAX_TOPIC_LENGTH
                        ),
                    );
                }
            }
        }
        let upload = if has_upload {
            self.r
                .req_string(o, "upload", "the address the recording is sent to (https)")
        } else {
            None
        };
        if let Some(u) = &upload {
            self.url_template(u, &o.path.key("upload"), scope, &["https", "http"]);
        }
        let upload_every = o.map.get("uploadEvery").map(|v| {
            let path = o.path.key("uploadEvery");
            if has_upload {
                self.r.error(
                    &path,
                    "`uploadEvery` applies only to a recording streamed to the tower: \
                     remove it, or remove `upload`",
                );
                None
            } else {
                self.duration(v, &path)
            }
        });
        if has_upload && upload.is_none() {
            return None;
        }
        Some(Instrument {
            watch: watch?,
            for_: for_?,
            upload,
            upload_every: match upload_every {
                None => None,
                Some(d) => Some(d?),
            },
        })
    }
}
