"""Monte Carlo tree search over reasoning steps, with PUCT selection (OpenR Sec. 4.2).

A node is a prefix of steps. Each simulation

1. **selects** a path from the root, at each node taking the child with the largest
   ``Q(child) + c_puct * P(child) * sqrt(N(node)) / (1 + N(child))`` (PUCT, Silver et al.
   2017), unvisited children having ``Q = 0``, until it reaches a leaf (a node never
   expanded, or a finished solution);
2. **expands** the leaf, unless finished: the policy samples its children (one step each);
3. **evaluates** the leaf: the PRM's score of its last step, or a rollout to the end
   scored by the PRM (``evaluation="rollout"``);
4. **backpropagates** the value: every node on the path gets ``N += 1``, ``W += value``.

:class:`MCTS` holds the trees of many problems and runs the simulations in lock step, so
a simulation costs one engine call (all expansions) and one scorer call (all
evaluations). The tree logic talks to the policy and the PRM only through
``expand(nodes) -> children steps`` and ``evaluate(nodes) -> values``, so it is tested on
hand-made trees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(eq=False)
class Node:
    """A prefix of steps in the search tree with its visit statistics."""

    steps: tuple[str, ...]
    parent: Node | None = None
    prior: float = 1.0
    finished: bool = False  # a complete solution (or one cut by the caps): never expanded
    truncated: bool = False
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    step_scores: list[float] | None = None  # the scorer's scores of all steps, once evaluated

    @property
    def expanded(self) -> bool:
        return bool(self.children)

    @property
    def q(self) -> float:
        """Mean backed-up value; 0 for an unvisited node."""
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


@dataclass
class ChildProposal:
    """One child the expander proposes: its new step and how it ended."""

    step: str
    prior: float = 1.0  # unnormalized; priors of one node's children are normalized
    finished: bool = False
    truncated: bool = False


def puct(parent: Node, child: Node, c_puct: float) -> float:
    """Q(child) + c_puct * P(child) * sqrt(N(parent)) / (1 + N(child))."""
    return child.q + c_puct * child.prior * math.sqrt(parent.visits) / (1 + child.visits)


def select_leaf(root: Node, c_puct: float) -> Node:
    """Walk down by PUCT (ties: the first child) to an unexpanded or finished node."""
    node = root
    while node.expanded and not node.finished:
        node = max(node.children, key=lambda child: puct(node, child, c_puct))
    return node


def attach_children(node: Node, proposals: Sequence[ChildProposal]) -> None:
    """Make ``proposals`` the children of ``node`` with normalized priors."""
    total = sum(max(p.prior, 0.0) for p in proposals)
    for proposal in proposals:
        prior = max(proposal.prior, 0.0) / total if total > 0 else 1.0 / len(proposals)
        steps = (*node.steps, proposal.step) if proposal.step else node.steps
        node.children.append(
            Node(steps, node, prior, proposal.finished or proposal.truncated, proposal.truncated)
        )


def backpropagate(leaf: Node, value: float) -> None:
    """Add one visit and ``value`` to the leaf and every ancestor."""
    for node in leaf.path():
        node.visits += 1
        node.value_sum += value


class MCTS:
    """Lock-step MCTS over the trees of several problems.

    ``expand(leaves)`` returns each leaf's child proposals; ``evaluate(leaves)`` each
    leaf's value in [0, 1]. Both receive every tree's leaf of a simulation at once.
    """

    def __init__(
        self,
        expand: Callable[[list[Node]], list[list[ChildProposal]]],
        evaluate: Callable[[list[Node]], list[float]],
        c_puct: float = 1.25,
    ):
        if c_puct < 0:
            raise ValueError(f"c_puct must be >= 0, got {c_puct}")
        self.expand = expand
        self.evaluate = evaluate
        self.c_puct = c_puct

    def run(self, roots: list[Node], simulations: int) -> list[Node]:
        """Run ``simulations`` simulations on every tree; returns the roots."""
        if simulations < 1:
            raise ValueError(f"simulations must be >= 1, got {simulations}")
        for _ in range(simulations):
            self.simulate(roots)
        return roots

    def simulate(self, roots: list[Node]) -> list[Node]:
        """One simulation on each tree: select, expand, evaluate, backpropagate."""
        # selection
        leaves = [select_leaf(root, self.c_puct) for root in roots]

        # expansion of every unfinished leaf, in one call
        to_expand = [leaf for leaf in leaves if not leaf.finished and not leaf.expanded]
        if to_expand:
            for leaf, proposals in zip(to_expand, self.expand(to_expand), strict=True):
                if proposals:
                    attach_children(leaf, proposals)
                else:  # nothing came back: close the node rather than select it forever
                    leaf.finished = leaf.truncated = True

        # evaluation of every leaf, in one call, then backpropagation
        values = self.evaluate(leaves)
        for leaf, value in zip(leaves, values, strict=True):
            backpropagate(leaf, float(value))
        return leaves


def most_visited_path(root: Node) -> Node:
    """Follow the most visited child from the root to a leaf (ties: the higher Q)."""
    node = root
    while node.children:
        node = max(node.children, key=lambda child: (child.visits, child.q))
    return node


def finished_nodes(root: Node) -> list[Node]:
    """Every finished (or cut) node of a tree."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.finished and node.visits > 0:
            found.append(node)
        stack.extend(node.children)
    return found
