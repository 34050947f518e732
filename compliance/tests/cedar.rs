//! Cedar policies and the built-in packs, through the `Policy` trait.

use std::sync::{Arc, Mutex};

use aistd_compliance::cedar::packs;
use aistd_compliance::policy::{
    Audited, Combined, Combining, DecisionSink, Effect, Obligation, conformance,
};
use aistd_compliance::{CedarPolicy, Decision, Error, Policy, Request};
use serde_json::json;

const ENTITIES: &str = r#"[
  {"uid": {"type": "User", "id": "alice"}, "attrs": {"clearance": 3, "purposes": ["fraud-review", "training"]}, "parents": []},
  {"uid": {"type": "User", "id": "bob"}, "attrs": {"clearance": 2, "purposes": ["training"]}, "parents": []},
  {"uid": {"type": "Dataset", "id": "loans"}, "attrs": {"consent": ["training"], "retention_until": 1900000000}, "parents": []},
  {"uid": {"type": "Dataset", "id": "old"}, "attrs": {"consent": ["training"], "retention_until": 1000}, "parents": []},
  {"uid": {"type": "Dataset", "id": "marketing"}, "attrs": {"consent": ["analytics"], "retention_until": 1900000000}, "parents": []},
  {"uid": {"type": "Column", "id": "loans#national_id"}, "attrs": {"allowed_purposes": ["fraud-review"]}, "parents": [{"type": "Dataset", "id": "loans"}]},
  {"uid": {"type": "Column", "id": "loans#email"}, "attrs": {}, "parents": [{"type": "Dataset", "id": "loans"}]},
  {"uid": {"type": "Model", "id": "fair"}, "attrs": {"approved": true, "dp_difference_bp": 400, "eo_difference_bp": 900, "regions": ["eu"]}, "parents": []},
  {"uid": {"type": "Model", "id": "unfair"}, "attrs": {"approved": true, "dp_difference_bp": 2500, "eo_difference_bp": 900, "regions": ["eu"]}, "parents": []}
]"#;

fn all_packs() -> CedarPolicy {
    let text = [packs::DATA_ACCESS, packs::TRAINING, packs::DEPLOYMENT].join("\n");
    CedarPolicy::from_str("aistd packs", &text)
        .expect("parse")
        .validated(packs::SCHEMA)
        .expect("packs validate against the schema")
        .with_entities_json(ENTITIES)
        .expect("entities")
}

fn read(who: &str, column: &str, purpose: &str, level: i64) -> Request {
    Request::new(
        format!("User::\"{who}\""),
        "Action::\"read\"",
        format!("Column::\"{column}\""),
    )
    .with_context(json!({ "purpose": purpose, "level_rank": level }))
}

#[test]
fn data_access_by_level_and_purpose() {
    let p = all_packs();
    let d = p
        .evaluate(&read("bob", "loans#email", "training", 2))
        .expect("eval");
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.determining, ["cleared-for-purpose"]);
    assert_eq!(d.obligations, [Obligation::parse("log:access")]);
    assert!(
        d.explain().contains("cleared for this level"),
        "{}",
        d.explain()
    );
    // bob is not cleared for Restricted, even for a purpose the column allows: default deny.
    let d = p
        .evaluate(&read("bob", "loans#national_id", "fraud-review", 3))
        .expect("eval");
    assert!(!d.allowed() && !d.applicable(), "{d:?}");
    // alice is, but only for the column's allowed purposes: the forbid wins.
    let d = p
        .evaluate(&read("alice", "loans#national_id", "training", 3))
        .expect("eval");
    assert_eq!(
        (d.effect, d.determining.clone()),
        (Effect::Deny, vec!["restricted-purposes".to_string()])
    );
    let d = p
        .evaluate(&read("alice", "loans#national_id", "fraud-review", 3))
        .expect("eval");
    assert!(d.allowed());
    // Internal data: anyone.
    let d = p
        .evaluate(&read("bob", "loans#email", "anything", 1))
        .expect("eval");
    assert_eq!(d.determining, ["open-data"]);
}

#[test]
fn training_purpose_limitation_and_retention() {
    let p = all_packs();
    let train = |ds: &str| {
        Request::new(
            "User::\"bob\"",
            "Action::\"train\"",
            format!("Dataset::\"{ds}\""),
        )
        .with_context(json!({ "now": 1_800_000_000i64 }))
    };
    assert!(p.evaluate(&train("loans")).expect("eval").allowed());
    let d = p.evaluate(&train("old")).expect("eval");
    assert_eq!(d.determining, ["no-training-after-retention"]);
    let d = p.evaluate(&train("marketing")).expect("eval");
    assert!(!d.allowed() && !d.applicable());
}

