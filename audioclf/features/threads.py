"""How many threads a feature network (YAMNet, EfficientAT) runs on, and pinning TensorFlow's pools.

A worker process of the extraction pool is one core's share of the work, so a
network there runs on one thread; in the app or a command it may use more. The
owner can set the number per network with the environment variable
``THREADS_ENV[kind]``::

    from audioclf.features.threads import network_threads

    network_threads("efficientat")          # None in the main process: TensorFlow's own choice
    network_threads("yamnet", main=4)       # 4, or $AUDIOCLF_YAMNET_THREADS, or 1 in a pool worker

This module imports only the standard library (TensorFlow when pools are pinned).
"""
from __future__ import annotations

import multiprocessing
import os

THREADS_ENV = {"yamnet": "AUDIOCLF_YAMNET_THREADS", "efficientat": "AUDIOCLF_EFFICIENTAT_THREADS"}


def network_threads(kind: str, main: int | None = None) -> int | None:
    """``$THREADS_ENV[kind]`` if it is a positive whole number, else 1 in a worker process
    (the pool uses the cores), else ``main`` (None: the runtime's own choice)."""
    env = os.environ.get(THREADS_ENV[kind], "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return 1 if multiprocessing.parent_process() is not None else main


def pin_tensorflow_threads(threads: int) -> None:
    """Give TensorFlow's intra- and inter-op pools ``threads`` threads, if it has not run
    anything yet in this process (the pools cannot change after; they are kept then)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
