//! `model.safetensors`: the layer parameters and their on-disk encoding.
//!
//! Layer `i` is stored as two F32 tensors, `layers.{i}.weight` with shape `[outputs, inputs]`
//! and `layers.{i}.bias` with shape `[outputs]`. Layer 0 reads the normalised features, the
//! last layer has one output (the logit). Nothing else may be in the file.

use std::collections::HashSet;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// The trained parameters of one dense layer, exactly as stored on disk.
///
/// `weight` is row-major `[outputs, inputs]`; both vectors are on the host so that saving a
/// model writes back precisely the values that were loaded or trained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LayerParams {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

/// `(inputs, outputs)` of every layer implied by the feature count and the hidden sizes.
pub(crate) fn layer_dims(n_features: usize, hidden: &[usize]) -> Vec<(usize, usize)> {
    let mut dims = Vec::with_capacity(hidden.len() + 1);
    let mut inputs = n_features;
    for &outputs in hidden.iter().chain(std::iter::once(&1)) {
        dims.push((inputs, outputs));
        inputs = outputs;
    }
    dims
}

fn weight_name(layer: usize) -> String {
    format!("layers.{layer}.weight")
}

fn bias_name(layer: usize) -> String {
    format!("layers.{layer}.bias")
}

/// Checks parameters against the metadata's shape; used for models assembled in memory.
pub(crate) fn check(
    layers: &[LayerParams],
    n_features: usize,
    hidden: &[usize],
) -> Result<(), String> {
    let dims = layer_dims(n_features, hidden);
    if layers.len() != dims.len() {
        return Err(format!(
            "{} layers given but hidden sizes {hidden:?} imply {}",
            layers.len(),
            dims.len()
        ));
    }
    for (i, (layer, &(inputs, outputs))) in layers.iter().zip(&dims).enumerate() {
        if layer.inputs != inputs
            || layer.outputs != outputs
            || layer.weight.len() != inputs * outputs
            || layer.bias.len() != outputs
        {
            return Err(format!(
                "layer {i} has {} inputs and {} outputs but {inputs} and {outputs} are expected",
                layer.inputs, layer.outputs
            ));
        }
        check_finite(&weight_name(i), &layer.weight)?;
        check_finite(&bias_name(i), &layer.bias)?;
    }
    Ok(())
}

fn check_finite(name: &str, values: &[f32]) -> Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "tensor {name} holds a non-finite value ({}) at index {i}; retrain the model",
            values[i]
        )),
        None => Ok(()),
    }
}

/// Encodes the layers as a safetensors file.
pub(crate) fn encode(layers: &[LayerParams]) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut buffers = Vec::with_capacity(layers.len() * 2);
    for (i, layer) in layers.iter().enumerate() {
        buffers.push((
            weight_name(i),
            vec![layer.outputs, layer.inputs],
            to_le_bytes(&layer.weight),
        ));
        buffers.push((bias_name(i), vec![layer.outputs], to_le_bytes(&layer.bias)));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None)
}

fn to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes and checks a safetensors file against the metadata's shape.
///
/// The error says which tensor is wrong and how, in terms an operator can act on.
pub(crate) fn decode(
    bytes: &[u8],
    n_features: usize,
    hidden: &[usize],
) -> Result<Vec<LayerParams>, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| {
        format!(
            "not a valid safetensors file ({e}); it may be truncated or corrupt: \
             restore it or retrain the model"
        )
    })?;
    let dims = layer_dims(n_features, hidden);
    let mut expected = HashSet::with_capacity(dims.len() * 2);
    let mut layers = Vec::with_capacity(dims.len());
    for (i, &(inputs, outputs)) in dims.iter().enumerate() {
        let name = weight_name(i);
        let view = tensor(&file, &name, hidden, dims.len())?;
        if view.shape() != [outputs, inputs] {
            return Err(shape_mismatch(
                i,
                view.shape(),
                n_features,
                hidden,
                [outputs, inputs],
            ));
        }
        let weight = read_f32(&name, &view)?;
        expected.insert(name);

        let name = bias_name(i);
        let view = tensor(&file, &name, hidden, dims.len())?;
        if view.shape() != [outputs] {
            return Err(format!(
                "layer {i} bias has shape {:?} but metadata (hidden sizes {hidden:?}) implies [{outputs}]",
                view.shape()
            ));
        }
        let bias = read_f32(&name, &view)?;
        expected.insert(name);

        layers.push(LayerParams {
            inputs,
            outputs,
            weight,
            bias,
        });
    }
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|name| !expected.contains(*name))
        .collect();
    extra.sort_unstable();
    if let Some(name) = extra.first() {
        return Err(format!(
            "unexpected tensor {name}; metadata hidden sizes {hidden:?} imply exactly {} layers \
             (is this the metadata.json that was written with these weights?)",
            dims.len()
        ));
    }
    Ok(layers)
}

