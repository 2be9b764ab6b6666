"""Generation and chat as llama.cpp and transformers do them: every end-of-generation id stops, BOS as the model asks,
chat templates rendered as transformers renders them (compared with its own renderer)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gguf_files import write_gguf
from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError
from mechlab.eval import evaluate_lm
from mechlab.generation import Sampling, chat_prompt, generate_text, prompt_ids, render_chat, stop_ids
from mechlab.pretrained import read_gguf, to_model

GREEDY = Sampling(max_new_tokens=12, temperature=0.0, top_k=None)


def checkpoint(tmp_path, **kw):
    tmp_path.mkdir(exist_ok=True)
    write_gguf(tmp_path / "m.gguf", **kw)
    imported = read_gguf(tmp_path / "m.gguf")
    return SimpleNamespace(model=to_model(imported), tokenizer=imported.tokenizer, config=imported.config,
                           meta=dict(imported.meta))


def greedy_ids(ck, prompt: str, n: int = 12) -> list[int]:
    ids = prompt_ids(ck.tokenizer, prompt)
    out = ck.model.generate(torch.tensor([ids]), n, temperature=0.0)
    return out[0, len(ids):].tolist()


def test_every_end_of_generation_id_stops(tmp_path):
    ck = checkpoint(tmp_path)
    ck.meta.update(eos_token_id=None, end_of_generation_ids=[])
    free = greedy_ids(ck, "The quick")
    assert generate_text(ck, "The quick", GREEDY) == ck.tokenizer.decode(free)
    cut = free.index(free[3])  # the first occurrence of the fourth token ends the text there
    for meta in ({"eos_token_id": [10_000, free[3]]},  # a list, as Hugging Face configs give it
                 {"eos_token_id": 10_000, "end_of_generation_ids": [free[3]]}):  # an eot beside the eos
        ck.meta.update(meta)
        assert free[3] in stop_ids(ck)
        assert generate_text(ck, "The quick", GREEDY) == ck.tokenizer.decode(free[:cut])


def test_end_of_turn_control_tokens_stop_even_when_eos_differs(tmp_path):
    ck = checkpoint(tmp_path)  # the vocabulary has <s>, </s> and <|im_end|> as control tokens; eos = </s>
    im_end = ck.tokenizer.tok.token_to_id("<|im_end|>")
    assert ck.meta["eos_token_id"] != im_end and im_end in stop_ids(ck)


def test_model_generate_takes_several_stop_ids(tmp_path):
    ck = checkpoint(tmp_path)
    free = greedy_ids(ck, "The quick")
    x = torch.tensor([prompt_ids(ck.tokenizer, "The quick")])
    out = ck.model.generate(x, 12, temperature=0.0, eos_id={10_000, free[2]})
    assert out.shape[1] == x.shape[1] + free.index(free[2]) + 1


def test_bos_as_the_model_asks(tmp_path):
    tok = checkpoint(tmp_path / "a", spm=True).tokenizer
    assert tok.add_bos and prompt_ids(tok, "hello")[0] == tok.bos_id
    written = prompt_ids(tok, "<s>hello")  # a template that writes its own BOS: not doubled
    assert written[0] == tok.bos_id and written.count(tok.bos_id) == 1
    bpe = checkpoint(tmp_path / "b").tokenizer  # add_bos_token = false in the file
    assert not bpe.add_bos and prompt_ids(bpe, "hello") == bpe.encode("hello")


def test_eval_bos_replaces_the_unscored_first_token_of_each_window(tmp_path):
    ck = checkpoint(tmp_path)
    ids = np.asarray(ck.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 8), dtype=np.int64)
    stream = TokenStream(ids, ck.tokenizer.token_byte_lengths())
    plain = evaluate_lm(ck.model, stream, context=16)
    bos = evaluate_lm(ck.model, stream, context=16, bos_id=0)
    assert (bos.n_tokens, bos.n_bytes) == (plain.n_tokens, plain.n_bytes) and bos.nll != plain.nll
    window = torch.tensor([[0, *ids[1:16]]])  # the first window by hand
    with torch.no_grad():
        logp = torch.log_softmax(ck.model(window[:, :-1])[0].double(), -1)[0]
    first = -logp[torch.arange(15), window[0, 1:]].sum()
    one = evaluate_lm(ck.model, stream, context=16, bos_id=0, max_windows=1)
    # float32 logits (the model) against float64 log-softmax of the same logits: only the final sums differ
    assert abs(one.nll - float(first)) <= 1e-9 * max(1.0, abs(float(first))) + 15 * 2**-24 * float(first)


# ---- chat templates: one Jinja environment, compared with transformers' renderer -------------------------------

TEMPLATES = {
    "loop controls and tojson": (
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{% if loop.index > 3 %}{% break %}{% endif %}[{{ m.role }}] {{ m.content | tojson }}\n{% endfor %}"
        "{% if tools %}TOOLS {{ tools | tojson(indent=2) }}{% endif %}{% if add_generation_prompt %}>{% endif %}"),
    "special tokens and date": (
        "{{ bos_token }}Today is {{ strftime_now('%d %b %Y') }}.\n{% for m in messages %}"
        "{{ m.content }}{{ eos_token }}{% endfor %}"),
    "namespace and generation blocks": (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}"
        "{% endif %}\n{% endfor %}{{ ns.n }} turns"),
}
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Was ist <b>&'ü'</b>?"},
            {"role": "assistant", "content": "ein Tag"}, {"role": "user", "content": "{\"z\": 1, \"a\": [2]}"},
            {"role": "user", "content": "four"}]
TOOLS = [{"type": "function", "function": {"name": "wetter", "description": "Wetter in °C",
                                           "parameters": {"type": "object", "properties": {"z": {}, "a": {}}}}}]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_render_as_transformers_renders_them(name):
    from transformers.utils.chat_template_utils import render_jinja_template

    context = dict(bos_token="<s>", eos_token="</s>")
    ours = render_chat(TEMPLATES[name], MESSAGES, True, tools=TOOLS, **context)
    theirs = render_jinja_template([MESSAGES], tools=TOOLS, chat_template=TEMPLATES[name],
                                   add_generation_prompt=True, **context)[0][0]
    assert ours == theirs
    if name == "loop controls and tojson":
        assert "ü" in ours and "<b>" in ours and '"z": {}' in ours  # no escaping, non-ASCII kept, keys in order


def test_raise_exception_is_the_templates_own_message():
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}"
    with pytest.raises(ConfigError, match="must start with a user turn"):
        render_chat(template, MESSAGES)
    with pytest.raises(ConfigError, match="does not parse"):
        render_chat("{% for m in messages %}", MESSAGES)


def test_smollm2_like_chat_prompt_passes_special_tokens(tmp_path):
    template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
    ck = checkpoint(tmp_path, fields={"tokenizer.chat_template": template})
    assert chat_prompt(ck, [{"role": "user", "content": "hi"}]) == "<s><user>hi</s>"


def test_cli_chat_template_errors_are_one_line_per_turn(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, fields={"tokenizer.chat_template": "{{ raise_exception('System role not supported') }}"})

    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "mechlab", *args], capture_output=True, text=True, input=stdin)

    assert run("import", "gguf", str(path), "-o", str(tmp_path / "ck")).returncode == 0
    r = run("chat", str(tmp_path / "ck"), stdin="hello\nagain\n")  # each refused turn is one error line, the session goes on
    assert r.returncode == 0 and r.stderr.count("System role not supported") == 2 and "Traceback" not in r.stderr
    r = run("eval", str(tmp_path / "ck"), "--data", "tinyshakespeare", "--context", "32", "--max-windows", "1",
            "--bos", "--json")  # the corpus from MECHLAB_DATA (tests/conftest.py)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bos"] is True
