"""How closely the ONNX files of exports answer what their SavedModels answer.

    python benchmarks/onnx_parity.py savedmodels/*/ --observations 10000

Each export is converted with ``trpo_tf.export.to_onnx`` into a temporary folder; its
deterministic signatures (serving_default, distribution, value) are run by onnxruntime and by
the SavedModel (``tf.saved_model.load``) on the same random observations drawn from the
observation space recorded in the metadata (Box: the bounds where finite, else N(0, 3²)).
Prints, per export and signature, the largest difference over every output, absolute and
relative (|ONNX − SavedModel| / max(|SavedModel|, 1)).
"""

from __future__ import annotations

import argparse
import tempfile

from trpo_tf import startup

tf = startup.import_tensorflow()  # first, as trpo-tf does: without TensorFlow's start-up log lines

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

from trpo_tf import export  # noqa: E402


def random_observations(space: gym.Space, count: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [count, *obs_shape] drawn as the module docstring says."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=count).astype(np.float32)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    bounded = np.isfinite(low) & np.isfinite(high)
    wide = rng.normal(0.0, 3.0, (count,) + space.shape)
    uniform = rng.uniform(np.where(bounded, low, 0.0), np.where(bounded, high, 1.0), (count,) + space.shape)
    return np.where(bounded, uniform, wide).astype(np.float32)


def largest_differences(saved_model_dir: str, count: int, seed: int) -> dict[str, tuple[float, float]]:
    """Signature → (largest absolute, largest relative difference) over its outputs and ``count`` observations."""
    path = export.resolve_saved_model_dir(saved_model_dir)
    space = export.space_from_metadata(export.read_metadata(path)["observation_space"])
    observations = random_observations(space, count, np.random.default_rng(seed))
    loaded = tf.saved_model.load(path)
    with tempfile.TemporaryDirectory() as folder:
        files = export.to_onnx(path, folder, signatures=list(export.DETERMINISTIC_SIGNATURES))
        differences = {}
        for signature, onnx_path in files.items():
            session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            ours = dict(zip(names, session.run(names, {export.INPUT_NAME: observations})))
            reference = {key: value.numpy().astype(np.float64) for key, value in
                         loaded.signatures[signature](**{export.INPUT_NAME: tf.constant(observations)}).items()}
            absolute = {key: np.abs(ours[key] - value) for key, value in reference.items()}
            differences[signature] = (max(float(d.max()) for d in absolute.values()),
                                      max(float((d / np.maximum(np.abs(reference[key]), 1.0)).max())
                                          for key, d in absolute.items()))
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", help="SavedModel exports (version folders or the folders above)")
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in args.exports:
        differences = largest_differences(path, args.observations, args.seed)
        print(f"{path}: " + ", ".join(f"{name} {absolute:.1e} ({relative:.1e} relative)"
                                      for name, (absolute, relative) in differences.items()), flush=True)


if __name__ == "__main__":
    main()
