//! `aistd train` and `aistd evaluate`.

mod common;

use common::{aistd, ok};

/// The JSON `aistd` prints for `args`, after asserting it succeeded.
fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(&aistd(args))).expect("json")
}

/// Asserts `aistd args` fails with `want` in its error output.
fn refused(args: &[&str], want: &str) {
    let out = aistd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(want),
        "{args:?}: {err}"
    );
}

#[test]
fn train_then_evaluate_a_string_target_with_a_held_out_split() {
    let dir = tempfile::tempdir().expect("dir");
    // Two informative features and a noise column; the class is a string.
    let mut csv = String::from("a,b,noise,label\n");
    let mut s = 1u64;
    for i in 0..400 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (s >> 33) as f64 / (1u64 << 31) as f64;
        let (a, b) = ((i % 20) as f64 / 10.0 - 1.0, u * 2.0 - 1.0);
        let label = if a + 0.5 * b > 0.0 { "yes" } else { "no" };
        csv.push_str(&format!("{a},{b},{},{label}\n", (i * 7 % 13) as f64));
    }
    let data = dir.path().join("d.csv");
    std::fs::write(&data, csv).expect("write");
    let model = dir.path().join("model");
    let d = data.to_str().expect("utf-8");
    let m = model.to_str().expect("utf-8");
    let v: serde_json::Value = json(&[
        "train",
        "--data",
        d,
        "--target",
        "label",
        "--drop",
        "noise",
        "--model",
        "logreg",
        "--epochs",
        "60",
        "--lr",
        "0.05",
        "--validation-fraction",
        "0.2",
        "--early-stopping",
        "5",
        "--seed",
        "3",
        "--out",
        m,
        "--json",
    ]);
    assert!(v["test"]["accuracy"].as_f64().expect("acc") > 0.9, "{v}");
    assert_eq!(v["rows"]["test"], 100);
    assert_eq!(v["rows"]["validation"], 60);
    assert!(
        v["validation"]["accuracy"].as_f64().expect("validation") > 0.8,
        "{v}"
    );
    assert!(!v["history"].as_array().expect("history").is_empty());
    assert!(model.join("model.safetensors").exists() && model.join("manifest.json").exists());
    // The manifest records the config, the data's fingerprint and the test metrics.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let record = &manifest["training"];
    assert_eq!(record["metrics"]["test_accuracy"], v["test"]["accuracy"]);
    assert_eq!(record["config"]["early_stopping"], 5);
    assert_eq!(record["rows"], 240);
    assert_eq!(record["dataset_sha256"].as_str().map(str::len), Some(64));
    // Evaluation reads the columns the model needs by name (the dropped one is ignored)…
    let e: serde_json::Value = json(&[
        "evaluate", "--model", m, "--data", d, "--target", "label", "--json",
    ]);
    assert!(
        e["accuracy"].as_f64().expect("acc") > 0.9 && e["roc_auc"].as_f64().is_some(),
        "{e}"
    );
    // …with the model's own target by default, and refuses another.
    let own: serde_json::Value = json(&["evaluate", "--model", m, "--data", d, "--json"]);
    assert_eq!(own["accuracy"], e["accuracy"]);
    refused(
        &["evaluate", "--model", m, "--data", d, "--target", "noise"],
        "the model predicts `label`",
    );
    // …and names a missing one.
    let mut sub = String::from("a,label\n");
    for line in std::fs::read_to_string(&data)
        .expect("read")
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        sub.push_str(&format!("{},{}\n", f[0], f[3]));
    }
    let sub_path = dir.path().join("sub.csv");
    std::fs::write(&sub_path, sub).expect("write");
    let out = aistd(&[
        "evaluate",
        "--model",
        m,
        "--data",
        sub_path.to_str().expect("utf-8"),
        "--target",
        "label",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"b\"") && err.contains("not in the data"),
        "{err}"
    );
    // Bad options are refused.
    for bad in [
        vec!["--optimizer", "lbfgs"],
        vec!["--backend", "jax"],
        vec!["--early-stopping", "3", "--validation-fraction", "0"],
    ] {
        let mut args = vec!["train", "--data", d, "--target", "label", "--out", m];
        args.extend(bad.iter());
        let out = aistd(&args);
        assert!(!out.status.success(), "{bad:?}");
    }
    // Early stopping alone validates on 20% of the training part.
    let v = json(&[
        "train",
        "--data",
        d,
        "--target",
        "label",
        "--model",
        "logreg",
        "--epochs",
        "30",
        "--early-stopping",
        "2",
        "--out",
        m,
        "--json",
    ]);
    assert_eq!(v["rows"]["validation"], 60, "{v}");
}

