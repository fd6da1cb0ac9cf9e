"""migrator.graph's cycle check: the quick depth-first test that lets discovery skip graphlib
for the (acyclic) trees of every run agrees with graphlib on any graph."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from hypothesis import given
from hypothesis import strategies as st

from migrator.graph import find_cycle

NODES = [f"r{i}" for i in range(7)]
graphs = st.dictionaries(st.sampled_from(NODES),
                         st.lists(st.sampled_from([*NODES, "outside"]), max_size=3))


@given(graphs)
def test_find_cycle_agrees_with_graphlib(edges: dict[str, list[str]]) -> None:
    """None exactly when graphlib finds an order; otherwise members that form a cycle."""
    try:
        TopologicalSorter({node: tuple(after) for node, after in edges.items()}).prepare()
        acyclic = True
    except CycleError:
        acyclic = False
    members = find_cycle(edges)
    assert (members is None) == acyclic
    if members is not None:  # graphlib's order: each member is an edge target of the next
        for node, following in zip(members, [*members[1:], members[0]], strict=True):
            assert node in edges[following]