fn tensor<'a>(
    file: &SafeTensors<'a>,
    name: &str,
    hidden: &[usize],
    n_layers: usize,
) -> Result<TensorView<'a>, String> {
    file.tensor(name).map_err(|_| {
        format!(
            "tensor {name} is missing; metadata hidden sizes {hidden:?} imply {n_layers} layers \
             (is this the metadata.json that was written with these weights?)"
        )
    })
}

fn shape_mismatch(
    layer: usize,
    actual: &[usize],
    n_features: usize,
    hidden: &[usize],
    expected: [usize; 2],
) -> String {
    if layer == 0 && actual.len() == 2 && actual[1] != n_features {
        format!(
            "layer 0 weight has shape {actual:?} but metadata lists {n_features} features \
             (expected {expected:?})"
        )
    } else {
        format!(
            "layer {layer} weight has shape {actual:?} but metadata ({n_features} features, \
             hidden sizes {hidden:?}) implies {expected:?}"
        )
    }
}

fn read_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name} has dtype {:?}; only F32 weights are supported",
            view.dtype()
        ));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    check_finite(name, &values)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n_features: usize, hidden: &[usize]) -> Vec<LayerParams> {
        layer_dims(n_features, hidden)
            .into_iter()
            .map(|(inputs, outputs)| LayerParams {
                inputs,
                outputs,
                weight: (0..inputs * outputs).map(|i| i as f32 * 0.01).collect(),
                bias: vec![0.5; outputs],
            })
            .collect()
    }

    #[test]
    fn layer_dims_chain_features_through_hidden_sizes_to_one_logit() {
        assert_eq!(layer_dims(28, &[32, 16]), vec![(28, 32), (32, 16), (16, 1)]);
        assert_eq!(layer_dims(5, &[]), vec![(5, 1)]);
    }

    #[test]
    fn encoded_layers_decode_to_the_same_values() {
        let original = layers(6, &[4, 3]);
        let bytes = encode(&original).expect("encode");
        assert_eq!(decode(&bytes, 6, &[4, 3]), Ok(original));
    }

    #[test]
    fn first_layer_feature_mismatch_names_both_counts() {
        let bytes = encode(&layers(27, &[32, 16])).expect("encode");
        let reason = decode(&bytes, 28, &[32, 16]).err().unwrap_or_default();
        assert!(
            reason.contains("layer 0 weight has shape [32, 27] but metadata lists 28 features"),
            "{reason}"
        );
    }

    #[test]
    fn hidden_size_mismatch_and_extra_layers_are_rejected() {
        let bytes = encode(&layers(6, &[4, 3])).expect("encode");
        let reason = decode(&bytes, 6, &[5, 3]).err().unwrap_or_default();
        assert!(
            reason.contains("layer 0 weight has shape [4, 6]"),
            "{reason}"
        );
        let reason = decode(&bytes, 6, &[4]).err().unwrap_or_default();
        assert!(
            reason.contains("layer 1 weight has shape [3, 4]"),
            "{reason}"
        );
        let bytes = encode(&layers(6, &[4, 3, 2])).expect("encode");
        let reason = decode(&bytes, 6, &[4, 3]).err().unwrap_or_default();
        assert!(
            reason.contains("layer 2 weight has shape [2, 3]"),
            "{reason}"
        );
    }

    #[test]
    fn tensors_the_metadata_does_not_describe_are_rejected() {
        let params = layers(2, &[]);
        let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
            (
                "layers.0.weight".to_owned(),
                vec![1, 2],
                to_le_bytes(&params[0].weight),
            ),
            (
                "layers.0.bias".to_owned(),
                vec![1],
                to_le_bytes(&params[0].bias),
            ),
        ];
        named.push(("layers.1.bias".to_owned(), vec![1], to_le_bytes(&[0.0])));
        let views: Vec<(&str, TensorView<'_>)> = named
            .iter()
            .map(|(name, shape, bytes)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("view");
                (name.as_str(), view)
            })
            .collect();
        let bytes = safetensors::serialize(views, None).expect("serialise");
        let reason = decode(&bytes, 2, &[]).err().unwrap_or_default();
        assert!(
            reason.contains("unexpected tensor layers.1.bias"),
            "{reason}"
        );
    }

    #[test]
    fn truncated_bytes_are_reported_as_corrupt() {
        let bytes = encode(&layers(6, &[4])).expect("encode");
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            let reason = decode(&bytes[..cut], 6, &[4]).err().unwrap_or_default();
            assert!(
                reason.contains("truncated or corrupt"),
                "cut {cut}: {reason}"
            );
        }
    }

    #[test]
    fn non_finite_weights_are_rejected_with_the_tensor_name() {
        let mut params = layers(6, &[4]);
        params[1].bias[0] = f32::NAN;
        let bytes = encode(&params).expect("encode");
        let reason = decode(&bytes, 6, &[4]).err().unwrap_or_default();
        assert!(reason.contains("layers.1.bias"), "{reason}");
        assert!(check(&params, 6, &[4]).is_err());
    }
}
