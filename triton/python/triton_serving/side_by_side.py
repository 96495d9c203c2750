"""Decoupled Python models whose requests run side by side on a thread pool.

``execute`` hands each request to the pool and returns at once; each request then
answers through its own response sender, ending with the final flag, and a failure
goes back to its caller as a typed error (triton_serving.errors). A model subclasses
``SideBySide``, starts the pool in ``initialize`` and defines ``answer``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import triton_python_backend_utils as pb_utils

from triton_serving.errors import triton_error

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class SideBySide:
    pool: ThreadPoolExecutor

    def start_pool(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(workers)

    def answer(self, request, sender) -> None:
        """Send this request's responses (the final flag follows)."""
        raise NotImplementedError

    def execute(self, requests):
        for request in requests:
            self.pool.submit(self._serve, request)
        return None

    def finalize(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _serve(self, request) -> None:
        sender = request.get_response_sender()
        try:
            self.answer(request, sender)
            sender.send(flags=FINAL)
        except Exception as exc:  # every failure goes back to the caller, typed
            sender.send(pb_utils.InferenceResponse(error=triton_error(exc)), flags=FINAL)
