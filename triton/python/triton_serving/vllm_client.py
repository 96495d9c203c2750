"""The Spark LLM served by vLLM: a prompt in, its audio tokens streamed back.

vLLM (its OpenAI-compatible server, a process of its own beside Triton) does the
decoding: continuous batching, the paged KV cache with prefix reuse, CUDA graphs on
a GPU. This client sends it the prompt's token ids, exactly as Spark TTS's
tokenizer makes them, and reads the generated ids from the stream. vLLM counts
every token toward ``max_tokens``; Spark counts only the semantic tokens after the
globals, so vLLM is given the whole budget and the client ends the stream itself
when the request has had enough. Closing the connection aborts the request in vLLM.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from transformers import AutoTokenizer

from spark_tts.llm_tokens import AudioToken, Reader, TokenTable, token_budget
from spark_tts.sampling import SamplingConfig, torch_seed
from triton_serving.errors import ModelError

MODEL_NAME = "spark-llm"


def vllm_seed(seed: int | None, cpu: bool) -> int | None:
    """The seed vLLM takes (an int64) for a uint64 ``seed``: on the CPU the value torch's
    32-bit generator keeps every bit of (spark_tts.sampling.torch_seed); on a GPU the
    same 64 bits as a two's-complement int64."""
    if seed is None:
        return None
    if cpu:
        return torch_seed(seed, "cpu")
    return seed - 2**64 if seed >= 2**63 else seed


def completion_body(
    prompt_ids: list[int], sampling: SamplingConfig, max_tokens: int, stop_ids: set[int],
    cpu: bool,
) -> dict:
    """The /v1/completions request for one prompt (streamed, ids only)."""
    body = {
        "model": MODEL_NAME,
        "prompt": prompt_ids,
        "max_tokens": max_tokens,
        "temperature": sampling.temperature,
        # vLLM's 0 is "no top-k", as it is Spark's for any k <= 0.
        "top_k": max(sampling.top_k, 0),
        "top_p": sampling.top_p,
        "stop_token_ids": sorted(stop_ids),
        "stream": True,
        "return_token_ids": True,
        "detokenize": False,
        "skip_special_tokens": False,
    }
    seed = vllm_seed(sampling.seed, cpu)
    if seed is not None:
        body["seed"] = seed
    return body


