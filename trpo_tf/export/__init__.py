"""Export: trained models → SavedModel (TF Serving layout), TFLite, and the REST contract.

Export knows only trained models: :func:`export_saved_model` takes the policy, the value
model and the metadata the caller builds (:func:`build_metadata`); it never sees the agent.

- :mod:`trpo_tf.export.saved_model`: the SavedModel, its signatures and metadata;
- :mod:`trpo_tf.export.spaces`: gymnasium spaces ↔ JSON;
- :mod:`trpo_tf.export.tflite`: TFLite conversion and a LiteRT runner;
- :mod:`trpo_tf.export.onnx`: ONNX conversion, one file per signature (the ``onnx`` extra);
- :mod:`trpo_tf.export.rest`: TF Serving's REST predict request and response bodies.
"""

from trpo_tf.export.onnx import to_onnx
from trpo_tf.export.rest import rest_predict
from trpo_tf.export.saved_model import (DETERMINISTIC_SIGNATURES, FORMAT_VERSION, INPUT_NAME, METADATA_FILE,
                                        SIGNATURES, build_metadata, check_export_dir, describe_signatures,
                                        export_saved_model, library_versions, load_saved_model, next_version,
                                        read_metadata, resolve_saved_model_dir, serving_module, signature_graphs,
                                        write_saved_model)
from trpo_tf.export.spaces import space_from_metadata, space_to_metadata
from trpo_tf.export.tflite import litert_runner, to_tflite

__all__ = [
    "DETERMINISTIC_SIGNATURES", "FORMAT_VERSION", "INPUT_NAME", "METADATA_FILE", "SIGNATURES", "build_metadata",
    "check_export_dir", "describe_signatures", "export_saved_model", "library_versions", "litert_runner",
    "load_saved_model", "next_version", "read_metadata", "resolve_saved_model_dir", "rest_predict", "serving_module",
    "signature_graphs", "space_from_metadata", "space_to_metadata", "to_onnx", "to_tflite", "write_saved_model",
]
