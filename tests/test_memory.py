"""memory.py: sizes are refused by the memory they imply, in one line with both numbers."""

import pytest

from rnnlab import memory
from rnnlab.errors import RnnlabError


def test_format_bytes_reads_like_a_person_writes_it():
    assert memory.format_bytes(3 * 2 ** 30 / 2) == "1.5 GiB"
    assert memory.format_bytes(830 * 2 ** 20) == "830.0 MiB"
    assert memory.format_bytes(2.4e29) == "2.4e+29 bytes"


def test_a_need_beyond_the_budget_is_one_error_naming_both_sizes_and_the_fix(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2 ** 30)
    memory.require_memory(7 * 2 ** 30, "a model", "use a smaller one")          # 80 % of 10 GiB: fits
    with pytest.raises(RnnlabError, match=r"a model needs about 9.0 GiB, more than the 8.0 GiB of memory it may "
                                          r"use here: use a smaller one"):
        memory.require_memory(9 * 2 ** 30, "a model", "use a smaller one")


def test_an_unknown_amount_of_memory_refuses_nothing(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    memory.require_memory(1e30, "anything", "-")
