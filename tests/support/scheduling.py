"""How `make test` hands tests to its processes (pytest-xdist, ``--dist loadgroup``)."""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]  # no py.typed


class ModuleOrGroupScheduling(LoadGroupScheduling):
    """``--dist loadgroup``, except that a test in no ``xdist_group`` goes with its module.

    One process runs a whole module, its tests in their order, so module-scoped fixtures are built
    once and a module's tests may build on each other (as with ``--dist loadfile``). Tests marked
    ``@pytest.mark.xdist_group("name")``, in any module, run in one process, one after another:
    how tests that share something of the checkout's keep out of each other's way.
    """

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        group = super()._split_scope(nodeid)  # the group's name, else the test's own id
        return group if group != nodeid else nodeid.split("::", 1)[0]
