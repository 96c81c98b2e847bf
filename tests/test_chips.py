"""The chip spec table: every row valid, and devices matched by the names they report."""

import pytest

from chipbench.judging.chips import find_chip, load_chips, match_chip
from chipbench.errors import UsageError


def test_every_row_of_the_shipped_table_is_valid_and_sourced():
    chips = load_chips()
    assert len(chips) >= 20 and all(c.source and c.confidence in ("A", "B", "?") for c in chips)


@pytest.mark.parametrize(
    "reported,chip",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA H20", "NVIDIA H20"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("AMD Instinct MI300X", "AMD Instinct MI300X"),
        ("Ascend910B3", "Huawei Ascend 910B"),  # torch_npu's name: no space, a SKU suffix
        ("Intel(R) Xeon(R) Processor", None),
        # other SKUs of a row's name, with other sheets: no row rather than the wrong one
        ("NVIDIA A100 80GB PCIe", None),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA GB200", None),
        ("NVIDIA GH200 480GB", None),  # Grace Hopper: an H100-class GPU with 96 GB at 4 TB/s, not an H200
        ("NVIDIA H20-3e", None),  # 141 GB of HBM3e: not the H20's 96 GB at 4.0 TB/s
        ("NVIDIA B200", "NVIDIA B200"),
        ("NVIDIA GeForce RTX 4090 D", None),
        ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
    ],
)
def test_reported_device_names_match_their_spec_row(reported, chip):
    found = match_chip(reported)
    assert (found.name if found else None) == chip


def test_h20_does_not_match_h200_and_l20_not_l40s():
    assert match_chip("NVIDIA H200").name == "NVIDIA H200 SXM"
    assert match_chip("NVIDIA L40S").name == "NVIDIA L40S"


def test_a_user_names_a_chip_or_gets_the_list():
    assert find_chip("h20").memory_gb == 96
    with pytest.raises(UsageError, match="no chip named 'TPU v9' in the spec table; known chips: NVIDIA A100"):
        find_chip("TPU v9")


def test_a_broken_table_names_the_file_row_and_field(tmp_path):
    bad = tmp_path / "chips.toml"
    bad.write_text('[[chip]]\nname = "X"\nmatch = "X"\nconfidence = "C"\nsource = "s"\n')
    with pytest.raises(UsageError, match=r"chips.toml: chip 1 \(X\): confidence 'C'; valid: A, B, \?"):
        load_chips(bad)
    bad.write_text('[[chip]]\nname = "X"\nmatch = "X"\nconfidence = "A"\nsource = "s"\nbandwith = 3\n')
    with pytest.raises(UsageError, match="unknown field 'bandwith'"):
        load_chips(bad)
    bad.write_text("[[chip]\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_chips(bad)


def test_a_device_of_a_kind_the_chip_is_not_never_takes_its_roofline():
    assert match_chip("NVIDIA H20", backend_kind="cuda").name == "NVIDIA H20"
    assert match_chip("NVIDIA H20", backend_kind="cpu") is None  # a CPU whose name holds a chip's
    assert match_chip("Ascend910B3", backend_kind="cuda") is None and match_chip("Ascend910B3", backend_kind="npu")


def test_a_claim_takes_a_device_by_its_whole_name_or_an_alias():
    from chipbench.judging.chips import chip_of

    assert chip_of({"device_name": "NVIDIA H100 80GB HBM3", "backend_kind": "cuda"}).name == "NVIDIA H100 SXM"
    assert (
        chip_of({"device_name": "NVIDIA H20 Edition", "backend_kind": "cuda"}) is None
    )  # the pattern takes it; a claim not
    assert match_chip("NVIDIA H200 NVL") is None and chip_of({"device_name": "NVIDIA H200 NVL"}) is None


def test_kinds_and_aliases_must_be_lists_of_names(tmp_path):
    path = tmp_path / "chips.toml"
    path.write_text('[[chip]]\nname = "X"\nmatch = "X"\nconfidence = "A"\nsource = "s"\naliases = "X1"\n')
    with pytest.raises(UsageError, match="aliases must be a list of names"):
        load_chips(path)
