"""hub.gcpolicy: what `crmhub serve`, `worker` and `import` do to the garbage collector once started."""

from __future__ import annotations

import gc
import weakref

from hub.gcpolicy import YOUNG_THRESHOLD, settle_gc


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settling_freezes_what_is_loaded_and_raises_only_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    settle_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)


def test_cycles_made_after_settling_are_still_collected() -> None:
    settle_gc()
    garbage = _Cycle()
    alive = weakref.ref(garbage)
    del garbage
    gc.collect()
    assert alive() is None
