"""MCTS statistics on a tree small enough to follow by hand."""

import math

import pytest

from openr.mcts import MCTS, ChildProposal, Node, most_visited_path, puct, select_leaf

# root -> A, B (equal priors); A -> A1, A2; B -> B1 (a finished solution), B2
CHILDREN = {
    (): [ChildProposal("A"), ChildProposal("B")],
    ("A",): [ChildProposal("A1"), ChildProposal("A2")],
    ("B",): [ChildProposal("B1", finished=True), ChildProposal("B2")],
}
VALUES = {(): 0.0, ("A",): 0.2, ("B",): 0.8, ("B", "B1"): 1.0, ("B", "B2"): 0.0}


class Recorder:
    def __init__(self):
        self.expanded, self.evaluated = [], []

    def expand(self, nodes):
        self.expanded.append([node.steps for node in nodes])
        return [CHILDREN.get(node.steps, []) for node in nodes]

    def evaluate(self, nodes):
        self.evaluated.append([node.steps for node in nodes])
        return [VALUES.get(node.steps, 0.5) for node in nodes]


def child(node, step):
    return next(c for c in node.children if c.steps[-1] == step)


def test_six_simulations_give_the_hand_computed_visits_and_values():
    # by hand, c_puct = 1, unvisited Q = 0, ties to the first child:
    # 1: root is a leaf -> expand, value 0
    # 2: A 0+.5*1/1 = .5 ties B .5 -> A (value .2)
    # 3: A .2+.5*sqrt2/2 = .554 < B 0+.5*sqrt2 = .707 -> B (value .8)
    # 4: B .8+.5*sqrt3/2 = 1.23 > A .633 -> B; B1 .5 ties B2 .5 -> B1 (finished, 1.0)
    # 5: B .9+.5*2/3 = 1.23 > A .7 -> B; B1 1+.5*sqrt2/2 = 1.35 > B2 .707 -> B1
    # 6: B .933+.5*sqrt5/4 = 1.21 > A .759 -> B; B1 1.29 > B2 .866 -> B1
    recorder = Recorder()
    root = Node(())
    MCTS(recorder.expand, recorder.evaluate, c_puct=1.0).run([root], 6)

    a, b = child(root, "A"), child(root, "B")
    b1, b2 = child(b, "B1"), child(b, "B2")
    assert (root.visits, a.visits, b.visits, b1.visits, b2.visits) == (6, 1, 4, 3, 0)
    assert math.isclose(root.value_sum, 4.0)
    assert math.isclose(a.q, 0.2)
    assert math.isclose(b.q, (0.8 + 3 * 1.0) / 4)
    assert math.isclose(b1.q, 1.0)
    assert [c.visits for c in a.children] == [0, 0]
    # finished nodes are evaluated again but never expanded
    assert recorder.expanded == [[()], [("A",)], [("B",)]]
    assert [e[0] for e in recorder.evaluated] == [
        (),
        ("A",),
        ("B",),
        ("B", "B1"),
        ("B", "B1"),
        ("B", "B1"),
    ]
    assert most_visited_path(root) is b1


def test_priors_are_normalized_and_enter_the_exploration_term():
    root = Node((), visits=4)
    parent_children = [Node(("x",), root, prior=0.75), Node(("y",), root, prior=0.25)]
    root.children = parent_children
    assert math.isclose(puct(root, parent_children[0], 2.0), 2.0 * 0.75 * 2 / 1)
    parent_children[1].visits, parent_children[1].value_sum = 1, 0.9
    assert math.isclose(puct(root, parent_children[1], 2.0), 0.9 + 2.0 * 0.25 * 2 / 2)
    assert select_leaf(root, 2.0) is parent_children[0]

    from openr.mcts import attach_children

    node = Node(())
    attach_children(node, [ChildProposal("a", 3.0), ChildProposal("b", 1.0)])
    assert [c.prior for c in node.children] == [0.75, 0.25]


def test_trees_of_several_problems_share_each_expand_and_evaluate_call():
    recorder = Recorder()
    roots = [Node(()), Node(())]
    MCTS(recorder.expand, recorder.evaluate, c_puct=1.0).run(roots, 3)
    assert [len(call) for call in recorder.expanded] == [2, 2, 2]
    assert [len(call) for call in recorder.evaluated] == [2, 2, 2]
    assert roots[0].visits == roots[1].visits == 3


def test_a_node_with_no_children_is_closed_instead_of_selected_forever():
    def expand(nodes):
        return [[] for _ in nodes]

    root = Node(())
    MCTS(expand, lambda nodes: [0.3] * len(nodes)).run([root], 3)
    assert root.finished
    assert root.truncated
    assert root.visits == 3


def test_simulation_count_and_c_puct_are_validated():
    with pytest.raises(ValueError, match="simulations must be >= 1"):
        MCTS(lambda n: [], lambda n: []).run([Node(())], 0)
    with pytest.raises(ValueError, match="c_puct must be >= 0"):
        MCTS(lambda n: [], lambda n: [], c_puct=-1)
