"""Text generation and chat on any mechlab checkpoint (KV cache, streaming, chat templates).

A chat template is the Jinja template a pretrained model ships with (GGUF ``tokenizer.chat_template``, Hugging Face
``tokenizer_config.json``), kept in the checkpoint's metadata by the import; it is rendered in a sandbox with the
conversation so far, and each reply is generated until the model's end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from mechlab.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 40
    seed: int = 0


def generate_text(ck, prompt: str, sampling: Sampling = Sampling(), on_text: Callable[[str], None] | None = None,
                  stop_at_eos: bool = True) -> str:
    """Continue ``prompt`` with the checkpoint's model; ``on_text`` receives the new text as it is made.
    Returns the new text (without the prompt)."""
    tok = ck.tokenizer
    ids = tok.encode(prompt)
    if not ids:
        bos = ck.meta.get("bos_token_id")
        bos = getattr(tok, "bos_id", -1) if bos is None else bos
        if bos < 0:
            raise ConfigError("an empty prompt needs a beginning-of-sequence token, and this tokenizer has none")
        ids = [bos]
    budget = ck.config.max_seq_len - len(ids)
    if budget <= 0:
        raise ConfigError(f"prompt of {len(ids)} tokens fills the model's context of {ck.config.max_seq_len}")
    eos = ck.meta.get("eos_token_id") if stop_at_eos else None
    new: list[int] = []
    shown = ""

    def on_token(col: torch.Tensor) -> None:
        nonlocal shown
        t = int(col[0, 0])
        if t == eos:
            return
        new.append(t)
        text = tok.decode(new)
        if on_text is not None and not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            on_text(text[len(shown):])
            shown = text

    gen = torch.Generator().manual_seed(sampling.seed)
    ck.model.eval()
    ck.model.generate(torch.tensor([ids]), min(sampling.max_new_tokens, budget), temperature=sampling.temperature,
                      top_k=sampling.top_k or None, generator=gen, eos_id=eos, on_token=on_token)
    text = tok.decode(new)
    if on_text is not None and len(text) > len(shown):
        on_text(text[len(shown):])
    return text


def render_chat(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text of a conversation under a model's Jinja chat template."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


@dataclass
class ChatSession:
    """A conversation with a checkpoint that carries a chat template (an imported pretrained model)."""

    ck: object
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=256, temperature=0.7, top_k=40))
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ck.meta.get("chat_template"):
            raise ConfigError("this checkpoint has no chat template (import a pretrained chat model, e.g. "
                              "mechlab import gguf smollm2 -o runs/smollm2)")
        if self.system:
            self.messages.append({"role": "system", "content": self.system})

    def reply(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        self.messages.append({"role": "user", "content": text})
        prompt = render_chat(self.ck.meta["chat_template"], self.messages)
        answer = generate_text(self.ck, prompt, self.sampling, on_text).strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer
