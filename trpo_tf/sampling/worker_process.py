"""``python -m trpo_tf.sampling.worker_process FD``: a local sampling worker on the socket FD (see processes.py)."""

import multiprocessing.connection
import socket
import sys

from trpo_tf.sampling.processes import serve

if __name__ == "__main__":
    serve(multiprocessing.connection.Connection(socket.socket(fileno=int(sys.argv[1])).detach()))
