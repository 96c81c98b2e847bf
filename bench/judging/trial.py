"""A trial judged: the roofline fields and the correctness gate a measured record carries.

Measuring times a case and knows nothing of verdicts; it takes a `Judge`
(chipbench.measuring.runner.Judge) and calls it on an ok record while the model is still loaded.
This is that judge: the roofline against the spec row and the measured ceilings (the run's
shared ones, and a few rounds measured right after the case, as evidence), and the correctness
gate against the CPU fp32 reference, run on the loaded model. `run_case` is a trial measured and
judged in one call.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

from chipbench.backends.ceilings import Ceilings
from chipbench.judging.chips import Chip, match_chip
from chipbench.judging.correctness import check as gate_check
from chipbench.judging.roofline import check_spec, roofline_fields
from chipbench.measuring.runner import Case, CaseRun, Trial, beside_ceilings, measure_case
from chipbench.models.zoo import get_model

NOT_CHECKED = "not checked (--no-check, or --bench-no-check under pytest)"


def add_roofline(rec: dict, ceilings=None, chip=None, beside=None) -> dict:
    """Adds the roofline fields to an ok record: against `chip` when the user named one (or gave
    peaks), else the spec row the device's name matches, and against measured ceilings (the run's
    shared ones; `beside`: those measured right after this case, as evidence)."""
    chip = chip or match_chip(rec.get("device_name"), backend_kind=rec.get("backend_kind"))
    rec.update(roofline_fields(rec, chip, ceilings, beside))
    # the sheets the measured ceilings span: their ranks' chips (two GPUs), not more (ranks sharing a
    # host; an engine's split judged by one device's ceilings)
    spanned = min(rec.get("env_chips") or 1, getattr(ceilings, "ranks", 1))
    rec["spec_check"] = check_spec(ceilings, chip, spanned) if chip and ceilings else None
    return rec


def gate_fields(backend, case: Case, handle, host_bytes: int) -> dict:
    """The correctness gate's record fields for this backend, model and dtype (judging/correctness.py)."""
    if case.weights_dir:
        return {"correct": None, "correctness_note": "not checked: real weights have no seeded reference"}
    try:
        return gate_check(backend, get_model(case.model), case.dtype, case.workload.seed, host_bytes, handle).fields()
    except Exception as e:  # the gate failing to run is reported, never costs the measurement
        return {"correct": None, "correctness_note": f"gate could not run: {type(e).__name__}: {e}"}


def gate_key(case: Case) -> tuple:
    """What the gate's verdict depends on: the same backend, model, dtype, seed, weights and path
    give the same verdict, so a run gates each once (batch sizes and workloads share it)."""
    return (case.backend, case.model, case.dtype, case.workload.seed, case.weights_dir, case.mode)


@dataclass
class TrialJudge:
    """The judge a run hands to measuring (chipbench.measuring.runner.Judge). `gates`: verdicts
    already reached in this run, by gate_key, shared with every judge of the run."""

    ceilings: Ceilings | None = None
    chip: Chip | None = None
    check: bool = True
    gates: dict | None = field(default=None, repr=False)
    unchecked_note: str | None = NOT_CHECKED  # what a record says when the user turned the gate off
    # stage(name, text): a context manager timing and showing a stage (chipbench.session.Session.stage)
    stage: Callable | None = field(default=None, repr=False, compare=False)

    def _stage(self, name: str, text: str):
        return self.stage(name, text) if self.stage is not None else nullcontext()

    def __call__(self, rec: dict, run: CaseRun) -> None:
        with self._stage("ceilings", ""):
            beside = beside_ceilings(run.backend, run.case.dtype)
        add_roofline(rec, self.ceilings, self.chip, beside)
        if not self.check:
            if self.unchecked_note:
                rec.update(correct=None, correctness_note=self.unchecked_note)
            return
        key = gate_key(run.case)
        if self.gates is not None and key in self.gates:
            rec.update(self.gates[key])
            return
        with self._stage("gate", "correctness gate"):
            fields = gate_fields(run.backend, run.case, run.handle, rec.get("env_host_memory_bytes") or 0)
        if self.gates is not None:
            self.gates[key] = fields
        rec.update(fields)

    def without_gate(self) -> TrialJudge:
        """A later trial of a series: the first trial's verdict is copied to it (chipbench.measuring.trials)."""
        return TrialJudge(self.ceilings, self.chip, False, self.gates, None)

    def spec(self) -> dict:
        return {
            "ceilings": asdict(self.ceilings) if self.ceilings is not None else None,
            "chip": asdict(self.chip) if self.chip is not None else None,
            "check": self.check,
            "unchecked_note": self.unchecked_note,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> TrialJudge:
        return cls(
            Ceilings(**spec["ceilings"]) if spec.get("ceilings") else None,
            Chip(**spec["chip"]) if spec.get("chip") else None,
            bool(spec.get("check", True)),
            unchecked_note=spec.get("unchecked_note"),
        )


def run_case(
    backend,
    case: Case,
    host: dict | None = None,
    ceilings=None,
    check: bool = True,
    chip=None,
    trial: Trial | None = None,
    origin: dict | None = None,
) -> dict:
    """One trial of `case` on `backend`, measured and judged: its record, ok or failed."""
    return measure_case(backend, case, host, trial, origin, judge=TrialJudge(ceilings, chip, check))
