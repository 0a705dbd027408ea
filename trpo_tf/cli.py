"""The ``trpo-tf`` command: train, evaluate, export and plot.

    trpo-tf train CartPole-v1 --timesteps 100000
    trpo-tf evaluate exported/CartPole-v1 --env CartPole-v1 --json
    trpo-tf export runs/CartPole-v1-seed0 exported/CartPole-v1 --tflite
    trpo-tf plot runs/CartPole-v1-seed0 runs/CartPole-v1-seed1 -o cartpole.png
    trpo-tf tune Hopper-v5 --trials 50 --timesteps 1000000 --jobs 2

Bad input (unknown environment, unknown hyperparameter, missing or corrupted run,
mismatched spaces: the package's :class:`~trpo_tf.errors.InputError` types) is reported as
one line on stderr with exit code 2; any other exception is a bug and keeps its traceback
(exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shlex
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from trpo_tf import evaluation, startup, tuning
from trpo_tf.errors import InputError, SpaceMismatchError
from trpo_tf.files import DEFAULT_CHECKPOINT_EVERY

if TYPE_CHECKING:  # the command answers --help before TensorFlow is imported
    import gymnasium as gym

    from trpo_tf import TRPO, TRPOConfig

PROG = "trpo-tf"
DEFAULT_SEED = 0
DEFAULT_TIMESTEPS = 1_000_000


class CLIError(InputError):
    """Bad input found by the command line itself: printed as one line on stderr, exit code 2."""


# --------------------------------------------------------------------------- argument parsing

class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line that points to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.HelpFormatter):
    """Appends "(default: X)" to options that have a default and do not state it themselves."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The ``trpo-tf`` argument parser: its commands train, evaluate, export and plot, each with its options."""
    parser = _Parser(prog=PROG, formatter_class=_Formatter,
                     description="Trust Region Policy Optimization on TensorFlow 2.")
    from trpo_tf import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
        "train", formatter_class=_Formatter, help="train a policy on a gymnasium environment",
        description="Train TRPO on ENV_ID. Hyperparameters: TRPOConfig defaults, then the preset for ENV_ID "
                    "(trpo_tf/presets/<ENV_ID>.yaml) if there is one, then --config, --n-envs and --set. "
                    "The run directory gets run.json (env, seed, command), config.yaml (the final config), "
                    "progress.csv, TensorBoard events and checkpoints/.")
    train.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id, e.g. CartPole-v1")
    train.add_argument("--timesteps", type=_positive_int, default=None, metavar="N",
                       help=f"environment steps to train for in total (default: the preset's or --config's "
                            f"'timesteps', else {DEFAULT_TIMESTEPS:,}; with --resume: the run's)")
    train.add_argument("--seed", type=_non_negative_int, default=None, metavar="S",
                       help=f"seed of environments, weights and sampling (default: {DEFAULT_SEED}; "
                            "with --resume: the run's)")
    train.add_argument("--n-envs", type=_positive_int, default=None, metavar="K",
                       help="parallel environments, same as --set n_envs=K (default: the preset's, else 1)")
    train.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                       help="sample in K worker processes, each with n_envs/K environments and its own copy "
                            "of the policy (--set n_workers=K; n_envs becomes K unless it is a multiple of K)")
    train.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run the workers as Ray actors (--set sampler=ray), on the Ray cluster at ADDRESS "
                            "(e.g. 10.0.0.1:6379) or RAY_ADDRESS, else on a new local Ray; needs the [ray] extra")
    train.add_argument("--config", default=None, metavar="FILE.yaml",
                       help="YAML mapping of TRPOConfig fields (and optionally 'timesteps'); "
                            "a run's config.yaml works")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one TRPOConfig field; VALUE is YAML, e.g. --set max_kl=0.02 "
                            "--set policy_hidden=[32,32] (repeatable)")
    train.add_argument("--no-preset", action="store_true", help="ignore the preset for ENV_ID")
    train.add_argument("--logdir", default=None, metavar="DIR",
                       help="run directory (default: runs/<ENV_ID>-seed<S>)")
    train.add_argument("--checkpoint-every", type=_non_negative_int, default=DEFAULT_CHECKPOINT_EVERY,
                       metavar="N", help="checkpoint every N iterations (0: only at the end)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in the run directory from its last checkpoint, with its "
                            "recorded config (--set/--config/--n-envs may be repeated, not changed)")
    train.add_argument("--trust-run", action="store_true",
                       help="with --resume: restore the environments' pickled state even when it is not signed "
                            "with your run key for this run (a run written elsewhere or by an older trpo_tf), and "
                            "import the module a 'module:Env-v0' id in its run.json names; both run code, so only "
                            "for runs you trust")
    train.add_argument("--fresh-episodes", action="store_true",
                       help="with --resume: leave the environments' pickled state unread and start fresh "
                            "episodes (safe for any run; the history then differs from an uninterrupted run)")
    train.add_argument("--export", default=None, metavar="DIR",
                       help="export the final policy as a SavedModel to DIR/<version>/")
    train.add_argument("--eval-episodes", type=_positive_int, default=evaluation.DEFAULT_EPISODES, metavar="N",
                       help="episodes of the evaluation recorded with --export")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bar; print only errors and the final summary line")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", formatter_class=_Formatter, help="evaluate a SavedModel export or a training run",
        description="Run deterministic episodes with a policy. PATH is a SavedModel export (a version "
                    "folder, or the folder above: its highest version is used), run through its "
                    "serving_default signature with TensorFlow alone, or a training run directory "
                    "(its last checkpoint).")
    evaluate.add_argument("path", metavar="PATH", help="SavedModel export or training run directory")
    evaluate.add_argument("--env", default=None, metavar="ENV_ID",
                          help="environment to evaluate on (default: the one recorded with the policy)")
    evaluate.add_argument("--episodes", type=_positive_int, default=evaluation.DEFAULT_EPISODES, metavar="N",
                          help="number of episodes")
    evaluate.add_argument("--seed", type=_non_negative_int, default=evaluation.DEFAULT_SEED, metavar="S",
                          help="episode i starts from reset(seed=S+i)")
    evaluate.add_argument("--trust-run", action="store_true",
                          help="import the module that the recorded environment id names ('module:Env-v0' in a "
                               "run's run.json or an export's metadata); runs code, so only for files you trust "
                               "(or pass --env yourself)")
    evaluate.add_argument("--json", action="store_true",
                          help='print {"mean_return", "std_return", "episodes"} as JSON')
    evaluate.add_argument("--render-video", default=None, metavar="DIR",
                          help="record every episode as a video in DIR (needs the moviepy package)")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser(
        "export", formatter_class=_Formatter, help="export a training run's policy as a SavedModel",
        description="Export the policy of RUN_DIR's last checkpoint to OUT_DIR/<version>/ (TF Serving "
                    "layout, with assets/metadata.json), and with --tflite also to "
                    "OUT_DIR/<version>/model.tflite, with --onnx to OUT_DIR/<version>/onnx/.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="training run directory")
    export.add_argument("out_dir", metavar="OUT_DIR", help="export directory (versions go below it)")
    export.add_argument("--tflite", action="store_true", help="also convert to TFLite (LiteRT)")
    export.add_argument("--onnx", action="store_true",
                        help="also convert each signature to OUT_DIR/<version>/onnx/<signature>.onnx "
                             "(needs pip install -e '.[onnx]')")
    export.add_argument("--env", default=None, metavar="ENV_ID",
                        help="environment to build the policy on and evaluate (default: the run's)")
    export.add_argument("--trust-run", action="store_true",
                        help="import the module that run.json's environment id names ('module:Env-v0'); runs "
                             "code, so only for runs you trust (or pass --env yourself)")
    export.add_argument("--version", type=_non_negative_int, default=None, metavar="N",
                        help="version folder (default: one more than the highest in OUT_DIR)")
    export.add_argument("--eval-episodes", type=_positive_int, default=evaluation.DEFAULT_EPISODES, metavar="N",
                        help="episodes of the evaluation recorded in the metadata")
    export.set_defaults(handler=cmd_export)

    plot = commands.add_parser(
        "plot", formatter_class=_Formatter, help="plot learning curves from progress.csv files",
        description="Plot episode_return_mean against timesteps. Each LOGDIR is a run directory or a "
                    "directory of runs; runs whose names differ only by '-seed<N>' are drawn as one "
                    "curve: their mean and spread on a common timestep grid.")
    plot.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="run directory or directory of runs")
    plot.add_argument("-o", "--output", default="learning_curves.png", metavar="FILE.png", help="image to write")
    plot.add_argument("--band", choices=("minmax", "std"), default="minmax",
                      help="spread over runs: min–max or ±1 standard deviation")
    plot.add_argument("--key", default="episode_return_mean", help="progress.csv column to plot")
    plot.add_argument("--title", default=None, help="plot title")
    plot.set_defaults(handler=cmd_plot)

    tune = commands.add_parser(
        "tune", formatter_class=_Formatter, help="search hyperparameters with Optuna (needs the [tune] extra)",
        description="Tune TRPOConfig on ENV_ID: each trial samples a config from the search space (TPE), trains "
                    "it on each seed for --timesteps steps with periodic deterministic evaluations that feed a "
                    "median pruner, and scores the mean final evaluation return. The study lives in a database "
                    "(--storage): the same command again continues it, and commands on several machines given "
                    "one URL share it. --out gets best.yaml (for trpo-tf train ENV_ID --config best.yaml), "
                    "trials.csv and plots. See docs/tuning.md.")
    tune.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id, e.g. Hopper-v5")
    tune.add_argument("--trials", type=_positive_int, required=True, metavar="N",
                      help="finished (complete or pruned) trials the study should have in total")
    tune.add_argument("--timesteps", type=_positive_int, required=True, metavar="T",
                      help="environment steps each trial trains for, per seed")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="Optuna storage URL, e.g. postgresql://user:password@host/db (default: "
                           "sqlite:///OUT/study.db)")
    tune.add_argument("--study", default=None, metavar="NAME", help="study name (default: ENV_ID)")
    tune.add_argument("--out", default=None, metavar="DIR", help="results directory (default: runs/tune-ENV_ID)")
    tune.add_argument("--jobs", type=_positive_int, default=1, metavar="J", help="trials at once, one process each")
    tune.add_argument("--seeds", type=_positive_int, default=1, metavar="K",
                      help="train each trial on seeds 0..K-1 and score the mean")
    tune.add_argument("--space", default=None, metavar="FILE.yaml",
                      help="search space replacing the default (with 'extends: default': changing it)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="fix one TRPOConfig field for every trial (VALUE is YAML; repeatable)")
    tune.add_argument("--workers", type=_positive_int, default=None, metavar="W",
                      help="each trial samples in W worker processes (n_workers=W; the default space's n_envs "
                           "choices are multiplied by W)")
    tune.add_argument("--heartbeat", type=_positive_int, default=tuning.DEFAULT_HEARTBEAT, metavar="SECONDS",
                      help="a running trial's heartbeat period; one silent for twice this is run again")
    tune.add_argument("--evaluations", type=_positive_int, default=tuning.DEFAULT_EVALUATIONS, metavar="E",
                      help="evaluations per training run, reported to the pruner")
    tune.add_argument("--eval-episodes", type=_positive_int, default=evaluation.DEFAULT_EPISODES, metavar="N",
                      help="deterministic episodes per evaluation")
    tune.set_defaults(handler=cmd_tune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trpo-tf`` with the arguments ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join([PROG, shlex.join(argv)])
    if args.handler is not cmd_plot:  # the command owns its process: a quiet TensorFlow, errors shown
        startup.quiet(import_now=args.handler is not cmd_tune)  # tune's trials import it in their processes
    with warnings.catch_warnings(), _logging_quieted(getattr(args, "quiet", False)):
        if getattr(args, "quiet", False):
            from trpo_tf.checkpoint import CheckpointWarning
            warnings.simplefilter("ignore")
            warnings.simplefilter("default", CheckpointWarning)
        formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except InputError as error:  # bad input is one line; anything else is a bug and keeps its traceback
            print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
            return 2
        finally:
            warnings.formatwarning = formatwarning


# --------------------------------------------------------------------------- train

def cmd_train(args: argparse.Namespace) -> int:
    """``trpo-tf train`` with the parsed ``args``: train in the run directory, holding its lock throughout
    (a second training there is refused); returns the exit status."""
    from trpo_tf import export as exporting
    from trpo_tf import rundir, signing
    from trpo_tf.sampling import check_env_id, env_module

    if not args.resume or env_module(args.env_id) is None:  # a resumed run's module: as its trust allows (_resume)
        check_env_id(args.env_id)
    if args.ray:
        os.environ["RAY_ADDRESS"] = args.ray  # ray.init() connects to it
    for flag, given in (("--trust-run", args.trust_run), ("--fresh-episodes", args.fresh_episodes)):
        if given and not args.resume:
            raise CLIError(f"{flag} applies to --resume only")
    if args.trust_run and args.fresh_episodes:
        raise CLIError("--trust-run and --fresh-episodes exclude each other: choose one")
    seed = DEFAULT_SEED if args.seed is None else args.seed
    run_dir = args.logdir or os.path.join("runs", f"{_safe_name(args.env_id)}-seed{seed}")
    new_run = None if args.resume else _resolve_config(args)  # bad input fails before the directory is made
    if args.export:
        exporting.check_export_dir(args.export)  # not after training
    signing.run_key()  # checkpoints are signed: a missing or bad key fails now, not at the first save
    with rundir.lock_run_dir(run_dir, create=not args.resume):
        return _train(args, run_dir, seed, new_run)


def _train(args: argparse.Namespace, run_dir: str, seed: int, new_run: tuple[TRPOConfig, int, str] | None) -> int:
    """Train a new run (``new_run``: its config, timesteps and their sources) or resume one."""
    from trpo_tf import TRPO, checkpoint, rundir
    from trpo_tf import export as exporting

    say = _printer(args.quiet)

    if new_run is None:
        agent, total = _resume(args, run_dir)
        say(f"resuming {run_dir} from iteration {len(agent.history)} at {agent.timesteps:,} timesteps "
            f"(training to {total:,})")
    else:
        config, total, sources = new_run
        rundir.check_new_run_dir(run_dir)
        agent = TRPO(args.env_id, config, seed=seed)
        checkpoint.write_run(run_dir, agent, command=args.command_line, total_timesteps=total)
        say(f"training {args.env_id} for {total:,} timesteps in {run_dir} (config: {sources})")

    start = time.perf_counter()
    try:  # --timesteps is the run's total: a resumed run trains what it has left
        agent.learn(max(0, total - agent.timesteps), log_dir=run_dir, progress_bar=not args.quiet,
                    checkpoint_every=args.checkpoint_every)
    except KeyboardInterrupt:  # mid-iteration: the agent may be half-updated, so do not save it
        last = checkpoint.latest(run_dir)
        where = f"the last checkpoint is {last}" if last else "no checkpoint was written"
        print(f"{PROG}: interrupted; {where}; continue with: {_resume_command(run_dir, args.env_id)}",
              file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start

    summary = (f"{args.env_id}: {agent.timesteps:,} timesteps, {len(agent.history)} iterations, "
               f"episode_return_mean {_last_return(agent):.2f} ({elapsed:.1f}s); run: {run_dir}")
    if args.export:
        path = agent.export(args.export, episodes=args.eval_episodes, command=args.command_line)
        result = exporting.read_metadata(path)["evaluation"]
        summary += (f"; export: {path} (evaluation {result['mean_return']:.2f} ± "
                    f"{result['std_return']:.2f} over {_episodes(result['episodes'])})")
    print(summary)
    return 0


def _resolve_config(args: argparse.Namespace) -> tuple[TRPOConfig, int, str]:
    """(TRPOConfig, total timesteps, description of the sources) for a new run."""
    from trpo_tf import TRPOConfig, presets
    from trpo_tf.config import check_field_names

    fields: dict[str, Any] = {}
    timesteps = None
    sources = []
    preset = None if args.no_preset else presets.load(args.env_id)
    if preset is not None:
        preset_fields, timesteps = preset
        fields.update(preset_fields)
        sources.append(f"preset {args.env_id}")
    if args.config:
        file_fields, file_timesteps = presets.read_file(args.config)
        check_field_names(file_fields, args.config)
        fields.update(file_fields)
        timesteps = file_timesteps or timesteps
        sources.append(args.config)
    if args.n_envs is not None:
        fields["n_envs"] = args.n_envs
        sources.append(f"--n-envs {args.n_envs}")
    if args.workers is not None:
        fields["n_workers"] = args.workers
        sources.append(f"--workers {args.workers}")
        if args.n_envs is None and fields.get("n_envs", 1) % args.workers:
            fields["n_envs"] = args.workers
            sources[-1] += f" (n_envs {args.workers})"
    if args.ray is not None:
        fields["sampler"] = "ray"
        sources.append("--ray")
    for item in args.set:
        key, text, value = _setting(item)
        check_field_names([key], f"--set {item}")
        fields[key] = value
        sources.append(f"--set {key}={text}")
    try:
        config = TRPOConfig.from_dict(fields)
    except TypeError as error:
        raise CLIError(str(error)) from None
    total = args.timesteps or timesteps or DEFAULT_TIMESTEPS
    return config, total, ", ".join(sources) or "defaults"


def _setting(item: str) -> tuple[str, str, Any]:
    """``--set KEY=VALUE`` → (key, VALUE's text, VALUE parsed as YAML)."""
    from trpo_tf import presets

    key, separator, text = item.partition("=")
    key = key.strip()
    if not separator or not key:
        raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
    return key, text, presets.parse_yaml(text, f"--set {item}")


def _resume(args: argparse.Namespace, run_dir: str) -> tuple[TRPO, int]:
    """(restored agent, total timesteps) of the run in ``run_dir``; changes nothing on disk."""
    from trpo_tf import TRPO, checkpoint

    info = checkpoint.read_run_info(run_dir)
    if info["env_id"] != args.env_id:
        raise CLIError(f"{run_dir} is a run of {info['env_id']}, not {args.env_id}")
    if args.seed is not None and int(info["seed"]) != args.seed:
        raise CLIError(f"{run_dir} is a run with seed {info['seed']}, not {args.seed}")
    given = [flag for flag, value in (("--config", args.config), ("--set", args.set),
                                      ("--n-envs", args.n_envs is not None), ("--no-preset", args.no_preset),
                                      ("--workers", args.workers is not None), ("--ray", args.ray is not None))
             if value]
    if given:  # allowed when they describe the recorded config, as when a command is re-run with --resume
        requested, _, _ = _resolve_config(args)
        recorded = checkpoint.read_config(run_dir)
        changed = [f"{key} {value!r} (recorded: {recorded.to_dict()[key]!r})"
                   for key, value in requested.to_dict().items() if recorded.to_dict()[key] != value]
        if changed:
            raise CLIError(f"{', '.join(given)} would change the config of the run being resumed: "
                           f"{'; '.join(changed)}; a run continues with its recorded config "
                           f"(edit {os.path.join(run_dir, checkpoint.CONFIG_FILE)} to change it)")
    if not checkpoint.checkpoints(run_dir):
        raise CLIError(f"{run_dir} has no checkpoint to resume from (it stopped before its first "
                       f"checkpoint); delete it to start again, or start a new run with another --logdir")
    # Imports a module the run's env id names, and unpickles the environments' state, only when this user's
    # key signed them for this run, or with --trust-run; the env id so checked is then passed as the user's.
    checkpoint.check_recorded_env(run_dir, info["env_id"], args.trust_run, signed=True, env_allowed=False)
    agent = TRPO.load(run_dir, env=info["env_id"], resume=not args.fresh_episodes, trust=args.trust_run)
    total = args.timesteps or info.get("total_timesteps") or DEFAULT_TIMESTEPS
    checkpoint.update_run(run_dir, total_timesteps=total,
                          resumed=list(info.get("resumed") or []) + [args.command_line])
    return agent, total


def _resume_command(run_dir: str, env_id: str) -> str:
    return shlex.join([PROG, "train", env_id, "--resume", "--logdir", run_dir])


def _last_return(agent: TRPO) -> float:
    return agent.history[-1]["episode_return_mean"] if agent.history else float("nan")


# --------------------------------------------------------------------------- evaluate

def cmd_evaluate(args: argparse.Namespace) -> int:
    """``trpo-tf evaluate`` with the parsed ``args``: deterministic episodes with an export or a run directory."""
    from trpo_tf import checkpoint
    from trpo_tf import export as exporting

    if args.render_video and importlib.util.find_spec("moviepy") is None:
        raise CLIError("--render-video needs the 'moviepy' package, which is not installed "
                       "(pip install moviepy); trpo_tf does not depend on it")
    path = args.path
    if not os.path.exists(path):
        raise CLIError(f"no such file or directory: {path}")
    if os.path.isfile(os.path.join(path, checkpoint.RUN_FILE)):
        result, env_id, what = _evaluate_run(args, path)
    else:
        try:
            model_dir = exporting.resolve_saved_model_dir(path)
        except FileNotFoundError:
            raise CLIError(f"{path} is neither a SavedModel export (saved_model.pb in it or in a numeric "
                           f"version folder) nor a training run directory ({checkpoint.RUN_FILE})") from None
        result, env_id, what = _evaluate_saved_model(args, model_dir)
    if args.json:
        print(json.dumps({key: result[key] for key in ("mean_return", "std_return", "episodes")}))
    else:
        print(f"{env_id}: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} over "
              f"{_episodes(result['episodes'])} ({what})"
              + (f"; videos: {args.render_video}" if args.render_video else ""))
    return 0


def _evaluate_run(args: argparse.Namespace, run_dir: str) -> tuple[dict[str, Any], str, str]:
    """Evaluate the last checkpoint of a training run with the agent's own deterministic policy.

    Reads weights and JSON only: nothing from the run directory is unpickled.
    """
    from trpo_tf import TRPO, checkpoint
    from trpo_tf.export import space_to_metadata
    from trpo_tf.sampling import env_module

    recorded = checkpoint.read_run_info(run_dir)["env_id"]  # a module it names is not imported for --env
    own_env = args.env if args.env and isinstance(recorded, str) and env_module(recorded) else None
    agent = TRPO.load(run_dir, env=own_env, trust=args.trust_run)
    env_id = args.env or agent.env_id
    if env_id is None:
        raise CLIError(f"{run_dir} does not record an environment id; pass --env")
    env = _make_env(env_id, args.render_video, agent.config.env_kwargs if env_id == agent.env_id else None)
    try:
        _check_spaces({"env_id": agent.env_id, "observation_space": space_to_metadata(agent.observation_space),
                       "action_space": space_to_metadata(agent.action_space)}, env, env_id, run_dir,
                      mask_source=agent.mask_source)
        result = agent.evaluate(episodes=args.episodes, env=env, seed=args.seed)
    finally:
        env.close()
        agent.close()
    return result, env_id, f"run {run_dir} at {agent.timesteps:,} timesteps"


def _evaluate_saved_model(args: argparse.Namespace, model_dir: str) -> tuple[dict[str, Any], str, str]:
    """Evaluate an export through its ``serving_default`` signature, with TensorFlow alone."""
    from trpo_tf import export as exporting
    from trpo_tf.sampling import refuse_recorded_module

    try:
        metadata = exporting.read_metadata(model_dir)
    except FileNotFoundError:
        metadata = {}
    env_id = args.env or metadata.get("env_id")
    if env_id is None:
        raise CLIError(f"{model_dir} does not record an environment id; pass --env")
    if not args.env and not args.trust_run:
        refuse_recorded_module(env_id, os.path.join(model_dir, "assets", exporting.METADATA_FILE))
    named = metadata.get("observation_space", {}).get("type") == "Dict"  # one input per key
    act, input_spec, masked = evaluation.saved_model_actor(model_dir, dict_observations=named)
    # A policy that takes action masks acts on those the environment gives, from the recorded source.
    mask_source = ((metadata.get("action_masks") or {}).get("source") or "auto") if masked else None

    recorded_kwargs = metadata.get("config", {}).get("env_kwargs") if env_id == metadata.get("env_id") else None
    env = _make_env(env_id, args.render_video, recorded_kwargs)

    try:
        _check_spaces(metadata, env, env_id, model_dir, input_spec, mask_source)
        result = evaluation.run_episodes(env, act, args.episodes, args.seed, mask_source)
    finally:
        env.close()
    return result, env_id, f"SavedModel {model_dir}"


def _make_env(env_id: str, video_dir: str | None, env_kwargs: dict | None = None) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)``, recording every episode to ``video_dir`` when given."""
    import gymnasium as gym
    from trpo_tf.sampling import make_env

    if not video_dir:
        return make_env(env_id, env_kwargs)
    env = make_env(env_id, env_kwargs, render_mode="rgb_array")
    try:
        return gym.wrappers.RecordVideo(env, video_folder=video_dir, episode_trigger=lambda episode: True,
                                        name_prefix=_safe_name(env_id), disable_logger=True)
    except gym.error.DependencyNotInstalled as error:
        env.close()
        raise CLIError(f"--render-video: {_one_line(error)}") from None


def _check_spaces(metadata: dict[str, Any], env: gym.Env, env_id: str, source: str, input_spec: Any = None,
                  mask_source: str | None = None) -> None:
    """CLIError when ``env``'s spaces differ from those the policy was trained on (the observation space as the
    policy reads it: without the action masks when ``mask_source`` is an observation key)."""
    from trpo_tf.export import space_to_metadata
    from trpo_tf.sampling.masks import policy_observation_space

    trained_on = metadata.get("env_id") or "its training environment"
    problems = []
    for kind in ("observation", "action"):
        expected = metadata.get(f"{kind}_space")
        space = getattr(env, f"{kind}_space")
        if kind == "observation" and mask_source == "observation":
            space = policy_observation_space(space, mask_source)
        try:
            actual = space_to_metadata(space)
        except ValueError:
            actual = {"type": type(space).__name__, "repr": repr(space)}
        if expected is not None and _json_normal(expected) != _json_normal(actual):
            problems.append(f"{kind} space {_describe_space(actual)} (the policy's: {_describe_space(expected)}"
                            f"{'' if _describe_space(actual) != _describe_space(expected) else ', other bounds'})")
    if not metadata.get("observation_space") and input_spec is not None:
        expected_shape = tuple(input_spec.shape[1:])
        actual_shape = tuple(getattr(env.observation_space, "shape", ()) or ())
        if None not in expected_shape and expected_shape != actual_shape:
            problems.append(f"observations of shape {actual_shape} (the policy takes {expected_shape})")
    if problems:
        raise SpaceMismatchError(f"{env_id} does not match the policy in {source}, trained on {trained_on}: "
                       f"{env_id} has {'; '.join(problems)}")


def _describe_space(description: dict[str, Any]) -> str:
    kind = description.get("type", "?")
    if "shape" in description:
        return f"{kind}{tuple(description['shape'])}"
    for key in ("n", "nvec"):
        if key in description:
            return f"{kind}({description[key]})"
    return str(kind)


def _json_normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- export and plot

def cmd_export(args: argparse.Namespace) -> int:
    """``trpo-tf export`` with the parsed ``args``: export a run's last checkpoint; reads weights and JSON only
    (nothing is unpickled)."""
    from trpo_tf import TRPO
    from trpo_tf import export as exporting

    exporting.check_export_dir(args.out_dir)
    if args.version is not None and os.path.lexists(os.path.join(args.out_dir, str(args.version))):
        raise CLIError(f"{os.path.join(args.out_dir, str(args.version))} already exists; choose another "
                       f"--version or leave it out to use the next free one")
    if args.onnx:
        exporting.onnx.check_dependencies()  # before anything is written
    with TRPO.load(args.run_dir, env=args.env, trust=args.trust_run) as agent:
        path = agent.export(args.out_dir, version=args.version, episodes=args.eval_episodes if agent.env_id else 0,
                            command=args.command_line)
    evaluation_result = exporting.read_metadata(path)["evaluation"]
    line = f"exported {args.run_dir} ({agent.timesteps:,} timesteps) to {path}"
    if evaluation_result is not None:
        line += f" (evaluation {evaluation_result['mean_return']:.2f} ± {evaluation_result['std_return']:.2f})"
    if args.tflite:
        line += f"; TFLite: {exporting.to_tflite(path, os.path.join(path, 'model.tflite'))}"
    if args.onnx:
        onnx_dir = os.path.join(path, "onnx")
        exporting.to_onnx(path, onnx_dir)
        line += f"; ONNX: {onnx_dir}/<signature>.onnx"
    print(line)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``trpo-tf plot`` with the parsed ``args``: learning curves of the runs into one PNG."""
    from trpo_tf import plotting

    out = plotting.plot(args.logdirs, args.output, key=args.key, band=args.band, title=args.title)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- tune

def cmd_tune(args: argparse.Namespace) -> int:
    """``trpo-tf tune`` with the parsed ``args``: run the study to --trials finished trials; the last line
    names the best value, its trial and best.yaml."""
    fixed = {}
    for item in args.set:
        key, _, value = _setting(item)
        fixed[key] = value
    result = tuning.tune(args.env_id, args.trials, args.timesteps, storage=args.storage, study=args.study, out=args.out,
                  jobs=args.jobs, seeds=args.seeds, space=args.space, fixed=fixed, workers=args.workers,
                  heartbeat=args.heartbeat, evaluations=args.evaluations, eval_episodes=args.eval_episodes)
    for note in result.notes:
        print(note)
    print(result.summary(), flush=True)
    return 0 if result.best_trial is not None else 1


# --------------------------------------------------------------------------- helpers

def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _int(text: str) -> int:
    """An integer, also written as 1e6 or 1_000_000."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def _episodes(count: int) -> str:
    return f"{count} episode{'' if count == 1 else 's'}"


def _safe_name(env_id: str) -> str:
    return env_id.replace("/", "_").replace(":", "_")


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)
    return say


def _one_line(error: BaseException) -> str:
    """The error's message on one line (an InputError's in the command line's words)."""
    text = (error.for_command_line() if isinstance(error, InputError) else str(error)).strip() or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    return " ".join(text.split())


@contextlib.contextmanager
def _logging_quieted(quiet: bool) -> Iterator[None]:
    """With ``quiet``, Python logging below ERROR is off while the command runs: what other packages log
    as they start (Ray's cluster start-up lines, a warning logged on import) stays out of a quiet run."""
    if not quiet:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    return f"{PROG}: warning: {' '.join(str(message).split())}\n"


if __name__ == "__main__":
    sys.exit(main())
