"""SIGINT and SIGTERM raise in the main thread, except inside deferred(), where they wait for its end."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pipeline.errors import Interrupted
from pipeline.output.signals import deferred, signals_raise


def test_a_signal_raises_outside_a_deferred_block_and_waits_inside_one() -> None:
    with signals_raise():
        with pytest.raises(Interrupted) as err:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        assert err.value.signum == signal.SIGTERM
    with signals_raise():
        with deferred() as held:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            os.kill(os.getpid(), signal.SIGTERM)  # a second one: the first is what is reported
            for _ in range(1000):
                pass
        assert held.signum == signal.SIGINT
        # the run is now stopping: later signals do not cut its cleanup short
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_delivered_to_another_thread_is_still_held() -> None:
    """The kernel may hand a process-directed signal to any thread; Python runs the handler in the
    main thread, which is inside the deferred block."""
    with signals_raise():
        with deferred() as held:
            t = threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGTERM))
            t.start()
            t.join()
            for _ in range(1000):
                pass
        assert held.signum == signal.SIGTERM
