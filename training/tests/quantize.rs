//! int8 post-training quantization of the digits MLP: at most half an accuracy point lost with
//! weights at least 3.5× smaller; the integer path agrees with the f32 model on almost every
//! row; quantization-aware fine-tuning; no calibration data is refused.

mod common;

use aistd_training::quantize::{QuantizedMlp, qat_fine_tune};
use aistd_training::{Model, NdarrayTrainer, SavedMlp, Silent, Trainer, metrics};

use common::mlp128 as config;

#[test]
fn int8_digits_mlp_keeps_accuracy_at_a_quarter_of_the_size() {
    let (train, test) = common::digits_unit();
    let (model, _) = NdarrayTrainer
        .fit_mlp(&train, None, &config(40), &mut Silent)
        .expect("train");
    let labels = test.labels().expect("labels");
    let f32_pred = model.predict_labels(test.x.view()).expect("predict");
    let f32_acc = metrics::accuracy(labels, &f32_pred).expect("accuracy");
    // Calibrated on 200 training rows.
    let calib = train
        .x
        .select(ndarray::Axis(0), &(0..200).collect::<Vec<_>>());
    for per_channel in [true, false] {
        let q = QuantizedMlp::quantize(&model, calib.view(), per_channel).expect("quantize");
        let q_pred = q.predict_labels(test.x.view()).expect("predict");
        let q_acc = metrics::accuracy(labels, &q_pred).expect("accuracy");
        let agree = q_pred.iter().zip(&f32_pred).filter(|(a, b)| a == b).count();
        let ratio = q.float_bytes() as f64 / q.parameter_bytes() as f64;
        eprintln!(
            "per channel {per_channel}: f32 {f32_acc:.4}, int8 {q_acc:.4}, same label on {agree} of {} rows, {:.2}× smaller",
            test.len(),
            ratio
        );
        assert!(q_acc >= f32_acc - 0.005, "{q_acc} vs {f32_acc}");
        assert!(ratio >= 3.5, "{ratio}");
        assert!(agree as f64 >= 0.98 * test.len() as f64, "{agree}");
        // Probabilities close to the f32 model's.
        let (p, pq) = (
            model.predict(test.x.view()).expect("p"),
            q.predict(test.x.view()).expect("p"),
        );
        let worst = p
            .iter()
            .zip(pq.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.25, "largest probability difference {worst}");
    }
    // Saved and loaded: the same predictions; the f32 loader refuses the int8 format and a
    // damaged file is detected.
    let q = QuantizedMlp::quantize(&model, calib.view(), true).expect("quantize");
    let (f_dir, q_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    model.save(f_dir.path()).expect("save");
    q.save(q_dir.path()).expect("save");
    let loaded = QuantizedMlp::load(q_dir.path()).expect("load");
    assert_eq!(
        loaded.predict(test.x.view()).expect("p"),
        q.predict(test.x.view()).expect("p")
    );
    let size = |d: &std::path::Path| {
        std::fs::metadata(d.join("model.safetensors"))
            .expect("file")
            .len()
    };
    let (f_bytes, q_bytes) = (size(f_dir.path()), size(q_dir.path()));
    eprintln!("model.safetensors: f32 {f_bytes} bytes, int8 {q_bytes} bytes");
    assert!(q_bytes * 3 < f_bytes, "{q_bytes} vs {f_bytes}");
    let e = aistd_training::MlpModel::load(q_dir.path()).expect_err("int8 format");
    assert!(e.to_string().contains("aistd-mlp-int8"), "{e}");
    // Either format through one loader (what `aistd evaluate` and serving use), and through the
    // trainer's `load`: the int8 model on its integer path.
    let want = q.predict(test.x.view()).expect("p");
    let any = SavedMlp::load(q_dir.path()).expect("load");
    assert_eq!(any.format(), aistd_training::quantize::FORMAT_INT8);
    assert_eq!(Model::predict(&any, test.x.view()).expect("p"), want);
    let boxed = Trainer::load(&NdarrayTrainer, q_dir.path()).expect("load");
    assert_eq!(boxed.predict(test.x.view()).expect("p"), want);
    let f = SavedMlp::load(f_dir.path()).expect("load");
    assert_eq!(f.format(), "aistd-mlp");
    assert_eq!(
        Model::predict(&f, test.x.view()).expect("p"),
        model.predict(test.x.view()).expect("p")
    );
    let w = q_dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&w).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, bytes).expect("write");
    let e = QuantizedMlp::load(q_dir.path()).expect_err("corrupt");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    // Quantization-aware fine-tuning: a few epochs on fake-quantized weights.
    let (qat, _) = qat_fine_tune(&model, &train, &config(3), true, &mut Silent).expect("qat");
    let q = QuantizedMlp::quantize(&qat, calib.view(), true).expect("quantize");
    let qat_acc =
        metrics::accuracy(labels, &q.predict_labels(test.x.view()).expect("p")).expect("accuracy");
    eprintln!("after quantization-aware fine-tuning: int8 {qat_acc:.4}");
    assert!(qat_acc >= f32_acc - 0.01, "{qat_acc} vs {f32_acc}");
    // No calibration data, or the wrong width: named.
    let none = ndarray::Array2::<f32>::zeros((0, 64));
    let e = QuantizedMlp::quantize(&model, none.view(), true).expect_err("empty");
    assert!(e.to_string().contains("calibration"), "{e}");
    let narrow = ndarray::Array2::<f32>::zeros((5, 3));
    let e = QuantizedMlp::quantize(&model, narrow.view(), true).expect_err("width");
    assert!(e.to_string().contains("3 features"), "{e}");
}