#[test]
fn deployment_gates() {
    let p = all_packs();
    let deploy = |m: &str, region: &str| {
        Request::new(
            "User::\"alice\"",
            "Action::\"deploy\"",
            format!("Model::\"{m}\""),
        )
        .with_context(json!({ "region": region }))
    };
    let d = p.evaluate(&deploy("fair", "eu")).expect("eval");
    assert!(d.allowed() && d.obligations == [Obligation::parse("log:high")]);
    assert!(!p.evaluate(&deploy("unfair", "eu")).expect("eval").allowed());
    assert_eq!(
        p.evaluate(&deploy("fair", "us")).expect("eval").determining,
        ["deploy-residency"]
    );
}

#[test]
fn conformance_kit_passes() {
    let p = all_packs();
    let requests = vec![
        read("bob", "loans#email", "training", 2),
        read("alice", "loans#national_id", "training", 3),
        read("nobody", "loans#email", "x", 2),
    ];
    conformance::default_deny(&p, &read("carol", "loans#email", "x", 2)).expect("default deny");
    conformance::deterministic(&p, &requests).expect("deterministic");
    conformance::explained(&p, &requests).expect("explained");
    conformance::malformed_is_error(&p).expect("malformed");
}

#[test]
fn bad_input_is_named() {
    // A syntax error: line and column.
    let err = CedarPolicy::from_str(
        "bad.cedar",
        "permit(principal, action, resource)\nwhen { principal. };",
    )
    .expect_err("bad");
    assert!(err.to_string().contains("line 2"), "{err}");
    // A policy about an entity type the schema does not know.
    let err = CedarPolicy::from_str(
        "typo.cedar",
        "permit(principal is Usr, action == Action::\"read\", resource);",
    )
    .expect("parses")
    .validated(packs::SCHEMA)
    .expect_err("unknown type");
    assert!(err.to_string().contains("Usr"), "{err}");
    // Entities that break the schema.
    let err = CedarPolicy::from_str("p", packs::DATA_ACCESS)
        .expect("parse")
        .validated(packs::SCHEMA)
        .expect("valid")
        .with_entities_json(r#"[{"uid": {"type": "User", "id": "x"}, "attrs": {"clearance": "high", "purposes": []}, "parents": []}]"#)
        .expect_err("bad attr");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    // Context that breaks the schema.
    let err = all_packs()
        .evaluate(&read("bob", "loans#email", "training", 2).with_context(json!({ "purpose": 3 })))
        .expect_err("ctx");
    assert!(err.to_string().contains("context"), "{err}");
}

#[derive(Debug, Default)]
struct Memory(Mutex<Vec<(Request, Decision)>>);

impl DecisionSink for Memory {
    fn record(&self, request: &Request, decision: &Decision) -> aistd_compliance::Result<()> {
        self.0
            .lock()
            .expect("lock")
            .push((request.clone(), decision.clone()));
        Ok(())
    }
}

#[test]
fn composition_and_auditing() {
    let allow_all = CedarPolicy::from_str(
        "allow-all",
        "@id(\"all\") permit(principal, action, resource);",
    )
    .expect("parse");
    let deny_deploy = CedarPolicy::from_str(
        "no-deploy",
        "@id(\"nd\") forbid(principal, action == Action::\"deploy\", resource);",
    )
    .expect("parse");
    let r = Request::new("User::\"a\"", "Action::\"deploy\"", "Model::\"m\"");
    let deny = Combined::new(
        "deny-overrides",
        Combining::DenyOverrides,
        vec![Box::new(allow_all.clone()), Box::new(deny_deploy.clone())],
    );
    assert_eq!(deny.evaluate(&r).expect("eval").determining, ["nd"]);
    let first = Combined::new(
        "first",
        Combining::FirstApplicable,
        vec![Box::new(allow_all), Box::new(deny_deploy)],
    );
    let d = first.evaluate(&r).expect("eval");
    assert!(d.allowed() && d.decided_by.contains("allow-all"));
    let sink = Arc::new(Memory::default());
    let audited = Audited::new(deny, sink.clone());
    audited.evaluate(&r).expect("eval");
    audited
        .evaluate(&Request::new(
            "User::\"a\"",
            "Action::\"read\"",
            "Model::\"m\"",
        ))
        .expect("eval");
    let log = sink.0.lock().expect("lock");
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].1.effect, log[1].1.effect),
        (Effect::Deny, Effect::Allow)
    );
}

