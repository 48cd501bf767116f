"""Validation against published benchmarks (AAPM TG-195)."""

from ._icru import format_icru_table as format_icru_table, icru as icru
from ._tg195 import (
    format_table as format_table,
    reference_table as reference_table,
    tg195 as tg195,
    tg195_spectrum as tg195_spectrum,
)
