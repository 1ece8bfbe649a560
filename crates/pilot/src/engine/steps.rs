//! Walking a flight's plan, and the bookkeeping of each entry: its journaled state (a
//! [`Node`] per path, "3", "3.1"), intents, resolutions, prompts, templates.

use super::{directives, report, Pilot};
use crate::effect::Effect;
use crate::journal::{Also, EffectRow, FlightRow, Line, NewPrompt};
use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use testpilot_flight::report::Status;
use testpilot_flight::spec::{Directive, Entry};
use testpilot_flight::template::{render, render_json, Escape};
use testpilot_flight::{Flight, Timestamp};

/// How a plan entry stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    True,
    False(String),
    Failed(String),
    /// Not resolved yet; due again at that time (or when something outside happens).
    Pending(Option<Timestamp>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Res {
    True,
    False,
    Failed,
}

/// The journaled state of one plan entry (a directive or a parallel list), by path ("3", "3.1").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub res: Option<Res>,
    pub started: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// The effect under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<i64>,
    /// Events up to this id happened before the step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Node {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One flight being advanced.
pub(super) struct Ctx {
    pub name: String,
    pub flight: Arc<Flight>,
    pub row: FlightRow,
    pub nodes: BTreeMap<String, Node>,
    pub now: Timestamp,
}

impl Ctx {
    /// The host's key of an effect of this flight.
    pub fn key(&self, effect: i64) -> String {
        format!("{}.{effect}", self.name)
    }

    /// The step's current state (as the last write left it).
    pub fn node(&self, path: &str) -> Node {
        self.nodes.get(path).cloned().unwrap_or_default()
    }
}

impl Pilot {
    pub(super) fn context(
        &self,
        flight: Arc<Flight>,
        row: FlightRow,
        now: Timestamp,
    ) -> Result<Ctx, Error> {
        let nodes = self
            .journal
            .node_texts(&row.studyname)?
            .into_iter()
            .filter_map(|(p, t)| serde_json::from_str::<Node>(&t).ok().map(|n| (p, n)))
            .collect();
        Ok(Ctx {
            name: row.studyname.clone(),
            flight,
            row,
            nodes,
            now,
        })
    }

    /// The plan entries of a flight that have started and not resolved yet, by path ("3",
    /// "3.1"): the steps under way, e.g. an `observe` still waiting for its events.
    pub fn steps_under_way(&self, flight: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .journal
            .node_texts(flight)?
            .into_iter()
            .filter(|(_, t)| serde_json::from_str::<Node>(t).is_ok_and(|n| n.res.is_none()))
            .map(|(p, _)| p)
            .collect())
    }

    /// Top-level entry `next - 1` resolved true: the flight moves on (and says so to the tower
    /// unless that was the last one, which ends it).
    pub(super) fn reach_step(&mut self, cx: &mut Ctx, next: u64, len: usize) -> Result<(), Error> {
        if (next as usize) < len {
            let r = self.report_of(cx, Status::Running, next, None);
            self.journal.reach_step(&cx.name, next, &r)?;
        }
        cx.row.step = next;
        Ok(())
    }

    pub(super) fn report_of(
        &self,
        cx: &Ctx,
        status: Status,
        step: u64,
        detail: Option<Value>,
    ) -> testpilot_flight::report::Report {
        let arm = cx.row.arm.as_deref();
        report(&cx.name, cx.row.version, arm, status, step, cx.now, detail)
    }

    pub(super) fn advance_entry(
        &mut self,
        cx: &mut Ctx,
        entry: &Entry,
        path: &str,
    ) -> Result<Outcome, Error> {
        match entry {
            Entry::Directive(d) => self.advance_directive(cx, d, path),
            Entry::Parallel(list) => {
                let mut wake = None;
                let mut all = true;
                for (i, e) in list.iter().enumerate() {
                    match self.advance_entry(cx, e, &format!("{path}.{i}"))? {
                        Outcome::True => {}
                        Outcome::Pending(w) => {
                            all = false;
                            wake = super::min_wake(wake, w);
                        }
                        // One branch false or failed decides the list; the flight ends and
                        // the others' effects are undone with everything else.
                        other => return Ok(other),
                    }
                }
                Ok(if all {
                    Outcome::True
                } else {
                    Outcome::Pending(wake)
                })
            }
        }
    }

    fn advance_directive(
        &mut self,
        cx: &mut Ctx,
        d: &Directive,
        path: &str,
    ) -> Result<Outcome, Error> {
        let node = match cx.nodes.get(path) {
            Some(n) => n.clone(),
            None => {
                let n = Node {
                    started: cx.now.0,
                    mark: Some(self.journal.last_event_id()?),
                    ..Node::default()
                };
                let line = Line::new("begin", format!("step {path}: {}", d.action()));
                self.save_node(cx, path, n.clone(), "start step", Also::Nothing, Some(line))?;
                n
            }
        };
        match node.res {
            Some(Res::True) => Ok(Outcome::True),
            Some(Res::False) => Ok(Outcome::False(node.why.unwrap_or_default())),
            Some(Res::Failed) => Ok(Outcome::Failed(node.why.unwrap_or_default())),
            None => directives::run(self, cx, d, path, node),
        }
    }

    /// The template variables of a flight.
    fn lookup<'a>(&'a self, cx: &'a Ctx) -> impl Fn(&str) -> Option<String> + 'a {
        move |name: &str| {
            let arm = cx
                .row
                .arm
                .as_deref()
                .and_then(|a| cx.flight.arms.iter().find(|x| x.name == a));
            if let Some(v) = arm.and_then(|a| a.variables.get(name)) {
                return Some(v.render());
            }
            if let Some(v) = cx.flight.variables.get(name) {
                return Some(v.render());
            }
            match name {
                "studyname" => Some(cx.name.clone()),
                "version" => Some(cx.row.version.to_string()),
                "arm" => Some(cx.row.arm.clone().unwrap_or_default()),
                "starttime" => cx.row.started_at.map(|t| t.to_rfc3339()),
                "status" => Some(
                    cx.row
                        .status_line
                        .clone()
                        .unwrap_or_else(|| cx.row.status.clone()),
                ),
                "step" => Some(cx.row.step.to_string()),
                "personid" => Some(self.person.personid().to_string()),
                "os" | "channel" | "locale" | "appversion" => self.person.text(name),
                other => other
                    .strip_prefix("person.")
                    .and_then(|k| self.person.text(k)),
            }
        }
    }

    /// Renders a template; variables without a value render empty and are noted in the log.
    pub(super) fn render(
        &mut self,
        cx: &Ctx,
        template: &str,
        escape: Escape,
    ) -> Result<String, Error> {
        let r = render(template, &self.lookup(cx), escape);
        self.note_missing(cx, &r.missing)?;
        Ok(r.text)
    }

    pub(super) fn render_opt(
        &mut self,
        cx: &Ctx,
        template: Option<&String>,
        escape: Escape,
    ) -> Result<Option<String>, Error> {
        template.map(|t| self.render(cx, t, escape)).transpose()
    }

    pub(super) fn render_data(
        &mut self,
        cx: &Ctx,
        data: Option<&Value>,
    ) -> Result<Option<Value>, Error> {
        let Some(data) = data else {
            return Ok(None);
        };
        let mut missing = Vec::new();
        let v = render_json(data, &self.lookup(cx), &mut missing);
        self.note_missing(cx, &missing)?;
        Ok(Some(v))
    }

    fn note_missing(&mut self, cx: &Ctx, missing: &[String]) -> Result<(), Error> {
        if missing.is_empty() {
            return Ok(());
        }
        let names = missing
            .iter()
            .map(|m| format!("{{{{{m}}}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.journal.note(
            &cx.name,
            cx.now,
            "template",
            &format!("no value for {names} in this person's context: rendered empty"),
            None,
        )
    }

    /// Writes a step's state, with what else it settles and a timeline line, in one write.
    pub(super) fn save_node(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        what: &str,
        also: Also,
        line: Option<Line>,
    ) -> Result<(), Error> {
        let (name, now) = (cx.name.as_str(), cx.now);
        self.journal
            .save_node(what, name, path, &node.text(), also, line.as_ref(), now)?;
        cx.nodes.insert(path.to_string(), node);
        Ok(())
    }

    /// Resolves a directive, with a timeline line, in one write.
    pub(super) fn resolve(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        mut node: Node,
        res: Res,
        what: &str,
        also: Also,
    ) -> Result<Outcome, Error> {
        node.res = Some(res);
        node.why = Some(what.to_string());
        let kind = match res {
            Res::True => "step",
            Res::False => "declined",
            Res::Failed => "failed",
        };
        let line = Line::new(kind, format!("step {path}: {what}"));
        self.save_node(cx, path, node, "resolve", also, Some(line))?;
        Ok(match res {
            Res::True => Outcome::True,
            Res::False => Outcome::False(what.to_string()),
            Res::Failed => Outcome::Failed(what.to_string()),
        })
    }

    /// Journals an effect's intent, and points the step at it, in one write before the effect
    /// happens. `line` adds a timeline line in the same write (a request being sent).
    pub(super) fn intent(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        effect: &Effect,
        summary: &str,
        line: Option<Line>,
    ) -> Result<(i64, Node), Error> {
        let (name, now) = (cx.name.clone(), cx.now);
        let with = |id: i64| Node {
            effect: Some(id),
            ..node.clone()
        };
        let id = self.journal.intent(
            &name,
            path,
            effect,
            summary,
            now,
            |id| with(id).text(),
            line.as_ref(),
        )?;
        let node = with(id);
        cx.nodes.insert(path.to_string(), node.clone());
        Ok((id, node))
    }

    /// The effect of a step that was journaled but not finished (after a crash).
    pub(super) fn pending_effect(&self, node: &Node) -> Result<Option<EffectRow>, Error> {
        match node.effect {
            Some(id) => Ok(self
                .journal
                .effect(id)?
                .filter(|e| e.phase == crate::journal::phase::INTENT)),
            None => Ok(None),
        }
    }

    /// Puts a prompt in the message center (with the step's state, in one write).
    pub(super) fn create_prompt(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        p: NewPrompt,
    ) -> Result<Node, Error> {
        let (name, now) = (cx.name.clone(), cx.now);
        let with = |id: i64| Node {
            prompt: Some(id),
            ..node.clone()
        };
        let id = self
            .journal
            .add_prompt(&name, path, &p, now, |id| with(id).text())?;
        let node = with(id);
        cx.nodes.insert(path.to_string(), node.clone());
        Ok(node)
    }
}
