"""The harness's own generation loop on a transformers model's forward (not `generate()`).

gpt-fast style: prefill and decode_one_token are separate named steps. Greedy, fixed length,
EOS ignored. Each step's tokens are copied to the host before the callback, so a timestamp
taken in the callback can never precede the device work that produced the token.
"""

from __future__ import annotations

import torch

from backends.base import TokenCallback


def prefill(model, prompt: torch.Tensor):
    """Run the prompt [batch, tokens] through the model; returns (next token [batch], cache)."""
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].argmax(dim=-1), out.past_key_values


def decode_one_token(model, token: torch.Tensor, cache):
    """One decode step for the batch's last tokens [batch]; returns the next tokens [batch]."""
    out = model(input_ids=token[:, None], past_key_values=cache, use_cache=True)
    return out.logits[:, -1].argmax(dim=-1)


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
    out = model(input_ids=ids[:, :prompt_tokens], use_cache=True, logits_to_keep=1)
    logits = [out.logits[0, -1].float().cpu()]
    cache = out.past_key_values
    for i in range(prompt_tokens, ids.shape[1] - 1):
        out = model(input_ids=ids[:, i : i + 1], past_key_values=cache, use_cache=True)
        logits.append(out.logits[0, -1].float().cpu())
    return torch.stack(logits)
