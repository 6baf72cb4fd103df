"""Mazes: find the path between two nodes of a random tree.

The tree on N nodes holds a path of exactly h hops between the start and the end node; the other
nodes join it by Wilson's algorithm (loop-erased random walks on the complete graph), so the tree is
uniform among the spanning trees of K_N that contain that path (the paper's generator also lays the
path first, then attaches the other nodes by random walks that skip visited nodes). Node
labels are distinct random ints 1..99. The prompt is the paper's format: `start>end#`, then every
node's adjacency list `node:nbr,nbr` joined by `-`, nodes and neighbours in random order, then `=`;
the answer is the path `start>...>end` (unique in a tree). One deviation: labels are written with
two digits (`07`), so that every prompt of one difficulty has the same length, 9N characters, and
every answer 3h + 2 (the learner batches by length). N = 4, h = 2:

    07>42#42:13-13:42,07,88-07:13-88:13=  ->  07>13>42

maze_hops, difficulty (h,): N = 30 nodes (the paper's; config `task.nodes` sets another N), h hops
(1..N-1). maze_nodes, difficulty (N,): h = 9 hops, N nodes (10..99); its seed data covers 10..base
nodes. A step adds `task.step` nodes (the paper steps by 3: preset paper-maze-nodes sets task.step = 3).

`verify` needs no truth: the answer must be a path along listed edges, without a repeated node, from
the asked start to the asked end; in a tree only the true path passes.

    from selfimprove.tasks import get_task
    batch = get_task("maze_hops").sample((3,), range(2), seed=0)
    print(batch.prompts[0], batch.truths[0])
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Difficulty, Task, hash_uniform
from selfimprove.tasks.arithmetic import rows_to_str

_LABELS = 99  # labels 1..99, written with two digits


def random_trees(seed: int, difficulty: Difficulty, index: np.ndarray, nodes: int, hops: int) -> np.ndarray:
    """Parent of every node [len(index), nodes] (-1 for the root, node 0) of random trees that hold
    the path 0-1-...-hops; the other nodes join by Wilson's algorithm on the complete graph.

    All rows step together: a row either walks (one random jump, remembering where it left each node:
    later jumps overwrite earlier ones, which is the loop erasure) or retraces its walk into the tree.
    Row r's k-th jump uses random column k of its own stream, so a row does not depend on the others."""
    rows = len(index)
    parent = np.full((rows, nodes), -1, dtype=np.int64)
    parent[:, 1 : hops + 1] = np.arange(hops)
    in_tree = np.zeros((rows, nodes), dtype=bool)
    in_tree[:, : hops + 1] = True
    jump = np.zeros((rows, nodes), dtype=np.int64)  # where the walk last left each node
    start = np.full(rows, hops + 1)  # the node whose walk runs; `nodes` when the tree is complete
    cur = start.copy()
    walking = np.ones(rows, dtype=bool)
    used = np.zeros(rows, dtype=np.int64)  # random draws used per row
    pool = np.zeros((rows, 0), dtype=np.uint64)
    while (live := np.flatnonzero(start < nodes)).size:
        if used.max() >= pool.shape[1]:  # the next block of every row's stream
            block = hash_uniform(seed, (*difficulty, 1, pool.shape[1]), index, 4 * nodes)
            pool = np.concatenate([pool, block], axis=1)
        w = live[walking[live]]
        u = (pool[w, used[w]] >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        to = np.floor(u * (nodes - 1)).astype(np.int64)
        to += to >= cur[w]  # any node but the current one
        used[w] += 1
        jump[w, cur[w]] = to
        cur[w] = to
        hit = w[in_tree[w, to]]
        walking[hit], cur[hit] = False, start[hit]

        t = live[~walking[live]]
        c = cur[t]
        adding = ~in_tree[t, c]
        a, ca = t[adding], c[adding]
        in_tree[a, ca], parent[a, ca], cur[a] = True, jump[a, ca], jump[a, ca]
        done = t[~adding]  # the walk is in the tree: the next node outside it starts a walk
        outside = ~in_tree[done]
        start[done] = np.where(outside.any(axis=1), outside.argmax(axis=1), nodes)
        cur[done], walking[done] = start[done], True
    return parent


class Maze(Task):
    """What both maze tasks share; a subclass says which (nodes, hops) a difficulty means."""

    alphabet = "0123456789>#:,-="
    nodes: int | None = None  # one of the two is fixed, the difficulty is the other
    hops: int | None = None

    def size(self, difficulty: Difficulty) -> tuple[int, int]:
        """(nodes, hops) of a difficulty."""
        (d,) = difficulty
        return self.nodes or d, self.hops or d

    def drawable(self, difficulty: Difficulty) -> bool:
        n, h = self.size(difficulty)
        return h < n <= _LABELS

    def audit_difficulties(self, trained, below, above):
        return [d for d in super().audit_difficulties(trained, below, above) if self.drawable(d)]

    def sample(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        n, h = self.size(difficulty)
        if not self.drawable(difficulty):
            raise ValueError(f"task {self.name!r}: a maze of {n} nodes with {h} hops cannot be drawn "
                             f"(need hops < nodes <= {_LABELS})")
        index = np.asarray(index, dtype=np.int64)
        rows, m = len(index), n - 1  # m edges; each appears in two adjacency lists
        parent = random_trees(seed, difficulty, index, n, h)
        keys = hash_uniform(seed, (*difficulty, 0), index, _LABELS + n + 2 * m)
        labels = np.argsort(keys[:, :_LABELS], axis=1)[:, :n] + 1
        node_rank = np.argsort(np.argsort(keys[:, _LABELS : _LABELS + n], axis=1), axis=1).astype(np.uint64)

        # Tokens of three characters: a node's header `nn:` and its neighbours `nn,` (`-` ends a list).
        # Sorting by (rank of the owner node, header first, neighbours in random order) lays them out.
        child = np.broadcast_to(np.arange(1, n), (rows, m))
        owner = np.concatenate([np.broadcast_to(np.arange(n), (rows, n)), child, parent[:, 1:]], axis=1)
        other = np.concatenate([np.broadcast_to(np.arange(n), (rows, n)), parent[:, 1:], child], axis=1)
        header = np.arange(n + 2 * m) < n
        within = np.pad(np.uint64(1) + (keys[:, _LABELS + n :] >> np.uint64(24)), ((0, 0), (n, 0)))  # header: 0
        order = np.argsort((np.take_along_axis(node_rank, owner, axis=1) << np.uint64(41)) + within,
                           axis=1, kind="stable")
        other, is_header = np.take_along_axis(other, order, axis=1), header[order]
        sep = np.where(is_header, ord(":"), np.where(np.roll(is_header, -1, axis=1), ord("-"), ord(",")))
        sep[:, -1] = ord("=")
        head = _tokens(labels[:, [0, h]], np.array([ord(">"), ord("#")]))
        prompts = rows_to_str(np.concatenate([head, _tokens(np.take_along_axis(labels, other, axis=1), sep)], axis=1))
        return Batch(difficulty, prompts, rows_to_str(_tokens(labels[:, : h + 1], np.array(ord(">")))[:, :-1]))

    def verify(self, prompt, answer):
        ends, _, lists = prompt.removesuffix("=").partition("#")
        start, _, end = ends.partition(">")
        edges = set()
        for entry in lists.split("-"):
            node, _, neighbours = entry.partition(":")
            edges.update((node, v) for v in neighbours.split(","))
        path = answer.split(">")
        return (path[0] == start and path[-1] == end and len(set(path)) == len(path)
                and all((u, v) in edges for u, v in zip(path, path[1:])))

    def max_answer_length(self, prompt):
        return 3 * len(prompt) // 9 - 1  # a path through all N nodes (prompts have 9N characters)


def _tokens(labels: np.ndarray, separators: np.ndarray) -> np.ndarray:
    """Labels [N, k] and a separator after each (broadcast) -> ASCII [N, 3k]: `07>13>42>`."""
    parts = np.broadcast_arrays(labels // 10 + ord("0"), labels % 10 + ord("0"), separators)
    return np.stack(parts, axis=2).reshape(len(labels), 3 * labels.shape[1])


class MazeHops(Maze):
    name = "maze_hops"
    axes = ("hops",)
    description = "path of h hops in a random tree of 30 nodes (task.nodes)"
    nodes = 30


class MazeNodes(Maze):
    name = "maze_nodes"
    axes = ("nodes",)
    description = "path of 9 hops in a random tree of N nodes"
    hops = 9

    def example(self):
        return (self.hops + 2,)

    def base_difficulties(self, base):
        """Node counts from the least that holds the path (hops + 1) up to `base` (the paper: 10..30)."""
        if base <= self.hops:
            raise ValueError(f"task {self.name!r}: base must exceed {self.hops} nodes, got {base}")
        return [(n,) for n in range(self.hops + 1, base + 1)]


register(MazeHops())
register(MazeNodes())
