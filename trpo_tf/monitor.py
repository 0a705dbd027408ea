"""Training progress as :meth:`TRPO.learn` callbacks: a progress bar, progress.csv, TensorBoard.

Each callback takes one history entry (a dict, see :meth:`TRPO.learn`) per iteration::

    callbacks = Callbacks([CSVLogger("run/progress.csv"), TensorBoardLogger("run"),
                           ProgressBar(total=100_000)])
    try:
        agent.learn(100_000, callback=callbacks)
    finally:
        callbacks.close()
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import socket
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Sequence

import tensorflow as tf
import tqdm

from trpo_tf import checkpoint
from trpo_tf.files import PROGRESS_FILE, atomic_write, create_new, open_append

if TYPE_CHECKING:
    from trpo_tf.trpo import TRPO

Entry = dict[str, Any]


class Callbacks:
    """Calls each of ``callbacks`` in order; returns False (stop training) when any of them does.
    :meth:`close` closes those that have a ``close``."""

    def __init__(self, callbacks: Iterable[Callable[[Entry], Any]]):
        self.callbacks = list(callbacks)

    def __call__(self, entry: Entry) -> bool:
        keep_going = True
        for callback in self.callbacks:
            if callback(entry) is False:
                keep_going = False
        return keep_going

    def close(self) -> None:
        """Close every callback that has a ``close``."""
        for callback in self.callbacks:
            close = getattr(callback, "close", None)
            if close is not None:
                close()


class ProgressBar:
    """A tqdm bar over timesteps showing steps/s, the mean episode return and the iteration.

    The first iteration also compiles the policy step and the value fit (seconds, many times a later
    iteration): its steps count as done but not towards the speed, so the time left is estimated
    from the iterations after it (and shown as "?" until the second).

    Args:
        total: the timestep count the bar runs to.
        initial: the timesteps already done (a resumed run).
        disable: draw nothing.
        description: the bar's label, e.g. the environment id.
    """

    def __init__(self, total: int, initial: int = 0, disable: bool = False, description: str | None = None):
        self.bar = tqdm.tqdm(total=total, initial=min(initial, total), unit="step", unit_scale=True,
                             dynamic_ncols=True, disable=disable, desc=description, smoothing=0.1)
        self.first, self.initial = True, self.bar.initial

    def __call__(self, entry: Entry) -> None:
        done = max(0, min(entry["timesteps"], self.bar.total) - self.bar.n)
        episode_return = entry.get("episode_return_mean", math.nan)
        self.bar.set_postfix_str(f"return {episode_return:.1f}, iteration {entry['iteration']}", refresh=False)
        if not self.first or self.bar.disable:
            self.bar.update(done)
            return
        self.first = False  # tqdm's speed: (n - initial) / elapsed until its moving average has a sample
        self.bar.n += done
        self.bar.initial = self.bar.last_print_n = self.bar.n
        self.bar.last_print_t = self.bar._time()
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar; its last line shows the whole run's speed, the first iteration's compilation included."""
        self.bar.initial = self.initial  # the last line shows the whole run's speed, compilation included
        self.bar.close()


class CSVLogger:
    """``progress.csv`` at ``path``: one row per iteration, the history keys as header.

    ``history`` (the entries already trained, e.g. when resuming) is written first, replacing
    whatever the file held — rows of iterations after the last checkpoint included — through a
    temporary file and ``os.replace``. Rows are flushed as they come. A key that appears after
    the first row (``eval_return_mean`` from an :class:`~trpo_tf.callbacks.EvalCallback`) adds
    a column: the file is rewritten once with the wider header, earlier rows leaving it empty.
    """

    def __init__(self, path: str, history: Sequence[Entry] = ()):
        self.path = path
        self.fields: list[str] = []
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._rewrite(list(history))
        self.handle = open_append(path)  # closed in close()

    def __call__(self, entry: Entry) -> None:
        if all(key in self.fields for key in entry):
            self._writer(self.handle).writerow(entry)
        else:
            self.handle.close()
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows: list[Entry] = list(csv.DictReader(handle))
            self._rewrite(rows + [entry])
            self.handle = open_append(self.path)
        self.handle.flush()

    def close(self) -> None:
        """Close the file."""
        self.handle.close()

    def _rewrite(self, rows: list[Entry]) -> None:
        """Replace the file with ``rows`` under a header of the fields so far and any new keys of ``rows``."""
        for row in rows:
            self.fields.extend(key for key in row if key not in self.fields)
        text = io.StringIO()
        if self.fields:
            writer = self._writer(text)
            writer.writeheader()
            writer.writerows(rows)
        atomic_write(self.path, text.getvalue())

    def _writer(self, handle: IO[str]) -> csv.DictWriter:
        return csv.DictWriter(handle, fieldnames=self.fields, restval="")


_EVENT_FILES = itertools.count()  # numbers this process's event files, as TensorFlow's writer does


class TensorBoardLogger:
    """TensorBoard scalars, one per numeric key of each entry (named ``prefix`` + key), at step = ``timesteps``.

    Writes its own event file in ``logdir``: a file-version record, then one ``Event`` record
    per entry holding every scalar as a ``Summary`` value with the scalar plugin's metadata (what
    ``tf.summary.scalar`` writes), framed by ``tf.io.TFRecordWriter`` and flushed at once: one
    write per iteration instead of a ``tf.summary.write`` per key, which cost a fast iteration a
    noticeable share of its time.
    """

    def __init__(self, logdir: str, prefix: str = "trpo/"):
        os.makedirs(logdir, exist_ok=True)
        # TensorBoard reads every file whose name holds "tfevents", in name order: the start time first.
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
                f".{next(_EVENT_FILES)}.v2")
        self.path = os.path.join(logdir, name)
        create_new(self.path)  # the writer below opens it by name: a new file, not whatever a link points to
        self.writer = tf.io.TFRecordWriter(self.path)
        self.prefix = prefix
        self.metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._write(tf.compat.v1.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def __call__(self, entry: Entry) -> None:
        values = [tf.compat.v1.Summary.Value(tag=self.prefix + key, metadata=self.metadata,
                                             tensor=tf.make_tensor_proto(float(value), tf.float32))
                  for key, value in entry.items() if isinstance(value, (bool, int, float))]
        self._write(tf.compat.v1.Event(wall_time=time.time(), step=int(entry["timesteps"]),
                                       summary=tf.compat.v1.Summary(value=values)))

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()

    def _write(self, event: tf.compat.v1.Event) -> None:
        self.writer.write(event.SerializeToString())
        self.writer.flush()


def run_directory_loggers(agent: TRPO, run_dir: str, checkpoint_every: int) -> list[Callable[[Entry], Any]]:
    """The callbacks by which ``agent`` writes its run directory ``run_dir``: progress.csv (the agent's
    history first), TensorBoard events and a checkpoint every ``checkpoint_every`` iterations."""
    return [CSVLogger(os.path.join(run_dir, PROGRESS_FILE), agent.history), TensorBoardLogger(run_dir),
            checkpoint.CheckpointCallback(agent, run_dir, checkpoint_every)]


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars of every event file in ``logdir``: tag → [(step, value), ...] in file order."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    files = sorted(name for name in os.listdir(logdir) if name.startswith("events.out.tfevents"))
    for name in files:
        for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((int(event.step), float(number)))
    return scalars
