"""Stand-ins for the native module (`predsparse.nn.native._native`) that the benchmarks swap in to see
where a step's time goes: every call a no-op, or every call timed."""

from __future__ import annotations

import time


class NoopNative:
    """Every native call returns at once (outputs keep their contents); constants come from the real
    module, but ISA reads "none", so that no one mistakes it for the real kernels."""

    ISA = "none"

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        value = getattr(self.real, name)
        return (lambda *args: None) if callable(value) else value


class TimedNative:
    """Every native call runs the real one and adds its wall time to `spent[name]`."""

    def __init__(self, real):
        self.real, self.spent = real, {}

    def __getattr__(self, name):
        function = getattr(self.real, name)
        if not callable(function):
            return function

        def timed_call(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start

        return timed_call
