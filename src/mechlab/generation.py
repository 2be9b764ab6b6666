"""Text generation and chat on any mechlab checkpoint (KV cache, streaming, chat templates).

A chat template is the Jinja template a pretrained model ships with (GGUF ``tokenizer.chat_template``, Hugging Face
``tokenizer_config.json``), kept in the checkpoint's metadata by the import; it is rendered in a sandbox with the
conversation so far, and each reply is generated until the model's end-of-turn token.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import torch

from mechlab.errors import ConfigError

log = logging.getLogger(__name__)


def check_temperature(temperature) -> None:
    """Raise ConfigError unless ``temperature`` is a finite number >= 0 (0: greedy)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")


@dataclass(frozen=True)
class Sampling:
    """How to pick each new token: ``temperature`` 0 is greedy; ``top_k`` None or 0 keeps every token.
    Raises ConfigError for a negative count, a negative or non-finite temperature, or a negative top_k."""

    max_new_tokens: int = 200
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 40
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be a non-negative integer, got {self.max_new_tokens!r}")
        check_temperature(self.temperature)
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0):
            raise ConfigError(f"top_k must be a non-negative integer (0: every token), got {self.top_k!r}")


# Control tokens that end a turn wherever they appear in a vocabulary: llama.cpp treats the same spellings as
# end-of-generation even when a file names only its eos (ChatML, Llama 3, Phi 3, Gemma, Mistral/DeepSeek styles).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
               "<|end_of_text|>", "<EOT>", "</s>", "<\uff5cend\u2581of\u2581sentence\uff5c>")


def _ids(value) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, (list, tuple, set)):
        return {int(v) for v in value}
    return {int(value)}


def stop_ids(ck) -> set[int]:
    """Every token id that ends generation with checkpoint ``ck``: its eos (an id or a list, as Hugging Face
    configs give it), the other end-of-generation ids the import recorded (GGUF eot / eom ids, Hugging Face
    generation_config.json), and the control tokens spelled as an end-of-turn marker (:data:`END_OF_TURN`).
    Empty for models trained here (they generate to the length asked)."""
    meta = ck.meta
    ids = _ids(meta.get("eos_token_id")) | _ids(meta.get("end_of_generation_ids"))
    inner = getattr(ck.tokenizer, "tok", None)
    if ids and inner is not None:  # an imported model: add its end-of-turn control tokens
        specials = {t.content for t in inner.get_added_tokens_decoder().values() if t.special}
        ids |= {inner.token_to_id(t) for t in END_OF_TURN if t in specials}
    return ids


def prompt_ids(tok, prompt: str) -> list[int]:
    """The ids of a prompt as the model expects them: with its BOS first when it asks for one (``add_bos``),
    not twice when the text already starts with it (a chat template that writes its own bos_token)."""
    ids = tok.encode(prompt, add_bos=True)
    if getattr(tok, "add_bos", False) and len(ids) >= 2 and ids[0] == ids[1] == tok.bos_id:
        ids = ids[1:]
    return ids


