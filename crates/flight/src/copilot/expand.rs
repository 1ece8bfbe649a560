//! Expansion: a [`Copilot`] study as the ordinary flight it stands for. Pure and
//! deterministic (features in id order, everything else in document order), so the same
//! document always gives the same flight, byte for byte.

use super::{
    Copilot, CopilotArm, Survey, DEFAULT_SURVEY_EXPIRES_MS, DEFAULT_UPLOAD_EVERY_MS, FUSE_MARGIN_MS,
};
use crate::spec::{
    Arm, Directive, Entry, External, Feature, Flight, Instrument, PromptType, RandomDeploy, WaitFor,
};
use crate::time::DurationSpec;
use std::collections::BTreeMap;

pub(super) fn expand(c: &Copilot) -> Flight {
    Flight {
        studyname: c.studyname.clone(),
        author: c.author.clone(),
        description: c.description.clone(),
        infourl: c.infourl.clone(),
        version: None,
        filter: c.filter.clone(),
        random_deploy: random_deploy(c),
        arms: c
            .arms
            .iter()
            .map(|a| Arm {
                name: a.name.clone(),
                ratio: a.ratio,
                variables: BTreeMap::new(),
                flightplan: Some(plan(c, a)),
            })
            .collect(),
        // Every arm has its own plan (its features differ), so the flight needs none.
        flightplan: Vec::new(),
        end_by: c.end_by.clone(),
        fuse: Some(DurationSpec::from_millis_text(fuse_ms(c))),
        kill: false,
        variables: BTreeMap::new(),
    }
}

/// `sample` below 1 is a `randomDeploy` over `[0, sample)` keyed by the studyname; a sample
/// of 1 (the default) takes everyone who passes the filter, which a flight says by having
/// no `randomDeploy` at all.
fn random_deploy(c: &Copilot) -> Option<RandomDeploy> {
    let s = c.sample.filter(|s| *s < 1.0)?;
    Some(RandomDeploy {
        keyname: Some(c.studyname.clone()),
        ge: 0.0,
        lt: s,
    })
}

/// One arm's plan: the pre-survey, the arm's features, the recording, the post-survey.
fn plan(c: &Copilot, arm: &CopilotArm) -> Vec<Entry> {
    let mut plan = Vec::new();
    if let Some(s) = &c.surveys.before {
        plan.push(survey(s));
    }
    for (id, value) in &arm.features {
        plan.push(Entry::Directive(Directive::Feature(Feature {
            id: id.clone(),
            value: value.clone(),
        })));
    }
    plan.push(Entry::Directive(Directive::Instrument(Instrument {
        watch: c.watch.clone(),
        for_: c.duration.clone(),
        upload: None,
        upload_every: Some(upload_every(c)),
    })));
    if let Some(s) = &c.surveys.after {
        plan.push(survey(s));
    }
    plan
}

/// A survey waits for the person's answer (so it stays in the message center), for at most
/// its `expires`.
fn survey(s: &Survey) -> Entry {
    Entry::Directive(Directive::External(External {
        kind: PromptType::Survey,
        title: s.title.clone(),
        text: s.text.clone(),
        url: Some(s.url.clone()),
        wait_for: Some(WaitFor::Ok),
        expires: Some(survey_expires(s)),
    }))
}

fn survey_expires(s: &Survey) -> DurationSpec {
    s.expires
        .clone()
        .unwrap_or_else(|| DurationSpec::from_millis_text(DEFAULT_SURVEY_EXPIRES_MS))
}

fn upload_every(c: &Copilot) -> DurationSpec {
    match &c.upload_every {
        Some(d) => d.clone(),
        None if c.duration.ms < DEFAULT_UPLOAD_EVERY_MS => c.duration.clone(),
        None => DurationSpec::from_millis_text(DEFAULT_UPLOAD_EVERY_MS),
    }
}

/// The longest a plan can take (both surveys waiting their longest; the recording, and the
/// `uploadEvery` after it that a streamed recording may wait for its last batch), and a
/// margin: past it, the flight is stuck and ends as `timedout`, undone.
fn fuse_ms(c: &Copilot) -> u64 {
    let surveys: u64 = [&c.surveys.before, &c.surveys.after]
        .into_iter()
        .flatten()
        .map(|s| survey_expires(s).ms)
        .fold(0, u64::saturating_add);
    c.duration
        .ms
        .saturating_add(upload_every(c).ms)
        .saturating_add(surveys)
        .saturating_add(FUSE_MARGIN_MS)
}
