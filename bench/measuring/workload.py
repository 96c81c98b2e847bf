"""Workloads: frozen data describing what one benchmark case does.

Names follow llama-bench: `pp512` is a prefill of 512 prompt tokens (one token generated),
`tg128` generates 128 tokens from a one-token context, `tg128@d4096` generates 128 tokens
after a 4096-token context, `pp512+tg128` is end-to-end generation. Output length is fixed
(EOS is ignored) so every system does equal work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chipbench.errors import UsageError

if TYPE_CHECKING:
    import torch

KINDS = ("prefill", "decode", "generate")
_NAME = re.compile(r"^(?:pp(?P<pp>\d+)(?:\+tg(?P<gen>\d+))?|tg(?P<tg>\d+)(?:@d(?P<depth>\d+))?)$")
WORKLOAD_HELP = "pp<P> (prefill), tg<N> or tg<N>@d<C> (decode after C context tokens), pp<P>+tg<N> (generate)"


@dataclass(frozen=True)
class Workload:
    kind: str  # prefill | decode | generate
    prompt_tokens: int  # tokens in the prompt (the decode context for decode workloads)
    gen_tokens: int  # tokens generated, exactly (EOS ignored)
    batch: int = 1
    seed: int = 0

    @property
    def name(self) -> str:
        if self.kind == "prefill":
            return f"pp{self.prompt_tokens}"
        if self.kind == "decode":
            return f"tg{self.gen_tokens}" + (f"@d{self.prompt_tokens}" if self.prompt_tokens > 1 else "")
        return f"pp{self.prompt_tokens}+tg{self.gen_tokens}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.gen_tokens

    def validate(self, max_positions: int | None = None, model: str = "") -> "Workload":
        for field_, value in (
            ("batch", self.batch),
            ("prompt tokens", self.prompt_tokens),
            ("generated tokens", self.gen_tokens),
        ):
            if value < 1:
                raise UsageError(f"{field_} must be >= 1, got {value}")
        if max_positions is not None and self.total_tokens > max_positions:
            raise UsageError(
                f"workload {self.name}: prompt plus output is {self.total_tokens} tokens, longer "
                f"than {model or 'the model'}'s context of {max_positions}"
            )
        return self


def parse_workload(text: str, batch: int = 1, seed: int = 0) -> Workload:
    m = _NAME.match(text.strip())
    if not m:
        raise UsageError(f"unknown workload {text!r}; valid forms: {WORKLOAD_HELP}")
    if m["pp"] is not None and m["gen"] is None:
        w = Workload("prefill", int(m["pp"]), 1, batch, seed)
    elif m["pp"] is not None:
        w = Workload("generate", int(m["pp"]), int(m["gen"]), batch, seed)
    else:
        w = Workload("decode", int(m["depth"] or 1), int(m["tg"]), batch, seed)
    return w.validate()


def prompt_ids(workload: Workload, vocab: int) -> torch.Tensor:
    """Seeded synthetic prompt ids [batch, prompt_tokens] (int64, CPU), made outside the clock.

    Every row differs, so no prefix cache or batch deduplication can skip work.
    """
    import torch  # here, not at the top: the pytest plugin imports this module in every pytest run

    gen = torch.Generator().manual_seed(workload.seed)
    return torch.randint(0, vocab, (workload.batch, workload.prompt_tokens), generator=gen)