class _Watch:
    """Closes the sockets of streams that were called off, so a read blocked on vLLM
    (queued behind others, say) ends at once and vLLM aborts the request.

    It polls each stream's ``called_off``, which must be safe to call from any thread
    at any time (a file's existence, an event): never the Triton request itself, whose
    API belongs to the thread serving it. The lock only guards the table; nothing is
    called while it is held, so a slow check can hold up no stream's start or end.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self._streams: dict[int, tuple[Callable[[], bool], socket.socket]] = {}
        self._lock = threading.Lock()
        self._interval = interval
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="vllm-cancel-watch", daemon=True).start()

    def add(self, key: int, called_off: Callable[[], bool], sock: socket.socket) -> None:
        with self._lock:
            self._streams[key] = (called_off, sock)

    def remove(self, key: int) -> None:
        with self._lock:
            self._streams.pop(key, None)

    def _run(self) -> None:
        while not self._wake.wait(self._interval):
            with self._lock:
                streams = list(self._streams.items())
            for key, (called_off, sock) in streams:
                try:
                    if called_off():
                        self.remove(key)
                        # A socket closed meanwhile by its stream raises OSError (its
                        # descriptor is not reused under a closed socket object).
                        sock.shutdown(socket.SHUT_RDWR)
                except Exception:  # noqa: BLE001 - one stream's check must not stop the rest
                    pass


class VllmLlm:
    """Spark TTS generation through a vLLM server at ``url`` (http://host:port)."""

    def __init__(self, url: str, llm_dir: Path, cpu: bool, timeout: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the LLM server's URL {url!r} is not http://host:port")
        self.host, self.port = parts.hostname, parts.port or 80
        self.url = url
        self.cpu = cpu
        # The longest wait for the server's next bytes: generous, since a first token can
        # wait behind many prompts' prefill on a loaded CPU; a cancel does not wait for it.
        self.timeout = timeout
        self.tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
        self.table = TokenTable(self.tokenizer)
        self._max_model_len: int | None = None
        self._watch = _Watch()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _request(self, method: str, path: str, body: dict | None = None):
        connection = self._connect()
        try:
            connection.request(
                method, path, body=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            # The socket as sent on: a response that ends with the connection takes the
            # connection's own handle away (connection.sock is None from then on).
            sock = connection.sock
            return connection, sock, connection.getresponse()
        except OSError as exc:
            connection.close()
            raise ModelError(
                "UNAVAILABLE", f"the LLM server at {self.url} is not reachable: {exc}"
            ) from None

    def max_model_len(self) -> int:
        """The longest prompt plus generation the server takes (asked once)."""
        if self._max_model_len is None:
            connection, _, response = self._request("GET", "/v1/models")
            try:
                models = json.loads(response.read() or b"{}").get("data", [])
            finally:
                connection.close()
            lengths = [m.get("max_model_len") for m in models if m.get("id") == MODEL_NAME]
            if response.status != 200 or not lengths:
                raise ModelError("UNAVAILABLE", f"the LLM server at {self.url} does not serve "
                                                f"{MODEL_NAME} (HTTP {response.status})")
            self._max_model_len = int(lengths[0])
        return self._max_model_len

    def generate(
        self, prompt: str, sampling: SamplingConfig, cancelled: Callable[[], bool] = lambda: False,
        called_off: Callable[[], bool] | None = None,
    ) -> Iterator[AudioToken]:
        """Audio tokens as vLLM generates them, until a stop token, ``sampling.max_tokens``
        semantic tokens (after the globals, where the prompt asks for them), the budget,
        or a cancel; leaving early aborts the request in vLLM.

        ``cancelled`` is asked on the caller's thread, between the server's events;
        ``called_off`` (any thread, see _Watch) also ends a read that is waiting for one.
        """
        reader = Reader(self.table, prompt, sampling.max_tokens)
        if reader.done or cancelled():
            return
        prompt_ids = self.tokenizer(prompt).input_ids
        room = self.max_model_len() - len(prompt_ids)
        if room < 1:
            raise ModelError("INVALID_ARGUMENT", f"the prompt is {len(prompt_ids)} tokens; the "
                                                 f"LLM takes {self.max_model_len()} in all")
        budget = min(token_budget(prompt, sampling.max_tokens), room)
        body = completion_body(prompt_ids, sampling, budget, self.table.stop_ids, self.cpu)
        connection, sock, response = self._request("POST", "/v1/completions", body)
        key = id(response)
        try:
            if response.status != 200:
                raise _server_error(response)
            if called_off is not None and sock is not None:
                self._watch.add(key, called_off, sock)
            for token_ids in _token_ids(response):
                for token_id in token_ids:
                    token = reader.read(token_id)
                    if token is not None:
                        yield token
                    if reader.done:
                        return
                if cancelled():
                    return
        except (OSError, http.client.HTTPException) as exc:
            if cancelled() or (called_off is not None and called_off()):
                return
            raise ModelError("UNAVAILABLE", f"the LLM server at {self.url} broke off: {exc}") \
                from None
        finally:
            self._watch.remove(key)
            connection.close()


def _server_error(response) -> ModelError:
    """vLLM's refusal as a typed error: a 4xx names what was wrong with the request."""
    raw = response.read()
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace")[:500]
    status = "INVALID_ARGUMENT" if 400 <= response.status < 500 else "UNAVAILABLE"
    return ModelError(status, f"LLM server (HTTP {response.status}): {message}")


def _token_ids(response) -> Iterator[list[int]]:
    """The generated ids of each event of vLLM's server-sent stream."""
    while True:
        line = response.readline()
        if not line:
            raise http.client.IncompleteRead(b"", None)
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise ModelError("INTERNAL", f"LLM server: {event['error'].get('message', event)}")
        for choice in event.get("choices", ()):
            yield choice.get("token_ids") or []
