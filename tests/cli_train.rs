//! `aistd train` and `aistd evaluate`.

mod common;

use common::{aistd, ok};

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
    let v: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
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
    ])))
    .expect("json");
    assert!(v["test"]["accuracy"].as_f64().expect("acc") > 0.9, "{v}");
    assert_eq!(v["rows"]["test"], 100);
    assert!(!v["history"].as_array().expect("history").is_empty());
    assert!(model.join("model.safetensors").exists() && model.join("manifest.json").exists());
    // Evaluation reads the columns the model needs by name (the dropped one is ignored)…
    let e: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
        "evaluate", "--model", m, "--data", d, "--target", "label", "--json",
    ])))
    .expect("json");
    assert!(
        e["accuracy"].as_f64().expect("acc") > 0.9 && e["roc_auc"].as_f64().is_some(),
        "{e}"
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
        vec!["--early-stopping", "3"],
    ] {
        let mut args = vec!["train", "--data", d, "--target", "label", "--out", m];
        args.extend(bad.iter());
        let out = aistd(&args);
        assert!(!out.status.success(), "{bad:?}");
    }
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
    let v: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
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
    ])))
    .expect("json");
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
        let v: serde_json::Value = serde_json::from_str(&ok(&aistd(&[
            "tune",
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
        ])))
        .expect("json");
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
    assert_eq!(tpe["trials"], 20, "TPE runs 20 trials by default");
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
