"""What a detector says when it fires."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Evidence:
    """Why a detector fired: its statistic against its threshold, the windows compared, the change point."""

    statistic: float
    threshold: float
    reference_size: int
    window_size: int
    change_offset: int  # events before the current one where the change is estimated to begin
    reference_mean: float = math.nan
    window_mean: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)
