"""Model backends for the relay: an OpenAI-compatible chat-completions endpoint over HTTP, and a local mechlab
checkpoint (an imported chat model such as SmolLM2, through its own chat template).

The HTTP backend never raises into the relay for a bad answer: timeouts, connection errors, HTTP errors and
malformed bodies are retried with exponential backoff (429 and 5xx, timeouts, refused connections) or returned
as a :class:`Reply` with ``error`` set, which the relay scores as an error step.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mechlab.delegate.relay import Reply, Step, check_budget_factor, reply_budget
from mechlab.errors import ConfigError, MechlabError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class OpenAIChatAgent:
    """POST {base_url}/chat/completions with one user message; the key comes from the environment variable
    ``api_key_env`` (none needed for a local server). With ``budget_factor`` and ``count_tokens`` (the served
    model's tokenizer, as a token counter) each step's ``max_tokens`` is :func:`reply_budget`'s, under
    ``max_tokens`` (or 4096 when that is None). Raises ConfigError for a budget factor without a token counter."""

    model: str
    base_url: str = field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    temperature: float = 0.0
    max_tokens: int | None = None
    budget_factor: float | None = None
    count_tokens: Callable[[str], int] | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"openai:{self.model}"
        _check_generation(self.temperature, self.max_tokens, self.budget_factor, "max_tokens")
        if self.budget_factor is not None and not callable(self.count_tokens):
            raise ConfigError("a reply budget (budget_factor) needs the served model's token counter (count_tokens)")

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", json.dumps(payload).encode(),
                                     headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def respond(self, prompt: str, step: Step | None = None) -> Reply:
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.temperature}
        if self.budget_factor is not None:
            cap = 4096 if self.max_tokens is None else self.max_tokens
            payload["max_tokens"] = reply_budget(step, self.count_tokens, self.budget_factor, cap)
        elif self.max_tokens:
            payload["max_tokens"] = self.max_tokens
        error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                body = self._post(payload)
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}"
                if e.code in RETRY_STATUS:
                    continue
                return Reply("", error=error)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                error = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                continue
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                return Reply("", error=f"malformed response body ({e})")
            try:
                text = body["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                return Reply("", error="response without choices[0].message.content")
            usage = body.get("usage") or {}
            return Reply(text, usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return Reply("", error=f"gave up after {self.retries + 1} attempts ({error})")


@dataclass
class LocalModelAgent:
    """A mechlab checkpoint with a chat template (e.g. `mechlab import gguf smollm2`), greedy by default. With
    ``budget_factor`` each reply stops at :func:`reply_budget`'s length (counted by the checkpoint's tokenizer),
    under ``max_new_tokens``. Its name is ``local:`` + the checkpoint folder's name (two checkpoints of one model,
    e.g. float and quantised, are two agents). Raises ConfigError for a negative or non-finite temperature, a
    token limit below 1, a budget factor that is not a finite number >= 1, or a checkpoint without a chat
    template."""

    checkpoint: str
    max_new_tokens: int = 2048
    temperature: float = 0.0
    budget_factor: float | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        from mechlab.checkpoint import load_checkpoint

        _check_generation(self.temperature, self.max_new_tokens, self.budget_factor, "max_new_tokens")
        self.ck = load_checkpoint(self.checkpoint)
        if not self.ck.meta.get("chat_template"):
            raise ConfigError(f"{self.checkpoint} has no chat template; import a chat model (mechlab import gguf ...)")
        self.name = f"local:{Path(self.ck.path).name}"

    def _count(self, text: str) -> int:
        return len(self.ck.tokenizer.encode(text))

    def _plan(self, prompt: str, step: Step | None) -> tuple[str, int, int] | Reply:
        """(chat text, prompt tokens, reply limit) of one step, or the error Reply of a prompt that fills the
        context: the limit is the reply budget, under the room the context leaves."""
        from mechlab.generation import chat_prompt, prompt_ids

        text = chat_prompt(self.ck, [{"role": "user", "content": prompt}])
        n_prompt = len(prompt_ids(self.ck.tokenizer, text))
        room = self.ck.config.max_seq_len - n_prompt
        if room <= 0:
            return Reply("", n_prompt, 0, error=f"prompt of {n_prompt} tokens exceeds the model's context")
        return text, n_prompt, min(reply_budget(step, self._count, self.budget_factor, self.max_new_tokens), room)

    def respond(self, prompt: str, step: Step | None = None) -> Reply:
        from mechlab.generation import Sampling, generate_text

        plan = self._plan(prompt, step)
        if isinstance(plan, Reply):
            return plan
        text, n_prompt, limit = plan
        answer = generate_text(self.ck, text, Sampling(limit, self.temperature, None, 0))
        return Reply(answer, n_prompt, self._count(answer))

    def respond_batch(self, requests: list[tuple[str, Step | None]]) -> list[Reply]:
        """Several steps at once (mechlab.delegate.relay.run_relays): one ragged batch through
        :func:`mechlab.generation.generate_batch`, each reply what :meth:`respond` gives up to float rounding (greedy:
        the same text unless two tokens tie within it). A prompt that fills the context is an error step."""
        from mechlab.generation import generate_batch

        plans = [self._plan(prompt, step) for prompt, step in requests]
        rows = [p for p in plans if not isinstance(p, Reply)]
        answers = iter(generate_batch(self.ck, [t for t, _, _ in rows], [n for _, _, n in rows], self.temperature)
                       if rows else [])
        replies = []
        for plan in plans:
            if not isinstance(plan, Reply):
                answer = next(answers)
                plan = Reply(answer, plan[1], self._count(answer))
            replies.append(plan)
        return replies


def _check_generation(temperature, limit, budget_factor, limit_name: str) -> None:
    """ConfigError for settings no backend can use (see the agents' docstrings)."""
    from mechlab.generation import check_temperature

    check_temperature(temperature)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{limit_name} must be a whole number >= 1 (or None), got {limit!r}")
    try:
        check_budget_factor(budget_factor)
    except ValueError as e:
        raise ConfigError(str(e)) from None


class BackendError(MechlabError):
    """A model server that could not be started or reached."""


def _log_excerpt(log: Path, n: int = 8) -> str:
    """The lines of a server log that say what went wrong (errors, validation messages), else its last lines."""
    lines = log.read_text(errors="replace").splitlines()
    keys = ("error", "Error", "Input should", "invalid", "failed", "Traceback", "No such file")
    hits = [line for line in lines if any(k in line for k in keys)]
    return "\n".join((hits or lines)[-n:])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(gguf: Path, threads: int, context: int, log: Path, timeout: float = 180.0):
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on a free 127.0.0.1 port, serving ``gguf``;
    yields its base URL (``http://127.0.0.1:PORT/v1``) once /v1/models answers with this model (and the process
    is alive), and stops it on exit. Raises ConfigError for ``threads`` or ``context`` below 1, and BackendError
    with the server log's error lines when it dies or does not answer within ``timeout`` seconds, when the port
    answers for another server, and when the server package is not installed (``pip install
    "llama-cpp-python[server]"``, torch pinned)."""
    for what, v in (("threads", threads), ("context", context)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"llama_server: {what} must be a whole number >= 1, got {v!r}")
    try:
        import llama_cpp.server.app  # noqa: F401  (fastapi, uvicorn: the [server] extra)
    except ImportError as e:
        raise BackendError(f'llama.cpp\'s server is not installed ({e}); pip install "llama-cpp-python[server]"') from e
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(context), "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BackendError(f"the llama.cpp server exited ({proc.returncode}):\n{_log_excerpt(log)}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(base + "/models", timeout=2) as resp:
                    served = {m.get("id") for m in json.loads(resp.read().decode()).get("data", [])}
                if proc.poll() is None and str(gguf) in served:  # our server, not another one on a reused port
                    break
                if proc.poll() is None:
                    raise BackendError(f"port {port} answers for another server (serving {sorted(served)})")
            if time.monotonic() > deadline:
                raise BackendError(f"the llama.cpp server did not answer within {timeout:.0f} s (log: {log})")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