def generate_text(ck, prompt: str, sampling: Sampling = Sampling(), on_text: Callable[[str], None] | None = None,
                  stop_at_eos: bool = True, echo: bool = False) -> str:
    """Continue ``prompt`` with the checkpoint's model; ``on_text`` receives the new text as it is made (with
    ``echo``, the prompt first, once it has been checked). Stops at any of :func:`stop_ids` (left out of the text).
    Returns the new text (without the prompt); ``max_new_tokens`` 0 returns "" after the checks.
    Raises ConfigError when the prompt fills a full-attention model's context, or is empty and there is no BOS, and
    the tokenizer's error for a prompt it cannot encode."""
    tok = ck.tokenizer
    ids = prompt_ids(tok, prompt)
    if not ids:
        bos = ck.meta.get("bos_token_id")
        bos = getattr(tok, "bos_id", -1) if bos is None else bos
        if bos < 0:
            raise ConfigError("an empty prompt needs a beginning-of-sequence token, and this tokenizer has none")
        ids = [bos]
    streaming = getattr(ck.config, "all_local", False)  # sliding-window attention only: no length limit
    budget = sampling.max_new_tokens if streaming else ck.config.max_seq_len - len(ids)
    if budget <= 0 and not streaming:
        raise ConfigError(f"prompt of {len(ids)} tokens fills the model's context of {ck.config.max_seq_len}")
    if budget < sampling.max_new_tokens:
        log.warning("the model's context of %d tokens leaves room for %d new tokens after the prompt, not %d",
                    ck.config.max_seq_len, budget, sampling.max_new_tokens)
    if echo and on_text is not None:
        on_text(prompt)
    if sampling.max_new_tokens == 0:
        return ""
    stops = stop_ids(ck) if stop_at_eos else set()
    new: list[int] = []
    shown = ""

    def on_token(col: torch.Tensor) -> None:
        nonlocal shown
        t = int(col[0, 0])
        if t in stops:
            return
        new.append(t)
        text = tok.decode(new)
        if on_text is not None and not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            on_text(text[len(shown):])
            shown = text

    gen = torch.Generator().manual_seed(sampling.seed)
    ck.model.eval()
    ck.model.generate(torch.tensor([ids]), min(sampling.max_new_tokens, budget), temperature=sampling.temperature,
                      top_k=sampling.top_k or None, generator=gen, eos_id=stops or None, on_token=on_token)
    text = tok.decode(new)
    if on_text is not None and len(text) > len(shown):
        on_text(text[len(shown):])
    return text


def generate_batch(ck, prompts: list[str], max_new_tokens: list[int], temperature: float = 0.0, seed: int = 0,
                   prefill_chunk: int = 512) -> list[str]:
    """Continue several prompts at once, one ragged batch (left-padded; each row computes what it would alone, up to
    float rounding): the new text of each, stopped at :func:`stop_ids` or at its own ``max_new_tokens``. The rows
    decode together, so a batch of B short replies costs about one reply's weight reads per token: the way to run
    many independent conversations (e.g. DELEGATE relays in lockstep) on a CPU. Raises ConfigError for an empty
    prompt, a prompt + budget beyond the model's context, mismatched lengths, a budget that is not a whole number
    >= 0, a negative or non-finite temperature."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ConfigError("generate_batch takes a list of prompt strings")
    if isinstance(max_new_tokens, (str, int)) or len(prompts) != len(max_new_tokens):
        raise ConfigError(f"give one token budget per prompt ({len(prompts)} prompts, budgets {max_new_tokens!r})")
    for n in max_new_tokens:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"token budgets must be whole numbers >= 0, got {n!r}")
    check_temperature(temperature)
    if isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int) or prefill_chunk < 1:
        raise ConfigError(f"prefill_chunk must be a whole number >= 1, got {prefill_chunk!r}")
    if not prompts:
        return []
    tok = ck.tokenizer
    rows = [prompt_ids(tok, p) for p in prompts]
    for ids, n in zip(rows, max_new_tokens):
        if not ids:
            raise ConfigError("generate_batch needs non-empty prompts")
        if len(ids) + n > ck.config.max_seq_len:
            raise ConfigError(f"prompt of {len(ids)} tokens + {n} new tokens exceeds the model's context of "
                              f"{ck.config.max_seq_len}")
    width = max(map(len, rows))
    idx = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    pad = torch.tensor([width - len(r) for r in rows])
    stops = stop_ids(ck)
    ck.model.eval()
    with torch.inference_mode():
        out = ck.model.generate(idx, list(max_new_tokens), temperature=temperature, top_k=None,
                                generator=torch.Generator().manual_seed(seed), eos_id=stops or None, pad=pad,
                                prefill_chunk=prefill_chunk)
    texts = []
    for b, n in enumerate(max_new_tokens):
        new = out[b, width: width + n].tolist()
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        texts.append(tok.decode(new[:end]))
    return texts


class _TemplateRaised(Exception):
    pass


def _raise_exception(message: str):
    raise _TemplateRaised(message)


def _tojson(x, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    """tojson as chat templates expect it (transformers' definition): no HTML escaping, non-ASCII kept, keys in
    their order (Jinja's own filter escapes <, >, &, ' and sorts keys)."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2 import nodes
    from jinja2.exceptions import TemplateError
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):  # {% generation %}…{% endgeneration %}: marks assistant text; rendered as is
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class Environment(ImmutableSandboxedEnvironment):
        """Repetition and powers bounded, so a template cannot build a gigabyte string or a huge number."""

        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context, operator, left, right):
            if operator == "*" and isinstance(left, (str, list, tuple)) or isinstance(right, (str, list, tuple)):
                seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
                if isinstance(n, int) and len(seq) * n > RENDER_MAX_CHARS:
                    raise _TemplateRaised(f"the template repeats a sequence {n} times (limit {RENDER_MAX_CHARS:,} items)")
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
                raise _TemplateRaised(f"the template raises to the power {right} (limit 64)")
            return super().call_binop(context, operator, left, right)

    env = Environment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(template)
    except TemplateError as e:
        raise ConfigError(f"chat template does not parse: {e}") from None


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = True, **context) -> str:
    """The prompt text of a conversation under a model's Jinja chat template, rendered as transformers'
    ``apply_chat_template`` renders it: sandboxed, ``trim_blocks`` and ``lstrip_blocks``, loop controls
    (``{% break %}``, ``{% continue %}``), ``raise_exception``, ``strftime_now`` (today's date), ``tojson``
    without HTML escaping; ``context`` gives the other variables (``bos_token``, ``eos_token``, ``tools``, …).
    Raises ConfigError with the template's own message when it raises, or when it does not parse or render."""
    from jinja2.exceptions import TemplateError

    compiled = _compile(template)
    try:
        with _time_limit(RENDER_SECONDS):
            text = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **context)
    except _TemplateRaised as e:
        raise ConfigError(f"chat template: {e}") from None
    except TemplateError as e:
        raise ConfigError(f"chat template failed to render: {e}") from None
    except (RecursionError, OverflowError, MemoryError, TypeError, ValueError, ArithmeticError, LookupError) as e:
        raise ConfigError(f"chat template failed to render: {type(e).__name__}: {e}") from None
    if len(text) > RENDER_MAX_CHARS:
        raise ConfigError(f"chat template rendered {len(text):,} characters (limit {RENDER_MAX_CHARS:,})")
    return text


