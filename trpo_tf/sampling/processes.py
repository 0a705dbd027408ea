"""Sampling workers as local processes: the ``"local"`` backend of :mod:`trpo_tf.sampling.workers`.

Each worker is ``python -m trpo_tf.sampling.worker_process``, a child process that talks to the
learner over a private socket pair: it imports only the sampler, never the user's ``__main__``,
so scripts need no ``if __name__ == "__main__"`` guard.
"""

from __future__ import annotations

import multiprocessing.connection
import signal
import socket
import subprocess
import sys
from typing import Any, Sequence

from trpo_tf.sampling.workers import SamplerWorker, WorkerDiedError, register_backend


class _ProcessHandle:
    """A :class:`SamplerWorker` in a child Python process, talking over a private socket pair.

    The child runs ``python -m trpo_tf.sampling.worker_process``: it imports only the sampler,
    never the user's ``__main__``, so scripts need no ``if __name__ == "__main__"`` guard.
    """

    def __init__(self, arguments: tuple[Any, ...]):
        mine, theirs = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, "-m", "trpo_tf.sampling.worker_process",
                                         str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        self.connection = multiprocessing.connection.Connection(mine.detach())
        self.connection.send(list(sys.path))  # modules beside the user's script import in the worker too
        self.connection.send(arguments)

    def submit(self, method: str, *args: Any) -> None:
        try:
            self.connection.send((method, args))
        except OSError:
            pass  # the worker died: result() says so

    def share(self, value: Any) -> Any:
        return value  # pickled into each worker's pipe

    def result(self) -> Any:
        try:
            status, value = self.connection.recv()
        except (EOFError, OSError):
            raise WorkerDiedError(f"died (exit code {self.process.wait()})") from None
        if status == "error":
            raise value
        return value

    def shutdown(self) -> None:
        try:
            self.connection.send(("close", ()))
            self.connection.recv()
        except (OSError, EOFError):
            pass
        self.connection.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(connection: multiprocessing.connection.Connection) -> None:
    """A worker process's loop on ``connection`` (its end of the socket pair to the learner): take the
    learner's import path (first message), build the :class:`SamplerWorker` from the second (its
    constructor's arguments), then answer ``(method, args)`` calls with ``("ok", value)`` or
    ``("error", exception)`` until "close" or until the learner is gone.

    Ctrl-C reaches the whole process group: the worker ignores it and the learner, which
    handles it, closes the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.path.extend(entry for entry in connection.recv() if entry not in sys.path)
        worker = SamplerWorker(*connection.recv())
    except EOFError:
        return
    except Exception as error:  # noqa: BLE001 - reported to the learner, which raises it
        connection.send(("error", error))
        return
    while True:
        try:
            method, args = connection.recv()
        except EOFError:  # the learner is gone
            worker.close()
            return
        try:
            value = getattr(worker, method)(*args)
        except Exception as error:  # noqa: BLE001 - reported to the learner, which raises it
            connection.send(("error", error))
            continue
        connection.send(("ok", value))
        if method == "close":
            return


@register_backend("local")
def process_workers(arguments: Sequence[tuple[Any, ...]], connect_timeout: float = 30.0) -> list[_ProcessHandle]:
    """One local worker process per :class:`SamplerWorker` argument tuple in ``arguments``, each a handle
    the learner submits calls to. ``connect_timeout`` is unused: there is nothing to connect to."""
    return [_ProcessHandle(args) for args in arguments]