/// Slicing (scope and `context.attr == literal` indexing) gives exactly Cedar's decision on the
/// full policy set, over many requests that hit, miss and confuse the index.
#[test]
fn sliced_decisions_equal_full_evaluation() {
    let mut text = [packs::DATA_ACCESS, packs::TRAINING, packs::DEPLOYMENT].join("\n");
    for t in 0..30 {
        text.push_str(&format!(
            "@id(\"team-{t}\") permit (principal is User, action == Action::\"read\", resource is Column) when {{ context.purpose == \"team-{t}\" && principal.clearance >= 1 }};\n"
        ));
        text.push_str(&format!(
            "@id(\"lvl-{t}\") forbid (principal, action, resource) when {{ {} == context.level_rank && context.purpose == \"team-{}\" }};\n",
            t % 4,
            t + 1
        ));
    }
    text.push_str("@id(\"any\") permit (principal == User::\"alice\", action in [Action::\"read\", Action::\"train\"], resource) unless { context.purpose == \"team-3\" };\n");
    let p = CedarPolicy::from_str("sliced", &text)
        .expect("parse")
        .with_entities_json(ENTITIES)
        .expect("entities");
    let mut n = 0;
    for who in ["alice", "bob", "nobody"] {
        for (action, resource) in [
            ("read", "Column::\"loans#email\""),
            ("read", "Column::\"loans#national_id\""),
            ("train", "Dataset::\"loans\""),
            ("deploy", "Model::\"fair\""),
        ] {
            for purpose in [
                json!("training"),
                json!("team-3"),
                json!("team-4"),
                json!(7),
                json!(null),
            ] {
                for level in 0..4 {
                    let mut ctx = json!({ "purpose": purpose, "level_rank": level, "now": 1_700_000_000, "region": "eu" });
                    if purpose.is_null() {
                        ctx.as_object_mut().expect("object").remove("purpose");
                    }
                    let r = Request::new(
                        format!("User::\"{who}\""),
                        format!("Action::\"{action}\""),
                        resource,
                    )
                    .with_context(ctx);
                    let (a, b) = (
                        p.evaluate(&r).expect("sliced"),
                        p.evaluate_unsliced(&r).expect("full"),
                    );
                    assert_eq!(
                        (a.effect, &a.determining, &a.reasons, &a.obligations),
                        (b.effect, &b.determining, &b.reasons, &b.obligations),
                        "{r:?}"
                    );
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 240);
}

/// With a schema, the fast context path and the shape cache give Cedar's decisions and errors.
#[test]
fn schema_checked_requests_agree_with_cedars_own_conversion() {
    let p = all_packs();
    let cases = [
        read("bob", "loans#email", "training", 2),
        read("bob", "loans#email", "training", 2),
        read("alice", "loans#national_id", "fraud-review", 3),
        read("bob", "loans#national_id", "fraud-review", 3),
        Request::new(
            "User::\"bob\"",
            "Action::\"read\"",
            "Column::\"loans#email\"",
        )
        .with_context(json!({ "purpose": "training", "level_rank": "high" })),
        Request::new(
            "User::\"bob\"",
            "Action::\"read\"",
            "Column::\"loans#email\"",
        )
        .with_context(json!({ "purpose": "training" })),
        Request::new("User::\"bob\"", "Action::\"read\"", "Dataset::\"loans\"")
            .with_context(json!({ "purpose": "training", "level_rank": 1 })),
        Request::new("User::\"bob\"", "Action::\"train\"", "Dataset::\"loans\"")
            .with_context(json!({ "now": 1_700_000_000 })),
        Request::new("User::\"bob\"", "Action::\"train\"", "Dataset::\"old\"")
            .with_context(json!({ "now": 1_700_000_000 })),
    ];
    for r in cases.iter().chain(cases.iter()) {
        match (p.evaluate(r), p.evaluate_unsliced(r)) {
            (Ok(a), Ok(b)) => assert_eq!(
                (a.effect, &a.determining, &a.reasons),
                (b.effect, &b.determining, &b.reasons),
                "{r:?}"
            ),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{r:?}"),
            (a, b) => panic!("{r:?}: fast {a:?} vs full {b:?}"),
        }
    }
    // The wrongly typed context is an error (from Cedar's schema check), not a silent deny.
    assert!(p.evaluate(&cases[4]).is_err());
}