#[test]
fn train_encodes_categoricals_and_missing_values_from_the_csv_types() {
    let dir = tempfile::tempdir().expect("dir");
    // The class depends on a categorical column and a numeric one with gaps.
    let mut csv = String::from("city,income,owner,approved\n");
    for i in 0..600 {
        let city = ["paris", "lyon", "nice", "lille"][i % 4];
        let income = if i % 9 == 0 {
            String::new()
        } else {
            format!("{}", (i * 37) % 100)
        };
        let score = (if city == "paris" || city == "nice" {
            60
        } else {
            0
        }) + (i * 37) % 100;
        let approved = if score > 80 { "yes" } else { "no" };
        csv.push_str(&format!("{city},{income},{},{approved}\n", i % 2 == 0));
    }
    let data = dir.path().join("d.csv");
    std::fs::write(&data, csv).expect("write");
    let model = dir.path().join("model");
    let v: serde_json::Value = json(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "approved",
        "--hidden",
        "16",
        "--epochs",
        "80",
        "--lr",
        "0.01",
        "--seed",
        "1",
        "--out",
        model.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(v["test"]["accuracy"].as_f64().expect("acc") > 0.85, "{v}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let features: Vec<&str> = manifest["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(
        features,
        vec![
            "city=lille",
            "city=lyon",
            "city=nice",
            "city=paris",
            "income",
            "owner"
        ]
    );
    assert_eq!(manifest["preprocessor"]["target"], "approved");
}

#[test]
fn train_scales_min_max_and_encodes_an_ordered_column_as_one_integer() {
    let dir = tempfile::tempdir().expect("dir");
    // The class depends on the rank of `size` and on `income` (with gaps).
    let mut csv = String::from("size,income,approved\n");
    for i in 0..600 {
        let (size, rank) = [("small", 0), ("medium", 1), ("large", 2)][i % 3];
        let raw = 1000 + (i * 37) % 100 * 10;
        let income = if i % 11 == 0 {
            String::new()
        } else {
            raw.to_string()
        };
        let approved = if rank * 40 + (raw - 1000) / 10 > 90 {
            "yes"
        } else {
            "no"
        };
        csv.push_str(&format!("{size},{income},{approved}\n"));
    }
    let data = dir.path().join("d.csv");
    std::fs::write(&data, csv).expect("write");
    let (d, model) = (data.to_str().expect("utf-8"), dir.path().join("model"));
    let m = model.to_str().expect("utf-8");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train", "--data", d, "--target", "approved", "--hidden", "16", "--epochs", "60",
            "--lr", "0.01", "--seed", "1", "--out", m, "--json",
        ];
        args.extend(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    // The scaling is fitted on the training rows only: the test file's 5,000 does not move it.
    let held_out = dir.path().join("held_out.csv");
    let mut rows = String::from("size,income,approved\nlarge,5000,yes\n");
    for i in 0..30 {
        rows.push_str(&format!("small,{},no\n", 1000 + i * 10));
    }
    std::fs::write(&held_out, rows).expect("write");
    let h = held_out.to_str().expect("utf-8");
    let args = train(&[
        "--scale",
        "minmax",
        "--ordinal",
        "size=small,medium,large",
        "--test-data",
        h,
    ]);
    let v = json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let accuracy = v["test"]["accuracy"].as_f64().expect("acc");
    assert!(accuracy > 0.9, "{v}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["features"], serde_json::json!(["size", "income"]));
    let columns = &manifest["preprocessor"]["columns"];
    assert_eq!(columns[0]["kind"], "ordinal");
    assert_eq!(
        columns[0]["categories"],
        serde_json::json!(["small", "medium", "large"])
    );
    assert_eq!(columns[1]["kind"], "min_max");
    assert_eq!(
        (columns[1]["min"].as_f64(), columns[1]["max"].as_f64()),
        (Some(1000.0), Some(1990.0))
    );
    // `evaluate` applies the saved plan to the raw columns; the test split is part of them.
    let e = json(&[
        "evaluate", "--model", m, "--data", d, "--target", "approved", "--json",
    ]);
    assert!(e["accuracy"].as_f64().expect("acc") > 0.9, "{e}");
    // A size outside the order is named with its row, at training and at evaluation.
    let odd = dir.path().join("odd.csv");
    std::fs::write(&odd, "size,income,approved\nsmall,1200,no\nhuge,1500,yes\n").expect("write");
    let o = odd.to_str().expect("utf-8");
    refused(
        &[
            "evaluate", "--model", m, "--data", o, "--target", "approved",
        ],
        "category \"huge\" in row 1",
    );
    let args = train(&["--ordinal", "size=small,large"]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "\"medium\" in row",
    );
    let args = train(&["--ordinal", "size="]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "an empty category",
    );
    let args = train(&["--scale", "robust"]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "\"robust\" is not standard, minmax or none",
    );
}

#[test]
fn tune_searches_a_yaml_space_prunes_with_asha_and_saves_the_best_model() {
    let dir = tempfile::tempdir().expect("dir");
    let mut csv = String::from("a,b,label\n");
    for i in 0..300 {
        let (a, b) = (
            (i % 20) as f64 / 10.0 - 1.0,
            ((i * 7) % 17) as f64 / 8.0 - 1.0,
        );
        let label = if a - 0.5 * b > 0.1 { "yes" } else { "no" };
        csv.push_str(&format!("{a},{b},{label}\n"));
    }
    let data = dir.path().join("d.csv");
    std::fs::write(&data, csv).expect("write");
    let space = dir.path().join("space.yaml");
    std::fs::write(
        &space,
        "lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-1, grid: 4}\n\
         hidden: {type: categorical, values: [0, 8]}\n",
    )
    .expect("write");
    let model = dir.path().join("best");
    let report = dir.path().join("report.json");
    let args = |search: &str, scheduler: &str| {
        let v: serde_json::Value = json(&[
            "tune",
            "--trials",
            if search == "random" { "5" } else { "20" },
            "--data",
            data.to_str().expect("utf-8"),
            "--target",
            "label",
            "--space",
            space.to_str().expect("utf-8"),
            "--search",
            search,
            "--scheduler",
            scheduler,
            "--epochs",
            "16",
            "--parallel",
            "2",
            "--seed",
            "1",
            "--out",
            model.to_str().expect("utf-8"),
            "--report",
            report.to_str().expect("utf-8"),
            "--json",
        ]);
        v
    };
    let grid = args("grid", "none");
    assert_eq!(grid["trials"], 8, "{grid}");
    assert_eq!(grid["epochs"], 8 * 16);
    let asha = args("grid", "asha");
    assert_eq!(asha["trials"], 8);
    assert!(asha["pruned"].as_u64().expect("pruned") >= 4, "{asha}");
    assert!(
        asha["epochs"].as_u64().expect("epochs") < 8 * 16 / 2,
        "{asha}"
    );
    assert!(
        asha["test"]["accuracy"].as_f64().expect("test") > 0.85,
        "{asha}"
    );
    assert!(model.join("manifest.json").exists());
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(r["trials"].as_array().expect("trials").len(), 8);
    let tpe = args("tpe", "hyperband");
    assert_eq!(tpe["trials"], 20);
    let random = args("random", "median");
    assert_eq!(random["trials"], 5, "{random}");
    // Without --json: the results table, best trial first, then the best configuration.
    let text = ok(&aistd(&[
        "tune",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "label",
        "--space",
        space.to_str().expect("utf-8"),
        "--search",
        "grid",
        "--scheduler",
        "asha",
        "--epochs",
        "16",
        "--seed",
        "1",
    ]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("trial") && lines[0].contains("value"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = lines[1..9]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.iter().any(|r| r[1] == "pruned"), "{text}");
    let values: Vec<f64> = rows.iter().filter_map(|r| r[3].parse().ok()).collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "sorted best first: {text}"
    );
    // Names the MLP does not know are refused before any trial runs.
    std::fs::write(
        &space,
        "learning_rate: {type: uniform, low: 0.0, high: 1.0}\n",
    )
    .expect("write");
    let out = aistd(&[
        "tune",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "label",
        "--space",
        space.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learning_rate") && err.contains("unknown"),
        "{err}"
    );
}

/// scikit-learn's digits (bundled with aistd-training) as a CSV file with the class in `digit`.
fn digits_csv(path: &std::path::Path) {
    let d = aistd::training::data::digits().expect("digits");
    let aistd::training::data::Target::Classes { labels, names } = &d.y else {
        panic!("digits has classes");
    };
    let mut csv = d.features.join(",") + ",digit\n";
    for (row, label) in d.x.outer_iter().zip(labels) {
        for v in row {
            csv.push_str(&format!("{v},"));
        }
        csv.push_str(&names[*label as usize]);
        csv.push('\n');
    }
    std::fs::write(path, csv).expect("write");
}

#[test]
fn train_with_dp_sgd_reports_and_saves_the_epsilon_spent() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("digits.csv");
    digits_csv(&data);
    let d = data.to_str().expect("utf-8");
    let model = dir.path().join("model");
    let m = model.to_str().expect("utf-8");
    let common = [
        "train",
        "--data",
        d,
        "--target",
        "digit",
        "--classify",
        "--lr",
        "0.01",
        "--seed",
        "7",
        "--out",
        m,
    ];
    let with = |extra: &[&str]| {
        let mut args = common.to_vec();
        args.extend(extra);
        aistd(&args)
    };
    let v: serde_json::Value = serde_json::from_str(&ok(&with(&[
        "--epochs",
        "20",
        "--dp-target-epsilon",
        "3",
        "--json",
    ])))
    .expect("json");
    let p = &v["privacy"];
    let eps = p["epsilon"].as_f64().expect("ε");
    assert!(eps <= 3.0 && eps > 2.99, "{v}");
    assert_eq!(p["accountant"], "rdp");
    assert_eq!(p["delta"], 1e-5);
    assert_eq!(p["clip_norm"], 1.0);
    // 1,350 training rows, batch 64: q = 64/1350, 21 steps an epoch.
    assert_eq!(p["steps"], 20 * 21, "{p}");
    assert!((p["sampling_rate"].as_f64().expect("q") - 64.0 / 1350.0).abs() < 1e-12);
    assert!(v["test"]["accuracy"].as_f64().expect("acc") > 0.85, "{v}");
    let manifest = std::fs::read_to_string(model.join("manifest.json")).expect("manifest");
    assert!(manifest.contains(&eps.to_string()), "{manifest}");
    // Nothing computed from the rows without noise is recorded: no fingerprint, losses or count.
    let record = &serde_json::from_str::<serde_json::Value>(&manifest).expect("json")["training"];
    assert!(
        record["dataset_sha256"].is_null() && record["rows"].is_null(),
        "{record}"
    );
    assert!(record["metrics"]["train_loss"].is_null(), "{record}");
    assert!(record["metrics"]["test_accuracy"].is_number(), "{record}");
    // A fixed noise multiplier reports its ε; a budget it overruns is refused.
    let fixed = ok(&with(&["--epochs", "5", "--dp-noise-multiplier", "1.2"]));
    assert!(
        fixed.contains("DP-SGD: ε = ") && fixed.contains("σ = 1.2000"),
        "{fixed}"
    );
    // A smaller δ costs more ε for the same noise.
    let at = |delta: &str| {
        let v: serde_json::Value = serde_json::from_str(&ok(&with(&[
            "--epochs",
            "5",
            "--dp-noise-multiplier",
            "1.2",
            "--dp-delta",
            delta,
            "--json",
        ])))
        .expect("json");
        assert_eq!(v["privacy"]["delta"].as_f64(), delta.parse().ok(), "{v}");
        v["privacy"]["epsilon"].as_f64().expect("ε")
    };
    assert!(at("1e-7") > at("1e-3"));
    // An unreachable target ε is named.
    refused(
        &[
            &common[..],
            &["--epochs", "5", "--dp-target-epsilon", "0.05"],
        ]
        .concat(),
        "unreachable",
    );
    for (extra, want) in [
        (
            vec!["--dp-noise-multiplier", "0.5", "--dp-target-epsilon", "1"],
            "over the budget of 1",
        ),
        (vec!["--dp-clip", "1"], "--dp-clip needs"),
        (
            vec!["--dp-clip=-1", "--dp-noise-multiplier", "1"],
            "clip norm",
        ),
        (vec!["--dp-noise-multiplier=-1"], "noise multiplier"),
        (vec!["--dp-target-epsilon", "0"], "target epsilon"),
    ] {
        let mut args = common.to_vec();
        args.extend(extra.iter());
        refused(&args, want);
    }
}

#[test]
fn privacy_tradeoff_writes_accuracy_against_epsilon_as_a_table_and_a_plot() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("digits.csv");
    digits_csv(&data);
    let out = dir.path().join("tradeoff");
    let v: serde_json::Value = json(&[
        "privacy",
        "tradeoff",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "digit",
        "--classify",
        "--lr",
        "0.01",
        "--epochs",
        "10",
        "--epsilons",
        "0.5,8",
        "--seed",
        "7",
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["metric"], "accuracy");
    let acc = |p: &serde_json::Value| p["metric"].as_f64().expect("metric");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for (p, budget) in points.iter().zip([0.5, 8.0]) {
        let eps = p["epsilon"].as_f64().expect("ε");
        assert!(eps <= budget && eps > budget - 0.011, "{p}");
    }
    // More ε, less noise, better accuracy; the non-private model is the best.
    let (low, high, plain) = (acc(&points[0]), acc(&points[1]), acc(&v["non_private"]));
    assert!(low + 0.05 < high && high <= plain + 0.01, "{v}");
    let csv = std::fs::read_to_string(out.join("tradeoff.csv")).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("epsilon_budget,epsilon,delta,noise_multiplier"));
    assert!(
        lines[1].starts_with(",,") && lines[3].starts_with("8,"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(out.join("tradeoff.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<circle").count(), 2, "one marker per ε");
    assert!(svg.contains("non-private"));
    // Bad budgets are named.
    let bad = aistd(&[
        "privacy",
        "tradeoff",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "digit",
        "--epsilons",
        "1,-2",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("-2"), "{err}");
}

#[test]
fn adversarial_training_and_robustness_evaluation_from_the_cli() {
    let dir = tempfile::tempdir().expect("dir");
    let all = dir.path().join("digits.csv");
    digits_csv(&all);
    // The first 1,350 rows to train on, the rest to test.
    let text = std::fs::read_to_string(&all).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    std::fs::write(&train, lines[..1351].join("\n") + "\n").expect("write");
    std::fs::write(
        &test,
        [&lines[..1], &lines[1351..]].concat().join("\n") + "\n",
    )
    .expect("write");
    let (tr, te) = (
        train.to_str().expect("utf-8"),
        test.to_str().expect("utf-8"),
    );
    let run = |out: &str, extra: &[&str]| -> serde_json::Value {
        let model = dir.path().join(out);
        let mut args = vec![
            "train",
            "--data",
            tr,
            "--test-data",
            te,
            "--target",
            "digit",
            "--classify",
            "--lr",
            "0.003",
            "--epochs",
            "30",
            "--seed",
            "3",
            "--out",
            model.to_str().expect("utf-8"),
            "--json",
        ];
        args.extend(extra);
        serde_json::from_str(&ok(&aistd(&args))).expect("json")
    };
    let plain = run("plain", &[]);
    assert!(plain["test"].get("robustness").is_none());
    let robust = run(
        "robust",
        &[
            "--adversarial",
            "fgsm",
            "--adv-epsilon",
            "0.3",
            "--adv-fraction",
            "0.5",
        ],
    );
    // FGSM training reports accuracy under FGSM and under PGD of the same radius.
    let r = robust["test"]["robustness"].as_array().expect("robustness");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["attack"]["method"], "fgsm");
    assert_eq!(r[1]["attack"]["method"], "pgd");
    let plain_model = dir.path().join("plain");
    let e: serde_json::Value = json(&[
        "evaluate",
        "--model",
        plain_model.to_str().expect("utf-8"),
        "--data",
        te,
        "--target",
        "digit",
        "--attack",
        "fgsm",
        "--adv-epsilon",
        "0.3",
        "--json",
    ]);
    let attacked = |v: &serde_json::Value, i: usize| {
        v["robustness"][i]["adversarial_accuracy"]
            .as_f64()
            .expect("accuracy")
    };
    let (plain_fgsm, robust_fgsm) = (attacked(&e, 0), attacked(&robust["test"], 0));
    assert!(
        robust_fgsm > plain_fgsm + 0.2,
        "FGSM accuracy: plain {plain_fgsm}, adversarially trained {robust_fgsm}"
    );
    let clean = |v: &serde_json::Value| v["test"]["accuracy"].as_f64().expect("accuracy");
    assert!(
        clean(&robust) > clean(&plain) - 0.03,
        "{} vs {}",
        clean(&robust),
        clean(&plain)
    );
    // PGD training (L2) reports PGD at its radius, ahead of the plain model under the same PGD.
    let pgd = run(
        "pgd",
        &[
            "--adversarial",
            "pgd",
            "--adv-norm",
            "l2",
            "--adv-epsilon",
            "1.5",
        ],
    );
    let r = pgd["test"]["robustness"].as_array().expect("robustness");
    assert_eq!(r[0]["attack"]["method"], "pgd", "{r:?}");
    assert_eq!(r[0]["attack"]["norm"], "l2", "{r:?}");
    let e: serde_json::Value = json(&[
        "evaluate",
        "--model",
        plain_model.to_str().expect("utf-8"),
        "--data",
        te,
        "--attack",
        "pgd",
        "--adv-norm",
        "l2",
        "--adv-epsilon",
        "1.5",
        "--json",
    ]);
    let (plain_pgd, robust_pgd) = (attacked(&e, 0), attacked(&pgd["test"], 0));
    eprintln!("PGD-L2 ε 1.5 accuracy: plain {plain_pgd:.4}, PGD-trained {robust_pgd:.4}");
    assert!(
        robust_pgd > plain_pgd + 0.1,
        "PGD-L2 accuracy: plain {plain_pgd}, PGD-trained {robust_pgd}"
    );
    // Bad attack settings are named.
    for (extra, want) in [
        (vec!["--adversarial", "cw", "--adv-epsilon", "0.1"], "cw"),
        (
            vec![
                "--adversarial",
                "fgsm",
                "--adv-epsilon",
                "0.1",
                "--adv-norm",
                "l2",
            ],
            "FGSM",
        ),
        (
            vec![
                "--adversarial",
                "pgd",
                "--adv-epsilon",
                "0.1",
                "--adv-fraction",
                "0",
            ],
            "fraction",
        ),
        (vec!["--adversarial", "pgd", "--adv-epsilon=-1"], "ε"),
    ] {
        let model = dir.path().join("bad");
        let mut args = vec![
            "train",
            "--data",
            tr,
            "--target",
            "digit",
            "--out",
            model.to_str().expect("utf-8"),
        ];
        args.extend(extra.iter());
        refused(&args, want);
    }
}

#[test]
fn fine_tuning_starts_from_a_saved_model_with_a_new_head_and_frozen_layers() {
    let dir = tempfile::tempdir().expect("dir");
    let all = dir.path().join("digits.csv");
    digits_csv(&all);
    let text = std::fs::read_to_string(&all).expect("read");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let (mut low, mut high) = (vec![header], vec![header]);
    for l in lines {
        let digit: u32 = l
            .rsplit(',')
            .next()
            .expect("digit")
            .parse()
            .expect("number");
        if digit < 5 { low.push(l) } else { high.push(l) }
    }
    let (low_csv, high_csv) = (dir.path().join("low.csv"), dir.path().join("high.csv"));
    std::fs::write(&low_csv, low.join("\n") + "\n").expect("write");
    std::fs::write(&high_csv, high.join("\n") + "\n").expect("write");
    let (pre, tuned) = (dir.path().join("pre"), dir.path().join("tuned"));
    let p = |x: &std::path::Path| x.to_str().expect("utf-8").to_string();
    let base = |data: &std::path::Path, out: &std::path::Path| {
        vec![
            "train".to_string(),
            "--data".into(),
            p(data),
            "--target".into(),
            "digit".into(),
            "--classify".into(),
            "--epochs".into(),
            "5".into(),
            "--lr".into(),
            "0.01".into(),
            "--out".into(),
            p(out),
            "--json".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        aistd(&refs)
    };
    ok(&run(base(&low_csv, &pre)));
    // Fine-tunes on 5–9 into `out` with the `extra` flags; the test accuracy must pass 0.8.
    let fine_tune = |out: &std::path::Path, extra: &[&str]| {
        let mut args = base(&high_csv, out);
        args.extend(extra.iter().map(|a| a.to_string()));
        let v: serde_json::Value = serde_json::from_str(&ok(&run(args))).expect("json");
        assert!(
            v["test"]["accuracy"].as_f64().expect("accuracy") > 0.8,
            "{v}"
        );
    };
    fine_tune(
        &tuned,
        &[
            "--init-from",
            &p(&pre),
            "--new-head",
            "--freeze",
            "layers.0",
        ],
    );
    let (a, b) = (
        aistd::training::MlpModel::load(&pre).expect("pre"),
        aistd::training::MlpModel::load(&tuned).expect("tuned"),
    );
    let layer = |m: &aistd::training::MlpModel, l: usize| {
        let net = m.network();
        net.parameters()[net.layer_range(l)].to_vec()
    };
    assert_eq!(
        layer(&a, 0),
        layer(&b, 0),
        "the frozen hidden layer is the pre-trained one"
    );
    assert_ne!(layer(&a, 1), layer(&b, 1), "a new head, trained");
    // From the weights file alone, thawed after 2 epochs, rates decaying 3× per layer down:
    // the hidden layer moves, and the manifest records the schedule.
    let thawed = dir.path().join("thawed");
    fine_tune(
        &thawed,
        &[
            "--init-from",
            &p(&pre.join("model.safetensors")),
            "--new-head",
            "--freeze",
            "0",
            "--unfreeze-every",
            "2",
            "--layer-lr-decay",
            "3",
        ],
    );
    let c = aistd::training::MlpModel::load(&thawed).expect("thawed");
    assert_ne!(
        layer(&a, 0),
        layer(&c, 0),
        "thawed, the hidden layer trains"
    );
    let config = &c.training().expect("record").config;
    let ft = serde_json::to_value(config.fine_tune.as_ref().expect("fine-tuning")).expect("json");
    assert_eq!(ft["unfreeze_every"], 2, "{ft}");
    // A model of other features, and a layer that does not exist, are named.
    let mut narrow = vec![
        header
            .rsplit_once(',')
            .map(|(_, t)| format!("pixel_0,{t}"))
            .expect("header"),
    ];
    for l in high.iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        narrow.push(format!("{},{}", f[0], f[f.len() - 1]));
    }
    let narrow_csv = dir.path().join("narrow.csv");
    std::fs::write(&narrow_csv, narrow.join("\n") + "\n").expect("write");
    let mut args = base(&narrow_csv, &tuned);
    args.extend(["--init-from", &p(&pre)].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&refs, "features");
    let mut args = base(&high_csv, &tuned);
    args.extend(["--freeze", "layers.9"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&refs, "no such layer");
}

#[test]
fn federated_training_over_label_skewed_clients_from_the_cli() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("digits.csv");
    digits_csv(&data);
    let d = data.to_str().expect("utf-8");
    let model = dir.path().join("global");
    let v: serde_json::Value = json(&[
        "federated",
        "--data",
        d,
        "--target",
        "digit",
        "--classify",
        "--clients",
        "10",
        "--rounds",
        "60",
        "--non-iid",
        "--optimizer",
        "sgd",
        "--lr",
        "0.3",
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--central",
        "--out",
        model.to_str().expect("utf-8"),
        "--json",
    ]);
    let acc = |x: &serde_json::Value| x["accuracy"].as_f64().expect("accuracy");
    let (fed, central) = (acc(&v["test"]), acc(&v["central_test"]));
    assert!(
        fed > 0.93 && fed >= central - 0.02,
        "FedAvg {fed}, central {central}"
    );
    assert_eq!(v["rounds"].as_array().expect("rounds").len(), 60);
    assert_eq!(v["secure_aggregation"], true);
    let rows: Vec<u64> = v["client_rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_u64().expect("n"))
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows.iter().sum::<u64>(), 1350);
    // The saved global model evaluates with its preprocessing.
    let e: serde_json::Value = json(&[
        "evaluate",
        "--model",
        model.to_str().expect("utf-8"),
        "--data",
        d,
        "--target",
        "digit",
        "--json",
    ]);
    assert!(acc(&e) > 0.9, "{e}");
    // With a target accuracy, training stops at the round that reached it.
    let t: serde_json::Value = json(&[
        "federated",
        "--data",
        d,
        "--target",
        "digit",
        "--classify",
        "--clients",
        "10",
        "--rounds",
        "60",
        "--optimizer",
        "sgd",
        "--lr",
        "0.3",
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--target-accuracy",
        "0.8",
        "--json",
    ]);
    let reached = t["reached_target"].as_u64().expect("reached");
    assert!(reached < 60 && t["rounds_run"] == reached, "{t}");
    let rounds = t["rounds"].as_array().expect("rounds");
    let last = rounds.last().expect("a round")["accuracy"]
        .as_f64()
        .expect("accuracy");
    assert!(
        last >= 0.8,
        "the last round reached the target on validation rows: {t}"
    );
    assert!(
        rounds[..rounds.len() - 1]
            .iter()
            .all(|r| r["accuracy"].as_f64().expect("accuracy") < 0.8),
        "{t}"
    );
    let kept: u64 = t["client_rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_u64().expect("n"))
        .sum();
    assert!(
        (1075..=1085).contains(&kept),
        "about 20% of the 1,350 training rows held out for validation: {kept} kept"
    );
    // Client-level DP reports ε; impossible splits and settings are named.
    let dp = ok(&aistd(&[
        "federated",
        "--data",
        d,
        "--target",
        "digit",
        "--clients",
        "10",
        "--rounds",
        "3",
        "--fraction",
        "0.5",
        "--client-dp-clip",
        "1",
        "--client-dp-noise",
        "1",
    ]));
    assert!(dp.contains("client-level DP: ε = "), "{dp}");
    for (extra, want) in [
        (vec!["--clients", "5000"], "5000 clients"),
        (vec!["--fraction", "0"], "fraction"),
        (vec!["--rounds", "0"], "rounds"),
    ] {
        let mut args = vec!["federated", "--data", d, "--target", "digit"];
        args.extend(extra.iter());
        refused(&args, want);
    }
}

#[test]
fn compress_prunes_a_saved_model_and_reports_before_and_after() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("digits.csv");
    digits_csv(&data);
    let d = data.to_str().expect("utf-8");
    let (dense, pruned) = (dir.path().join("dense"), dir.path().join("pruned"));
    ok(&aistd(&[
        "train",
        "--data",
        d,
        "--target",
        "digit",
        "--classify",
        "--hidden",
        "128",
        "--epochs",
        "20",
        "--out",
        dense.to_str().expect("utf-8"),
    ]));
    let v: serde_json::Value = json(&[
        "compress",
        "--model",
        dense.to_str().expect("utf-8"),
        "--prune",
        "0.9",
        "--stages",
        "2",
        "--epochs",
        "10",
        "--data",
        d,
        "--target",
        "digit",
        "--out",
        pruned.to_str().expect("utf-8"),
        "--json",
    ]);
    let (before, after) = (&v["before"], &v["after"]);
    assert!(
        (after["weight_sparsity"].as_f64().expect("s") - 0.9).abs() < 0.01,
        "{v}"
    );
    assert!(after["bytes"].as_u64().expect("b") * 4 < before["bytes"].as_u64().expect("b"));
    let acc = |x: &serde_json::Value| x["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!(acc(after) > acc(before) - 0.02, "{v}");
    assert_eq!(v["stages"].as_array().expect("stages").len(), 2);
    // `aistd evaluate --json` of a model directory on the digits.
    let evaluate = |model: &std::path::Path| {
        json(&[
            "evaluate",
            "--model",
            model.to_str().expect("utf-8"),
            "--data",
            d,
            "--target",
            "digit",
            "--json",
        ])
    };
    // The pruned model is an ordinary model directory.
    let e = evaluate(&pruned);
    assert!((e["accuracy"].as_f64().expect("acc") - acc(after)).abs() < 1e-12);
    // int8: a quarter of the bytes, the same accuracy within half a point, loadable.
    let q_dir = dir.path().join("int8");
    let v = json(&[
        "compress",
        "--model",
        dense.to_str().expect("utf-8"),
        "--quantize",
        "int8",
        "--data",
        d,
        "--target",
        "digit",
        "--out",
        q_dir.to_str().expect("utf-8"),
        "--json",
    ]);
    let (before, after) = (&v["before"], &v["after"]);
    assert!(after["bytes"].as_u64().expect("b") * 3 < before["bytes"].as_u64().expect("b"));
    assert!(acc(after) >= acc(before) - 0.005, "{v}");
    assert!(after["predict_us_per_row"]["one_row"].as_f64().expect("us") > 0.0);
    let q = aistd::training::quantize::QuantizedMlp::load(&q_dir).expect("int8 model");
    assert_eq!(
        q.model().task(),
        aistd::training::MlpModel::load(&dense).expect("f32").task()
    );
    // `aistd evaluate` scores the int8 model on its integer path: the accuracy compress reported.
    let e = evaluate(&q_dir);
    assert_eq!(e["format"], "aistd-mlp-int8", "{e}");
    assert!(
        (e["accuracy"].as_f64().expect("acc") - acc(after)).abs() < 1e-12,
        "{e} {v}"
    );
    refused(
        &[
            "evaluate",
            "--model",
            q_dir.to_str().expect("utf-8"),
            "--data",
            d,
            "--target",
            "digit",
            "--attack",
            "fgsm",
            "--adv-epsilon",
            "0.1",
        ],
        "no gradients",
    );
    for (extra, want) in [
        (vec!["--quantize", "int4"], "int8"),
        (vec!["--prune", "1.5"], "[0, 1)"),
        (vec!["--prune", "0.5", "--scope", "row"], "--scope"),
        (
            vec!["--prune", "0.5", "--target", "other"],
            "predicts `digit`",
        ),
    ] {
        let mut args = vec![
            "compress",
            "--model",
            dense.to_str().expect("utf-8"),
            "--data",
            d,
            "--out",
            pruned.to_str().expect("utf-8"),
        ];
        if !extra.contains(&"--target") {
            args.extend(["--target", "digit"]);
        }
        args.extend(extra.iter());
        refused(&args, want);
    }
}

/// The model flags reach the training config saved in the manifest, and a run interrupted after
/// 3 of 6 epochs and resumed from its checkpoint writes the same weights as one uninterrupted run.
#[test]
fn model_flags_are_recorded_and_a_resumed_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("digits.csv");
    digits_csv(&data);
    let d = data.to_str().expect("utf-8");
    let p = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            d,
            "--target",
            "digit",
            "--model",
            "mlp",
            "--hidden",
            "24,12",
            "--activation",
            "tanh",
            "--optimizer",
            "adamw",
            "--lr",
            "0.003",
            "--weight-decay",
            "0.01",
            "--dropout",
            "0.1",
            "--threads",
            "2",
            "--batch-size",
            "32",
            "--seed",
            "9",
            "--out",
            out,
            "--json",
        ];
        args.extend(extra);
        json(&args)
    };
    let (straight, ckpt_a) = (p("straight"), p("ckpt-a"));
    let v = run(&straight, &["--epochs", "6", "--checkpoint", &ckpt_a]);
    assert_eq!(v["epochs_run"], 6);
    assert!(v["samples_per_second"].as_f64().expect("rate") > 0.0, "{v}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("straight/manifest.json")).expect("manifest"),
    )
    .expect("json");
    let config = &manifest["training"]["config"];
    assert_eq!(config["hidden"], serde_json::json!([24, 12]));
    assert_eq!(config["activation"], "tanh");
    assert_eq!(config["optimizer"]["kind"]["kind"], "adam_w");
    assert_eq!(config["optimizer"]["weight_decay"].as_f64(), Some(0.01));
    assert_eq!(config["dropout"].as_f64(), Some(0.1));
    assert_eq!(
        (config["threads"].as_u64(), config["batch_size"].as_u64()),
        (Some(2), Some(32))
    );
    assert_eq!(
        manifest["architecture"]["hidden"],
        serde_json::json!([24, 12])
    );
    // Interrupted after 3 epochs, then resumed to 6.
    let (resumed, ckpt_b) = (p("resumed"), p("ckpt-b"));
    run(&resumed, &["--epochs", "3", "--checkpoint", &ckpt_b]);
    let v = run(
        &resumed,
        &["--epochs", "6", "--checkpoint", &ckpt_b, "--resume"],
    );
    assert_eq!(v["epochs_run"], 6, "the history covers all six epochs");
    let weights = |dir: &str| std::fs::read(format!("{dir}/model.safetensors")).expect("weights");
    assert_eq!(weights(&resumed), weights(&straight));
    // Softmax regression: no hidden layer.
    let v = json(&[
        "train",
        "--data",
        d,
        "--target",
        "digit",
        "--model",
        "softmax",
        "--epochs",
        "2",
        "--out",
        &p("softmax"),
        "--json",
    ]);
    assert!(v["test"]["accuracy"].as_f64().expect("acc") > 0.5, "{v}");
    let manifest = std::fs::read_to_string(dir.path().join("softmax/manifest.json")).expect("m");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest["architecture"]["hidden"], serde_json::json!([]));
}