RENDER_SECONDS, RENDER_MAX_CHARS = 10.0, 10_000_000  # a template is code from a file: bounded like untrusted code


@contextmanager
def _time_limit(seconds: float):
    """Raise _TemplateRaised after ``seconds`` of rendering (SIGALRM; a no-op off the main thread or off POSIX)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _TemplateRaised(f"rendering took longer than {seconds:g} s (a template loop without end?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def chat_prompt(ck, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None,
                **context) -> str:
    """The prompt of ``messages`` under checkpoint ``ck``'s chat template, with its special tokens' text as
    ``bos_token`` / ``eos_token`` (the variables templates use). Raises ConfigError when ``ck`` has no template."""
    template = ck.meta.get("chat_template")
    if not template:
        raise ConfigError("this checkpoint has no chat template (import a pretrained chat model, e.g. "
                          "mechlab import gguf smollm2 -o runs/smollm2)")
    inner = getattr(ck.tokenizer, "tok", None)

    def text(key: str) -> str:
        ids = sorted(_ids(ck.meta.get(key)))
        return (inner.id_to_token(ids[0]) or "") if ids and inner is not None else ""

    return render_chat(template, messages, add_generation_prompt, bos_token=text("bos_token_id"),
                       eos_token=text("eos_token_id"), tools=tools, **context)


@dataclass
class ChatSession:
    """A conversation with a checkpoint that carries a chat template (an imported pretrained model)."""

    ck: object
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=256, temperature=0.7, top_k=40))
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ck.meta.get("chat_template"):  # refused before the first turn
            raise ConfigError("this checkpoint has no chat template (import a pretrained chat model, e.g. "
                              "mechlab import gguf smollm2 -o runs/smollm2)")
        if self.system:
            self.messages.append({"role": "system", "content": self.system})

    def reply(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        """The model's answer to ``text``; on ConfigError (the turn does not fit the context, the template refuses
        it) the conversation is left as it was before the turn."""
        self.messages.append({"role": "user", "content": text})
        try:
            prompt = chat_prompt(self.ck, self.messages)
            answer = generate_text(self.ck, prompt, self.sampling, on_text).strip()
        except ConfigError:
            self.messages.pop()
            raise
        self.messages.append({"role": "assistant", "content": answer})
        return answer
