//! ONNX model inference (`type = "predict"`, `model = "….onnx"`): the tests build their small
//! models here, as ONNX protobuf (nothing is downloaded), and check every output against the
//! arithmetic done here.

mod common;

use common::*;
use prost::Message;
use tract_onnx::pb;

const FLOAT: i32 = 1;

fn tensor_type(dims: &[Option<i64>]) -> Option<pb::TypeProto> {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    Some(pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: FLOAT,
            shape: Some(pb::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        value: Some(match d {
                            Some(n) => Value::DimValue(*n),
                            None => Value::DimParam("N".into()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    })
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: tensor_type(dims),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        ..Default::default()
    }
}

/// W, as the model holds it: `y = x · W + u`.
const W: [[f32; 2]; 2] = [[0.5, -1.0], [2.0, 0.25]];

/// A model of two inputs, `x` `[N, 2]` and `u` `[N, 1]`, and two outputs: `y = x · W + u`
/// (`[N, 2]`) and `t = tanh(y)`, which the pipeline does not read.
fn model() -> Vec<u8> {
    let w = pb::TensorProto {
        name: "W".into(),
        dims: vec![2, 2],
        data_type: FLOAT,
        float_data: W.iter().flatten().copied().collect(),
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "linear".into(),
        node: vec![
            node("MatMul", &["x", "W"], "h"),
            node("Add", &["h", "u"], "y"),
            node("Tanh", &["y"], "t"),
        ],
        initializer: vec![w],
        input: vec![
            value_info("x", &[None, Some(2)]),
            value_info("u", &[None, Some(1)]),
        ],
        output: vec![
            value_info("y", &[None, Some(2)]),
            value_info("t", &[None, Some(2)]),
        ],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn pipeline(extra: &str) -> String {
    format!(
        r#"[sources.readings]
type = "file"
path = "readings.jsonl"
format = "jsonl"
schema = {{ id = "u64", ts = "timestamp", temperature = "f64", humidity = "i64", offset = "f64" }}

[transforms.score]
type = "predict"
inputs = ["readings"]
model = "model.onnx"
model_inputs = {{ x = ["temperature", "humidity"], u = ["offset"] }}
model_outputs = {{ y = ["y0", "y1"] }}
{extra}
[sinks.out]
type = "file"
inputs = ["score"]
path = "out/scored.jsonl"
"#
    )
}

/// The model's outputs for every record, in both modes on 1 and 3 workers, against `x · W + u`
/// computed here in f32; a record with a NULL feature passes with NULL outputs.
#[test]
fn an_onnx_model_scores_every_record_as_computed_here() {
    let dir = workspace();
    std::fs::write(dir.path().join("model.onnx"), model()).unwrap();
    let mut lines = String::new();
    for i in 0..500u64 {
        let t = 15.0 + (i % 37) as f64 * 0.75;
        let h = (i % 11) as i64 * 7 - 20;
        let offset = if i % 50 == 7 {
            "null".to_string()
        } else {
            format!("{}", (i % 5) as f64 - 2.5)
        };
        lines.push_str(&format!(
            "{{\"id\":{i},\"ts\":{},\"temperature\":{t},\"humidity\":{h},\"offset\":{offset}}}\n",
            1_772_359_200_000 + i * 100
        ));
    }
    write(dir.path(), "readings.jsonl", &lines);
    let p = write(dir.path(), "score.toml", &pipeline(""));
    for args in [
        vec!["--workers", "1"],
        vec![
            "--workers",
            "3",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "5ms",
        ],
    ] {
        let args = [
            &["--set", "sources.readings.timestamp_format=\"epoch_ms\""][..],
            &args[..],
        ]
        .concat();
        run_ok(dir.path(), &p, &args);
        let out = json_lines(&dir.path().join("out/scored.jsonl"));
        assert_eq!(out.len(), 500, "{args:?}");
        let mut nulls = 0;
        for r in &out {
            let x = [
                r["temperature"].as_f64().unwrap() as f32,
                r["humidity"].as_i64().unwrap() as f32,
            ];
            match r["offset"].as_f64() {
                None => {
                    assert!(r["y0"].is_null() && r["y1"].is_null(), "{r}");
                    nulls += 1;
                }
                Some(u) => {
                    for (j, field) in ["y0", "y1"].iter().enumerate() {
                        let want = x[0] * W[0][j] + x[1] * W[1][j] + u as f32;
                        let got = r[field].as_f64().unwrap();
                        assert!(
                            (got - want as f64).abs() <= 1e-5 * (1.0 + want.abs() as f64),
                            "{field} of {r}: want {want}"
                        );
                    }
                }
            }
            assert!(r.get("t").is_none(), "outputs not named are not read");
        }
        assert_eq!(nulls, 10);
    }
}

/// Mistakes with a model are named at their place: a missing file, an input not given, a
/// field that is not a number, an output of the wrong width, an output the model lacks.
#[test]
fn onnx_mistakes_are_named_at_their_place() {
    let dir = workspace();
    write(dir.path(), "readings.jsonl", "");
    let missing = write(dir.path(), "missing.toml", &pipeline(""));
    let err = weir_fails(dir.path(), &["validate", &missing]);
    assert!(
        err.contains("missing.toml:10:") && err.contains("cannot load the ONNX model model.onnx"),
        "{err}"
    );
    std::fs::write(dir.path().join("model.onnx"), model()).unwrap();
    let bad = pipeline("")
        .replace("u = [\"offset\"]", "")
        .replace(", }", " }")
        .replace("[\"y0\", \"y1\"]", "[\"y0\"], z = [\"w\"]");
    let p = write(dir.path(), "bad.toml", &bad);
    let err = weir_fails(dir.path(), &["validate", &p]);
    for want in [
        "the model's input `u` is not in `model_inputs`",
        "the model has no output `z`",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let wide = pipeline("").replace("[\"y0\", \"y1\"]", "[\"y0\"]");
    let p = write(dir.path(), "wide.toml", &wide);
    let err = weir_fails(dir.path(), &["validate", &p]);
    assert!(
        err.contains("wide.toml:12:")
            && err.contains("output `y` gives 2 values per record, but 1 fields are named"),
        "{err}"
    );
    let text = pipeline("").replace("offset = \"f64\"", "offset = \"string\"");
    let p = write(dir.path(), "text.toml", &text);
    let err = weir_fails(dir.path(), &["validate", &p]);
    assert!(err.contains("`offset` is a string, not a number"), "{err}");
}
