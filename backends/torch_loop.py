"""The harness's own generation loop on a transformers model's forward (not `generate()`).

gpt-fast style: prefill and decode_one_token are separate named steps. Greedy, fixed length,
EOS ignored. Each step's tokens are copied to the host before the callback, so a timestamp
taken in the callback can never precede the device work that produced the token.
"""

from __future__ import annotations

import torch

from backends.base import TokenCallback


def forward_last(model, input_ids: torch.Tensor, cache=None):
    """Logits [batch, vocab] of the last position only, and the cache.

    The base model runs, then the output head on the last hidden state made contiguous: with
    transformers' logits_to_keep the head gets a strided 3-D slice, and torch's CPU matmul then
    copies the whole (tied) vocabulary matrix per call: 1.3 s of a 1.4 s qwen3-0.6b prefill on
    a 2-core CPU, whatever the prompt length. Only the last position's logits are ever needed.
    """
    out = model.model(input_ids=input_ids, past_key_values=cache, use_cache=True)
    return model.lm_head(out.last_hidden_state[:, -1].contiguous()), out.past_key_values


def prefill(model, prompt: torch.Tensor):
    """Run the prompt [batch, tokens] through the model; returns (next token [batch], cache)."""
    logits, cache = forward_last(model, prompt)
    return logits.argmax(dim=-1), cache


def decode_one_token(model, token: torch.Tensor, cache):
    """One decode step for the batch's last tokens [batch]; returns the next tokens [batch]."""
    logits, _ = forward_last(model, token[:, None], cache)
    return logits.argmax(dim=-1)


@torch.inference_mode()
def generate(model, prompt: torch.Tensor, new_tokens: int, on_token: TokenCallback) -> list[list[int]]:
    steps: list[list[int]] = []
    token, cache = prefill(model, prompt)
    host = token.tolist()  # device -> host copy: blocks until the token exists
    on_token(host)
    steps.append(host)
    for _ in range(new_tokens - 1):
        token = decode_one_token(model, token, cache)
        host = token.tolist()
        on_token(host)
        steps.append(host)
    return steps


@torch.inference_mode()
def teacher_forced_logits(model, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
    """Logits [K, vocab] (fp32, CPU) at each of the K positions after the prompt, feeding the given
    ids rather than the model's own choices, through the same prefill + cached decode steps that
    generation uses. ids: [1, prompt_tokens + K]."""
    last, cache = forward_last(model, ids[:, :prompt_tokens])
    logits = [last[0].float().cpu()]
    for i in range(prompt_tokens, ids.shape[1] - 1):
        last, _ = forward_last(model, ids[:, i : i + 1], cache)
        logits.append(last[0].float().cpu())
    return torch.stack(logits)
