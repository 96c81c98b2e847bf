"""The vLLM backend's step loop against a fake engine, so it runs where vLLM is not installed
(tests/test_vllm.py runs the real engine where it is). vLLM 0.32's CPU engine, after a step that
raised, keeps the request scheduled and each later step() returns nothing for it: the loop spun for
ever, and every later request queued behind it."""

import sys
import types
from dataclasses import dataclass

import pytest

from chipbench.backends import vllm_engine


@dataclass
class _Completion:
    token_ids: list


@dataclass
class _Output:
    request_id: str
    outputs: list


class _Engine:
    """Requests step one token at a time; `fail` makes the next step raise, `stuck` makes every step
    return nothing (the broken engine)."""

    def __init__(self):
        self.requests: dict[str, list] = {}
        self.wanted: dict[str, int] = {}
        self.aborted: list[str] = []
        self.fail = self.stuck = False

    def add_request(self, rid, prompt, params):
        self.requests[rid], self.wanted[rid] = [], params["max_tokens"]

    def has_unfinished_requests(self):
        return bool(self.requests)

    def step(self):
        if self.fail:
            self.fail = False
            raise RuntimeError("Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0")
        if self.stuck:
            return []
        outs = []
        for rid, toks in list(self.requests.items()):
            toks.append(len(toks) + 1)
            outs.append(_Output(rid, [_Completion(list(toks))]))
            if len(toks) == self.wanted[rid]:
                del self.requests[rid]
        return outs

    def abort_request(self, ids):
        self.aborted += ids
        for rid in ids:
            self.requests.pop(rid, None)


@pytest.fixture
def fake(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: prompt_token_ids
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    engine = _Engine()
    handle = types.SimpleNamespace(llm=types.SimpleNamespace(llm_engine=engine))
    return vllm_engine.VllmBackend(), handle, engine


def test_a_failed_step_takes_its_requests_out_and_the_next_call_runs(fake):
    backend, handle, engine = fake
    engine.fail = True
    with pytest.raises(RuntimeError, match="head_dim=16"):
        backend.generate(handle, [[1, 2, 3], [4, 5, 6]], 4, lambda step: None)
    assert engine.aborted == ["chipbench-0", "chipbench-1"] and not engine.has_unfinished_requests()
    steps = []
    gen = backend.generate(handle, [[1, 2, 3]], 4, steps.append)
    assert gen.tokens == steps == [[1], [2], [3], [4]]


def test_an_engine_that_stops_stepping_its_requests_fails_the_call(fake, monkeypatch):
    backend, handle, engine = fake
    monkeypatch.setattr(vllm_engine, "STALL_STEPS", 50)
    monkeypatch.setattr(vllm_engine, "STALL_S", 0.2)
    engine.stuck = True
    with pytest.raises(RuntimeError, match=r"made no progress in \d+ steps over 0 s with requests unfinished"):
        backend.generate(handle, [[1, 2, 3]], 4, lambda step: None)
    assert engine.aborted == ["chipbench-0"] and not engine.has_unfinished_requests()


def test_an_engine_that_finishes_short_is_an_error_not_a_short_answer(fake):
    backend, handle, engine = fake
    engine.add_request = lambda rid, prompt, params: _Engine.add_request(engine, rid, prompt, {"max_tokens": 2})
    with pytest.raises(RuntimeError, match="after 2 of 4 tokens"):
        backend.generate(handle, [[1, 2, 3]], 4, lambda step: None)
